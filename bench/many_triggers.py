"""Many triggers in one triggerer: 1,000 decorated triggers in one event loop, on one SQL store.

Each trigger is a real Airflow ``BaseTrigger`` whose ``run`` is decorated with ``@stateful`` (the
default saves: coalesced, up to 100 events or 1 s per save, at most one save per 5 s while events
keep coming; ``STATEFUL_SAVE_INTERVAL`` changes that) and emits one event every
``--interval`` seconds (each trigger on its own schedule, spread over the interval), so that
``triggers / interval`` events per second are offered: 5,000 with the defaults. Every trigger
is consumed by a task of its own, as Airflow's triggerer does. All share one store instance
(as the triggers of one triggerer share the store of one URL).

Printed, per run:

* **memory per idle trigger**: the triggers started (loaded, one event emitted and saved) and
  now waiting; Python allocations (``tracemalloc``) and the process's resident memory (RSS) grown
  since before they were created, divided by their number. The trigger objects and their
  consumer tasks count too: all of it is what the triggerer holds per trigger.
* **events/s** achieved during the measured window (after a warm-up) against those offered;
* **max stall ms** (and the 99th percentile): a ticker task sleeping ``TICK`` at a time measures
  how late it wakes, i.e. the longest the loop could run nothing else;
* **saves/s** (the store's ``awrite`` calls) and **commits/s** (SQLAlchemy's COMMITs): with group
  commit many saves share one COMMIT;
* **the garbage collector** during the measured window (a ``gc.callbacks`` probe): how many full
  (generation 2) collections ran, per minute and per million events (the collector counts
  allocations, not time: the rate per event compares runs on a busy machine), their longest and
  total pause, the longest young (generation 0/1) pause, and the **max stall outside
  collections**: the ticker's longest lateness over the gaps that overlap no collection, i.e.
  what the loop's own work held it;
* **tracked objects per trigger**: the objects the collector tracks (``len(gc.get_objects())``
  after a full collection) grown since before the triggers were created, divided by their
  number, idle and while running (counted right after the measured window). Every full
  collection walks all of them.

``--baseline`` adds a row for the same triggers *without* ``@stateful`` (same schedule, same
events, no store): what the process does without the SDK, the collector's pauses included.
``--gc-freeze`` (a diagnostic: Airflow's triggerer does not do it) calls ``gc.freeze()`` once the
store is warm, before the triggers are created, so that full collections skip everything
allocated before (the imported modules above all).

Run ``make bench-triggers``, or ``python bench/many_triggers.py --help``. By default it runs on a
SQLite file, with and without group commit; ``--url`` names another database (e.g. PostgreSQL),
``--postgres`` starts a throwaway PostgreSQL server the way the tests do (needs the server's
binaries). Figures are for ``docs/performance.md``; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import os
import platform
import pstats
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from airflow.triggers.base import BaseTrigger, TriggerEvent
from collector import TICK, CollectorProbe, tracked_objects

from stateful import Watermark, stateful
from stateful.backends import SqlBackend

NAMESPACE = "bench"


class CountingSqlBackend(SqlBackend):
    """The SQL store, counting its async writes (the saves: a whole text, or a layout)."""

    saves = 0

    async def awrite(self, *args: Any, **kwargs: Any) -> int:
        CountingSqlBackend.saves += 1
        return await super().awrite(*args, **kwargs)

    async def awrite_layout(self, *args: Any, **kwargs: Any) -> int:
        CountingSqlBackend.saves += 1
        return await super().awrite_layout(*args, **kwargs)


@dataclass
class Clock:
    """What the triggers share: when each emits next, and whether they may start."""

    interval: float
    start: asyncio.Event
    stop: bool = False
    events: int = 0


async def schedule(clock: Clock, offset: float) -> AsyncIterator[None]:
    """Once ``clock.start`` is set, yield every ``clock.interval`` from ``offset`` on, until the stop."""
    await clock.start.wait()
    loop = asyncio.get_running_loop()
    due = loop.time() + offset
    while not clock.stop:
        await asyncio.sleep(max(0.0, due - loop.time()))
        due += clock.interval  # a fixed rate: a late event does not delay the next ones
        yield


def trigger_class(store: SqlBackend | None, clock: Clock) -> Callable[[int, int], BaseTrigger]:
    """A trigger emitting one event per ``clock.interval`` once ``clock.start`` is set.

    Its ``run`` is decorated with ``@stateful`` on ``store``; with no store (the baseline) it is
    the same trigger without the SDK, counting its events itself.
    """

    class Ticking(BaseTrigger):
        def __init__(self, index: int, count: int) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.index = index
            self.offset = clock.interval * index / count  # spread the triggers over the interval

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return ("bench.many_triggers.Ticking", {"index": self.index})

    class Stateful(Ticking):
        @stateful(namespace=NAMESPACE, name="t{index}", backend=store)
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            n = watermark.cursor or 0
            watermark.advance(cursor=n + 1)
            yield TriggerEvent(n + 1)  # one event: loaded and saved, then idle until the start
            async for _ in schedule(clock, self.offset):
                n += 1
                watermark.advance(cursor=n + 1)
                yield TriggerEvent(n + 1)

    class Plain(Ticking):
        async def run(self) -> AsyncIterator[TriggerEvent]:
            n = 1
            yield TriggerEvent(n)
            async for _ in schedule(clock, self.offset):
                n += 1
                yield TriggerEvent(n)

    return Plain if store is None else Stateful


async def consume(trigger: BaseTrigger, clock: Clock, first: asyncio.Event) -> None:
    """What the triggerer does with a trigger: take its events."""
    async for _event in trigger.run():
        clock.events += 1
        if not first.is_set():
            first.set()


def rss_bytes() -> int:
    """The resident memory of this process (Linux), or 0 elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


