"""Does the cost of an event grow with the size of ``seen``? The event loop's share, measured.

A decorated trigger (``ack=False``: saved when the consumer resumes it) starts from a stored
watermark whose ``seen`` already holds N keys (S3-shaped, about 100 bytes each, with a lookback
that keeps them all), then emits new items, one event each: W warm-up events (a run's first
save sorts ``seen``, once per run), then the E measured ones; the end of the run (its last save,
freeing the state) is not measured either. The consumer takes each event
and lets the loop turn once (``await asyncio.sleep(0)``), and a probe coroutine sleeping a
millisecond at a time records how late it wakes. Reported per event, for each store and N,
with saves coalesced (the default) and one save per event (``save_batch=1``):

* ``loop µs/event``: the time the event loop was held, per event: the emitting phase's elapsed
  time minus the time the loop sat idle in its selector (waiting for a worker thread, a timer
  or I/O). It counts the trigger's code, the SDK's bookkeeping, the parts of a save that run
  on the loop, and the loop thread's waits for the interpreter lock while a worker thread
  renders or writes; ``ratio`` compares it with the smallest N;
* ``cpu µs/event``: CPU time of the loop's thread per event (no lock waits);
* ``max stall ms``: the probe's longest lateness: the longest the loop could not run anything
  else (a worker thread rendering a large state holds the interpreter lock
  between its chunks too; other processes on a busy machine show up here as well);
* ``wall µs/event``: elapsed time per event, saves in worker threads included.

Loading (parse and validate, O(N), once per run) is before the first event and not counted.
Run ``make bench-scale`` or ``python bench/scale.py --help``; ``--csv FILE`` also writes the
figures as CSV, which ``bench/plot_scale.py`` plots (``make bench-plot``). On a release whose ``@stateful``
has no ``save_batch``, only the one-save-per-event rows are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import inspect
import itertools
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import stateful as stateful_package
from stateful import Watermark, stateful
from stateful._document import encode_state, format_utc
from stateful.backends import MemoryBackend, SqlBackend

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
LOOKBACK = timedelta(days=3650)  # keeps every key: seen only grows
HAS_BATCH = "save_batch" in inspect.signature(stateful).parameters
PROBE_SECONDS = 0.001


def s3_key(index: int) -> str:
    """About 100 bytes: bucket/prefix/date/name@version."""
    return f"landing-bucket/incoming/orders/2024/05/01/part-{index:08d}-c000.snappy.parquet@v{index:016x}"


def stamp(index: int) -> datetime:
    return T0 + timedelta(milliseconds=index)


def stored_state(keys: int) -> str:
    seen = {s3_key(i): format_utc(stamp(i)) for i in range(keys)}
    return encode_state({"cursor": None, "timestamp": format_utc(stamp(keys - 1)), "seen": seen})


@dataclass
class Result:
    loop_us: float
    cpu_us: float
    max_stall_ms: float
    wall_us: float


class IdleClock:
    """Counts the time the running loop spends waiting in its selector."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.idle = 0.0
        selector = loop._selector  # type: ignore[attr-defined]
        select = selector.select

        def timed(timeout: float | None = None) -> Any:
            start = time.perf_counter()
            try:
                return select(timeout)
            finally:
                self.idle += time.perf_counter() - start

        selector.select = timed


def make_trigger(store: Any, keys: int, events: int, batch: int | None) -> Any:
    options: dict[str, Any] = {"save_batch": batch} if HAS_BATCH and batch is not None else {}

    class Scan:
        @stateful(namespace="bench", name="scale", backend=store, ack=False, lookback=LOOKBACK, **options)
        async def run(self, watermark: Watermark) -> AsyncIterator[int]:
            for index in range(keys, keys + events):
                if watermark.is_new(s3_key(index), stamp(index)):
                    watermark.advance(timestamp=stamp(index), key=s3_key(index))
                    yield index

    return Scan()


async def measure(store: Any, keys: int, events: int, batch: int | None, warmup: int) -> Result:
    gaps: list[float] = []
    measuring = False
    done = False

    async def probe() -> None:
        # Sleeps a millisecond at a time (never spins: a spinning probe would keep the loop busy
        # while it waits for a worker thread); how late it wakes is how long the loop was held.
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(PROBE_SECONDS)
            if measuring:
                gaps.append(time.perf_counter() - start - PROBE_SECONDS)

    clock = IdleClock(asyncio.get_running_loop())
    prober = asyncio.create_task(probe())
    run = make_trigger(store, keys, warmup + events + 1, batch).run()
    # The load, and the first events: a run's first save sorts seen (once per run), not measured.
    for _ in range(warmup + 1):
        await anext(run)
    await asyncio.sleep(0)
    measuring = True
    cpu, wall, idle = time.thread_time(), time.perf_counter(), clock.idle
    for _ in range(events):
        await anext(run)
        await asyncio.sleep(0)  # one turn of the loop per event, as the probe sees it
    cpu, wall, idle = time.thread_time() - cpu, time.perf_counter() - wall, clock.idle - idle
    measuring = False
    done = True
    await prober
    async for _ in run:  # the end of the run (a last save, freeing the state): not measured
        pass
    taken = events
    return Result(
        loop_us=(wall - idle) / taken * 1e6,
        cpu_us=cpu / taken * 1e6,
        max_stall_ms=max(gaps, default=0.0) * 1e3,
        wall_us=wall / taken * 1e6,
    )


