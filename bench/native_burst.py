"""A burst into a large watermark in the Airflow-native store: what each coalesced save writes.

A watermark of N ``seen`` keys is saved once and loaded by a new store (a restart); then S saves
of K new keys each follow, as the trigger driver makes them (the watermark's change journal, a
:class:`~stateful._shadow.Shadow` cut into a layout, ``awrite_layout``), through Airflow 3.3's own
async accessors over an in-process API server and a SQLite metadata database (the machinery of
tests/_airflow.py). Three shapes of keys:

* ``files``: names that sort in arrival order (``landing/2026/01/02/file-000123.csv``), each
  with a newer timestamp: files landing in a dated folder;
* ``uuids``: random names (UUIDs), each with a newer timestamp: S3 objects, hashed ids;
* ``expiry``: random names with a lookback as long as N keys' timestamps: each save adds K keys
  and the lookback drops the K oldest.

For each it prints the state-store values written per save (count and bytes, as Airflow measures
them), and the mean seconds per save, for each number of versions kept (``--history``: 1 keeps
no history; with history a save also writes the entry of the version it replaces). Run ``python
bench/native_burst.py`` (``--keys 10000,100000 --saves 50 --per-save 100 --history 1,10``); it
migrates a metadata database first (about 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stateful import Watermark
from stateful._shadow import Shadow, Tracker
from stateful.backends import NativeBackend
from tests._airflow import AirflowStateStore, CompositeComms, copy_metadata_db, metadata_db, migrate
from tests.backends.test_native_parts import Seam

NS, NAME, WM = "bench", "landing/", "watermark"
T0 = datetime(2026, 1, 2, tzinfo=timezone.utc)
STEP = timedelta(milliseconds=10)


def key_of(shape: str, i: int, rng: Random) -> str:
    if shape == "files":
        return f"landing/2026/01/02/incoming/batch/file-{i:09d}.csv"
    return f"landing/objects/{uuid.UUID(int=rng.getrandbits(128))}.parquet"


async def burst(airflow: AirflowStateStore, shape: str, n: int, saves: int, per_save: int, keep: int) -> str:
    asset = airflow.new_asset()
    scope = airflow.accessors(asset)
    seam = scope._by_name[asset.name] = Seam(name=asset.name)
    rng = Random(n)
    lookback = STEP * (n - 1) if shape == "expiry" else timedelta(days=365)
    wm = Watermark().configure(lookback=lookback)
    for i in range(n):
        wm.advance(key=key_of(shape, i, rng), timestamp=T0 + i * STEP)
    await NativeBackend(scope, history_versions=keep).awrite(
        NS, NAME, WM, wm.to_state_json(), expected_version=None
    )
    store = NativeBackend(scope, history_versions=keep)  # a restart: it loads what the last one saved
    record = await store.aread(NS, NAME, WM)
    assert record is not None and record.value == wm.to_state_json()
    version = record.version
    shadow = Shadow.of(wm)
    tracker = Tracker(shadow, wm)
    counts: list[int] = []
    sizes: list[int] = []
    seconds: list[float] = []
    i = n
    for _ in range(saves):
        for _ in range(per_save):
            wm.advance(key=key_of(shape, i, rng), timestamp=T0 + i * STEP)
            i += 1
        shadow.apply(tracker.take(wm))
        seam.written.clear()
        start = time.perf_counter()
        layout = await asyncio.to_thread(shadow.layout)
        version = await store.awrite_layout(NS, NAME, WM, layout, expected_version=version)
        seconds.append(time.perf_counter() - start)
        counts.append(len(seam.written))
        sizes.append(sum(size for _, size in seam.written))
    check = await NativeBackend(airflow.accessors(asset)).aread(NS, NAME, WM)
    assert check is not None and check.value == wm.to_state_json()
    return (
        f"history {keep:>2}  {shape:<7} {n:>7,} keys ({len(wm.seen):>7,} after)  per save of {per_save}: "
        f"{statistics.mean(counts):5.1f} writes, {statistics.mean(sizes) / 1e3:8.1f} KB "
        f"(max {max(sizes) / 1e3:8.1f} KB), {statistics.mean(seconds):6.3f} s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keys", default="10000,100000", help="comma-separated key counts")
    parser.add_argument("--shapes", default="files,uuids,expiry")
    parser.add_argument("--saves", type=int, default=50)
    parser.add_argument("--per-save", type=int, default=100)
    parser.add_argument("--history", default="1,10", help="versions kept, comma-separated (1: none)")
    args = parser.parse_args()
    from airflow.sdk.execution_time.supervisor import set_supervisor_comms

    with tempfile.TemporaryDirectory() as tmp:
        url = copy_metadata_db(migrate(Path(tmp) / "migrated"), Path(tmp) / "home")
        with metadata_db(url):
            comms = CompositeComms()
            with set_supervisor_comms(comms):
                airflow = AirflowStateStore(comms)
                await NativeBackend(airflow.accessors(airflow.new_asset())).aread(NS, NAME, WM)  # warm up
                for n in (int(k) for k in args.keys.split(",")):
                    for shape in args.shapes.split(","):
                        for keep in (int(h) for h in args.history.split(",")):
                            line = await burst(airflow, shape, n, args.saves, args.per_save, keep)
                            print(line, flush=True)
                await comms.aclose()
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    asyncio.run(main())
