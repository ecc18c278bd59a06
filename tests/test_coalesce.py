"""Coalesced saves: several taken events share one save, written while the trigger goes on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stateful import Watermark, stateful
from stateful._saver import (
    DEFAULT_SAVE_BATCH,
    DEFAULT_SAVE_DELAY,
    DEFAULT_SAVE_INTERVAL,
    save_batching,
    save_spacing,
)
from stateful.backends import MemoryBackend, SqlBackend
from stateful.errors import StateConflictError, StatefulUsageError
from tests._triggerer import Triggerer, until
from tests.triggers import CounterBase

LONG = timedelta(minutes=10)  # the delay never fires: only the batch size decides


def counter(
    store: MemoryBackend, *, batch: int, delay: timedelta = LONG, interval: timedelta | None = None
) -> type[CounterBase]:
    class Counter(CounterBase):
        @stateful(
            namespace="tests",
            name="{source}",
            backend=store,
            ack=False,
            save_batch=batch,
            save_delay=delay,
            save_interval=interval,
        )
        async def run(self, watermark: Watermark[int]) -> Any:
            async for event in self.body(watermark):
                yield event

    return Counter


def stored(store: MemoryBackend) -> tuple[int, int] | None:
    """The stored cursor and version."""
    record = store.read("tests", "src", "watermark")
    return None if record is None else (json.loads(record.value)["cursor"], record.version)


async def test_events_share_saves_and_a_normal_finish_saves_everything() -> None:
    store = MemoryBackend()
    items = list(range(1, 251))
    assert [e.payload async for e in counter(store, batch=10)("src", items).run()] == items
    saved = stored(store)
    assert saved is not None and saved[0] == 250
    # A save covers at most a batch (10) and, but for the last, at least half of one (5).
    assert 25 <= saved[1] <= 51
    assert [e.payload async for e in counter(store, batch=10)("src", [*items, 251]).run()] == [251]


async def test_a_waiting_trigger_saves_what_was_taken_within_the_delay() -> None:
    store = MemoryBackend()
    trigger = counter(store, batch=100, delay=timedelta(milliseconds=50))("src", [1, 2, 3], then="block")
    taken: list[int] = []

    async def consume() -> None:
        async for event in trigger.run():
            taken.append(event.payload)

    task = asyncio.create_task(consume())
    await trigger.blocked.wait()  # all three taken; run() now waits for more
    await until(lambda: stored(store) == (3, 1), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stored(store) == (3, 1)  # the cursor advanced without an event (20_000) is never saved


async def test_a_cancellation_saves_what_was_taken_and_nothing_more() -> None:
    store = MemoryBackend()
    trigger = counter(store, batch=100)("src", [1, 2], then="block")

    async def consume() -> None:
        async for _ in trigger.run():
            pass

    task = asyncio.create_task(consume())
    await trigger.blocked.wait()
    assert stored(store) is None  # taken, not yet saved: the batch is not full
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stored(store) == (2, 1)  # one save, of what was taken


async def test_a_close_saves_the_taken_events_not_the_one_handed_over() -> None:
    store = MemoryBackend()
    run = counter(store, batch=100)("src", [1, 2, 3, 4], then="block").run()
    assert [(await anext(run)).payload for _ in range(3)] == [1, 2, 3]
    await run.aclose()  # type: ignore[attr-defined]
    assert stored(store) == (2, 1)  # event 3 was handed over but not taken: it is repeated
    assert [e.payload async for e in counter(store, batch=100)("src", [1, 2, 3, 4]).run()] == [3, 4]


async def test_a_failed_background_save_stops_the_trigger_with_the_stores_error() -> None:
    store = MemoryBackend()
    run = counter(store, batch=2)("src", list(range(1, 11))).run()
    handed = [(await anext(run)).payload]  # loaded: nothing stored
    store.write("tests", "src", "watermark", Watermark[int](cursor=99).to_state_json(), expected_version=None)
    with pytest.raises(StateConflictError) as info:
        while True:
            handed.append((await anext(run)).payload)
    assert (info.value.expected_version, info.value.actual_version) == (None, 1)
    # Fenced: at most a batch taken after the lost save, then nothing more.
    assert len(handed) <= 3
    assert stored(store) == (99, 1)  # the other writer's state stands


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_failed_background_save_ends_a_trigger_that_waits_for_more(
    backend: str, tmp_path: Path
) -> None:
    """A watcher that found nothing new after its save failed stops at once, not at its next event.

    In Airflow's own TriggerRunner: before, it polled on (emitting nothing) until its next event
    raised the error, so Airflow never restarted it to reload the state.
    """
    store = MemoryBackend() if backend == "memory" else SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    trigger = counter(store, batch=100, delay=timedelta(milliseconds=200))("src", [1, 2, 3], then="block")  # type: ignore[arg-type]
    triggerer = Triggerer()
    triggerer.start(trigger)
    await trigger.blocked.wait()  # three taken, none saved yet; run() waits for more
    # Another writer saves first: the background save of 1-3 loses its compare-and-set.
    store.write("tests", "src", "watermark", Watermark[int](cursor=99).to_state_json(), expected_version=None)
    with pytest.raises(StateConflictError) as info:
        await triggerer.finished(timeout=30)
    assert (info.value.expected_version, info.value.actual_version) == (None, 1)
    assert triggerer.events == [1, 2, 3]
    assert store.read("tests", "src", "watermark").value == Watermark[int](cursor=99).to_state_json()  # type: ignore[union-attr]
    if isinstance(store, SqlBackend):
        store.dispose()


async def consume_yielding(trigger: CounterBase, taken: list[int]) -> None:
    """Take every event, letting the loop run between two (background saves complete at once)."""
    async for event in trigger.run():
        taken.append(event.payload)
        await asyncio.sleep(0)


@pytest.mark.parametrize(("interval", "fewest", "most"), [(timedelta(0), 19, 21), (LONG, 13, 15)])
async def test_the_interval_bounds_the_saves_of_a_busy_trigger_however_fast_the_store(
    interval: timedelta, fewest: int, most: int
) -> None:
    store = MemoryBackend()  # every save completes at once
    taken: list[int] = []
    await consume_yielding(counter(store, batch=100, interval=interval)("src", list(range(1, 1001))), taken)
    saved = stored(store)
    assert taken == list(range(1, 1001)) and saved is not None and saved[0] == 1000
    # Without an interval a save starts at every half batch (50 events): 20 saves. With one, the
    # first save starts at 50, the others only once three quarters of a batch (75) wait: 14.
    assert fewest <= saved[1] <= most


async def test_a_save_the_interval_held_back_starts_once_it_has_passed() -> None:
    store = MemoryBackend()
    short = timedelta(milliseconds=50)
    trigger = counter(store, batch=100, delay=timedelta(0), interval=short)("src", [1, 2, 3], then="block")
    task = asyncio.create_task(consume_yielding(trigger, []))
    await trigger.blocked.wait()
    await until(lambda: stored(store) == (3, 2), timeout=30)  # event 1 at once, then 2 and 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stored(store) == (3, 2)


async def test_within_the_interval_a_waiting_trigger_saves_only_when_it_stops() -> None:
    store = MemoryBackend()
    trigger = counter(store, batch=100, delay=timedelta(0), interval=LONG)("src", [1, 2, 3], then="block")
    task = asyncio.create_task(consume_yielding(trigger, []))
    await trigger.blocked.wait()
    await until(lambda: stored(store) is not None, timeout=30)
    assert stored(store) == (1, 1)  # event 1 saved at once (delay 0); 2 and 3 wait for the interval
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stored(store) == (3, 2)  # the cancellation saves what was taken


def test_the_interval_comes_from_the_decorator_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STATEFUL_SAVE_INTERVAL", raising=False)
    assert save_spacing(None) == DEFAULT_SAVE_INTERVAL
    monkeypatch.setenv("STATEFUL_SAVE_INTERVAL", "0.5")
    assert save_spacing(None) == 0.5
    assert save_spacing(timedelta(seconds=2)) == 2.0
    monkeypatch.setenv("STATEFUL_SAVE_INTERVAL", "soon")
    with pytest.raises(StatefulUsageError, match="STATEFUL_SAVE_INTERVAL"):
        save_spacing(None)
    with pytest.raises(StatefulUsageError, match="save_interval"):
        stateful(namespace="tests", name="x", save_interval=timedelta(seconds=-1))


def test_the_batch_and_delay_come_from_the_decorator_the_environment_or_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STATEFUL_SAVE_BATCH", raising=False)
    monkeypatch.delenv("STATEFUL_SAVE_DELAY", raising=False)
    assert save_batching(None, None) == (DEFAULT_SAVE_BATCH, DEFAULT_SAVE_DELAY)
    monkeypatch.setenv("STATEFUL_SAVE_BATCH", "7")
    monkeypatch.setenv("STATEFUL_SAVE_DELAY", "0.25")
    assert save_batching(None, None) == (7, 0.25)
    assert save_batching(3, timedelta(seconds=2)) == (3, 2.0)
    monkeypatch.setenv("STATEFUL_SAVE_BATCH", "0")
    with pytest.raises(StatefulUsageError, match="STATEFUL_SAVE_BATCH"):
        save_batching(None, None)
    with pytest.raises(StatefulUsageError, match="save_delay"):
        stateful(namespace="tests", name="x", save_delay=timedelta(seconds=-1))


CHILD = """
import asyncio, sys
from stateful import Watermark, stateful
from stateful.backends import SqlBackend

