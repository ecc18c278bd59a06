"""The Airflow-native store over a real Airflow 3.3 asset state store (see tests/_airflow.py).

The contract suite (test_contract.py) covers what every store does; this file covers what only
the native store does: its key and document layout, several assets per trigger, the refusal of
oversized documents, regression detection without compare-and-set, and its refusals.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.execution_time.context import AssetStateStoreAccessor
from airflow.triggers.base import TriggerEvent
from hypothesis import given
from hypothesis import strategies as st

from stateful import Watermark, stateful
from stateful.backends import NativeBackend
from stateful.backends.native import FORMAT, MAX_KEY_LENGTH, NativeDocument, native_key, parse_native_key
from stateful.backends.sql import dispose_default_stores
from stateful.errors import (
    StateConflictError,
    StateRegressionError,
    StateTooLargeError,
    StateValidationError,
    StoreConfigError,
    StoreError,
)
from tests._airflow import AirflowStateStore, deactivate_asset
from tests._triggerer import Triggerer, until
from tests.triggers import CounterBase

pytestmark = pytest.mark.airflow_min("3.3", reason="AIP-103 asset state store")

NS, NAME = "tests", "src"
KEY = native_key(NS, NAME)


@pytest.fixture(autouse=True)
def sql_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The SQL default store of these tests: a file that must stay absent unless a test uses it."""
    path = tmp_path / "default.db"
    monkeypatch.setenv("STATEFUL_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.delenv("AIRFLOW__STATEFUL__BACKEND", raising=False)
    dispose_default_stores()
    yield path
    dispose_default_stores()


class WatchTrigger(CounterBase):
    """An event trigger with ``backend=None``: the store is chosen by the resolution rule.

    One save per event (``save_batch=1``): these tests follow each write to the store.
    """

    @stateful(namespace=NS, name="{source}", save_batch=1)
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        async for event in self.body(watermark):
            yield event


async def payloads(run: AsyncIterator[TriggerEvent]) -> list[Any]:
    """Every event of a run, resumed after each one as the triggerer does."""
    return [event.payload async for event in run]


def exists(path: Path) -> bool:
    return path.exists()


def cursor_of(doc: Any) -> Any:
    return doc["value"]["cursor"]


# ---- key and document layout (no Airflow needed) -------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=80)


@given(namespace=_TEXT, name=_TEXT, key=_TEXT)
def test_keys_are_readable_unique_and_parse_back(namespace: str, name: str, key: str) -> None:
    text = native_key(namespace, name, key)
    assert text.startswith("stateful/") and len(text) <= MAX_KEY_LENGTH
    assert parse_native_key(text) == (namespace, name, key)


@given(a=st.tuples(_TEXT, _TEXT, _TEXT), b=st.tuples(_TEXT, _TEXT, _TEXT))
def test_different_addresses_never_share_a_key(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    if a != b:
        assert native_key(*a) != native_key(*b)


def test_key_layout() -> None:
    assert native_key("files", "landing/in/") == "stateful/files/watermark/landing/in/"
    assert native_key("a/b", "c", "k%") == "stateful/a%2Fb/k%25/c"
    assert parse_native_key("stateful/a%2Fb/k%25/c") == ("a/b", "c", "k%")
    assert parse_native_key("watermark") is None
    # Text that looks escaped is escaped again, so it comes back as it was.
    assert native_key("a%2Fb", "c") == "stateful/a%252Fb/watermark/c"
    assert parse_native_key("stateful/a%252Fb/watermark/c") == ("a%2Fb", "c", "watermark")


def test_long_addresses_are_hashed_and_the_document_still_names_them() -> None:
    long_name = "bucket/" + "p" * 600
    text = native_key("s3", long_name)
    assert text.startswith("stateful/sha256/") and len(text) <= MAX_KEY_LENGTH
    assert text == native_key("s3", long_name) != native_key("s3", long_name + "x")
    assert parse_native_key(text) is None
    doc = NativeDocument.create("s3", long_name, "watermark", "{}", updated_by="me").to_json_value()
    assert (doc["namespace"], doc["name"]) == ("s3", long_name)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ('{"cursor":3,"seen":{"a.csv":null}}', "value"),  # how Watermark.to_state_json writes
        ('{"cursor": 3}', "text"),  # would not come back byte for byte from JSON
        ("not json", "text"),
        ("1e5", "text"),
    ],
)
def test_documents_embed_json_readably_and_keep_any_text_exactly(value: str, field: str) -> None:
    doc = NativeDocument.create(NS, NAME, "watermark", value, updated_by="me")
    stored = json.loads(json.dumps(doc.to_json_value()))  # as the metadata database keeps it
    assert field in stored and ({"value", "text"} - {field}).isdisjoint(stored)
    assert NativeDocument.from_json_value(stored) == doc


