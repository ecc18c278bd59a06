"""An in-process triggerer for tests: Airflow's own ``TriggerRunner``, and its supervisor's part.

``TriggerRunner.run_trigger`` is the loop the triggerer process runs for every trigger: it
queues each event and resumes the generator at once. In the real triggerer a supervisor process
stores the queued events in the metadata database and, on the next state sync (about once a
second), reports their persist sequence numbers back; a watcher in shared-stream ack mode saves
its watermark only then. :meth:`Triggerer.store_events` is that step, done by the test, and by
default a background task does it continuously, as the supervisor would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from airflow.jobs.triggerer_job_runner import TriggerRunner
from airflow.triggers.base import BaseTrigger


class Triggerer:
    """One in-process triggerer running one trigger."""

    def __init__(self, *, store_events: bool = True) -> None:
        self.runner = TriggerRunner()
        self.task: asyncio.Task[Any] | None = None
        self.stored = 0  # how many queued events the "supervisor" has stored so far
        self._auto = store_events
        self._supervisor: asyncio.Task[None] | None = None

    def start(self, trigger: BaseTrigger, trigger_id: int = 1, *, is_watcher: bool = True) -> None:
        # Set by TriggerRunner.create_triggers (Airflow 3.0's run_trigger reads it from here); not
        # declared on BaseTrigger.
        trigger.timeout_after = None  # type: ignore[attr-defined]
        self.task = asyncio.create_task(self.runner.run_trigger(trigger_id, trigger))
        # What TriggerRunner.create_triggers records before the task first runs.
        self.runner.triggers[trigger_id] = {
            "task": self.task,
            "is_watcher": is_watcher,
            "name": f"trigger-{trigger_id}",
            "events": 0,
        }
        if self._auto:
            self._supervisor = asyncio.create_task(self._store_continuously())

    @property
    def entries(self) -> list[Any]:
        return list(self.runner.events)

    @property
    def events(self) -> list[Any]:
        """The payloads queued so far, without their idempotency keys."""
        # Airflow 3.0 queues (trigger_id, event) tuples, later releases objects with an `event`.
        return [strip_key((e[1] if isinstance(e, tuple) else e.event).payload) for e in self.runner.events]

    def store_events(self) -> int:
        """Store every queued event not stored yet and confirm it, as the supervisor does."""
        entries = list(self.runner.events)[self.stored :]
        self.stored += len(entries)
        seqs = [seq for entry in entries if (seq := getattr(entry, "persist_seq", None)) is not None]
        if seqs:  # only Airflow >= 3.3 has shared streams (and persist sequence numbers)
            self.runner._shared_streams.confirm_persisted(seqs)
        return len(entries)

    async def _store_continuously(self) -> None:
        while True:
            self.store_events()
            await asyncio.sleep(0.005)

    async def settled(self) -> None:
        """Wait until Airflow confirmed every event queued so far and the watermark was saved.

        What a clean shutdown looks like from the outside; a stop without it is a crash.
        """
        from stateful._ack import settled

        await until(lambda: settled() and self.stored == len(self.runner.events))

    async def stop(self) -> None:
        """What a triggerer shutdown (or a SIGKILL, for what was not stored yet) does: cancel."""
        await self._stop_supervisor()
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    async def finished(self) -> Any:
        """Wait for the trigger's task to end on its own; return its result or raise its error."""
        assert self.task is not None
        try:
            return await self.task
        finally:
            await self._stop_supervisor()

    async def _stop_supervisor(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None


def strip_key(payload: Any) -> Any:
    """A payload without the ``stateful_idempotency_key`` the decorator adds to dict payloads."""
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k != "stateful_idempotency_key"}
    return payload


async def until(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``condition`` on the event loop; fail after ``timeout`` seconds (a deadlock guard)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.005)
