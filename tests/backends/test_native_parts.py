"""Large watermarks in the Airflow-native store: one manifest and many parts (see parts.py).

Everything goes through a real Airflow 3.3 asset state store (tests/_airflow.py). Where a test
needs its hands between two writes (a failure, another process reading or saving), it wraps
Airflow's own accessor (:class:`Seam`): the boundary the store is given, not a hook in the store.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.execution_time.context import AssetStateStoreAccessor
from airflow.triggers.base import TriggerEvent

from stateful import Watermark, stateful
from stateful._document import canonical_json
from stateful.backends import NativeBackend
from stateful.backends.native import FORMAT, MANIFEST_FORMAT, native_key
from stateful.backends.native.history import entry_key
from stateful.backends.native.parts import is_part_key, part_key
from stateful.errors import StateConflictError, StateRegressionError, StoreError
from tests._airflow import AirflowStateStore
from tests.triggers import CounterBase

pytestmark = pytest.mark.airflow_min("3.3", reason="AIP-103 asset state store")

NS, NAME, WM = "s3", "landing/", "watermark"
KEY = native_key(NS, NAME)
TS = "2026-01-02T03:04:05.000000Z"
SMALL = 4000  # a per-value limit that splits a few hundred keys into several parts, quickly
FIXTURE = Path(__file__).parent / "fixtures" / "native-format-1.json"


def s3_key(i: int) -> str:
    """A key as the S3 example makes them: object key ``@`` ETag (about 104 bytes per entry)."""
    return f"landing/2026/01/02/part-{i:06d}.csv@{hashlib.md5(str(i).encode()).hexdigest()}"


def s3_state(keys: range, cursor: int | None = None) -> str:
    """A watermark's stored text (as ``Watermark.to_state_json`` writes it) seeing ``keys``."""
    seen = dict(sorted((s3_key(i), TS) for i in keys))
    return canonical_json({"cursor": cursor, "schema_version": 1, "seen": seen, "timestamp": TS})