@pytest.mark.parametrize(
    ("stored", "fragment"),
    [
        ("hello", "not a document written by airflow-stateful"),
        ({"cursor": 3}, "not a document written by airflow-stateful"),
        ({"format": "airflow-stateful/4"}, "upgrade airflow-stateful"),
        ({"format": "other/1"}, "unknown format"),
    ],
)
def test_foreign_documents_are_rejected(stored: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        NativeDocument.from_json_value(stored)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": 0}, "version"),
        ({"version": "1"}, "version"),
        ({"version": True}, "version"),
        ({"lineage": None}, "lineage"),
        ({"updated_by": 3}, "updated_by"),
        ({"text": "also"}, "value/text"),
        ({"updated_at": "2026-01-01T00:00:00"}, "time zone"),
        ({"updated_at": "yesterday"}, "ISO"),
    ],
)
def test_malformed_documents_are_rejected(change: dict[str, Any], field: str) -> None:
    stored = NativeDocument.create(NS, NAME, "watermark", "{}", updated_by="me").to_json_value()
    stored.update(change)
    with pytest.raises(ValueError, match=field):
        NativeDocument.from_json_value(stored)


# ---- a watcher trigger, as the triggerer runs it ----------------------------------------------


async def test_a_watcher_keeps_its_watermark_in_its_asset(
    airflow_state_store: AirflowStateStore, sql_default: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stateful")
    airflow = airflow_state_store
    asset = airflow.new_asset()
    first = Triggerer()
    trigger = airflow.watch(WatchTrigger("src", [1, 2, 3], then="block"), asset)
    first.start(trigger)
    await trigger.blocked.wait()
    # Ack mode: saved once Airflow stored the events, in one save or several.
    await until(lambda: (airflow.stored(asset, KEY) or {}).get("value", {}).get("cursor") == 3)
    await first.stop()
    assert first.events == [1, 2, 3]

    doc = airflow.stored(asset, KEY)
    assert doc["format"] == FORMAT and (doc["namespace"], doc["name"]) == (NS, NAME)
    version = doc["version"]
    assert 1 <= version <= 3 and cursor_of(doc) == 3
    assert any("NativeBackend(asset" in r.getMessage() and "auto" in r.getMessage() for r in caplog.records)
    assert not exists(sql_default)  # neither written nor created by the switch check

    second = Triggerer()
    restarted = airflow.watch(WatchTrigger("src", [1, 2, 3, 4], then="block"), asset)
    second.start(restarted)
    await restarted.blocked.wait()
    await until(lambda: cursor_of(airflow.stored(asset, KEY)) == 4)
    await second.stop()
    assert second.events == [4]
    assert airflow.stored(asset, KEY)["version"] == version + 1


async def test_several_assets_get_every_write_and_a_read_takes_the_oldest(
    airflow_state_store: AirflowStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    airflow = airflow_state_store
    a, b = airflow.new_asset("a"), airflow.new_asset("b")
    assert await payloads(airflow.watch(WatchTrigger("src", [1, 2, 3]), a, b).run()) == [1, 2, 3]
    doc_a, doc_b = airflow.stored(a, KEY), airflow.stored(b, KEY)
    assert doc_a == doc_b and doc_a["version"] == 3 and cursor_of(doc_a) == 3

    # A save that reached asset a only (the triggerer died between the two writes).
    only_a = NativeBackend(airflow.accessors(a))
    record = await only_a.aread(NS, NAME, "watermark")
    assert record is not None
    await only_a.awrite(NS, NAME, "watermark", Watermark[int](cursor=4).to_state_json(), expected_version=3)

    caplog.set_level(logging.WARNING, logger="stateful")
    # Event 4 comes again (for asset a, a repeat), never a skip for asset b.
    assert await payloads(airflow.watch(WatchTrigger("src", [1, 2, 3, 4, 5]), a, b).run()) == [4, 5]
    assert any("hold different states" in r.getMessage() for r in caplog.records)
    doc_a, doc_b = airflow.stored(a, KEY), airflow.stored(b, KEY)
    history_a, history_b = doc_a.pop("history"), doc_b.pop("history")
    assert doc_a == doc_b and doc_a["version"] == 6 and cursor_of(doc_a) == 5
    # Each asset's history names the versions it held: asset b never held version 4.
    assert (history_a["versions"], history_b["versions"]) == ([5, 4, 3, 2, 1], [5, 3, 2, 1])


async def test_a_newly_watched_asset_makes_everything_fire_again(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    a, c = airflow.new_asset("a"), airflow.new_asset("c")
    assert await payloads(airflow.watch(WatchTrigger("src", [1, 2]), a).run()) == [1, 2]
    # c never received events 1 and 2: they are emitted again rather than skipped for c.
    assert await payloads(airflow.watch(WatchTrigger("src", [1, 2, 3]), a, c).run()) == [1, 2, 3]
    assert airflow.stored(a, KEY) == airflow.stored(c, KEY)


class _UnreachableAccessor(AssetStateStoreAccessor):
    """Airflow's accessor whose writes fail as if the API server dropped the connection.

    The one stand-in of this file: a network failure between two writes cannot be produced
    on purpose with the real parts.
    """

    async def aset(self, key: str, value: Any) -> None:
        raise ConnectionError("connection reset by peer")


async def test_a_write_that_fails_for_one_asset_says_which(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    a, b = airflow.new_asset("a"), airflow.new_asset("b")
    scope = airflow.accessors(a, b)
    assert await NativeBackend(scope).awrite(NS, NAME, "watermark", "{}", expected_version=None) == 1
    scope._by_name[b.name] = _UnreachableAccessor(name=b.name)
    store = NativeBackend(scope)
    assert (await store.aread(NS, NAME, "watermark")) is not None

    with pytest.raises(StoreError) as info:
        await store.awrite(NS, NAME, "watermark", '{"n":2}', expected_version=1)
    message = str(info.value)
    assert f"asset {b.name!r} (ConnectionError" in message and f"written to asset {a.name!r}" in message
    assert "emitted again" in message
    assert (airflow.stored(a, KEY)["version"], airflow.stored(b, KEY)["version"]) == (2, 1)
    # The next run starts from the oldest copy: asset b's version 1.
    record = await NativeBackend(airflow.accessors(a, b)).aread(NS, NAME, "watermark")
    assert record is not None and (record.version, record.value) == (1, "{}")


async def test_an_asset_no_dag_declares_any_more_stops_the_next_save(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    a, b = airflow.new_asset("a"), airflow.new_asset("b")
    store = NativeBackend(airflow.accessors(a, b))
    assert await store.awrite(NS, NAME, "watermark", "{}", expected_version=None) == 1
    deactivate_asset(b.name)  # Airflow's API now reads its state as "nothing"

    with pytest.raises(StateConflictError) as info:
        await store.awrite(NS, NAME, "watermark", '{"n":2}', expected_version=1)
    assert (info.value.expected_version, info.value.actual_version) == (1, None)
    assert airflow.stored(a, KEY)["version"] == 1  # checked before anything was written


# ---- size ---------------------------------------------------------------------------------


def test_the_size_limit_follows_airflow_configuration(
    airflow_state_store: AirflowStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = airflow_state_store.accessors(airflow_state_store.new_asset())
    assert NativeBackend(scope).max_value_bytes == 65535
    monkeypatch.setenv("AIRFLOW__STATE_STORE__MAX_VALUE_STORAGE_BYTES", "1000")
    assert NativeBackend(scope).max_value_bytes == 1000
    assert NativeBackend(scope, max_value_bytes=50).max_value_bytes == 50
    # A worker state backend keeps values elsewhere and stores a reference: no limit here.
    monkeypatch.setenv("AIRFLOW__WORKERS__STATE_STORE_BACKEND", "some.module.Backend")
    assert NativeBackend(scope).max_value_bytes == 0


async def test_oversized_documents_are_refused_before_writing(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store = NativeBackend(airflow.accessors(asset), max_value_bytes=1000)
    await store.awrite(NS, NAME, "watermark", '{"small":1}', expected_version=None)

    with pytest.raises(StateTooLargeError) as info:
        await store.awrite(NS, NAME, "watermark", json.dumps({"big": "x" * 1000}), expected_version=1)
    err = info.value
    assert (err.limit, err.namespace, err.name) == (1000, NS, NAME) and err.size > 1000
    for hint in (
        "[state_store] max_value_storage_bytes",
        "lookback",
        "max_untimed_keys",
        "Nothing was written",
    ):
        assert hint in str(err)
    doc = airflow.stored(asset, KEY)
    assert doc["version"] == 1 and doc["value"] == {"small": 1}


async def test_a_trigger_whose_watermark_outgrows_the_limit_fails_with_its_last_save_intact(
    airflow_state_store: AirflowStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A limit so low that even the list of parts outgrows it after a few hundred-byte keys.
    monkeypatch.setenv("AIRFLOW__STATE_STORE__MAX_VALUE_STORAGE_BYTES", "700")

    class KeysTrigger(CounterBase):
        @stateful(namespace=NS, name="{source}", save_batch=1)  # a save per event, until one fails
        async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
            for item in self.items:
                key = f"file-{item:04d}-{'x' * 200}.csv"
                if watermark.is_new(key):
                    watermark.advance(key=key)
                    yield TriggerEvent(item)

    airflow = airflow_state_store
    asset = airflow.new_asset()
    run = airflow.watch(KeysTrigger("src", list(range(50))), asset).run()
    taken: list[Any] = []
    with pytest.raises(StateTooLargeError, match="manifest alone"):
        async for event in run:
            taken.append(event.payload)
    record = await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, "watermark")
    assert record is not None
    assert 0 < record.version == len(Watermark.from_state_json(record.value).seen) < len(taken)
    assert all(len(json.dumps(airflow.stored(asset, key))) <= 700 for key in airflow.keys(asset))


# ---- no compare-and-set: regressions and conflicts --------------------------------------------


async def _three_versions(airflow: AirflowStateStore, asset: Asset) -> tuple[NativeBackend, dict[str, Any]]:
    store = NativeBackend(airflow.accessors(asset))
    await store.awrite(NS, NAME, "watermark", '{"n":1}', expected_version=None)
    version_two = airflow.stored(asset, KEY)
    await store.awrite(NS, NAME, "watermark", '{"n":2}', expected_version=1)
    version_two = airflow.stored(asset, KEY)
    await store.awrite(NS, NAME, "watermark", '{"n":3}', expected_version=2)
    return store, version_two


async def test_an_older_copy_put_back_is_a_regression_on_load(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    _, version_two = await _three_versions(airflow, asset)
    airflow.put(asset, KEY, version_two)  # an operator restores an old copy through the REST API

    fresh = NativeBackend(airflow.accessors(asset))  # a new trigger run in the same triggerer
    with pytest.raises(StateRegressionError) as info:
        await fresh.aread(NS, NAME, "watermark")
    err = info.value
    assert (err.expected_version, err.actual_version) == (3, 2)
    assert isinstance(err, StateConflictError) and f"asset {asset.name!r}" in str(err)
    assert "went backwards" in str(err) and "stateful rewind" in str(err)


async def test_a_regression_is_caught_before_save(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store, version_two = await _three_versions(airflow, asset)
    airflow.put(asset, KEY, version_two)

    with pytest.raises(StateRegressionError):
        await store.awrite(NS, NAME, "watermark", '{"n":4}', expected_version=3)
    assert airflow.stored(asset, KEY) == version_two  # nothing written


async def test_after_a_restart_only_the_writer_can_tell_a_regression(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    # Versions 1 to 3 were written by a triggerer process that has since been replaced: this
    # process (the new triggerer) has seen none of them.
    one = NativeDocument.create(NS, NAME, "watermark", '{"n":1}', updated_by="old-triggerer:1")
    two = one.successor('{"n":2}', updated_by="old-triggerer:1")
    for doc in (one, two, two.successor('{"n":3}', updated_by="old-triggerer:1")):
        airflow.put(asset, KEY, doc.to_json_value())
    airflow.put(asset, KEY, two.to_json_value())  # an operator restores an older copy

    # Unprotected (documented): a process that never saw version 3 loads version 2.
    record = await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, "watermark")
    assert record is not None and record.version == 2
    # A writer that loaded version 3 before the restore still refuses to save over it.
    with pytest.raises(StateRegressionError):
        await NativeBackend(airflow.accessors(asset)).awrite(NS, NAME, "watermark", "{}", expected_version=3)


async def test_a_reset_is_not_a_regression(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store, _ = await _three_versions(airflow, asset)
    assert await store.adelete(NS, NAME, "watermark") is True
    other = NativeBackend(airflow.accessors(asset))
    assert await other.awrite(NS, NAME, "watermark", '{"n":1}', expected_version=None) == 1

    record = await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, "watermark")
    assert record is not None and (record.version, record.value) == (1, '{"n":1}')


async def test_a_second_writer_loses(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    one, two = NativeBackend(airflow.accessors(asset)), NativeBackend(airflow.accessors(asset))
    assert await one.aread(NS, NAME, "watermark") is None
    assert await two.aread(NS, NAME, "watermark") is None
    assert await one.awrite(NS, NAME, "watermark", '{"by":"one"}', expected_version=None) == 1
    with pytest.raises(StateConflictError) as info:
        await two.awrite(NS, NAME, "watermark", '{"by":"two"}', expected_version=None)
    assert (info.value.expected_version, info.value.actual_version) == (None, 1)
    assert airflow.stored(asset, KEY)["value"] == {"by": "one"}


# ---- what the store refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "fragment"),
    [
        ("hello", "not a document written by airflow-stateful"),
        ({"format": "airflow-stateful/9"}, "upgrade airflow-stateful"),
        (
            NativeDocument.create("other", "doc", "watermark", "{}", updated_by="me").to_json_value(),
            "holds other/doc",
        ),
    ],
    ids=["foreign", "newer", "other-address"],
)
async def test_unreadable_documents_raise_and_are_left_untouched(
    airflow_state_store: AirflowStateStore, stored: Any, fragment: str
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    airflow.put(asset, KEY, stored)
    with pytest.raises(StateValidationError) as info:
        async for _ in airflow.watch(WatchTrigger("src", [1]), asset).run():
            pass
    message = str(info.value)
    assert fragment in message and KEY in message and f"asset {asset.name!r}" in message
    assert "stateful show tests src" in message
    assert airflow.stored(asset, KEY) == stored


async def test_listing_is_refused_with_the_rest_api_to_use(airflow_state_store: AirflowStateStore) -> None:
    store = NativeBackend(airflow_state_store.accessors(airflow_state_store.new_asset()))
    with pytest.raises(StoreError, match=r"/api/v2/assets/\{asset_id\}/state-store"):
        store.list()
    with pytest.raises(StoreError, match="cannot list"):
        await store.alist("tests")


def test_an_unbound_store_is_refused_until_bound(airflow_state_store: AirflowStateStore) -> None:
    unbound = NativeBackend(max_value_bytes=123)
    assert not unbound.bound and unbound.description == "NativeBackend(unbound)"
    with pytest.raises(StoreConfigError, match="not bound"):
        unbound.read(NS, NAME, "watermark")
    asset = airflow_state_store.new_asset()
    bound = unbound.bind(airflow_state_store.accessors(asset))
    assert bound.bound and bound.max_value_bytes == 123 and not unbound.bound
    assert bound.assets == (f"asset {asset.name!r}",)
    assert bound.read(NS, NAME, "watermark") is None


def test_what_is_not_an_asset_scope_is_refused(airflow_state_store: AirflowStateStore) -> None:
    with pytest.raises(StoreConfigError, match="needs an asset state store"):
        NativeBackend(object())
    with pytest.raises(StoreConfigError, match="no asset"):
        NativeBackend(airflow_state_store.accessors())
    # A future Airflow that keeps the watched assets elsewhere is refused, not half-served.
    changed = airflow_state_store.accessors(airflow_state_store.new_asset())
    del changed._by_name
    with pytest.raises(StoreConfigError, match="Keep this state in the SQL store"):
        NativeBackend(changed)


def test_one_accessor_is_a_scope_too(airflow_state_store: AirflowStateStore) -> None:
    asset = airflow_state_store.new_asset()
    store = NativeBackend(airflow_state_store.accessors(asset)[asset])
    assert store.assets == (f"asset {asset.name!r}",)
    store.write(NS, NAME, "watermark", "{}", expected_version=None)
    assert airflow_state_store.stored(asset, KEY)["version"] == 1


# ---- the event loop -------------------------------------------------------------------------------


async def test_a_slow_api_server_does_not_block_the_event_loop(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    store = NativeBackend(airflow.accessors(airflow.new_asset()))
    assert await store.aread(NS, NAME, "watermark") is None  # the comms are up

    airflow.comms.gate.clear()  # the supervisor stops answering
    write = asyncio.create_task(store.awrite(NS, NAME, "watermark", "{}", expected_version=None))
    ticks = 0
    for _ in range(50):
        await asyncio.sleep(0.001)
        ticks += 1
    assert ticks == 50 and not write.done()  # the loop kept running while the write waited
    airflow.comms.gate.set()
    assert await write == 1
