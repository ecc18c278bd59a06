"""Ack mode: a watcher's watermark is saved only after Airflow stored the events it covers.

Airflow 3.3's triggerer queues a yielded event in memory and stores it in the metadata database
a second or two later; a save made when the generator resumes can be durable before the event
is, and a SIGKILL in between skips that event. Airflow 3.3 has one signal that closes the gap:
a shared stream in *ack mode* (``airflow/triggers/shared_stream.py``). The triggerer hands each
raw event a producer yields to the trigger's ``filter_shared_stream``, binds every trigger event
derived from it to a persist-confirmation sequence number, and calls the producer's
``advance(batch)`` only once those events were confirmed stored, in order.

``@stateful`` maps a decorated ``run()`` onto it, with nothing for the user to write:

* ``shared_stream_key()`` is one key per trigger configuration (class path + serialized kwargs),
  so each trigger row gets its own group (Airflow already merges identical watchers into one
  row). It returns ``None`` for a trigger serving a deferred task, which keeps the standalone
  path.
* the producer (``open_stream``) runs the decorated ``run()`` against the watermark and yields
  ``(event, seq)``, where ``seq`` numbers the watermark snapshot taken when the event was
  emitted; ``filter_shared_stream`` passes each event through unchanged.
* ``advance(batch)`` confirms the batch's snapshots and saves the newest (compare-and-set). An
  event that was not cleanly stored (ack timeout, a failed persist) raises instead: Airflow ends
  the group, the trigger restarts from the last saved watermark and emits the event again.
* a save that loses a compare-and-set race fences the producer: it emits nothing more, and the
  error ends the group (two triggerers briefly running one watcher cannot both advance it).

* a run whose stream ended (``run()`` raised or returned, or the group was stopped) may still
  have a confirmed batch to save: Airflow drains those ``advance()`` calls before it closes the
  producer. A new run of the same watermark in the process waits until the ended one is closed
  before it loads, so that late save can never land after the new run loaded (which would make
  the new run's next save lose its compare-and-set, or load a state about to be replaced).

Saves therefore lag the events by one confirmation round (about a second); a crash in that lag
repeats events, never skips them. An unconfirmed event holds only the delta of its snapshot
(what changed since the previous event), so up to a queue's worth of them costs O(change) each,
and the save's text is rendered in a worker thread (:func:`stateful._saver.save`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable, Sequence
from typing import Any

from stateful._flow import Backpressure, subscriber_queue_size
from stateful._saver import save
from stateful._spec import StatefulSpec
from stateful._stuck import RunWatch
from stateful._trigger_driver import emit, fence_of, open_session
from stateful.errors import EventNotStoredError

__all__ = ["ack_mode_available", "install_ack_mode"]

_LOG = logging.getLogger("stateful")

_MEMBERS = ("shared_stream_key", "create_shared_stream_producer", "filter_shared_stream")

# The trigger instance that asked for each key. The producer factory only receives the
# serialized kwargs; the instance carries what the triggerer injected (asset_state_store).
_LIVE: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()

# Per event loop and watermark (namespace, name): the runs whose stream ended and whose last
# saves Airflow may still be draining, each with the event set once it is closed.
_ENDING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Event]] = (
    weakref.WeakKeyDictionary()
)


#: The longest a new run waits for an ended run of its watermark to be closed (a guard against
#: a driver that never closes its producer; Airflow's triggerer always does).
ENDED_RUN_WAIT_SECONDS = 60.0


async def _after_ended_runs(watermark: tuple[str, str], what: str) -> None:
    """Wait until an ended run of ``watermark`` in this process has made its last save."""
    ending = _ENDING.get(asyncio.get_running_loop(), {}).get(watermark)
    if ending is None:
        return
    try:
        await asyncio.wait_for(ending.wait(), ENDED_RUN_WAIT_SECONDS)
    except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
        _LOG.warning(
            "stateful: %s loads its watermark although a run of it that ended was not closed "
            "within %.0f s; should that run still save, this run's next save loses its "
            "compare-and-set and the trigger restarts from the saved state",
            what,
            ENDED_RUN_WAIT_SECONDS,
        )


def _ending(watermark: tuple[str, str]) -> asyncio.Event:
    """Record that a run of ``watermark`` ended; set the event returned once it is closed."""
    closed = asyncio.Event()
    _ENDING.setdefault(asyncio.get_running_loop(), {})[watermark] = closed
    return closed


def _closed(watermark: tuple[str, str], closed: asyncio.Event) -> None:
    closed.set()
    runs = _ENDING.get(asyncio.get_running_loop(), {})
    if runs.get(watermark) is closed:
        del runs[watermark]


def ack_mode_available() -> bool:
    """Whether this Airflow has shared streams with ack mode (Airflow >= 3.3)."""
    try:
        from airflow.triggers.shared_stream import SharedStreamProducer  # noqa: F401
    except ImportError:
        return False
    return True


def install_ack_mode(
    owner: type,
    attribute: str,
    wrapper: Callable[..., Any],
    fn: Callable[..., Any],
    spec: StatefulSpec,
    qualname: str,
) -> bool:
    """Give a ``BaseEventTrigger`` subclass the shared-stream members that turn on ack mode.

    Returns whether it did: not for other classes, not before Airflow 3.3, not when ``ack`` is
    off or the commit mode is not ``after_event``, and never over members the class (or a base
    between it and ``BaseEventTrigger``) defines itself.
    """
    if not (spec.ack and spec.commit == "after_event"):
        return False
    # A BaseEventTrigger subclass was defined after its module was imported: when it is not
    # imported, the class is none, and Airflow (slow to import) stays unimported.
    triggers = sys.modules.get("airflow.triggers.base")
    event_trigger = getattr(triggers, "BaseEventTrigger", None)
    if event_trigger is None or not (isinstance(owner, type) and issubclass(owner, event_trigger)):
        return False
    if not ack_mode_available():
        return False
    for klass in owner.__mro__:
        if klass is event_trigger:
            break
        if any(member in vars(klass) for member in _MEMBERS):
            _LOG.info("stateful: %s defines its own shared stream; ack mode left to it", qualname)
            return False
    producer = producer_class()

    def shared_stream_key(self: Any) -> Hashable | None:
        if getattr(self, "task_instance", None) is not None:
            return None  # a deferred task's trigger: no ack channel, the standalone path
        if getattr(type(self), attribute, None) is not wrapper:
            return None  # a subclass replaced run(): the triggerer must call that run()
        key = _key(type(self), self.serialize()[1])
        _LIVE[key] = self
        return key

    def create_shared_stream_producer(cls: type, kwargs: dict[str, Any]) -> Any:
        trigger = _LIVE.get(_key(cls, kwargs))
        return producer(trigger if trigger is not None else cls(**kwargs), fn, spec, qualname)

    async def filter_shared_stream(self: Any, shared_stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for event in shared_stream:
            yield event

    members: tuple[object, ...] = (
        shared_stream_key,
        classmethod(create_shared_stream_producer),
        filter_shared_stream,
    )
    for member, value in zip(_MEMBERS, members, strict=True):
        setattr(owner, member, value)
    return True


def _key(cls: type, kwargs: dict[str, Any]) -> Hashable:
    # Deterministic across calls, as Airflow requires; default=str covers datetimes and paths.
    return (
        "airflow-stateful",
        f"{cls.__module__}.{cls.__qualname__}",
        json.dumps(kwargs, sort_keys=True, default=str),
    )


@functools.cache  # one producer class, however many trigger classes use ack mode
def producer_class() -> type:
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

    class StatefulProducer(SharedStreamProducer):
        """Runs the decorated ``run()``; saves each snapshot once Airflow stored its events."""

        def __init__(self, trigger: Any, fn: Callable[..., Any], spec: StatefulSpec, qualname: str) -> None:
            self.trigger, self.fn, self.spec, self.qualname = trigger, fn, spec, qualname
            self.store: Any = None
            self.session: Any = None
            self.flow: Backpressure | None = None
            self.watermark = (spec.namespace, "")
            self.closed: asyncio.Event | None = None  # set once closed, after the stream ended

        async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
            self.watermark = (self.spec.namespace, self.spec.resolve_name(self.trigger))
            # Never load before an ended run of this watermark made its last save.
            await _after_ended_runs(self.watermark, self.qualname)
            stream = self._stream()
            try:
                async for item in stream:
                    yield item
            finally:
                # Airflow may still hand this producer confirmed batches to save (advance()),
                # until it closes it (aclose()): a new run of this watermark waits until then.
                self.closed = _ending(self.watermark)
                await stream.aclose()

        async def aclose(self) -> None:
            if self.closed is not None:
                _closed(self.watermark, self.closed)

        async def _stream(self) -> AsyncGenerator[tuple[Any, Any], None]:
            self.store, self.session = await open_session(self.spec, self.trigger, self.qualname)
            session = self.session
            # Never more unconfirmed events than a subscriber queue holds: Airflow fails a
            # trigger whose queue overflows. The gate also stops the producer once fenced.
            self.flow = Backpressure(
                subscriber_queue_size(), lambda: session.pending, f"{self.qualname} ({session.scope})"
            )
            _LOG.info(
                "stateful: %s saves %s once Airflow confirms its events were stored",
                self.qualname,
                session.scope,
            )
            watch = RunWatch.start(session, self.spec.max_lag, self.qualname)  # metrics, max_lag
            inner = self.fn(self.trigger, session.watermark)
            fence = fence_of(self.spec, self.store, session, self.qualname)
            events = emit(inner, session, self.spec, self.flow, fence)
            try:
                async for item in events:
                    yield item
            finally:
                watch.stop()
                await events.aclose()
                await inner.aclose()
            # run() returned: Airflow treats the end of a shared stream as an error, which ends
            # the trigger; events still awaiting confirmation are emitted again after it restarts.
            _LOG.warning("stateful: %s returned; its shared stream ends", self.qualname)

        async def advance(self, batch: Sequence[AdvanceItem]) -> None:
            session = self.session
            for item in batch:
                if not item.outcome.is_clean:
                    session.abandon()
                    error = EventNotStoredError(
                        f"Airflow did not confirm that event {item.broker_payload} of {session.scope} "
                        f"({self.qualname}) was stored ({item.outcome}); the watermark stays at the last "
                        f"confirmed event and the trigger emits the rest again when it restarts."
                    )
                    self._release(error)
                    raise error
            try:
                await save(self.store, session, session.confirm(batch[-1].broker_payload))
            except BaseException as exc:
                self._release(exc)  # lost a race or the store failed: emit nothing more
                _LOG.error(
                    "stateful: %s stops: saving %s in %s failed: %s",
                    self.qualname,
                    session.scope,
                    session.scope.store,
                    exc,
                )
                raise
            self._release(None)

        def _release(self, failure: BaseException | None) -> None:
            if self.flow is not None:
                self.flow.released(failure)

    return StatefulProducer