@pytest.fixture(autouse=True)
def _no_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count the values of the parts layout itself: the stores here keep no history.

    test_native_history.py checks the parts with history (entries keep the parts they name), and
    test_native_burst.py measures saves both ways.
    """
    monkeypatch.setenv("STATEFUL_NATIVE_HISTORY_VERSIONS", "1")


def referenced(manifest: Any) -> set[str]:
    """The keys of the parts a stored manifest names."""
    if "seen" not in manifest:
        return set()
    return {part_key(KEY, ref.rpartition(":")[0]) for ref in manifest["seen"]["parts"]}


def named(airflow: AirflowStateStore, asset: Asset, key: str = KEY) -> set[str]:
    """Every key the document under ``key`` needs: itself, its parts, its history entries and theirs."""
    document = airflow.stored(asset, key)
    keys = {key} | referenced(document)
    for version in document.get("history", {}).get("versions", []):
        entry = entry_key(key, version)
        keys |= {entry} | referenced(airflow.stored(asset, entry))
    return keys


class Seam(AssetStateStoreAccessor):
    """Airflow's accessor with the test's hands on it.

    ``written`` records each write (key, size as Airflow measures it); ``before_write(key)`` and
    ``after_read(key)``, when set, run around the real call (sync, or awaited when async).
    """

    def __init__(self, *, name: str) -> None:
        super().__init__(name=name)
        self.written: list[tuple[str, int]] = []
        self.reads: list[str] = []
        self.before_write: Callable[[str], Any] | None = None
        self.after_read: Callable[[str], Any] | None = None

    def set(self, key: str, value: Any) -> None:
        if self.before_write is not None:
            self.before_write(key)
        super().set(key, value)
        self.written.append((key, len(json.dumps(value))))

    async def aset(self, key: str, value: Any) -> None:
        if self.before_write is not None and inspect.isawaitable(result := self.before_write(key)):
            await result
        await super().aset(key, value)
        self.written.append((key, len(json.dumps(value))))

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key, default)
        self.reads.append(key)
        if self.after_read is not None:
            self.after_read(key)
        return found

    async def aget(self, key: str, default: Any = None) -> Any:
        found = await super().aget(key, default)
        self.reads.append(key)
        if self.after_read is not None and inspect.isawaitable(result := self.after_read(key)):
            await result
        return found


def seamed(airflow: AirflowStateStore, asset: Asset) -> tuple[Any, Seam]:
    scope = airflow.accessors(asset)
    seam = scope._by_name[asset.name] = Seam(name=asset.name)
    return scope, seam


def fail_after(parts: int) -> Callable[[str], None]:
    """A ``before_write`` that lets ``parts`` part writes through, then fails like a dropped connection."""
    done = [0]

    def hook(key: str) -> None:
        if is_part_key(key):
            done[0] += 1
            if done[0] > parts:
                raise ConnectionError("connection reset by peer")

    return hook


# ---- 100,000 keys --------------------------------------------------------------------------


def test_a_hundred_thousand_s3_keys_round_trip(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    scope, seam = seamed(airflow, asset)
    store = NativeBackend(scope)
    assert store.max_value_bytes == 65535  # Airflow's default
    value = s3_state(range(100_000))
    assert 9_000_000 < len(value) < 11_000_000

    assert store.write(NS, NAME, WM, value, expected_version=None) == 1
    manifest = airflow.stored(asset, KEY)
    assert manifest["format"] == MANIFEST_FORMAT and manifest["seen"]["count"] == 100_000
    parts = referenced(manifest)
    assert len(parts) == len(manifest["seen"]["parts"]) > len(value) // 65535
    written = [key for key, _ in seam.written]
    assert written[-1] == KEY and sorted(written[:-1]) == sorted(parts)  # each part once, then the manifest
    assert max(size for _, size in seam.written) <= 65535
    assert set(airflow.keys(asset)) == {KEY} | parts

    restarted = NativeBackend(scope)  # a new process: nothing remembered
    record = restarted.read(NS, NAME, WM)
    assert record is not None and record.version == 1 and record.value == value

    seam.written.clear()
    one_more = s3_state(range(100_001))
    assert restarted.write(NS, NAME, WM, one_more, expected_version=1) == 2
    assert len(seam.written) == 2 and seam.written[-1][0] == KEY  # one part, then the manifest
    manifest = airflow.stored(asset, KEY)
    assert set(airflow.keys(asset)) == {KEY} | referenced(manifest)  # the replaced part is gone
    record = NativeBackend(airflow.accessors(asset)).read(NS, NAME, WM)
    assert record is not None and record.version == 2 and record.value == one_more


async def test_a_hundred_thousand_s3_keys_round_trip_async(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    scope, seam = seamed(airflow, asset)
    value = s3_state(range(100_000))

    assert await NativeBackend(scope).awrite(NS, NAME, WM, value, expected_version=None) == 1
    assert max(size for _, size in seam.written) <= 65535 and seam.written[-1][0] == KEY
    restarted = NativeBackend(scope)
    record = await restarted.aread(NS, NAME, WM)
    assert record is not None and record.version == 1 and record.value == value

    seam.written.clear()
    fewer = s3_state(range(1, 100_000))  # a key pruned
    assert await restarted.awrite(NS, NAME, WM, fewer, expected_version=1) == 2
    assert len(seam.written) == 2
    assert set(airflow.keys(asset)) == {KEY} | referenced(airflow.stored(asset, KEY))
    record = await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, WM)
    assert record is not None and record.value == fewer
    assert Watermark.from_state_json(s3_state(range(50))).to_state_json() == s3_state(range(50))


class S3Trigger(CounterBase):
    """A watcher listing S3 objects: each ``key@etag`` not seen yet is an event."""

    @stateful(namespace=NS, name="{source}")
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        for item in self.items:
            if watermark.is_new(s3_key(item), when):
                watermark.advance(key=s3_key(item), timestamp=when)
                yield TriggerEvent(item)


async def test_a_watcher_whose_watermark_outgrows_one_value_emits_each_object_once(
    airflow_state_store: AirflowStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before parts, every save past the limit failed and the watcher re-fired the same objects.
    monkeypatch.setenv("AIRFLOW__STATE_STORE__MAX_VALUE_STORAGE_BYTES", str(SMALL))
    airflow = airflow_state_store
    asset = airflow.new_asset()
    first = [e.payload async for e in airflow.watch(S3Trigger("landing/", list(range(80))), asset).run()]
    assert first == list(range(80))
    assert len(referenced(airflow.stored(asset, KEY))) > 1  # it outgrew one value

    restarted = airflow.watch(S3Trigger("landing/", list(range(90))), asset)
    assert [e.payload async for e in restarted.run()] == list(range(80, 90))
    assert set(airflow.keys(asset)) == {KEY} | referenced(airflow.stored(asset, KEY))
    assert all(len(json.dumps(airflow.stored(asset, key))) <= SMALL for key in airflow.keys(asset))


# ---- a save cut short --------------------------------------------------------------------------


def test_an_interrupted_save_leaves_the_last_one_whole_and_the_next_cleans_up(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    scope, seam = seamed(airflow, asset)
    store = NativeBackend(scope, max_value_bytes=SMALL)
    first = s3_state(range(300))
    assert store.write(NS, NAME, WM, first, expected_version=None) == 1
    assert len(referenced(airflow.stored(asset, KEY))) > 4

    seam.before_write = fail_after(3)
    with pytest.raises(StoreError, match="connection reset"):
        store.write(NS, NAME, WM, s3_state(range(600)), expected_version=1)  # several new parts
    manifest = airflow.stored(asset, KEY)
    assert manifest["version"] == 1
    assert len(set(airflow.keys(asset)) - referenced(manifest) - {KEY}) == 3  # parts no manifest names
    record = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL).read(NS, NAME, WM)
    assert record is not None and (record.version, record.value) == (1, first)

    seam.before_write = None
    again = s3_state(range(301))  # one key more: one part
    assert store.write(NS, NAME, WM, again, expected_version=1) == 2
    assert set(airflow.keys(asset)) == {KEY} | referenced(airflow.stored(asset, KEY))


async def test_a_save_cut_short_by_a_dying_process_is_cleaned_by_the_next_process(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    scope, seam = seamed(airflow, asset)
    first = s3_state(range(300))
    assert (
        await NativeBackend(scope, max_value_bytes=SMALL).awrite(NS, NAME, WM, first, expected_version=None)
        == 1
    )
    seam.before_write = fail_after(3)
    with pytest.raises(StoreError):
        await NativeBackend(scope, max_value_bytes=SMALL).awrite(
            NS, NAME, WM, s3_state(range(400)), expected_version=1
        )
    seam.before_write = None

    restarted = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL)
    record = await restarted.aread(NS, NAME, WM)
    assert record is not None and (record.version, record.value) == (1, first)
    again = s3_state(range(301))
    assert await restarted.awrite(NS, NAME, WM, again, expected_version=1) == 2
    assert set(airflow.keys(asset)) == {KEY} | referenced(airflow.stored(asset, KEY))
    record = await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, WM)
    assert record is not None and record.value == again


# ---- readers and writers at the same time ---------------------------------------------------


async def test_a_reader_during_a_save_sees_the_previous_save_whole(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    scope, seam = seamed(airflow, asset)
    writer = NativeBackend(scope, max_value_bytes=SMALL)
    first, second = s3_state(range(300)), s3_state(range(100, 420), cursor=2)
    assert await writer.awrite(NS, NAME, WM, first, expected_version=None) == 1
    during: list[str | None] = []

    async def read_between(key: str) -> None:  # after some new parts, and right before the manifest
        if key == KEY or len(seam.written) in (1, 3):
            record = await NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL).aread(NS, NAME, WM)
            during.append(None if record is None else record.value)

    seam.written.clear()
    seam.before_write = read_between
    assert await writer.awrite(NS, NAME, WM, second, expected_version=1) == 2
    assert during == [first, first, first]
    record = await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, WM)
    assert record is not None and record.value == second


def test_a_reader_whose_parts_a_save_replaced_reads_again(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    writer = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL)
    first, second = s3_state(range(300)), s3_state(range(100, 420))
    assert writer.write(NS, NAME, WM, first, expected_version=None) == 1
    scope, seam = seamed(airflow, asset)

    def save_in_between(key: str) -> None:  # the reader has the manifest and one of its parts
        if is_part_key(key) and seam.reads.count(KEY) == 1 and not saved:
            saved.append(writer.write(NS, NAME, WM, second, expected_version=1))

    saved: list[int] = []

    seam.after_read = save_in_between
    record = NativeBackend(scope, max_value_bytes=SMALL).read(NS, NAME, WM)
    assert record is not None and (record.version, record.value) == (2, second)  # never a mix
    assert seam.reads.count(KEY) == 2


async def test_a_part_deleted_by_hand_is_a_clear_error(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL)
    await store.awrite(NS, NAME, WM, s3_state(range(300)), expected_version=None)
    airflow.drop(asset, sorted(referenced(airflow.stored(asset, KEY)))[0])

    with pytest.raises(StoreError) as info:
        await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, WM)
    message = str(info.value)
    assert "failed 5 times" in message and "missing" in message and f"stateful show {NS} {NAME}" in message


# ---- compare-and-set emulation on manifests -------------------------------------------------------


async def test_regressions_and_conflicts_are_caught_on_manifests(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL)
    await store.awrite(NS, NAME, WM, s3_state(range(300)), expected_version=None)
    await store.awrite(NS, NAME, WM, s3_state(range(301)), expected_version=1)
    version_two = airflow.stored(asset, KEY)
    await store.awrite(NS, NAME, WM, s3_state(range(302)), expected_version=2)
    airflow.put(asset, KEY, version_two)  # an old manifest put back (its parts may be gone)

    with pytest.raises(StateRegressionError):
        await NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL).aread(NS, NAME, WM)
    keys = airflow.keys(asset)
    with pytest.raises(StateRegressionError):
        await store.awrite(NS, NAME, WM, s3_state(range(303)), expected_version=3)
    assert airflow.keys(asset) == keys and airflow.stored(asset, KEY) == version_two  # nothing written

    other = airflow.new_asset()
    one, two = (NativeBackend(airflow.accessors(other), max_value_bytes=SMALL) for _ in range(2))
    assert await one.aread(NS, NAME, WM) is None and await two.aread(NS, NAME, WM) is None
    await one.awrite(NS, NAME, WM, s3_state(range(300)), expected_version=None)
    keys = airflow.keys(other)
    with pytest.raises(StateConflictError):
        await two.awrite(NS, NAME, WM, s3_state(range(500)), expected_version=None)
    assert airflow.keys(other) == keys  # the loser wrote no part


async def test_several_assets_each_keep_a_whole_copy_of_a_large_watermark(
    airflow_state_store: AirflowStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    airflow = airflow_state_store
    a, b = airflow.new_asset("a"), airflow.new_asset("b")
    both = NativeBackend(airflow.accessors(a, b), max_value_bytes=SMALL)
    first = s3_state(range(300))
    assert await both.awrite(NS, NAME, WM, first, expected_version=None) == 1
    for asset in (a, b):
        record = await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, WM)
        assert record is not None and record.value == first
        assert set(airflow.keys(asset)) == {KEY} | referenced(airflow.stored(asset, KEY))

    only_a = NativeBackend(airflow.accessors(a), max_value_bytes=SMALL)  # a save that reached a only
    assert await only_a.aread(NS, NAME, WM) is not None
    await only_a.awrite(NS, NAME, WM, s3_state(range(100, 400)), expected_version=1)

    caplog.set_level(logging.WARNING, logger="stateful")
    restarted = NativeBackend(airflow.accessors(a, b), max_value_bytes=SMALL)
    record = await restarted.aread(NS, NAME, WM)
    assert record is not None and (record.version, record.value) == (1, first)  # the oldest
    assert any("hold different states" in r.getMessage() for r in caplog.records)
    third = s3_state(range(100, 401))
    assert await restarted.awrite(NS, NAME, WM, third, expected_version=1) == 3
    assert airflow.stored(a, KEY) == airflow.stored(b, KEY)
    for asset in (a, b):
        assert set(airflow.keys(asset)) == {KEY} | referenced(airflow.stored(asset, KEY))
        record = await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, WM)
        assert record is not None and (record.version, record.value) == (3, third)


# ---- the layout of the previous release --------------------------------------------------------


@pytest.mark.parametrize("limit", [65535, 1500], ids=["stays-whole", "outgrows-one-value"])
def test_a_document_of_the_previous_layout_loads_and_is_upgraded(
    airflow_state_store: AirflowStateStore, limit: int
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    stored = json.loads(FIXTURE.read_text())
    assert stored["format"] == "airflow-stateful/1"
    key = native_key(stored["namespace"], stored["name"])
    airflow.put(asset, key, stored)
    address = (stored["namespace"], stored["name"], WM)

    store = NativeBackend(airflow.accessors(asset), max_value_bytes=limit)
    record = store.read(*address)
    assert record is not None and record.version == stored["version"]
    assert record.value == canonical_json(stored["value"], sort_keys=False)
    watermark = Watermark.from_state_json(record.value)
    assert len(watermark.seen) == 20
    watermark.advance(key="landing/in/2026/01/02/part-000020.csv@new", timestamp=watermark.timestamp)
    upgraded = watermark.to_state_json()
    assert store.write(*address, upgraded, expected_version=stored["version"]) == stored["version"] + 1

    doc = airflow.stored(asset, key)
    assert doc["format"] == (FORMAT if limit == 65535 else MANIFEST_FORMAT)
    assert doc["lineage"] == stored["lineage"]
    assert ("value" in doc) == (limit == 65535) and ("seen" in doc) == (limit != 65535)
    record = NativeBackend(airflow.accessors(asset)).read(*address)
    assert record is not None and record.value == upgraded