#: The throwaway PostgreSQL server's URL, once started (``--backends`` naming ``postgres``).
_POSTGRES: list[str] = []
_RUNS = itertools.count()


def open_store(kind: str, directory: Path, tag: str) -> Any:
    if kind == "memory":
        return MemoryBackend()
    if kind == "postgres":  # a table per run, as the SQLite file per run
        return SqlBackend(_POSTGRES[0], table_name=f"scale_{tag.replace('-', '_')}")
    if kind != "sqlite":
        raise SystemExit(f"--backends: unknown store {kind!r}; expected memory, sqlite or postgres")
    return SqlBackend(f"sqlite:///{directory / f'{tag}.db'}")


def run_case(
    kind: str, keys: int, events: int, batch: int | None, repeats: int, text: str, warmup: int = 300
) -> Result:
    best: Result | None = None
    for attempt in range(repeats):
        with tempfile.TemporaryDirectory() as directory:
            store = open_store(kind, Path(directory), f"{keys}-{attempt}-{next(_RUNS)}")
            store.write("bench", "scale", "watermark", text, expected_version=None)
            result = asyncio.run(measure(store, keys, events, batch, warmup))
            if kind != "memory":
                store.dispose()
        if best is None or result.loop_us < best.loop_us:
            best = result
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,10000,100000", help="keys in seen before the run")
    parser.add_argument("--events", type=int, default=200, help="events emitted per run")
    parser.add_argument(
        "--max-work",
        type=int,
        default=0,
        help="cap events x keys per run (0: no cap; for a release that serialises the whole state per event)",
    )
    parser.add_argument(
        "--backends",
        default="memory,sqlite",
        help="stores, comma-separated: memory, sqlite, postgres (a throwaway server, as the tests start)",
    )
    parser.add_argument("--warmup", type=int, default=300, help="events before measuring (not counted)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the best is shown")
    parser.add_argument("--csv", type=Path, help="also write the figures to this CSV file")
    args = parser.parse_args(argv)
    logging.getLogger("stateful").setLevel(logging.WARNING)  # one "loaded" line per run
    sizes = [int(s) for s in args.sizes.split(",")]
    server = None
    if "postgres" in args.backends.split(","):
        from many_triggers import start_postgres

        url, server = start_postgres()
        _POSTGRES.append(url)
    modes: list[tuple[str, int | None]] = (
        [("coalesced", None), ("per event", 1)] if HAS_BATCH else [("per event", None)]
    )
    print(
        f"stateful from {Path(stateful_package.__file__).parent}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    print(
        "| store | saves | seen keys | loop µs/event | ratio | cpu µs/event | max stall ms | wall µs/event |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    try:
        rows = measure_all(args, sizes, modes)
    finally:
        if server is not None:
            server.stop()
    if args.csv:
        with args.csv.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def measure_all(
    args: argparse.Namespace, sizes: list[int], modes: list[tuple[str, int | None]]
) -> list[dict[str, object]]:
    """Every case, printed as a table row as it is measured; the rows, for ``--csv``."""
    texts = {keys: stored_state(keys) for keys in sizes}
    rows: list[dict[str, object]] = []
    for kind in args.backends.split(","):
        for mode, batch in modes:
            base: float | None = None
            for keys in sizes:
                events = args.events if not args.max_work else max(5, min(args.events, args.max_work // keys))
                result = run_case(kind, keys, events, batch, args.repeats, texts[keys], args.warmup)
                base = base or result.loop_us
                print(
                    f"| {kind} | {mode} | {keys:,} | {result.loop_us:,.0f} | {result.loop_us / base:.2f} | "
                    f"{result.cpu_us:,.0f} | {result.max_stall_ms:,.1f} | {result.wall_us:,.0f} |",
                    flush=True,
                )
                rows.append(
                    {
                        "store": kind,
                        "saves": mode,
                        "seen_keys": keys,
                        "events": events,
                        "loop_us": round(result.loop_us, 1),
                        "cpu_us": round(result.cpu_us, 1),
                        "max_stall_ms": round(result.max_stall_ms, 2),
                        "wall_us": round(result.wall_us, 1),
                    }
                )
    return rows


if __name__ == "__main__":
    main()
