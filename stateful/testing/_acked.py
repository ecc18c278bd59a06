"""Ack mode under the kit: the shared-stream producer driven as Airflow 3.3's triggerer drives it.

A ``BaseEventTrigger`` run by an ``AssetWatcher`` on Airflow >= 3.3 saves its watermark only once
Airflow confirmed it stored the events (:mod:`stateful._ack`). The kit plays Airflow's part: it
takes each event from the producer, confirms it (``advance()``), and only then takes the next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

from stateful._ack import producer_class
from stateful._spec import StatefulSpec
from stateful.testing._steps import Crash, StopReason, cancel, wait_event
from stateful.testing._tracked import Tracked

__all__ = ["acked", "uses_ack_mode"]


def uses_ack_mode(trigger: object) -> bool:
    """Whether Airflow's triggerer would run ``trigger`` in ack mode (``@stateful``'s shared stream).

    Example:
        >>> uses_ack_mode(object())
        False
    """
    key = getattr(type(trigger), "shared_stream_key", None)
    if getattr(key, "__module__", None) != "stateful._ack":
        return False  # not a watcher given ack mode by @stateful
    return cast(Any, trigger).shared_stream_key() is not None


async def acked(
    trigger: Any,
    original: Callable[..., Any],
    spec: StatefulSpec,
    qualname: str,
    tracked: Tracked,
    events: list[Any],
    max_events: int | None,
    idle_timeout: float,
    crash: Crash | None,
    until: Callable[[], bool] | None,
) -> StopReason:
    """Take events from the ack-mode producer, confirming each before the next; see ``run_trigger``."""
    from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome

    producer = producer_class()(trigger, original, spec, qualname)
    stream = cast(AsyncGenerator[tuple[Any, Any], None], producer.open_stream())
    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            pending = asyncio.ensure_future(anext(stream))
            stop = await wait_event(pending, idle_timeout, until)
            if stop is not None:
                return stop
            try:
                event, seq = pending.result()
            except StopAsyncIteration:
                return "returned"
            pending = None
            events.append(event)
            last = max_events is not None and len(events) >= max_events
            if last and crash in ("before_confirm", "after_confirm", "before_save"):
                # Before: Airflow never stored it. After: it did, and the process died before the save.
                tracked.crash()
                return "crash"
            await producer.advance([AdvanceItem(seq, AdvanceOutcome(acked=1, failed=0))])
            if last:
                return "crash" if crash else "max_events"
    finally:
        await cancel(pending)
        if crash is not None:
            tracked.crash()
        with contextlib.suppress(StopAsyncIteration, RuntimeError):
            await stream.aclose()
        await producer.aclose()  # as Airflow does once the poll ended
