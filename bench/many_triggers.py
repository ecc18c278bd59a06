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
  commit many saves share one COMMIT.

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

from stateful import Watermark, stateful
from stateful.backends import SqlBackend

NAMESPACE = "bench"
TICK = 0.005  # the ticker's sleep, seconds


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


def trigger_class(store: SqlBackend, clock: Clock) -> Callable[[int, int], BaseTrigger]:
    """A decorated trigger emitting one event per ``clock.interval`` once ``clock.start`` is set."""

    class Ticking(BaseTrigger):
        def __init__(self, index: int, count: int) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.index = index
            self.offset = clock.interval * index / count  # spread the triggers over the interval

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return ("bench.many_triggers.Ticking", {"index": self.index})

        @stateful(namespace=NAMESPACE, name="t{index}", backend=store)
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            n = watermark.cursor or 0
            watermark.advance(cursor=n + 1)
            yield TriggerEvent(n + 1)  # one event: loaded and saved, then idle until the start
            await clock.start.wait()
            loop = asyncio.get_running_loop()
            due = loop.time() + self.offset
            while not clock.stop:
                await asyncio.sleep(max(0.0, due - loop.time()))
                due += clock.interval  # a fixed rate: a late event does not delay the next ones
                n += 1
                watermark.advance(cursor=n + 1)
                yield TriggerEvent(n + 1)

    return Ticking


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


async def run_once(
    store: CountingSqlBackend,
    triggers: int,
    interval: float,
    warmup: float,
    duration: float,
    profile: cProfile.Profile | None = None,
) -> Figures:
    clock = Clock(interval, asyncio.Event())
    cls = trigger_class(store, clock)
    await store.awrite(NAMESPACE, "warm-up", "watermark", "{}", expected_version=None)  # engine, tables

    # Idle: every trigger loaded, its first event saved, waiting for the start.
    gc.collect()
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

    # Running: every trigger emitting, the ticker measuring the loop's lateness.
    gaps: list[float] = []
    measuring = False

    async def ticker() -> None:
        while not clock.stop:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            if measuring:
                gaps.append(time.perf_counter() - before - TICK)

    ticking = asyncio.create_task(ticker())
    clock.start.set()
    await asyncio.sleep(warmup)
    with counting_commits() as commits:
        events0, saves0, wall0 = clock.events, CountingSqlBackend.saves, time.perf_counter()
        cpu0, process0 = time.thread_time(), time.process_time()
        measuring = True
        if profile is not None:
            profile.enable()
        await asyncio.sleep(duration)
        if profile is not None:
            profile.disable()
        measuring = False
        cpu, process = time.thread_time() - cpu0, time.process_time() - process0
        events, saves, wall = (
            clock.events - events0,
            CountingSqlBackend.saves - saves0,
            time.perf_counter() - wall0,
        )
        committed = commits[0]
    clock.stop = True
    for task in tasks:
        task.cancel()  # as the triggerer cancels triggers: the decorator saves what was taken
    await asyncio.gather(*tasks, return_exceptions=True)
    await ticking
    gaps.sort()
    return Figures(
        idle_kib_traced=traced / triggers / 1024,
        idle_kib_rss=rss / triggers / 1024,
        offered=triggers / interval,
        achieved=events / wall,
        max_stall_ms=gaps[-1] * 1e3 if gaps else 0.0,
        p99_stall_ms=gaps[int(len(gaps) * 0.99)] * 1e3 if gaps else 0.0,
        saves_per_s=saves / wall,
        commits_per_s=committed / wall,
        loop_cpu_us=cpu / max(events, 1) * 1e6,
        process_cpu_us=process / max(events, 1) * 1e6,
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
        "--group-commit", choices=["on", "off", "both"], default="both", help="SqlBackend(group_commit=...)"
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
        f"load average {os.getloadavg()[0]:.1f} at the start",
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
        "saves/s",
        "commits/s",
        "loop CPU µs/event",
        "process CPU µs/event",
        "idle KiB/trigger (traced)",
        "(RSS)",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * (len(columns) - 2))
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.group_commit]
    try:
        for group_commit in modes:
            with tempfile.TemporaryDirectory() as directory:
                store_url = url or f"sqlite:///{Path(directory) / 'many.db'}"
                table = f"bench_many_{os.getpid()}_{int(group_commit)}"
                store = CountingSqlBackend(store_url, table_name=table, group_commit=group_commit)
                try:
                    figures = asyncio.run(
                        run_once(store, args.triggers, args.interval, args.warmup, args.duration, profile)
                    )
                finally:
                    store.dispose()
            kind = sa.engine.make_url(store_url).get_backend_name()
            f = figures
            cells = [
                kind,
                "on" if group_commit else "off",
                f"{args.triggers:,}",
                f"{f.offered:,.0f}",
                f"{f.achieved:,.0f}",
                f"{f.achieved / f.offered:.0%}",
                f"{f.max_stall_ms:.1f}",
                f"{f.p99_stall_ms:.1f}",
                f"{f.saves_per_s:,.0f}",
                f"{f.commits_per_s:,.0f}",
                f"{f.loop_cpu_us:,.0f}",
                f"{f.process_cpu_us:,.0f}",
                f"{f.idle_kib_traced:.1f}",
                f"{f.idle_kib_rss:.1f}",
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
