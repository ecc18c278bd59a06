"""What ``@stateful`` costs: a decorated trigger vs a hand-written one making the same store calls.

Both triggers walk the same N items (one second apart, each a new key), ask ``is_new``, call
``advance`` and yield one event per item. The hand-written one does the store work itself, as a
careful author would without the SDK: one read before the first event, and after each event
taken, ``to_state_json()`` and a compare-and-set write. The decorated one gets that from
``@stateful``. So the difference is the decorator's own bookkeeping, not the store.

Run ``make bench`` (or ``python bench/overhead.py --help``). ``--profile`` adds a cProfile of the
decorated trigger on the MemoryBackend, where the decorator's share is largest.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from stateful import Watermark, stateful
from stateful.backends import MemoryBackend, SqlBackend
from stateful.backends.base import AsyncStateBackend

NAMESPACE = "bench"
KEY = "watermark"  # the key @stateful stores its watermark under
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


class Trigger(Protocol):
    def run(self) -> AsyncIterator[int]: ...


TriggerFactory = Callable[[str], Trigger]


def _item(i: int) -> tuple[str, datetime]:
    return f"landing/part-{i:06d}.csv@{i}", T0 + timedelta(seconds=i)


def decorated(store: AsyncStateBackend, events: int, lookback: timedelta) -> TriggerFactory:
    """A trigger written with ``@stateful`` (the store is given at decoration time)."""

    class Decorated:
        def __init__(self, name: str) -> None:
            self.name = name

        # One save per event, like the hand-written trigger (by default saves are coalesced).
        @stateful(namespace=NAMESPACE, name="{name}", backend=store, lookback=lookback, save_batch=1)
        async def run(self, watermark: Watermark) -> AsyncIterator[int]:
            for i in range(events):
                key, ts = _item(i)
                if watermark.is_new(key, ts):
                    watermark.advance(timestamp=ts, key=key)
                    yield i

    return Decorated


def hand_written(store: AsyncStateBackend, events: int, lookback: timedelta) -> TriggerFactory:
    """The same trigger doing its own loading and compare-and-set saving."""

    class HandWritten:
        def __init__(self, name: str) -> None:
            self.name = name

        async def run(self) -> AsyncIterator[int]:
            record = await store.aread(NAMESPACE, self.name, KEY)
            if record is None:
                watermark, version, saved = Watermark(), None, None
            else:
                watermark = Watermark.from_state_json(record.value)
                version, saved = record.version, record.value
            watermark.configure(lookback=lookback)
            for i in range(events):
                key, ts = _item(i)
                if watermark.is_new(key, ts):
                    watermark.advance(timestamp=ts, key=key)
                    yield i
                    # Resumed: the consumer took the event; save what it covers.
                    value = watermark.to_state_json()
                    if value != saved:
                        version = await store.awrite(
                            NAMESPACE, self.name, KEY, value, expected_version=version
                        )
                        saved = value

    return HandWritten


async def _consume(trigger: Trigger) -> int:
    count = 0
    async for _ in trigger.run():  # as the triggerer does: take each event, resume for the next
        count += 1
    return count


@dataclass
class Timing:
    backend: str
    variant: str
    seconds: list[float]

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


async def measure(
    backend: str, store: AsyncStateBackend, events: int, repeats: int, lookback: timedelta
) -> tuple[Timing, Timing]:
    """Time both variants ``repeats`` times each, alternating which goes first."""
    variants = {
        "hand-written": hand_written(store, events, lookback),
        "@stateful": decorated(store, events, lookback),
    }
    timings = {name: Timing(backend, name, []) for name in variants}
    await store.aread(NAMESPACE, "warm-up", KEY)  # opens the engine, creates the table
    await _consume(variants["@stateful"]("warm-up"))
    await _consume(variants["hand-written"]("warm-up-hand"))
    for rep in range(repeats):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))
        for name in order:
            trigger = variants[name](f"{name}-{rep}")  # a fresh watermark for every measurement
            start = time.perf_counter()
            emitted = await _consume(trigger)
            timings[name].seconds.append(time.perf_counter() - start)
            if emitted != events:
                raise SystemExit(f"{name} emitted {emitted} events, expected {events}")
    return timings["@stateful"], timings["hand-written"]


@contextmanager
def sqlite_store(
    history_versions: int | None = None, engine_options: dict[str, Any] | None = None
) -> Iterator[SqlBackend]:
    with tempfile.TemporaryDirectory(prefix="stateful-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = SqlBackend(url, history_versions=history_versions, engine_options=engine_options)
        try:
            yield store
        finally:
            store.dispose()


def _per_call(body: Callable[[], None], calls: int, repeats: int) -> float:
    """Best of ``repeats`` timings of ``body`` (which makes ``calls`` calls), in µs per call."""
    best = min(_timed(body) for _ in range(repeats))
    return best / calls * 1e6


def _timed(body: Callable[[], None]) -> float:
    start = time.perf_counter()
    body()
    return time.perf_counter() - start


def breakdown(events: int, lookback: timedelta, repeats: int) -> list[tuple[str, float]]:
    """Per-event cost of each step, in µs, measured by adding one step at a time."""
    items = [_item(i) for i in range(events)]

    def fresh() -> Watermark:
        return Watermark().configure(lookback=lookback)

    def advance_only() -> None:
        wm = fresh()
        for key, ts in items:
            wm.advance(timestamp=ts, key=key)

    def is_new_and_advance() -> None:
        wm = fresh()
        for key, ts in items:
            if wm.is_new(key, ts):
                wm.advance(timestamp=ts, key=key)

    def plus_serialise() -> None:
        wm = fresh()
        for key, ts in items:
            if wm.is_new(key, ts):
                wm.advance(timestamp=ts, key=key)
                wm.to_state_json()

    def plus_memory_write() -> None:
        wm, store, version = fresh(), MemoryBackend(), None
        for key, ts in items:
            if wm.is_new(key, ts):
                wm.advance(timestamp=ts, key=key)
                version = store.write(NAMESPACE, "b", KEY, wm.to_state_json(), expected_version=version)

    async def bare() -> AsyncIterator[int]:
        for i in range(events):
            yield i

    def bare_loop() -> None:
        asyncio.run(_consume_iterator(bare()))

    wm = Watermark()

    def private_reads() -> None:
        for _ in range(events):
            wm._log  # noqa: B018  # a pydantic private attribute read

    steps = {
        name: _per_call(body, events, repeats)
        for name, body in {
            "advance": advance_only,
            "+is_new": is_new_and_advance,
            "+to_state_json": plus_serialise,
            "+write": plus_memory_write,
            "bare": bare_loop,
            "private": private_reads,
        }.items()
    }
    return [
        ("async for over a bare async generator (incl. event loop start)", steps["bare"]),
        ("Watermark.is_new", steps["+is_new"] - steps["advance"]),
        ("Watermark.advance", steps["advance"]),
        ("Watermark.to_state_json", steps["+to_state_json"] - steps["+is_new"]),
        ("MemoryBackend.write (compare-and-set)", steps["+write"] - steps["+to_state_json"]),
        ("  (one read of a pydantic private attribute, e.g. wm._log)", steps["private"]),
    ]


async def _consume_iterator(iterator: AsyncIterator[int]) -> None:
    async for _ in iterator:
        pass


def sqlite_breakdown(writes: int, repeats: int) -> list[tuple[str, float]]:
    """Cost of one ``SqlBackend`` write on SQLite, in µs: as shipped, without the flush, the hop."""
    results: dict[str, float] = {}
    # A connection factory (through the public engine_options) that turns the flush off.
    normal_sync = {"connect_args": {"factory": _SynchronousNormal}}
    with (
        sqlite_store() as full,
        sqlite_store(engine_options=normal_sync) as normal,
        sqlite_store(history_versions=0) as bare,
    ):
        for label, store in {"full": full, "normal": normal, "bare": bare}.items():
            store.read(NAMESPACE, "warm-up", KEY)
            runs = iter(range(repeats))

            def write_many(store: SqlBackend = store, runs: Iterator[int] = runs) -> None:
                name, version = f"writes-{next(runs)}", None
                for i in range(writes):
                    version = store.write(NAMESPACE, name, KEY, f'{{"i":{i}}}', expected_version=version)

            results[label] = _per_call(write_many, writes, repeats)

        awrite_runs = iter(range(repeats))

        async def awrites() -> None:
            name, version = f"awrites-{next(awrite_runs)}", None
            for i in range(writes):
                version = await full.awrite(NAMESPACE, name, KEY, f'{{"i":{i}}}', expected_version=version)

        results["async"] = _per_call(lambda: asyncio.run(awrites()), writes, repeats)

    async def hops() -> None:
        for _ in range(writes):
            await asyncio.to_thread(_nothing)

    results["hop"] = _per_call(lambda: asyncio.run(hops()), writes, repeats)
    return [
        ("SqlBackend.awrite, awaited on the event loop (what a trigger pays)", results["async"]),
        ("SqlBackend.write as shipped (WAL, synchronous=FULL)", results["full"]),
        ("the same with PRAGMA synchronous=NORMAL (no flush per commit)", results["normal"]),
        ("  so: the WAL flush at commit", results["full"] - results["normal"]),
        ("the same without history (history_versions=0)", results["bare"]),
        ("  so: recording the version in the history table", results["full"] - results["bare"]),
        ("asyncio.to_thread hop (SqlBackend.awrite runs write in a thread)", results["hop"]),
    ]


class _SynchronousNormal(sqlite3.Connection):
    """A SQLite connection that does not flush to disk at every commit (``synchronous = NORMAL``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA synchronous = NORMAL")


def _nothing() -> None:
    return None


def profile_memory(events: int, lookback: timedelta, top: int) -> str:
    """cProfile one decorated run on the MemoryBackend; return the top functions by own time."""
    factory = decorated(MemoryBackend(), events, lookback)
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(_consume(factory("profiled")))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; return 0."""
    parser = argparse.ArgumentParser(description="Overhead of @stateful over a hand-written trigger.")
    parser.add_argument("--events", type=int, default=2000, help="events per run (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per variant (default %(default)s)")
    parser.add_argument(
        "--lookback",
        type=float,
        default=0.0,
        help="lookback in seconds; items are 1 s apart, so about that many keys stay in `seen` "
        "and are serialised on every save (default %(default)s)",
    )
    parser.add_argument("--backend", choices=["memory", "sqlite", "both"], default="both")
    parser.add_argument("--profile", action="store_true", help="also cProfile the decorated run on memory")
    args = parser.parse_args(argv)
    lookback = timedelta(seconds=args.lookback)

    print(
        f"@stateful overhead: {args.events} events per run, best/median of {args.repeats} runs, "
        f"lookback {lookback}"
    )
    print(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU(s)"
    )
    rows: list[tuple[Timing, Timing]] = []
    if args.backend in ("memory", "both"):
        rows.append(asyncio.run(measure("memory", MemoryBackend(), args.events, args.repeats, lookback)))
    if args.backend in ("sqlite", "both"):
        with sqlite_store() as store:
            rows.append(asyncio.run(measure("sqlite", store, args.events, args.repeats, lookback)))

    header = f"{'backend':<8} {'variant':<13} {'best s':>8} {'median s':>9} {'µs/event':>9}"
    print()
    print(header)
    print("-" * len(header))
    for pair in rows:
        for t in pair:
            per_event = t.best / args.events * 1e6
            print(f"{t.backend:<8} {t.variant:<13} {t.best:>8.4f} {t.median:>9.4f} {per_event:>9.1f}")
    print()
    for deco, hand in rows:
        extra = (deco.best - hand.best) / args.events * 1e6
        print(
            f"{deco.backend}: decorated/hand-written = {deco.best / hand.best:.3f} (best), "
            f"{deco.median / hand.median:.3f} (median); decorator adds {extra:.1f} µs/event"
        )
    if args.backend in ("memory", "both"):
        print()
        print("Where the time goes on memory, per event (steps timed alone, best of the runs):")
        for label, micros in breakdown(args.events, lookback, args.repeats):
            print(f"  {label:<62} {micros:>6.2f} µs")
        deco, hand = rows[0]
        print(
            f"  {'@stateful bookkeeping (decorated - hand-written, above)':<62} "
            f"{(deco.best - hand.best) / args.events * 1e6:>6.2f} µs"
        )
    if args.backend in ("sqlite", "both"):
        print()
        print("One SQLite write, alone (best of the runs):")
        for label, micros in sqlite_breakdown(min(args.events, 1000), args.repeats):
            print(f"  {label:<66} {micros:>6.0f} µs")
    if args.profile:
        print()
        print(f"cProfile of one @stateful run on memory ({args.events} events), by own time:")
        print(profile_memory(args.events, lookback, 25))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
