"""What a large watermark costs in the Airflow-native store (a real in-process asset state store).

For N seen keys of the S3 example's shape (``object key@ETag``, about 104 bytes each), through
Airflow 3.3's own accessors (sync as a task has them, async as the triggerer has them) over an
in-process API server and a SQLite metadata database (the machinery of tests/_airflow.py):

* the first save (every part), a load by a new store (a restart), and a save that adds one key;
* the calls each makes, the bytes a one-key save sends, and how many parts hold the watermark;
* async: the longest the event loop went without running another task while a save or load ran.

Run ``python bench/native_store.py`` (``--keys 100,10000`` to choose); it migrates a metadata
database first (about 20 s). Absolute times are Airflow's per call (an API request and a SQLite
commit each) on this machine; a deployment's API server over a network adds its latency per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stateful._document import canonical_json
from stateful.backends import NativeBackend
from tests._airflow import AirflowStateStore, CompositeComms, copy_metadata_db, metadata_db, migrate
from tests.backends.test_native_parts import TS, Seam, s3_key

NS, NAME, WM = "bench", "landing/", "watermark"


def state(n: int) -> str:
    seen = dict(sorted((s3_key(i), TS) for i in range(n)))
    return canonical_json({"cursor": None, "schema_version": 1, "seen": seen, "timestamp": TS})


def scope_of(airflow: AirflowStateStore, asset: Any) -> tuple[Any, Seam]:
    scope = airflow.accessors(asset)
    seam = scope._by_name[asset.name] = Seam(name=asset.name)
    return scope, seam


def timed(call: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


async def atimed(coro: Any) -> tuple[Any, float, float]:
    """Result, seconds, and the longest gap between two ticks of a 1 ms ticker meanwhile."""
    gaps = [0.0]
    done = False

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last)
            last = now

    ticker = asyncio.create_task(tick())
    start = time.perf_counter()
    result = await coro
    elapsed = time.perf_counter() - start
    done = True
    await ticker
    return result, elapsed, gaps[0]


def sync_row(airflow: AirflowStateStore, n: int) -> str:
    asset = airflow.new_asset()
    scope, seam = scope_of(airflow, asset)
    value, more = state(n), state(n + 1)
    _, first = timed(lambda: NativeBackend(scope).write(NS, NAME, WM, value, expected_version=None))
    parts = max(0, len(seam.written) - 1)
    restarted = NativeBackend(scope)
    seam.reads.clear()
    record, load = timed(lambda: restarted.read(NS, NAME, WM))
    assert record is not None and record.value == value
    reads = len(seam.reads)
    seam.written.clear()
    _, one = timed(lambda: restarted.write(NS, NAME, WM, more, expected_version=1))
    sent = sum(size for _, size in seam.written)
    return (
        f"sync  {n:>7,} keys {len(value) / 1e6:6.2f} MB  parts {parts:>4}  first save {first:7.2f} s  "
        f"load {load:6.2f} s ({reads} reads)  one-key save {one:5.2f} s ({len(seam.written)} writes, "
        f"{sent:,} bytes)"
    )


async def async_row(airflow: AirflowStateStore, n: int) -> str:
    asset = airflow.new_asset()
    scope, seam = scope_of(airflow, asset)
    value, more = state(n), state(n + 1)
    _, first, gap1 = await atimed(NativeBackend(scope).awrite(NS, NAME, WM, value, expected_version=None))
    restarted = NativeBackend(scope)
    record, load, gap2 = await atimed(restarted.aread(NS, NAME, WM))
    assert record is not None and record.value == value
    seam.written.clear()
    _, one, gap3 = await atimed(restarted.awrite(NS, NAME, WM, more, expected_version=1))
    sent = sum(size for _, size in seam.written)
    return (
        f"async {n:>7,} keys  first save {first:7.2f} s  load {load:6.2f} s  one-key save {one:5.2f} s "
        f"({sent:,} bytes)  longest loop stall {max(gap1, gap2, gap3) * 1000:.0f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="100,10000,100000", help="comma-separated key counts")
    args = parser.parse_args()
    counts = [int(n) for n in args.keys.split(",")]
    from airflow.sdk.execution_time.supervisor import set_supervisor_comms

    with tempfile.TemporaryDirectory() as tmp:
        url = copy_metadata_db(migrate(Path(tmp) / "migrated"), Path(tmp) / "home")
        with metadata_db(url):
            comms = CompositeComms()
            with set_supervisor_comms(comms):
                airflow = AirflowStateStore(comms)
                NativeBackend(airflow.accessors(airflow.new_asset())).read(NS, NAME, WM)  # warm up
                await NativeBackend(airflow.accessors(airflow.new_asset())).aread(NS, NAME, WM)
                for n in counts:
                    print(sync_row(airflow, n), flush=True)
                    print(await async_row(airflow, n), flush=True)
                await comms.aclose()
    print(json.dumps({"python": sys.version.split()[0]}))


if __name__ == "__main__":
    asyncio.run(main())
