"""What one call on a watermark costs: the hot path of a trigger, per call, in microseconds.

Times the calls a trigger makes for every item it looks at, each alone, on a watermark with a
one-hour lookback and items one second apart (so about 3,600 keys stay in ``seen`` and every
advance prunes one), best of several runs, in CPU time:

* ``is_new(key, timestamp)`` for an item inside the lookback window (the full check: the window,
  then ``seen``), and ``key in watermark.seen``;
* ``advance(timestamp=, key=)`` (the common case), ``advance(key=)`` and ``advance(cursor=)``;
* ``_head()``: the fields other than ``seen``, taken once per emitted event by the session;
* one read of a pydantic private attribute (``watermark._log``), for scale;
* a whole event of a ``@stateful`` trigger on the ``MemoryBackend`` (``is_new``, ``advance``,
  the decorator's bookkeeping, the save), with one save per event and with coalesced saves; this
  trigger keeps no lookback (one key in ``seen``), so the figure is the per-event overhead, not
  the cost of a large state (``bench/scale.py`` measures that).

Run ``python bench/hot_path.py`` (``--help`` for the options). It prints which ``stateful`` it
imported, so the same script can time another checkout: ``PYTHONPATH=<checkout> python
bench/hot_path.py``. Example of its output (figures vary by machine)::

    | call | µs/call |
    |---|---:|
    | is_new(key, timestamp) | 1.1 |
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import stateful as stateful_package
from stateful import Watermark, stateful
from stateful.backends import MemoryBackend

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
LOOKBACK = timedelta(hours=1)
HAS_BATCH = "save_batch" in inspect.signature(stateful).parameters


def item(index: int) -> tuple[str, datetime]:
    """An S3-like key and its timestamp, one second after the previous item's."""
    return f"landing/orders/part-{index:08d}.parquet@{index:x}", T0 + timedelta(seconds=index)


def best_us(body: Callable[[], int], repeats: int) -> float:
    """Best of ``repeats`` runs of ``body`` (which returns how many calls it made), µs per call.

    CPU time of the process (its worker threads included), not elapsed time: on a shared
    machine the time other processes hold the CPU would swamp differences of a microsecond.
    """
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        calls = body()
        best = min(best, (time.process_time() - start) / calls * 1e6)
    return best


def filled(calls: int) -> Watermark:
    """A watermark that advanced over ``calls`` items (about 3,600 keys left in ``seen``)."""
    wm = Watermark().configure(lookback=LOOKBACK)
    for index in range(calls):
        key, ts = item(index)
        wm.advance(timestamp=ts, key=key)
    return wm


def calls(count: int, repeats: int) -> list[tuple[str, float]]:
    """Per-call cost of each watermark call, timed alone."""
    items = [item(index) for index in range(count)]
    # Inside the window of the filled watermark, not seen: is_new checks the window, then seen.
    last = items[-1][1]
    inside = [(f"other/{index}", last - timedelta(seconds=index % 3000)) for index in range(count)]
    keys = [key for key, _ in items]
    loaded = filled(count)

    def is_new() -> int:
        for key, ts in inside:
            loaded.is_new(key, ts)
        return count

    def in_seen() -> int:
        for key in keys:
            key in loaded.seen  # noqa: B015  # the membership test is what is timed
        return count

    def advance_ts_key() -> int:
        wm = Watermark().configure(lookback=LOOKBACK)
        for key, ts in items:
            wm.advance(timestamp=ts, key=key)
        return count

    def advance_key() -> int:
        wm = Watermark().configure(max_untimed_keys=count)
        for key in keys:
            wm.advance(key=key)
        return count

    def advance_cursor() -> int:
        wm = Watermark[int]()
        for index in range(count):
            wm.advance(cursor=index)
        return count

    def head() -> int:
        for _ in range(count):
            loaded._head()
        return count

    def private_read() -> int:
        for _ in range(count):
            loaded._log  # noqa: B018  # a pydantic private attribute read
        return count

    return [
        ("is_new(key, timestamp) inside the window", best_us(is_new, repeats)),
        ("key in watermark.seen", best_us(in_seen, repeats)),
        ("advance(timestamp=, key=)", best_us(advance_ts_key, repeats)),
        ("advance(key=)", best_us(advance_key, repeats)),
        ("advance(cursor=) on Watermark[int]", best_us(advance_cursor, repeats)),
        ("_head(): the fields but seen (once per event)", best_us(head, repeats)),
        ("one pydantic private attribute read (wm._log)", best_us(private_read, repeats)),
    ]


def trigger(events: int, batch: int | None) -> Any:
    options: dict[str, Any] = {"save_batch": batch} if HAS_BATCH and batch is not None else {}
    store = MemoryBackend()

    class Scan:
        @stateful(namespace="bench", name="hot", backend=store, ack=False, **options)
        async def run(self, watermark: Watermark) -> AsyncIterator[int]:
            for index in range(events):
                key, ts = item(index)
                if watermark.is_new(key, ts):
                    watermark.advance(timestamp=ts, key=key)
                    yield index

    return Scan()


def events(count: int, repeats: int) -> list[tuple[str, float]]:
    """Per-event cost of a decorated trigger on the MemoryBackend."""

    async def consume(batch: int | None) -> int:
        taken = 0
        async for _ in trigger(count, batch).run():
            taken += 1
        return taken

    rows: list[tuple[str, int | None]] = [("@stateful event on memory, one save per event", 1)]
    if HAS_BATCH:
        rows.append(("@stateful event on memory, coalesced saves (default)", None))

    def run(batch: int | None) -> Callable[[], int]:
        return lambda: asyncio.run(consume(batch))

    asyncio.run(consume(1))  # imports and first-call costs, not measured
    return [(label, best_us(run(batch), repeats)) for label, batch in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000, help="calls per run (default %(default)s)")
    parser.add_argument(
        "--events", type=int, default=5_000, help="events per trigger run (default %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure; the best is shown")
    args = parser.parse_args(argv)
    logging.getLogger("stateful").setLevel(logging.WARNING)  # one "nothing stored yet" per run
    print(
        f"stateful from {Path(stateful_package.__file__).parent}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    print("| call | µs/call |")
    print("|---|---:|")
    for label, micros in [*calls(args.calls, args.repeats), *events(args.events, args.repeats)]:
        print(f"| {label} | {micros:.2f} |", flush=True)


if __name__ == "__main__":
    main()