class Source:
    @stateful(namespace="tests", name="crash", backend=SqlBackend(sys.argv[1]), ack=False)
    async def run(self, watermark: Watermark[int]):
        n = watermark.cursor or 0
        while True:
            n += 1
            await asyncio.sleep(0.001)
            watermark.advance(cursor=n)
            yield n

async def main():
    async for n in Source().run():
        print("event", n, flush=True)  # handed over; the next iteration takes it

asyncio.run(main())
"""

BATCH = 20


def run_child(url: str, lines: int) -> list[int]:
    """Run the trigger in a process, SIGKILL it after ``lines`` events; return what it handed over."""
    env = {**os.environ, "STATEFUL_SAVE_BATCH": str(BATCH), "STATEFUL_SAVE_DELAY": "600"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, text=True, env=env, cwd=Path.cwd()
    )
    assert proc.stdout is not None
    handed: list[int] = []
    while len(handed) < lines:
        line = proc.stdout.readline()
        assert line, "the trigger process ended early"
        if line.startswith("event "):  # other lines are log lines
            handed.append(int(line.split()[1]))
    os.kill(proc.pid, signal.SIGKILL)
    handed += [int(line.split()[1]) for line in proc.stdout.read().splitlines() if line.startswith("event ")]
    assert proc.wait(timeout=30) == -signal.SIGKILL
    return handed


def test_a_killed_process_repeats_at_most_a_batch_and_skips_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = run_child(url, 150)
    record = SqlBackend(url).read("tests", "crash", "watermark")
    assert record is not None
    cursor = json.loads(record.value)["cursor"]
    last = first[-1]
    assert first == list(range(1, last + 1))
    # Saved only what was handed over; of it, at most a batch was taken and not saved (plus
    # the last event, handed over and never taken).
    assert last - BATCH - 1 <= cursor <= last
    second = run_child(url, 5)
    assert second[0] == cursor + 1  # the restart repeats from the saved state: nothing skipped
