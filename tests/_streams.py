"""Airflow's real ``TriggerRunner`` running several watchers of one shared stream; the test is its supervisor.

The supervisor part stores the queued events and confirms their persist sequence numbers, as the
triggerer's supervisor process does on each state sync; it may withhold the confirmations of
some triggers, as for events that are never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from airflow.jobs.triggerer_job_runner import TriggerRunner
from airflow.triggers.base import BaseEventTrigger

from tests._triggerer import strip_key


class Triggerer:
    """Airflow's ``TriggerRunner`` running several watchers; the test is its supervisor."""

    def __init__(self, withheld: frozenset[int] = frozenset()) -> None:
        self.runner = TriggerRunner()
        self.tasks: dict[int, asyncio.Task[Any]] = {}
        self.withheld = withheld  # trigger ids whose events are never confirmed stored
        self.stored = 0
        self.paused = False  # while True, nothing more is stored (a supervisor that lags)
        self._supervisor = asyncio.create_task(self._store_continuously())

    def start(self, trigger_id: int, trigger: BaseEventTrigger) -> None:
        trigger.timeout_after = None  # type: ignore[attr-defined]
        task = asyncio.create_task(self.runner.run_trigger(trigger_id, trigger))
        self.runner.triggers[trigger_id] = {
            "task": task,
            "is_watcher": True,
            "name": f"trigger-{trigger_id}",
            "events": 0,
        }
        self.tasks[trigger_id] = task

    def payloads(self, trigger_id: int) -> list[Any]:
        """The payloads queued for ``trigger_id`` so far, without their idempotency keys."""
        return [strip_key(e.event.payload) for e in self.runner.events if e.trigger_id == trigger_id]

    def events(self, trigger_id: int) -> list[str]:
        return [payload["item"] for payload in self.payloads(trigger_id)]

    async def _store_continuously(self) -> None:
        while True:
            if self.paused:
                await asyncio.sleep(0.005)
                continue
            entries = list(self.runner.events)[self.stored :]
            self.stored += len(entries)
            seqs = [
                e.persist_seq
                for e in entries
                if e.persist_seq is not None and e.trigger_id not in self.withheld
            ]
            if seqs:
                self.runner._shared_streams.confirm_persisted(seqs)
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """A shutdown (or a crash, for whatever was not confirmed yet): cancel everything."""
        self._supervisor.cancel()
        for task in [self._supervisor, *self.tasks.values()]:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self.runner._shared_streams.stop_all()
