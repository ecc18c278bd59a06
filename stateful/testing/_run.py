"""Drive a ``@stateful`` trigger the way Airflow's triggerer does: :func:`run_trigger`, :func:`restart`.

The triggerer *takes* an event by resuming ``run()`` for the next one; that is when ``@stateful``
(``commit="after_event"``) saves the watermark covering the event. A test that writes
``async for event in trigger.run(): ...; break`` closes the generator at the last ``yield``: that
event was handed over but never taken, so it is not saved and a restart emits it again.
:func:`run_trigger` takes every event it returns, waits for the saves, and closes the trigger
the way the triggerer cancels it. With ``crash=`` it stops instead as a dead process would, at a
chosen commit point of the last event.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar, cast

from stateful._core import Scope, WatermarkSession
from stateful._document import DEFAULT_KEY
from stateful._spec import StatefulSpec
from stateful._trigger_driver import async_driver
from stateful.backends.base import Address
from stateful.errors import StatefulUsageError
from stateful.testing._acked import acked, uses_ack_mode
from stateful.testing._steps import Crash, StopReason, cancel, wait_event
from stateful.testing._tracked import Tracked
from stateful.types import Watermark

__all__ = ["TriggerRun", "restart", "run_trigger"]

E = TypeVar("E")
T = TypeVar("T")

_PLAIN: tuple[Crash, ...] = ("before_save", "after_save")
_ACK: tuple[Crash, ...] = ("before_confirm", "after_confirm", "before_save", "after_save")


@dataclass
class TriggerRun(Generic[E]):
    """What :func:`run_trigger` got.

    Attributes:
        events: the events the trigger emitted, in order (with ``crash="before_save"`` or
            ``"before_confirm"`` the last one was emitted but its commit never happened).
        watermark: the watermark the store holds afterwards (an empty one if nothing was saved),
            as the next run loads it.
        reason: why it stopped: ``max_events`` taken, ``idle`` (no event for ``idle_timeout``
            seconds), the trigger ``returned``, ``until`` became true, or the simulated ``crash``.
        version: the stored version afterwards (``None``: nothing stored).
        store: the store's description (as the trigger chose it).
        ack: whether it ran in ack mode (saves after Airflow's confirmation).
    """

    events: list[E] = field(default_factory=list)
    watermark: Watermark[Any] = field(default_factory=Watermark)
    reason: StopReason = "returned"
    version: int | None = None
    store: str = ""
    ack: bool = False

    @property
    def payloads(self) -> list[Any]:
        """Each event's ``payload`` (the event itself when it has none).

        Example:
            >>> TriggerRun(events=[1, 2]).payloads
            [1, 2]
        """
        return [getattr(event, "payload", event) for event in self.events]


def restart(trigger: T) -> T:
    """A new instance of ``trigger`` built from ``trigger.serialize()``, as the triggerer builds it.

    The new instance shares nothing with the old one but what ``serialize()`` returns (and the
    store): a trigger that forgets a constructor argument in ``serialize()`` fails here as it
    would in Airflow.

    Raises:
        StatefulUsageError: ``serialize()``'s class path does not import, or names another class.

    Example:
        >>> from airflow.triggers.temporal import TimeDeltaTrigger
        >>> from datetime import timedelta
        >>> again = restart(TimeDeltaTrigger(timedelta(seconds=5)))
        >>> type(again).__name__
        'DateTimeTrigger'
    """
    classpath, kwargs = cast(Any, trigger).serialize()
    module_name, _, class_name = str(classpath).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise StatefulUsageError(
            f"cannot restart {type(trigger).__qualname__}: serialize() names {classpath!r}, which does "
            f"not import ({exc}); the triggerer could not build it either. Define the trigger at "
            f"module level and return its module path from serialize()."
        ) from exc
    return cast(T, cls(**kwargs))


async def run_trigger(
    trigger: Any,
    *,
    max_events: int | None = None,
    idle_timeout: float = 1.0,
    crash: Crash | None = None,
    until: Callable[[], bool] | None = None,
    ack: bool | None = None,
) -> TriggerRun[Any]:
    """Run a ``@stateful`` trigger as Airflow's triggerer would; return its events and stored watermark.

    Each event returned was *taken* (the trigger was resumed after it) and saved as the
    triggerer saves it; then the trigger is cancelled where it waits and closed. It runs against
    the store its ``@stateful`` chooses (``backend=``, else :func:`~stateful.testing.use_store`,
    else the configured one). A ``BaseEventTrigger`` that Airflow runs in ack mode (an
    ``AssetWatcher`` on Airflow >= 3.3) is driven in ack mode: each event is confirmed stored,
    then saved.

    Args:
        trigger: an instance of a trigger class whose ``run()`` is decorated with ``@stateful``.
        max_events: stop after taking this many events.
        idle_timeout: stop when no event came for this many seconds (how a polling trigger
            that has nothing new ends a test).
        crash: simulate a crash at the ``max_events``-th event (see :data:`Crash`); nothing
            is written after it, and the trigger is not closed cleanly.
        until: stop once this returns true, checked while the trigger waits for its next event.
        ack: force ack mode on or off; ``None`` follows what Airflow would do.

    Returns:
        The events, the stored watermark and why it stopped.

    Raises:
        StatefulUsageError: ``run()`` is not decorated with ``@stateful``, or ``crash`` without
            ``max_events``, or a crash point of the other mode.
        Exception: whatever the trigger raised.

    Example:
        >>> import asyncio
        >>> from collections.abc import AsyncIterator
        >>> from stateful import Watermark, stateful
        >>> from stateful.backends import MemoryBackend
        >>> class Numbers:
        ...     @stateful(namespace="demo", name="numbers", backend=MemoryBackend())
        ...     async def run(self, watermark: Watermark[int]) -> AsyncIterator[int]:
        ...         for n in range((watermark.cursor or 0) + 1, 10):
        ...             watermark.advance(cursor=n)
        ...             yield n
        >>> run = asyncio.run(run_trigger(Numbers(), max_events=3))
        >>> run.events, run.watermark.cursor, run.reason
        ([1, 2, 3], 3, 'max_events')
        >>> asyncio.run(run_trigger(Numbers(), max_events=2)).events
        [4, 5]
    """
    from stateful.backends._resolve import resolve_async_store

    spec, original = _decorated(trigger)
    use_ack = uses_ack_mode(trigger) if ack is None else ack
    _check_crash(crash, max_events, use_ack)
    choice = await resolve_async_store(spec.backend, trigger)
    tracked = Tracked(choice.store)
    # The trigger's own settings, with the watched store; each taken event's save starts at once
    # (no pause between two saves: a test's events come faster than a busy trigger's).
    watched = dataclasses.replace(spec, backend=tracked, save_batch=2, save_interval=timedelta(0))
    run: TriggerRun[Any] = TriggerRun(store=choice.store.description, ack=use_ack)
    qualname = f"{type(trigger).__module__}.{type(trigger).__qualname__}.run"
    if use_ack:
        drive = functools.partial(acked, trigger, original, watched, qualname)
    else:
        drive = functools.partial(_plain, trigger, original, watched, qualname)
    run.reason = await drive(tracked, run.events, max_events, idle_timeout, crash, until)
    name = spec.resolve_name(trigger)
    scope = Scope(Address(spec.namespace, name, DEFAULT_KEY), choice.store.description)
    record = await choice.store.aread(*scope.address)
    session = WatermarkSession(
        spec.model, scope, commit=spec.commit, lookback=spec.lookback, max_untimed_keys=spec.max_untimed_keys
    )
    run.watermark = await asyncio.to_thread(session.load, record)
    run.version = None if record is None else record.version
    return run


def _decorated(trigger: Any) -> tuple[StatefulSpec, Callable[..., Any]]:
    run = getattr(type(trigger), "run", None)
    spec = getattr(run, "__stateful__", None)
    original = getattr(run, "__wrapped__", None)
    if not isinstance(spec, StatefulSpec) or spec.form != "trigger" or original is None:
        raise StatefulUsageError(
            f"{type(trigger).__qualname__}.run() is not decorated with @stateful; run_trigger() drives "
            f"`@stateful(...) async def run(self, watermark: Watermark)` triggers. Iterate other "
            f"triggers with `async for event in trigger.run()`."
        )
    return spec, original


def _check_crash(crash: Crash | None, max_events: int | None, use_ack: bool) -> None:
    if crash is None:
        return
    if max_events is None:
        raise StatefulUsageError(
            f"run_trigger(crash={crash!r}) needs max_events=N: the crash comes at the N-th event."
        )
    allowed = _ACK if use_ack else _PLAIN
    if crash not in allowed:
        mode = "in ack mode (a watcher on Airflow >= 3.3)" if use_ack else "outside ack mode"
        raise StatefulUsageError(
            f"run_trigger(crash={crash!r}): {mode} the commit points are {', '.join(map(repr, allowed))}."
        )


async def _plain(
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
    generator = cast(AsyncGenerator[Any, Any], async_driver(original, spec, qualname)(trigger))
    pending: asyncio.Task[Any] | None = asyncio.ensure_future(anext(generator))
    reason: StopReason = "returned"
    try:
        while True:
            assert pending is not None
            reason_now = await wait_event(pending, idle_timeout, until)
            if reason_now is not None:
                reason = reason_now
                break
            try:
                event = pending.result()
            except StopAsyncIteration:
                pending, reason = None, "returned"
                break
            events.append(event)
            last = max_events is not None and len(events) >= max_events
            if last and crash == "before_save":
                pending = None
                await tracked.settled()  # the saves of the events taken before it stand
                tracked.crash()
                return "crash"
            # Take it: resuming run() is what makes @stateful save it.
            pending = asyncio.ensure_future(anext(generator))
            if last:
                await asyncio.sleep(0)  # the resumed run() records the event as taken
                reason = "crash" if crash else "max_events"
                break
    finally:
        # Cancelled where it waits, as the triggerer cancels a trigger: what was taken is saved.
        await cancel(pending)
        if crash is not None:
            tracked.crash()
        with contextlib.suppress(StopAsyncIteration, RuntimeError):
            await generator.aclose()
    return reason
