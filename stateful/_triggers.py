"""The async driver for a trigger's ``run()``, and the class hook that wires up ack mode.

The driver loads the watermark on the first iteration, hands each event over and saves the
snapshot the core says to save, with store I/O off the event loop. The same opening, event
keying and saving serve the ack-mode producer in :mod:`stateful._ack`, which saves only once
Airflow confirmed that the events were stored.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from stateful._core import DEFAULT_KEY, Save, Scope, WatermarkSession, log_loaded
from stateful._flow import Pacer
from stateful.backends.base import AsyncStateBackend

if TYPE_CHECKING:
    from stateful.decorators import StatefulSpec

__all__ = ["TriggerRun", "async_driver", "keyed", "open_session", "save"]

_LOG = logging.getLogger("stateful")

#: The payload field that carries an event's idempotency key.
IDEMPOTENCY_FIELD = "stateful_idempotency_key"


async def open_session(
    spec: StatefulSpec, obj: object, qualname: str
) -> tuple[AsyncStateBackend, WatermarkSession[Any]]:
    """Choose the store, read and validate the watermark: the start of every run."""
    # The rule (given store, [stateful] backend, asset scope, SQL default) and its log line
    # live in the backends package, shared with the sync driver.
    from stateful.backends._resolve import resolve_async_store

    name = spec.resolve_name(obj)
    store, _reason = await resolve_async_store(spec.backend, obj)
    scope = Scope(spec.namespace, name, DEFAULT_KEY, store.description)
    session = WatermarkSession(
        spec.model,
        scope,
        commit=spec.commit,
        lookback=spec.lookback,
        max_untimed_keys=spec.max_untimed_keys,
    )
    session.load(await store.aread(scope.namespace, scope.name, scope.key))
    log_loaded(session, qualname)
    return store, session


async def save(store: AsyncStateBackend, session: WatermarkSession[Any], decision: Save | None) -> None:
    """Write a save the core decided on (compare-and-set) and record the new version."""
    if decision is None:
        return
    scope = decision.scope
    version = await store.awrite(
        scope.namespace, scope.name, scope.key, decision.value, expected_version=decision.expected_version
    )
    session.saved(decision, version)
    _LOG.debug("stateful: saved %s as version %d in %s (event %d)", scope, version, scope.store, decision.seq)


def keyed(event: Any, session: WatermarkSession[Any], spec: StatefulSpec) -> Any:
    """Return ``event`` with its idempotency key in the payload, where the payload is a dict."""
    payload = getattr(event, "payload", None)
    if not spec.idempotency_key or not isinstance(payload, dict) or IDEMPOTENCY_FIELD in payload:
        return event
    # A copy: the user's event object (and its payload dict) are left as they were.
    return event.model_copy(update={"payload": {**payload, IDEMPOTENCY_FIELD: session.event_key}})


def async_driver(fn: Callable[..., Any], spec: StatefulSpec, qualname: str) -> Callable[..., Any]:
    """Wrap ``async def run(self, watermark, ...)``: saves when the consumer resumes (or before)."""

    async def wrapper(self: Any, /, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        # Everything happens on the first iteration: never at import or construction time.
        store, session = await open_session(spec, self, qualname)
        inner = fn(self, session.watermark, *args, **kwargs)
        pacer = Pacer()
        try:
            sent: Any = None
            while True:
                await pacer.pace()  # a burst never holds the triggerer's loop for long
                try:
                    event = await inner.asend(sent)
                except StopAsyncIteration:
                    break
                seq = session.emitted()
                await save(store, session, session.before_yield(seq))
                # A close, an athrow or a cancellation at this yield leaves the loop here: the
                # event was handed over but not taken, so nothing more is saved for it.
                sent = yield keyed(event, session, spec)
                await save(store, session, session.after_resume(seq))
            await save(store, session, session.finish())
        except BaseException:
            session.abandon()
            raise
        finally:
            await inner.aclose()

    return wrapper


class TriggerRun:
    """What ``@stateful`` returns for a trigger's ``run()`` until its class is created.

    Python calls :meth:`__set_name__` when the class body ends: the hook puts the plain wrapper
    function in its place (so ``Trigger.run`` is an ordinary async generator function) and, for
    a ``BaseEventTrigger`` on Airflow >= 3.3, gives the class the shared-stream members that
    make the triggerer confirm persisted events before the watermark is saved
    (:mod:`stateful._ack`). Used outside a class body it behaves as the wrapper itself.
    """

    def __init__(self, wrapper: Callable[..., Any], fn: Callable[..., Any], spec: StatefulSpec) -> None:
        self._wrapper = wrapper
        self._fn = fn
        self._spec = spec
        # Class-level attributes that __getattr__ would never be asked for.
        self.__doc__ = wrapper.__doc__
        self.__module__ = wrapper.__module__

    def __set_name__(self, owner: type, name: str) -> None:
        setattr(owner, name, self._wrapper)
        from stateful._ack import install_ack_mode

        qualname = f"{owner.__module__}.{owner.__qualname__}.{name}"
        install_ack_mode(owner, name, self._wrapper, self._fn, self._spec, qualname)

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        return self._wrapper.__get__(obj, objtype)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # __name__, __doc__, __signature__, __stateful__, __code__ ...: the wrapper's, so
        # inspect.signature() and inspect.isasyncgenfunction() answer as for the function.
        return getattr(self._wrapper, name)