@contextmanager
def counting_commits() -> Iterator[list[int]]:
    count = [0]

    def on_commit(_conn: Any) -> None:
        count[0] += 1

    sa.event.listen(sa.engine.Engine, "commit", on_commit)
    try:
        yield count
    finally:
        sa.event.remove(sa.engine.Engine, "commit", on_commit)


@dataclass
class Figures:
    idle_kib_traced: float
    idle_kib_rss: float
    offered: float
    achieved: float
    max_stall_ms: float
    p99_stall_ms: float
    saves_per_s: float
    commits_per_s: float
    loop_cpu_us: float
    process_cpu_us: float
    full_collections: int
    full_per_min: float
    full_per_mega_events: float
    full_max_ms: float
    full_total_ms: float
    young_max_ms: float
    max_stall_outside_ms: float
    tracked_idle: float
    tracked_running: float


async def run_once(
    store: CountingSqlBackend | None,
    triggers: int,
    interval: float,
    warmup: float,
    duration: float,
    profile: cProfile.Profile | None = None,
    freeze: bool = False,
) -> Figures:
    clock = Clock(interval, asyncio.Event())
    cls = trigger_class(store, clock)
    if store is not None:
        await store.awrite(NAMESPACE, "warm-up", "watermark", "{}", expected_version=None)  # engine, tables
    if freeze:
        gc.collect()
        gc.freeze()

    # Idle: every trigger loaded, its first event saved, waiting for the start.
    objects0 = tracked_objects()
    rss0 = rss_bytes()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    firsts = [asyncio.Event() for _ in range(triggers)]
    tasks = [asyncio.create_task(consume(cls(i, triggers), clock, firsts[i])) for i in range(triggers)]
    for first in firsts:
        await first.wait()
    await asyncio.sleep(1.5)  # the first events' coalesced saves (at most 1 s) are done
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.stop()
    rss = rss_bytes() - rss0
    objects_idle = tracked_objects() - objects0

    # Running: every trigger emitting, the ticker measuring the loop's lateness.
    gaps: list[tuple[float, float]] = []  # (went to sleep, woke up), perf_counter
    measuring = False

    async def ticker() -> None:
        while not clock.stop:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            if measuring:
                gaps.append((before, time.perf_counter()))

    ticking = asyncio.create_task(ticker())
    clock.start.set()
    await asyncio.sleep(warmup)
    with counting_commits() as commits, CollectorProbe() as collections:
        events0, saves0, wall0 = clock.events, CountingSqlBackend.saves, time.perf_counter()
        cpu0, process0 = time.thread_time(), time.process_time()
        measuring = collections.recording = True
        if profile is not None:
            profile.enable()
        await asyncio.sleep(duration)
        if profile is not None:
            profile.disable()
        measuring = collections.recording = False
        cpu, process = time.thread_time() - cpu0, time.process_time() - process0
        events, saves, wall = (
            clock.events - events0,
            CountingSqlBackend.saves - saves0,
            time.perf_counter() - wall0,
        )
        committed = commits[0]
    objects_running = tracked_objects() - objects0  # the triggers are mid-run: their unsaved events too
    clock.stop = True
    for task in tasks:
        task.cancel()  # as the triggerer cancels triggers: the decorator saves what was taken
    await asyncio.gather(*tasks, return_exceptions=True)
    await ticking
    if freeze:
        gc.unfreeze()
    late = sorted(woke - slept - TICK for slept, woke in gaps)
    full = [end - start for generation, start, end in collections.pauses if generation == 2]
    young = [end - start for generation, start, end in collections.pauses if generation < 2]
    return Figures(
        idle_kib_traced=traced / triggers / 1024,
        idle_kib_rss=rss / triggers / 1024,
        offered=triggers / interval,
        achieved=events / wall,
        max_stall_ms=late[-1] * 1e3 if late else 0.0,
        p99_stall_ms=late[int(len(late) * 0.99)] * 1e3 if late else 0.0,
        saves_per_s=saves / wall,
        commits_per_s=committed / wall,
        loop_cpu_us=cpu / max(events, 1) * 1e6,
        process_cpu_us=process / max(events, 1) * 1e6,
        full_collections=len(full),
        full_per_min=len(full) / wall * 60,
        full_per_mega_events=len(full) / max(events, 1) * 1e6,
        full_max_ms=max(full, default=0.0) * 1e3,
        full_total_ms=sum(full) * 1e3,
        young_max_ms=max(young, default=0.0) * 1e3,
        max_stall_outside_ms=max(collections.outside(gaps), default=0.0) * 1e3,
        tracked_idle=objects_idle / triggers,
        tracked_running=objects_running / triggers,
    )


