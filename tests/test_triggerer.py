"""``@stateful`` triggers driven by Airflow's own triggerer code (``TriggerRunner.run_trigger``).

These run the real loop that the triggerer process runs for every trigger: it appends each event
to its outbound queue and resumes the generator at once, and a shutdown cancels the task. The
counter trigger is a ``BaseEventTrigger``: with ``ack=True`` (the default) it runs in Airflow's
shared-stream ack mode and saves once the test's "supervisor" stored its events; with
``ack=False`` it saves when the triggerer resumes it. The ack-mode specifics are in test_ack.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from airflow.triggers.base import TriggerEvent

from stateful import Watermark, stateful
from stateful.backends import MemoryBackend, SqlBackend
from tests._triggerer import Triggerer, until
from tests.conftest import DualBackend
from tests.triggers import Boom, CounterBase, make_trigger_class


async def until_stored(backend: DualBackend, cursor: int, timeout: float = 60) -> None:
    """Wait until the store holds ``cursor``, reading it as the trigger does: without blocking the loop.

    A synchronous read here would hold the event loop the trigger saves on (the native store
    asks Airflow's API); polled every few milliseconds on a loaded machine, it starves that save.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout  # a deadlock guard
    while (record := await backend.aread("tests", "src", "watermark")) is None or int(
        json.loads(record.value)["cursor"]
    ) != cursor:
        assert loop.time() < deadline, f"the store does not hold cursor {cursor}: {record}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("ack", [True, False], ids=["ack", "resume"])
async def test_a_restarted_triggerer_repeats_nothing_and_fires_new_items(
    backend: DualBackend, ack: bool
) -> None:
    trigger_class = make_trigger_class(backend, ack=ack)
    first = Triggerer()
    trigger = trigger_class("src", [1, 2, 3], then="block")
    first.start(trigger)
    await trigger.blocked.wait()
    await until_stored(backend, 3)  # a clean shutdown once the events were stored
    await first.stop()
    assert first.events == [1, 2, 3]

    second = Triggerer()
    restarted = trigger_class("src", [1, 2, 3, 4], then="block")
    second.start(restarted)
    await restarted.blocked.wait()
    await until_stored(backend, 4)
    await second.stop()
    assert second.events == [4]  # nothing already emitted fires again


async def test_a_failing_trigger_keeps_what_the_triggerer_took(backend: DualBackend) -> None:
    trigger_class = make_trigger_class(backend, ack=False)
    triggerer = Triggerer()
    triggerer.start(trigger_class("src", [1, 2], then="raise"))
    with pytest.raises(Boom):
        await triggerer.finished()
    assert triggerer.events == [1, 2]
    again = Triggerer()
    again.start(trigger_class("src", [1, 2, 3]))
    await again.finished()
    assert again.events == [3]


async def test_a_failing_watcher_in_ack_mode_repeats_what_was_not_confirmed(backend: DualBackend) -> None:
    trigger_class = make_trigger_class(backend)
    triggerer = Triggerer()
    triggerer.start(trigger_class("src", [1, 2], then="raise"))
    with pytest.raises(Boom):
        await triggerer.finished()
    # The producer runs ahead of the triggerer's consumer; the error ends the shared stream, and
    # events not yet delivered are dropped with it (never emitted, never saved).
    first = triggerer.events
    assert first == [1, 2][: len(first)]
    again = Triggerer()
    again.start(trigger_class("src", [1, 2, 3], then="block"))
    await until_stored(backend, 3)
    await again.stop()
    # Whatever was not confirmed stored comes again: the second run is a suffix of 1..3 that
    # starts at or before the first event the failed run did not deliver. Never a skip.
    assert again.events == [1, 2, 3][3 - len(again.events) :]
    assert len(again.events) >= 3 - len(first)


@pytest.mark.airflow_min("3.3", reason="ack mode: Airflow's shared streams")
async def test_a_restarted_watcher_loads_only_after_the_failed_run_made_its_last_save(tmp_path: Path) -> None:
    # Airflow still drains a failed run's confirmed batches (its advance(), the save) after the
    # run's trigger has failed. A new run of the watermark started meanwhile must load after that
    # save, not before it: else that late save replaces the state the new run loaded.
    database = tmp_path / "state.db"
    store = SqlBackend(f"sqlite:///{database}")
    store.read("tests", "src", "watermark")  # create the table before locking the file
    first = Triggerer()

    class FailsWhileSaving(CounterBase):
        @stateful(namespace="tests", name="{source}", backend=store)
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            watermark.advance(cursor=1)
            yield TriggerEvent(1)
            await until(lambda: first.advancing == 1)  # Airflow confirmed it: its save waits
            raise Boom("source failed")

    # Another process holds the write lock: the failed run's save waits until it is released.
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    first.start(FailsWhileSaving("src", []))
    with pytest.raises(Boom):
        await first.finished()
    assert first.advancing == 1 and first.events == [1]

    second = Triggerer()
    second.start(make_trigger_class(store)("src", [1, 2, 3], then="block"))
    await until(lambda: second.producers == 1)
    for _ in range(50):  # time for a new run that did not wait to load and emit 1 again
        await asyncio.sleep(0.001)
    blocker.execute("ROLLBACK")
    blocker.close()
    await until_stored(store, 3)
    await second.settled()
    await second.stop()
    # The new run loaded cursor 1, the failed run's last save: it emits only what came after.
    assert second.events == [2, 3]
    # The failed run's save came first; the new run's saves (one per confirmed batch) followed it.
    history = sorted(store.history("tests", "src", "watermark"), key=lambda r: r.version)
    cursors = [json.loads(r.value)["cursor"] for r in history]
    assert cursors[0] == 1 and cursors[-1] == 3 and cursors == sorted(set(cursors))
    store.dispose()


async def test_a_blocked_store_does_not_block_the_event_loop(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    store = SqlBackend(f"sqlite:///{database}")
    store.read("tests", "src", "watermark")  # create the table before locking the file
    # Another process holds the database: the trigger's save must wait in a worker thread.
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    trigger = make_trigger_class(store, ack=False, save_batch=1)("src", [1, 2], then="block")
    triggerer = Triggerer()
    triggerer.start(trigger)

    while not triggerer.events:  # noqa: ASYNC110 - the runner's event deque offers no Event to wait on
        await asyncio.sleep(0.001)
    # The save of event 1 now waits for the lock. Had it blocked the event loop, this coroutine
    # could not run (and could never release the lock); instead it keeps running, and event 2
    # stays unproduced because the generator is not resumed before that save completes.
    for _ in range(50):
        await asyncio.sleep(0.001)
    assert triggerer.events == [1]
    assert not trigger.blocked.is_set()
    blocker.execute("ROLLBACK")
    blocker.close()
    await trigger.blocked.wait()
    assert triggerer.events == [1, 2]
    await triggerer.stop()
    store.dispose()


@pytest.mark.parametrize("ack", [True, False], ids=["ack", "resume"])
async def test_a_burst_lets_the_rest_of_the_triggerer_run_every_few_milliseconds(ack: bool) -> None:
    """The SDK yields to the event loop during a burst, so other triggers are not starved.

    Each event takes at least a millisecond of blocking work here; 200 of them hold the loop for
    200 ms or more unless the SDK lets it run in between (at least every 5 ms: 40 turns or more).
    In ack mode Airflow's runner drives the shared stream; without it the test is the consumer
    and, unlike Airflow's runner, never awaits between events: only the SDK lets the loop run.
    """
    turns = during = 0

    class Busy(CounterBase):
        @stateful(namespace="tests", name="{source}", backend=MemoryBackend(), ack=ack)
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            nonlocal during
            start = turns
            for item in self.items:
                _compute(0.001)  # CPU-bound work between two events, as a large snapshot is
                watermark.advance(cursor=item)
                yield TriggerEvent(item)
            during = turns - start  # how often the rest of the loop ran while the burst was emitted
            self.blocked.set()
            await asyncio.Event().wait()

    async def other_trigger() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    items = list(range(1, 201))
    trigger = Busy("src", items)
    other = asyncio.create_task(other_trigger())
    if ack:
        triggerer = Triggerer()
        triggerer.start(trigger)
        await until(lambda: len(triggerer.entries) == len(items))
        await triggerer.stop()
        events = triggerer.events
    else:
        run = trigger.run()
        events = [(await anext(run)).payload for _ in items]
        rest = asyncio.ensure_future(anext(run))  # runs to the end of the burst, then waits
        await trigger.blocked.wait()
        rest.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rest
    other.cancel()
    assert events == items
    assert during >= 20, f"the loop ran only {during} times during a burst of {len(items)} events"


def _compute(seconds: float) -> None:
    """Hold the CPU (and the event loop) for ``seconds``, as CPU-bound work does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
