"""A burst into a large watermark in the Airflow-native store: each save writes what changed.

Saves are made as the trigger driver makes them (the watermark's change journal, a
:class:`~stateful._shadow.Shadow` cut into a layout, ``awrite_layout``) through a real Airflow 3.3
asset state store (tests/_airflow.py); what each save writes is counted on Airflow's own
accessor (:class:`~tests.backends.test_native_parts.Seam`). Before arrival-ordered parts, each
save of 100 new keys into 10,000 rewrote about every part (a megabyte); here it writes the
newest part or two (and, under a lookback, the oldest), then the manifest; keeping history adds
one value per save (the entry of the version replaced, a copy of its manifest), never a part.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from random import Random
from typing import Any

import pytest

from stateful import Watermark
from stateful._shadow import Shadow, Tracker
from stateful.backends import NativeBackend
from stateful.backends.native import FORMAT, MANIFEST_FORMAT, native_key
from tests._airflow import AirflowStateStore
from tests.backends.test_native_parts import named, referenced, seamed

pytestmark = pytest.mark.airflow_min("3.3", reason="AIP-103 asset state store")

NS, NAME, WM = "s3", "landing/", "watermark"
KEY = native_key(NS, NAME)
LIMIT = 65535
T0 = datetime(2026, 1, 2, tzinfo=timezone.utc)
STEP = timedelta(milliseconds=10)
FIXTURE = Path(__file__).parent / "fixtures" / "native-format-2.json"


def file_key(i: int, rng: Random) -> str:
    """A file landing in a dated folder (names sort in arrival order), 117 characters long."""
    return f"landing/2026/01/02/{'incoming/' * 7}batch-0001/file-{i:09d}.csv".ljust(117, "x")


def object_key(i: int, rng: Random) -> str:
    """A random-looking name (an S3 object under a hashed prefix, a UUID)."""
    return f"landing/objects/{uuid.UUID(int=rng.getrandbits(128))}/data.parquet".ljust(117, "x")


class Burst:
    """A watermark of ``n`` keys saved through ``store``, then saves of new keys, driver-style."""

    def __init__(self, airflow: AirflowStateStore, n: int, name: Any, *, lookback: timedelta) -> None:
        self.airflow = airflow
        self.asset = airflow.new_asset()
        self.scope, self.seam = seamed(airflow, self.asset)
        self.name, self.rng, self.i = name, Random(n), 0
        self.wm = Watermark().configure(lookback=lookback, max_untimed_keys=10 * n)
        self.timed = True
        self.add(n)
        self.version = 0
        self.store = NativeBackend(self.scope)

    def add(self, count: int) -> None:
        for _ in range(count):
            when = T0 + self.i * STEP if self.timed else None
            self.wm.advance(key=self.name(self.i, self.rng), timestamp=when)
            self.i += 1

    async def start(self) -> None:
        """The first save (whole), then a new store loads it: a restart before the burst."""
        await NativeBackend(self.scope).awrite(NS, NAME, WM, self.wm.to_state_json(), expected_version=None)
        await self.restart()

    async def restart(self) -> None:
        self.store = NativeBackend(self.scope)
        record = await self.store.aread(NS, NAME, WM)
        assert record is not None and record.value == self.wm.to_state_json()
        self.version = record.version
        self.shadow = Shadow.of(self.wm)
        self.tracker = Tracker(self.shadow, self.wm)

    async def save(self, count: int) -> tuple[int, int]:
        """Add ``count`` keys and save them; the values written and their bytes (manifest included)."""
        self.add(count)
        self.shadow.apply(self.tracker.take(self.wm))
        self.seam.written.clear()
        layout = self.shadow.layout()
        self.version = await self.store.awrite_layout(NS, NAME, WM, layout, expected_version=self.version)
        assert self.seam.written[-1][0] == KEY  # the manifest last
        return len(self.seam.written), sum(size for _, size in self.seam.written)

    async def check(self) -> dict[str, Any]:
        """The watermark reads back whole in a new process, and no part or entry is left unnamed."""
        record = await NativeBackend(self.airflow.accessors(self.asset)).aread(NS, NAME, WM)
        assert record is not None and record.value == self.wm.to_state_json()
        manifest: dict[str, Any] = self.airflow.stored(self.asset, KEY)
        assert set(self.airflow.keys(self.asset)) == named(self.airflow, self.asset)
        assert (
            max(len(json.dumps(self.airflow.stored(self.asset, k))) for k in self.airflow.keys(self.asset))
            <= LIMIT
        )
        return manifest


def manifest_size(manifest: dict[str, Any]) -> int:
    return len(json.dumps(manifest))


@pytest.mark.parametrize(
    ("name", "lookback", "parts_per_save"),
    [
        (file_key, timedelta(days=1), 2),  # names in arrival order: the newest part or two
        (object_key, timedelta(days=1), 2),  # random names: still the newest parts
        (object_key, STEP * 9_999, 3),  # the lookback drops the oldest 100 per save
    ],
    ids=["files", "random-names", "random-names-expiring"],
)
@pytest.mark.parametrize("keep", [1, 10], ids=["no-history", "history-10"])
async def test_each_save_of_a_burst_writes_what_changed_not_the_whole_state(
    airflow_state_store: AirflowStateStore,
    name: Any,
    lookback: timedelta,
    parts_per_save: int,
    keep: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STATEFUL_NATIVE_HISTORY_VERSIONS", str(keep))
    entry = 1 if keep > 1 else 0  # the history entry of the version replaced: one value more
    burst = Burst(airflow_state_store, 10_000, name, lookback=lookback)
    await burst.start()
    state = len(burst.wm.to_state_json())
    assert state > 20 * LIMIT  # many parts: a save rewriting them all would write megabytes
    manifest = await burst.check()
    parts_before = len(manifest["seen"]["parts"])

    sizes = []
    for save in range(50):
        if save == 25:
            await burst.restart()  # a new process picks the burst up from what it read
        writes, size = await burst.save(100)
        assert writes <= parts_per_save + 1 + entry, f"save {save} wrote {writes} values"
        sizes.append(size)
    manifest = await burst.check()
    assert manifest["format"] == MANIFEST_FORMAT and manifest["seen"]["count"] == len(burst.wm.seen)
    assert len(manifest["history"]["versions"]) == keep - 1  # the window is full, and no larger
    # Bounded by the change (100 keys, about 14 KB) and one part's limit, not by the state's size.
    bound = parts_per_save * LIMIT + (1 + entry) * manifest_size(manifest)
    assert max(sizes) <= bound < state / 5
    # What the history holds besides the current state: the parts the kept versions replaced.
    held = set(airflow_state_store.keys(burst.asset)) - {KEY} - referenced(manifest)
    assert len(held) <= (keep - 1) * (parts_per_save + 1)
    if lookback < timedelta(days=1):  # expiry drops whole parts: the state does not grow
        assert len(manifest["seen"]["parts"]) <= parts_before + 2


async def test_keys_without_a_timestamp_are_appended_to_their_own_parts(
    airflow_state_store: AirflowStateStore,
) -> None:
    burst = Burst(airflow_state_store, 10_000, object_key, lookback=timedelta(days=1))
    burst.timed = False
    burst.add(5_000)  # untimed keys alongside the timed ones
    await burst.start()
    untimed = (await burst.check())["seen"]["untimed"]
    assert untimed > 0
    for _ in range(20):
        writes, _ = await burst.save(100)
        assert writes <= 4  # a part of each stream, the history entry, the manifest
    manifest = await burst.check()
    assert manifest["seen"]["untimed"] > untimed  # the new ones went to the untimed parts


async def test_a_bucketed_manifest_of_the_previous_release_loads_and_is_repacked_once(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    fixture = json.loads(FIXTURE.read_text())["crc-buckets"]
    asset = airflow.new_asset()
    for key, value in fixture["stored"].items():
        airflow.put(asset, key, value)
    manifest = airflow.stored(asset, KEY)
    assert manifest["format"] == FORMAT and "bits" in manifest["seen"]
    old_parts = referenced(manifest)
    limit = fixture["max_value_bytes"]
    scope, seam = seamed(airflow, asset)

    store = NativeBackend(scope, max_value_bytes=limit)
    record = store.read(NS, NAME, WM)
    assert record is not None and record.value == fixture["value"]
    watermark = Watermark.from_state_json(record.value).configure(lookback=timedelta(days=1))
    assert watermark.timestamp is not None
    watermark.advance(key="landing/2026/01/02/late.csv", timestamp=watermark.timestamp + STEP)
    assert store.write(NS, NAME, WM, watermark.to_state_json(), expected_version=record.version) == 3

    upgraded = airflow.stored(asset, KEY)
    assert upgraded["format"] == MANIFEST_FORMAT and upgraded["lineage"] == manifest["lineage"]
    assert not old_parts & referenced(upgraded)  # repacked: no bucket is named by the manifest
    assert set(airflow.keys(asset)) == named(airflow, asset)  # the buckets: kept for version 2
    reread = NativeBackend(airflow.accessors(asset), max_value_bytes=limit)
    assert [(r.version, r.value) for r in reread.history(NS, NAME, WM)] == [
        (3, watermark.to_state_json()),
        (2, fixture["value"]),  # the previous release's manifest, whole, from its history entry
    ]

    seam.written.clear()  # from now on, a save writes the newest part, the entry and the manifest
    watermark.advance(key="landing/2026/01/02/later.csv", timestamp=watermark.timestamp + STEP)
    assert store.write(NS, NAME, WM, watermark.to_state_json(), expected_version=3) == 4
    assert len(seam.written) == 3

    # Once version 2 falls out of a two-version history, the buckets are deleted.
    two = NativeBackend(scope, max_value_bytes=limit, history_versions=2)
    assert two.read(NS, NAME, WM) is not None
    assert two.write(NS, NAME, WM, watermark.to_state_json(), expected_version=4) == 5
    assert not old_parts & set(airflow.keys(asset))
    assert set(airflow.keys(asset)) == named(airflow, asset)
    assert [r.version for r in two.history(NS, NAME, WM)] == [5, 4]


def test_the_previous_releases_document_in_one_value_is_read_and_kept_readable(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    fixture = json.loads(FIXTURE.read_text())["one-value"]
    asset = airflow.new_asset()
    (key, value), *_ = fixture["stored"].items()
    airflow.put(asset, key, value)
    store = NativeBackend(airflow.accessors(asset))
    record = store.read(NS, NAME, WM)
    assert record is not None and record.value == fixture["value"]
    watermark = Watermark.from_state_json(record.value).configure(lookback=timedelta(days=1))
    assert watermark.timestamp is not None
    watermark.advance(key="landing/late.csv", timestamp=watermark.timestamp)
    store.write(NS, NAME, WM, watermark.to_state_json(), expected_version=record.version)
    assert airflow.stored(asset, key)["format"] == FORMAT  # one value: the previous release reads it
