"""``@stateful`` triggers driven by Airflow's own triggerer code (``TriggerRunner.run_trigger``).

These run the real loop that the triggerer process runs for every trigger: it appends each event
to its outbound queue and resumes the generator at once, and a shutdown cancels the task.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from airflow.jobs.triggerer_job_runner import TriggerRunner

from stateful.backends import SqlBackend
from tests.conftest import DualBackend
from tests.test_decorator import Boom, CounterBase, make_trigger_class


class Triggerer:
    """One in-process triggerer: a real TriggerRunner and the task running one trigger."""

    def __init__(self) -> None:
        self.runner = TriggerRunner()
        self.task: asyncio.Task[Any] | None = None

    def start(self, trigger: CounterBase, trigger_id: int = 1) -> None:
        # Set by TriggerRunner.create_triggers (Airflow 3.0's run_trigger reads it from here); not
        # declared on BaseTrigger.
        trigger.timeout_after = None  # type: ignore[attr-defined]
        self.task = asyncio.create_task(self.runner.run_trigger(trigger_id, trigger))
        # What TriggerRunner.create_triggers records before the task first runs.
        self.runner.triggers[trigger_id] = {
            "task": self.task,
            "is_watcher": True,
            "name": f"trigger-{trigger_id}",
            "events": 0,
        }

    @property
    def events(self) -> list[Any]:
        # Airflow 3.0 queues (trigger_id, event) tuples, later releases objects with an `event`.
        return [(e[1] if isinstance(e, tuple) else e.event).payload for e in self.runner.events]

    async def stop(self) -> None:
        """What a triggerer shutdown does to a running trigger: cancel its task."""
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def test_a_restarted_triggerer_repeats_nothing_and_fires_new_items(backend: DualBackend) -> None:
    trigger_class = make_trigger_class(backend)
    first = Triggerer()
    trigger = trigger_class("src", [1, 2, 3], then="block")
    first.start(trigger)
    await trigger.blocked.wait()
    await first.stop()
    assert first.events == [1, 2, 3]

    second = Triggerer()
    restarted = trigger_class("src", [1, 2, 3, 4], then="block")
    second.start(restarted)
    await restarted.blocked.wait()
    await second.stop()
    assert second.events == [4]  # nothing already emitted fires again


async def test_a_failing_trigger_keeps_what_the_triggerer_took(backend: DualBackend) -> None:
    trigger_class = make_trigger_class(backend)
    triggerer = Triggerer()
    triggerer.start(trigger_class("src", [1, 2], then="raise"))
    assert triggerer.task is not None
    with pytest.raises(Boom):
        await triggerer.task
    assert triggerer.events == [1, 2]
    again = Triggerer()
    again.start(trigger_class("src", [1, 2, 3]))
    assert again.task is not None
    await again.task
    assert again.events == [3]


async def test_a_blocked_store_does_not_block_the_event_loop(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    store = SqlBackend(f"sqlite:///{database}")
    store.read("tests", "src", "watermark")  # create the table before locking the file
    # Another process holds the database: the trigger's save must wait in a worker thread.
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    trigger = make_trigger_class(store)("src", [1, 2], then="block")
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
