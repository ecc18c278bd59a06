"""The steps both kit drivers share: what may stop a run, waiting for an event, cancelling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["Crash", "StopReason", "cancel", "wait_event"]

#: Where :func:`run_trigger` simulates a crash, at the last event (``max_events``):
#: ``"before_save"`` the event was handed over, the process died before its save;
#: ``"after_save"`` it died right after the save. In ack mode also: ``"before_confirm"`` it
#: died before Airflow confirmed storing the event; ``"after_confirm"`` (the same as
#: ``"before_save"`` there) after the confirmation, before the save.
Crash = Literal["before_save", "after_save", "before_confirm", "after_confirm"]
#: Why :func:`run_trigger` stopped.
StopReason = Literal["max_events", "idle", "returned", "until", "crash"]


async def wait_event(
    pending: asyncio.Future[Any], idle_timeout: float, until: Callable[[], bool] | None
) -> StopReason | None:
    """Wait for ``pending``; a reason to stop (``idle``, ``until``) if it did not finish."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + idle_timeout
    while not pending.done():
        step = deadline - loop.time() if until is None else min(0.01, deadline - loop.time())
        await asyncio.wait({pending}, timeout=max(0.0, step))
        if pending.done():
            break
        if until is not None and until():
            return "until"
        if loop.time() >= deadline:
            return "idle"
    return None


async def cancel(pending: asyncio.Future[Any] | None) -> None:
    """Cancel ``pending`` (the trigger's next step) and wait for it; raise what the trigger raised."""
    if pending is None:
        return
    if not pending.done():
        pending.cancel()
    # An event the trigger produced meanwhile was handed over, not taken: it comes again.
    await asyncio.wait({pending})
    if pending.cancelled():
        return
    error = pending.exception()
    if error is not None and not isinstance(error, StopAsyncIteration):
        raise error  # the trigger failed after its last event was taken
