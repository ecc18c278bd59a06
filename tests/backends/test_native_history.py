"""History in the Airflow-native store: the last N versions kept as entries in the asset's store.

Everything goes through a real Airflow 3.3 asset state store (tests/_airflow.py). The invariant
checked after each step: the asset holds exactly the keys the document needs (itself, its parts,
its history entries and their parts), no fewer (a part deleted too early breaks an entry) and
no more (a fallen entry or part left behind grows the store forever).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from stateful import Watermark
from stateful.backends import NativeBackend
from stateful.backends.base import StateRecord
from stateful.backends.native import NativeDocument, native_key
from stateful.backends.native.history import entry_key
from stateful.errors import StoreConfigError
from tests._airflow import AirflowStateStore
from tests.backends.test_native_parts import SMALL, named, referenced, s3_state, seamed

pytestmark = pytest.mark.airflow_min("3.3", reason="AIP-103 asset state store")

NS, NAME, WM = "s3", "landing/", "watermark"
KEY = native_key(NS, NAME)
FIXTURE = Path(__file__).parent / "fixtures" / "native-format-1.json"


def wm(cursor: int) -> str:
    return Watermark[int](cursor=cursor).to_state_json()


def versions(records: list[StateRecord]) -> list[tuple[int, str]]:
    return [(r.version, r.value) for r in records]


def test_the_last_n_versions_are_kept_and_an_earlier_one_can_be_written_back(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store = NativeBackend(airflow.accessors(asset), history_versions=3)
    for n in range(1, 6):
        assert store.write(NS, NAME, WM, wm(n), expected_version=n - 1 or None, updated_by=f"w{n}") == n

    history = store.history(NS, NAME, WM)
    assert versions(history) == [(5, wm(5)), (4, wm(4)), (3, wm(3))]
    assert [r.updated_by for r in history] == ["w5", "w4", "w3"]
    assert versions(store.history(NS, NAME, WM, limit=2)) == [(5, wm(5)), (4, wm(4))]
    assert set(airflow.keys(asset)) == {KEY, entry_key(KEY, 4), entry_key(KEY, 3)} == named(airflow, asset)
    assert store.history_versions == 3

    # A rewind writes the old value as a new version (compare-and-set on the current one).
    assert store.write(NS, NAME, WM, history[2].value, expected_version=5, updated_by="rewind") == 6
    again = NativeBackend(airflow.accessors(asset), history_versions=3)  # a new process
    assert versions(again.history(NS, NAME, WM)) == [(6, wm(3)), (5, wm(5)), (4, wm(4))]
    record = again.read(NS, NAME, WM)
    assert record is not None and (record.version, record.value) == (6, wm(3))


async def test_a_large_watermarks_versions_are_whole_and_parts_go_when_no_version_names_them(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL, history_versions=4)
    values = [s3_state(range(10 * n, 300 + 20 * n), cursor=n) for n in range(8)]
    version = None
    for value in values:
        version = await store.awrite(NS, NAME, WM, value, expected_version=version)
        assert set(airflow.keys(asset)) == named(airflow, asset)  # nothing missing, nothing extra

    reader = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL)
    assert versions(reader.history(NS, NAME, WM)) == [
        (8, values[7]),
        (7, values[6]),
        (6, values[5]),
        (5, values[4]),
    ]
    manifest = airflow.stored(asset, KEY)
    assert manifest["history"] == {"keep": 4, "versions": [7, 6, 5]}
    # Each kept entry is a manifest as small as the current one: history copies no part.
    for v in (7, 6, 5):
        entry = airflow.stored(asset, entry_key(KEY, v))
        assert "history" not in entry and len(json.dumps(entry)) <= SMALL
        assert referenced(entry) <= set(airflow.keys(asset))

    # Fewer versions kept from now on: the fallen entries and the parts only they named go.
    await NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL, history_versions=2).awrite(
        NS, NAME, WM, values[0], expected_version=8
    )
    assert airflow.stored(asset, KEY)["history"] == {"keep": 2, "versions": [8]}
    assert set(airflow.keys(asset)) == named(airflow, asset)
    assert versions(reader.history(NS, NAME, WM)) == [(9, values[0]), (8, values[7])]


def test_no_history_keeps_what_the_store_kept_before(
    airflow_state_store: AirflowStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    monkeypatch.setenv("STATEFUL_NATIVE_HISTORY_VERSIONS", "0")
    store = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL)
    version = store.write(NS, NAME, WM, s3_state(range(300)), expected_version=None)
    store.write(NS, NAME, WM, s3_state(range(10, 320)), expected_version=version)

    assert store.history_versions == 0
    assert [r.version for r in store.history(NS, NAME, WM)] == [2]
    assert set(airflow.keys(asset)) == {KEY} | referenced(airflow.stored(asset, KEY))

    monkeypatch.setenv("STATEFUL_NATIVE_HISTORY_VERSIONS", "many")
    with pytest.raises(StoreConfigError, match="STATEFUL_NATIVE_HISTORY_VERSIONS must be a whole number"):
        NativeBackend(airflow.accessors(asset))
    with pytest.raises(StoreConfigError, match=r"NativeBackend\(history_versions=...\) must be a whole"):
        NativeBackend(airflow.accessors(asset), history_versions=-1)


def test_a_document_of_an_earlier_release_has_no_history_until_its_next_save(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    stored = json.loads(FIXTURE.read_text())  # layout 1: one key, written before manifests
    key = native_key(stored["namespace"], stored["name"])
    airflow.put(asset, key, stored)
    store = NativeBackend(airflow.accessors(asset))
    address = (stored["namespace"], stored["name"], WM)

    [current] = store.history(*address)
    assert current.version == 7 and current.updated_by == "triggerer-1:4242"
    assert store.write(*address, wm(1), expected_version=7) == 8

    [new, old] = store.history(*address)
    assert (new.version, new.value) == (8, wm(1))
    assert (old.version, old.value, old.updated_by) == (7, current.value, "triggerer-1:4242")


def test_a_reader_racing_a_save_reads_one_whole_version(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    writer = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL)
    first, second = s3_state(range(300)), s3_state(range(100, 420))
    assert writer.write(NS, NAME, WM, first, expected_version=None) == 1
    scope, seam = seamed(airflow, asset)
    saved: list[int] = []

    def save_in_between(key: str) -> None:  # the reader has the manifest and one of its parts
        if key != KEY and not saved:
            saved.append(writer.write(NS, NAME, WM, second, expected_version=1))

    seam.after_read = save_in_between
    record = NativeBackend(scope, max_value_bytes=SMALL).read(NS, NAME, WM)
    # Version 1's parts stay while its history entry names them: the reader gets it whole.
    assert record is not None and (record.version, record.value) == (1, first)
    assert saved == [2]
    seam.after_read = None
    assert versions(NativeBackend(scope, max_value_bytes=SMALL).history(NS, NAME, WM)) == [
        (2, second),
        (1, first),
    ]


def test_an_entry_whose_parts_are_gone_ends_the_history_with_a_warning(
    airflow_state_store: AirflowStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL)
    values = [s3_state(range(20 * n, 300 + 20 * n)) for n in range(3)]
    for n, value in enumerate(values):
        store.write(NS, NAME, WM, value, expected_version=n or None)
    # As a save by the release before would: it deletes the parts its manifest no longer names.
    current = referenced(airflow.stored(asset, KEY))
    airflow.drop(asset, sorted(referenced(airflow.stored(asset, entry_key(KEY, 2))) - current)[0])

    with caplog.at_level(logging.WARNING, logger="stateful"):
        history = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL).history(NS, NAME, WM)

    assert versions(history) == [(3, values[2])]  # the current version, still whole
    assert "the history of s3/landing/ (key 'watermark'" in caplog.text
    assert "ends early: version 2: part" in caplog.text


async def test_deleting_a_watermark_deletes_its_history(airflow_state_store: AirflowStateStore) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store = NativeBackend(airflow.accessors(asset), max_value_bytes=SMALL)
    version = None
    for n in range(4):
        version = await store.awrite(
            NS, NAME, WM, s3_state(range(30 * n, 300 + 30 * n)), expected_version=version
        )
    assert set(airflow.keys(asset)) == named(airflow, asset)
    assert airflow.stored(asset, KEY)["history"]["versions"] == [3, 2, 1]

    assert await store.adelete(NS, NAME, WM, expected_version=version)
    assert airflow.keys(asset) == []
    assert store.history(NS, NAME, WM) == []


def test_reason_and_writer_are_kept_with_each_version() -> None:
    doc = NativeDocument.create(NS, NAME, WM, wm(1), updated_by="alice").with_history((), 10)
    changed = doc.successor(wm(2), updated_by="stateful rewind by bob@ops").with_history((1,), 10)
    stored = {**changed.to_json_value(), "reason": "replay the 02:00 batch"}

    parsed = NativeDocument.from_json_value(stored)
    assert (parsed.updated_by, parsed.reason, parsed.history, parsed.keep) == (
        "stateful rewind by bob@ops",
        "replay the 02:00 batch",
        (1,),
        10,
    )
    assert NativeDocument.from_json_value(parsed.to_json_value()) == parsed
    assert NativeDocument.from_json_value(doc.to_json_value()).reason is None
    with pytest.raises(ValueError, match="history"):
        NativeDocument.from_json_value({**stored, "history": {"keep": 10, "versions": [2]}})
