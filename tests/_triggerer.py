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
        self.producers = 0  # ack-mode producers created for this triggerer's trigger
        self.emitted = 0  # raw events those producers yielded
        self.advanced = 0  # raw events whose producer advance() (the save) has returned
        self.advancing = 0  # advance() calls in progress
        self._auto = store_events
        self._supervisor: asyncio.Task[None] | None = None

    def start(self, trigger: BaseTrigger, trigger_id: int = 1, *, is_watcher: bool = True) -> None:
        # Set by TriggerRunner.create_triggers (Airflow 3.0's run_trigger reads it from here); not
        # declared on BaseTrigger.
        trigger.timeout_after = None  # type: ignore[attr-defined]
        _count_advances(type(trigger), self)
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

        What a clean shutdown looks like from the outside; a stop without it is a crash. In ack
        mode the save is the producer's ``advance()``, which Airflow calls once per batch of
        confirmed raw events (one raw event per queued trigger event here).
        """

        def caught_up() -> bool:
            queued = len(self.runner.events)
            saved = self.producers == 0 or (self.emitted == queued == self.advanced and self.advancing == 0)
            return self.stored == queued and saved

        await until(caught_up)

    async def stop(self) -> None:
        """What a triggerer shutdown (or a SIGKILL, for what was not stored yet) does: cancel."""
        await self._stop_supervisor()
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    async def finished(self, timeout: float = 60) -> Any:
        """Wait for the trigger's task to end on its own; return its result or raise its error.

        Fails (``TimeoutError``) after ``timeout`` seconds: a deadlock guard, as :func:`until`.
        """
        assert self.task is not None
        try:
            return await asyncio.wait_for(self.task, timeout)
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


# The triggerer each trigger class's ack-mode producers report to: the last one that started it.
_COUNTED_BY: dict[type, Triggerer] = {}


def _count_advances(trigger_class: type, triggerer: Triggerer) -> None:
    """Count the raw events the ack-mode producers of ``trigger_class`` yield and advance.

    All of it is Airflow's public shared-stream protocol: the triggerer creates a producer with
    the class's ``create_shared_stream_producer``, iterates its ``open_stream()`` and awaits its
    ``advance(batch)`` once the batch's events were confirmed stored; ``@stateful``'s producer
    saves the watermark there. A class without its own producer factory (no ack mode) is left
    as it is.
    """
    from airflow.triggers.base import BaseEventTrigger

    owner = next((k for k in trigger_class.__mro__ if "create_shared_stream_producer" in vars(k)), None)
    if owner is None or owner is BaseEventTrigger:
        return
    _COUNTED_BY[trigger_class] = triggerer
    if "_counted" in vars(trigger_class):
        return
    create = vars(owner)["create_shared_stream_producer"].__func__
    create = getattr(create, "__wrapped__", create)  # a parent counted already: its own factory

    def counting(cls: type, kwargs: dict[str, Any]) -> Any:
        producer = create(cls, kwargs)
        counter = _COUNTED_BY[cls]
        counter.producers += 1
        advance, open_stream = producer.advance, producer.open_stream

        async def counted(batch: Any) -> None:
            counter.advancing += 1
            try:
                await advance(batch)
                counter.advanced += len(batch)
            finally:
                counter.advancing -= 1

        async def counted_stream() -> Any:
            async for item in open_stream():
                counter.emitted += 1
                yield item

        producer.advance, producer.open_stream = counted, counted_stream
        return producer

    counting.__wrapped__ = create  # type: ignore[attr-defined]
    trigger_class.create_shared_stream_producer = classmethod(counting)  # type: ignore[attr-defined]
    trigger_class._counted = True  # type: ignore[attr-defined]