def start_postgres() -> tuple[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests._postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("--postgres: no PostgreSQL server binaries found (initdb, pg_ctl)")
    server = PostgresServer.start(bindir)
    return server.url, server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between two events of a trigger")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds running before measuring")
    parser.add_argument("--url", help="a database URL (default: a SQLite file in a temporary directory)")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL server")
    parser.add_argument(
        "--group-commit",
        choices=["on", "off", "both", "none"],
        default="both",
        help="SqlBackend(group_commit=...); none: no decorated run (with --baseline: the baseline alone)",
    )
    parser.add_argument(
        "--baseline", action="store_true", help="first, the same triggers without @stateful (no store)"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() before the triggers are created (a diagnostic: Airflow's triggerer does not)",
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the measured window")
    args = parser.parse_args(argv)
    profile = cProfile.Profile() if args.profile else None
    logging.getLogger("stateful").setLevel(logging.WARNING)  # not a line per trigger started
    server = None
    url = args.url
    if args.postgres:
        url, server = start_postgres()
    print(
        f"Python {platform.python_version()}, SQLAlchemy {sa.__version__}; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.1f} at the start; gc thresholds {gc.get_threshold()}"
        + ("; gc.freeze() before the triggers" if args.gc_freeze else ""),
        file=sys.stderr,
    )
    columns = [
        "store",
        "group commit",
        "triggers",
        "offered ev/s",
        "achieved ev/s",
        "%",
        "max stall ms",
        "p99 stall ms",
        "max stall outside GC ms",
        "gen-2 GCs",
        "gen-2/min",
        "gen-2 per 10⁶ events",
        "gen-2 max ms",
        "gen-2 total ms",
        "gen-0/1 max ms",
        "saves/s",
        "commits/s",
        "loop CPU µs/event",
        "process CPU µs/event",
        "tracked objects/trigger idle",
        "(running)",
        "idle KiB/trigger (traced)",
        "(RSS)",
        "load",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * (len(columns) - 2))
    modes: list[bool | None] = [None] if args.baseline else []
    modes += {"on": [True], "off": [False], "both": [True, False], "none": []}[args.group_commit]
    try:
        for group_commit in modes:
            load = os.getloadavg()[0]
            with tempfile.TemporaryDirectory() as directory:
                store_url = url or f"sqlite:///{Path(directory) / 'many.db'}"
                store = None
                if group_commit is not None:
                    table = f"bench_many_{os.getpid()}_{int(group_commit)}"
                    store = CountingSqlBackend(store_url, table_name=table, group_commit=group_commit)
                try:
                    figures = asyncio.run(
                        run_once(
                            store,
                            args.triggers,
                            args.interval,
                            args.warmup,
                            args.duration,
                            profile,
                            args.gc_freeze,
                        )
                    )
                finally:
                    if store is not None:
                        store.dispose()
            kind = "baseline" if store is None else sa.engine.make_url(store_url).get_backend_name()
            f = figures
            cells = [
                kind,
                "—" if group_commit is None else "on" if group_commit else "off",
                f"{args.triggers:,}",
                f"{f.offered:,.0f}",
                f"{f.achieved:,.0f}",
                f"{f.achieved / f.offered:.0%}",
                f"{f.max_stall_ms:.1f}",
                f"{f.p99_stall_ms:.1f}",
                f"{f.max_stall_outside_ms:.1f}",
                f"{f.full_collections}",
                f"{f.full_per_min:.1f}",
                f"{f.full_per_mega_events:.1f}",
                f"{f.full_max_ms:.1f}",
                f"{f.full_total_ms:.1f}",
                f"{f.young_max_ms:.1f}",
                "—" if store is None else f"{f.saves_per_s:,.0f}",
                "—" if store is None else f"{f.commits_per_s:,.0f}",
                f"{f.loop_cpu_us:,.0f}",
                f"{f.process_cpu_us:,.0f}",
                f"{f.tracked_idle:.1f}",
                f"{f.tracked_running:.1f}",
                f"{f.idle_kib_traced:.1f}",
                f"{f.idle_kib_rss:.1f}",
                f"{load:.1f}",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
    finally:
        if server is not None:
            server.stop()
    print(f"load average {os.getloadavg()[0]:.1f} at the end", file=sys.stderr)
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
