"""Drive a trigger's ``run()`` outside Airflow: take its events until it goes quiet.

Used by ``examples/demo.py`` and the tests. Events are *taken* the way Airflow's triggerer takes
them: by resuming the generator for the next one. That matters with ``@stateful``: in its default
``commit="after_event"`` mode the watermark that covers an event is saved when the generator is
resumed after it, so an event handed over but never taken (the generator closed at that
``yield``) is not recorded and comes again: at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

__all__ = ["Drive", "drive"]

E = TypeVar("E")

StopReason = Literal["until", "idle", "returned", "max_events"]


@dataclass
class Drive(Generic[E]):
    """What :func:`drive` got.

    Attributes:
        events: the events received, in order. With ``reason == "max_events"`` the last one was
            received but not taken.
        reason: why driving stopped: ``until`` returned true, ``idle_timeout`` passed without an
            event, the generator ``returned``, or more than ``max_events`` arrived.
    """

    events: list[E] = field(default_factory=list)
    reason: StopReason = "returned"


async def _next(iterator: AsyncIterator[E]) -> E:
    return await anext(iterator)


async def drive(
    events: AsyncIterator[E],
    *,
    until: Callable[[], bool] | None = None,
    idle_timeout: float = 10.0,
    max_events: int | None = None,
    check_interval: float = 0.01,
) -> Drive[E]:
    """Take events from ``events`` (e.g. ``trigger.run()``) until it is done or quiet, then close it.

    While waiting for the next event, ``until()`` is checked every ``check_interval`` seconds; once
    it is true, or ``idle_timeout`` seconds passed without an event, the generator is cancelled
    where it waits and closed. ``until`` should become true only while the generator waits at a
    safe point, e.g. once a polling trigger finished a poll cycle and sleeps: every event taken
    before that point has then had its watermark saved.

    Run each call in its own ``asyncio.run()`` when what the store holds afterwards matters:
    ``asyncio.run()`` waits for the store's worker threads, so a write that a cancellation
    interrupted has finished (or failed) before the next run reads the state.

    Args:
        events: the async iterator to drive; closed (``aclose()``) before returning.
        until: stop once this returns true (checked only while waiting for an event).
        idle_timeout: stop after this many seconds without an event (a safety net when
            ``until`` is given).
        max_events: stop as soon as one more event than this arrives, without taking it.
        check_interval: how often ``until`` is checked while waiting.

    Returns:
        The events and the reason driving stopped.

    Raises:
        Exception: whatever the generator raised.
    """
    loop = asyncio.get_running_loop()
    result: Drive[E] = Drive()
    pending: asyncio.Task[E] | None = None
    try:
        while True:
            pending = asyncio.create_task(_next(events))
            deadline = loop.time() + idle_timeout
            while not pending.done():
                # Wait first: the task must run once (resume the generator, which saves the
                # watermark for the event just taken) before it may be cancelled.
                await asyncio.wait({pending}, timeout=max(0.0, min(check_interval, deadline - loop.time())))
                if pending.done():
                    break
                if until is not None and until():
                    result.reason = "until"
                    break
                if loop.time() >= deadline:
                    result.reason = "idle"
                    break
            if not pending.done():
                break
            try:
                event = pending.result()
            except StopAsyncIteration:
                result.reason = "returned"
                break
            pending = None
            result.events.append(event)
            if max_events is not None and len(result.events) > max_events:
                result.reason = "max_events"
                break
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.wait({pending})
            # An event that arrived while it was being cancelled was handed over, not taken.
            if not pending.cancelled() and pending.exception() is None:
                result.events.append(pending.result())
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(StopAsyncIteration):
                await aclose()
    return result
