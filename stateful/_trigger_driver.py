"""The async driver for a trigger's ``run()``: load, emit, save, with store I/O off the loop.

One loop, :func:`emit`, takes the events out of the decorated ``run()`` for both ways a trigger
is driven: :func:`async_driver` (the plain ``run()`` the triggerer iterates, which saves when it
is resumed) and the ack-mode producer of :mod:`stateful._ack` (which saves only once Airflow
confirmed that the events were stored). :func:`emit` paces a burst (the loop runs at least every
few milliseconds), lets a gate hold the next event back, snapshots the watermark for each event
and puts the idempotency key in its payload; what to save, and when, the I/O-free core decides.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, Protocol

from stateful._core import Scope, WatermarkSession, log_loaded
from stateful._document import DEFAULT_KEY
from stateful._fence import Fence
from stateful._flow import Pacer
from stateful._keyed_session import KeyedSession, astored_partitions, log_loaded_keyed, session_for
from stateful._metrics import aprepare, metrics_of
from stateful._repair import history_of
from stateful._retry import aretry
from stateful._saver import Coalescer, save, save_batching, save_spacing
from stateful._spec import StatefulSpec
from stateful._stuck import RunWatch
from stateful.backends.base import Address, AsyncStateBackend
from stateful.errors import StateValidationError

__all__ = ["IDEMPOTENCY_FIELD", "Gate", "async_driver", "emit", "fence_of", "keyed", "open_session"]

_LOG = logging.getLogger("stateful")

#: The payload field that carries an event's idempotency key.
IDEMPOTENCY_FIELD = "stateful_idempotency_key"


class Gate(Protocol):
    """What may hold :func:`emit` back (the ack-mode producer's backpressure)."""

    def pulling(self, pulling: bool) -> None:
        """:func:`emit` starts (``True``) or stops waiting for ``run()``'s next event."""

    async def room(self) -> None:
        """Return once the next event may be emitted; raise to stop emitting."""

    def emitted(self) -> None:
        """An event was emitted."""


async def open_session(
    spec: StatefulSpec, obj: object, qualname: str
) -> tuple[AsyncStateBackend, WatermarkSession[Any]]:
    """Choose the store, read and validate the watermark: the start of every run."""
    # The rule (given store, [stateful] backend, asset scope, SQL default) and its log line
    # live in the backends package, shared with the sync driver.
    from stateful.backends._resolve import aload, resolve_async_store

    name = spec.resolve_name(obj)
    choice = await resolve_async_store(spec.backend, obj)
    await aprepare()  # Airflow's metrics imported off the loop (once per process)
    store = choice.store
    scope = Scope(Address(spec.namespace, name, DEFAULT_KEY), store.description)
    session = session_for(spec, scope)
    # Keyed: one watermark per partition, their texts now, each validated when looked up.
    if isinstance(session, KeyedSession):
        stored = await aretry(lambda: astored_partitions(store, scope), f"load {scope} for {qualname}")
        session.load_partitions(stored, functools.partial(history_of, store))
        log_loaded_keyed(session, qualname)
        return store, session
    record = await aretry(lambda: aload(choice, *scope.address), f"load {scope} for {qualname}")
    # Parsing and validating a large state is O(state): a worker thread's job, not the loop's.
    try:
        await asyncio.to_thread(session.load, record, history_of(store, scope.address))
    except StateValidationError:
        metrics_of(session).validation_failure()
        raise
    log_loaded(session, qualname)
    return store, session


def keyed(event: Any, session: WatermarkSession[Any], spec: StatefulSpec) -> Any:
    """Return ``event`` with its idempotency key in the payload, where the payload is a dict."""
    payload = getattr(event, "payload", None)
    if not spec.idempotency_key or not isinstance(payload, dict) or IDEMPOTENCY_FIELD in payload:
        return event
    # A copy: the user's event object (and its payload dict) are left as they were.
    return event.model_copy(update={"payload": {**payload, IDEMPOTENCY_FIELD: session.event_key}})


async def emit(
    inner: AsyncGenerator[Any, Any],
    session: WatermarkSession[Any],
    spec: StatefulSpec,
    gate: Gate | None = None,
    fence: Fence | None = None,
) -> AsyncGenerator[tuple[Any, int], Any]:
    """Take each event out of the decorated ``run()``; yield it keyed, with its snapshot's number.

    Values sent into this generator are sent on into ``run()``. It does not close ``inner``:
    its caller, which created it, does. A ``fence`` reads the stored version before each batch
    and raises, emitting nothing more, once another instance saved (:mod:`stateful._fence`).
    """
    pacer = Pacer()
    sent: Any = None
    while True:
        await pacer.pace()  # a burst never holds the triggerer's loop for long
        if gate is not None:
            gate.pulling(True)
        try:
            event = await inner.asend(sent)
        except StopAsyncIteration:
            return
        finally:
            if gate is not None:
                gate.pulling(False)
        if gate is not None:
            await gate.room()  # the event waits here, not emitted yet
        if fence is not None:
            await fence.before_handover()  # a stale instance stops here, before emitting
        seq = session.emitted()
        if gate is not None:
            gate.emitted()
        sent = yield keyed(event, session, spec), seq


def async_driver(fn: Callable[..., Any], spec: StatefulSpec, qualname: str) -> Callable[..., Any]:
    """Wrap ``async def run(self, watermark, ...)``: saves when the consumer resumes (or before)."""

    async def wrapper(self: Any, /, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        # Everything happens on the first iteration: never at import or construction time.
        store, session = await open_session(spec, self, qualname)
        watch = RunWatch.start(session, spec.max_lag, qualname)  # metrics, max_lag
        inner = fn(self, session.watermark, *args, **kwargs)
        events = emit(inner, session, spec, fence=fence_of(spec, store, session, qualname))
        coalescer = _coalescer(spec, store, session, qualname)
        if coalescer is not None:
            coalescer.stop_on_failure(asyncio.current_task())  # a failed save ends the run at once
        try:
            sent: Any = None
            while True:
                if coalescer is not None:
                    coalescer.pulling = True
                try:
                    event, seq = await events.asend(sent)
                except StopAsyncIteration:
                    break
                finally:
                    if coalescer is not None:
                        coalescer.pulling = False
                if coalescer is not None:
                    coalescer.check()  # a background save failed: emit nothing more
                await save(store, session, session.before_yield(seq))
                # A close, an athrow or a cancellation at this yield leaves the loop here: the
                # event was handed over but not taken, so nothing more is saved for it.
                sent = yield event
                if coalescer is not None:
                    await coalescer.taken(seq)
                else:
                    await save(store, session, session.after_resume(seq))
            if coalescer is not None:
                await coalescer.flush()
            await save(store, session, session.finish())
        except BaseException as exc:
            failure = None if coalescer is None else coalescer.stopped_by_failure()
            if coalescer is not None:
                await coalescer.close()  # best effort: what was taken, never more
            session.abandon()
            if failure is not None and isinstance(exc, asyncio.CancelledError):
                _uncancel()
                raise failure from None  # the cancellation was the failed save's: its error
            raise
        finally:
            watch.stop()
            await events.aclose()
            await inner.aclose()

    return wrapper


def _uncancel() -> None:
    """Take back the cancellation a failed save requested (Python >= 3.11 counts them)."""
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


def _coalescer(
    spec: StatefulSpec, store: AsyncStateBackend, session: WatermarkSession[Any], qualname: str
) -> Coalescer | None:
    """The background saver of an ``after_event`` run whose saves are batched, else None."""
    if spec.commit != "after_event":
        return None
    batch, delay = save_batching(spec.save_batch, spec.save_delay)
    if batch <= 1:
        return None
    interval = save_spacing(spec.save_interval)
    return Coalescer(store, session, batch, delay, f"{qualname} ({session.scope})", interval)


def fence_of(
    spec: StatefulSpec, store: AsyncStateBackend, session: WatermarkSession[Any], qualname: str
) -> Fence | None:
    """The fence of an ``after_event`` run (``before_event`` saves before each handover already)."""
    if spec.commit != "after_event":
        return None
    fence = Fence(store, session, f"{qualname} ({session.scope})")
    return fence if fence.active else None
