"""``@shared_source``: one poll of a source serves many watchers, each with its own watermark.

Twenty-five ``AssetWatcher`` s on one bucket, one per prefix, are twenty-five triggers; run as
plain ``@stateful`` triggers they list the bucket twenty-five times per cycle. A class decorated
with :func:`shared_source` declares two methods instead of ``run()``:

* ``async def poll(self) -> AsyncIterator[Listing]``: the shared part. It yields one listing
  of the source per cycle, forever. On Airflow >= 3.3 it runs **once per source per
  triggerer** (the source is ``source=``, a template over the trigger's attributes), through
  Airflow's shared-stream machinery (``airflow/triggers/shared_stream.py``).
* ``def select(self, watermark: Watermark, listing: Listing) -> Iterator[TriggerEvent]``: the
  per-watcher part, a plain generator. For each listing, each subscribed trigger picks the
  events that are its own (its prefix, its tenant...) and advances **its own** watermark (the
  address ``namespace`` + ``name``, as for ``@stateful``) before yielding each.

Each watermark is saved in ack mode: only once Airflow confirmed that the events it covers were
stored, per watcher. One watcher's events never wait for another's confirmations (each has its
own advance lane), and a watcher whose events are not confirmed (its trigger failed, the ack
timeout passed) is rewound to its last saved watermark, alone: the others go on. A subscriber
that Airflow force-fails while other watchers' events sat in its queue makes those events count
as not confirmed too; their watchers are rewound and emit them again (repeats, never losses),
no later than Airflow's ack timeout (``[triggerer] shared_stream_ack_timeout``).

Before Airflow 3.3 (and for a trigger serving a deferred task) the class runs as an ordinary
``@stateful`` trigger: its ``run()`` polls on its own and selects its events, one poller per
watcher, with the same watermark address, so moving between the two loses nothing.

Example:
    >>> import asyncio
    >>> from collections.abc import AsyncIterator, Iterator
    >>> from airflow.triggers.base import BaseEventTrigger, TriggerEvent
    >>> from stateful import Watermark, shared_source
    >>> from stateful.backends import MemoryBackend
    >>> from stateful.testing import run_trigger
    >>> @shared_source(namespace="demo", name="{source}/{prefix}", source="{source}", backend=MemoryBackend())
    ... class Prefix(BaseEventTrigger):
    ...     def __init__(self, source: str, prefix: str) -> None:
    ...         super().__init__()
    ...         self.source, self.prefix = source, prefix
    ...     def serialize(self):
    ...         return ("Prefix", {"source": self.source, "prefix": self.prefix})
    ...     async def poll(self) -> AsyncIterator[list[str]]:
    ...         yield ["a/1", "b/1", "a/2"]
    ...     def select(self, watermark: Watermark, listing: list[str]) -> Iterator[TriggerEvent]:
    ...         for name in listing:
    ...             if name.startswith(self.prefix) and watermark.is_new(name):
    ...                 watermark.advance(key=name)
    ...                 yield TriggerEvent(name)
    >>> run = asyncio.run(run_trigger(Prefix("demo", "a/"), ack=False))  # the one-poller path
    >>> [event.payload for event in run.events], sorted(run.watermark.seen)
    (['a/1', 'a/2'], ['a/1', 'a/2'])
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import itertools
import logging
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from stateful._ack import ack_mode_available
from stateful._core import WatermarkSession
from stateful._flow import subscriber_queue_size
from stateful._saver import save
from stateful._spec import NameTemplate, StatefulSpec, check_namespace, resolve_name
from stateful._trigger_driver import async_driver, keyed, open_session
from stateful.backends.base import AsyncStateBackend
from stateful.decorators import _resolve_annotation
from stateful.errors import EventNotStoredError, StatefulUsageError

__all__ = ["shared_source"]

_LOG = logging.getLogger("stateful")

T = TypeVar("T", bound=type)


def shared_source(
    *,
    namespace: str,
    name: NameTemplate,
    source: NameTemplate,
    backend: AsyncStateBackend | None = None,
    lookback: timedelta = timedelta(0),
    max_untimed_keys: int | None = None,
    idempotency_key: bool = True,
) -> Callable[[T], T]:
    """Make a ``BaseEventTrigger`` class share one ``poll()`` per source among its watchers.

    The class defines ``async def poll(self)`` (yields one listing per cycle, forever) and
    ``def select(self, watermark: Watermark, listing)`` (a generator of the trigger's own
    events; the watermark annotation is the model, as for ``@stateful``), and no ``run()``: the
    decorator writes it (the one-poller-per-watcher path, used before Airflow 3.3 and for a
    deferred task). See https://airflow-stateful.github.io/airflow-stateful/shared-sources/.

    Args:
        namespace: groups related watermarks, as for ``@stateful``.
        name: each watcher's own watermark name: a template over the trigger's attributes
            (``"{bucket}/{prefix}"``) or a callable taking the trigger.
        source: what the watchers share, the same kind of template (``"{bucket}"``). Triggers of
            the class whose source is equal share one ``poll()``; it runs on one of them, so
            ``poll()`` must depend only on the attributes the source names.
        backend: the store; ``None`` chooses as ``@stateful`` does.
        lookback: the watermark's boundary window (see :meth:`Watermark.is_new`).
        max_untimed_keys: cap on keys recorded without a timestamp.
        idempotency_key: add ``"stateful_idempotency_key"`` to each dict payload.

    Returns:
        A class decorator.

    Raises:
        StatefulUsageError: at decoration time, when the class is not a ``BaseEventTrigger``,
            defines ``run()``, or lacks ``poll``/``select`` of the right shapes.

    Example:
        >>> from stateful import shared_source
        >>> shared_source(namespace="s3", name="{bucket}/{prefix}", source="{bucket}")  # doctest: +ELLIPSIS
        <function shared_source.<locals>.decorate at ...>
    """
    where = f"@shared_source(namespace={namespace!r})"
    check_namespace(namespace, where)
    for label, template in (("name", name), ("source", source)):
        if not (isinstance(template, str) or callable(template)):
            raise StatefulUsageError(
                f"{label} of {where} must be a format string or a callable, not {template!r}."
            )

    def decorate(cls: T) -> T:
        qualname = f"{cls.__module__}.{cls.__qualname__}"
        model = _check_class(cls, qualname)
        spec = StatefulSpec(
            namespace,
            name,
            model,
            backend,
            lookback,
            "after_event",
            max_untimed_keys,
            "trigger",
            True,
            idempotency_key,
        )
        shared = _Shared(spec, source, qualname)
        run = async_driver(_standalone, spec, f"{qualname}.run")
        run.__qualname__ = f"{cls.__qualname__}.run"
        run.__doc__ = "Poll on its own and select this trigger's events (the one-poller path)."
        run.__wrapped__ = _standalone  # type: ignore[attr-defined]  # as @stateful leaves it, for
        run.__stateful__ = spec  # type: ignore[attr-defined]  # stateful.testing.run_trigger
        cls.run = run  # type: ignore[attr-defined]
        cls.__shared_source__ = shared  # type: ignore[attr-defined]
        abc.update_abstractmethods(cls)  # run() was abstract
        if ack_mode_available():
            _install(cls, shared)
        else:
            _LOG.debug("stateful: %s polls once per watcher: shared streams need Airflow >= 3.3", qualname)
        return cls

    return decorate


def _check_class(cls: type, qualname: str) -> type[Any]:
    triggers = sys.modules.get("airflow.triggers.base")
    event_trigger = getattr(triggers, "BaseEventTrigger", None)
    if event_trigger is None or not (isinstance(cls, type) and issubclass(cls, event_trigger)):
        raise StatefulUsageError(
            f"@shared_source decorates a subclass of airflow.triggers.base.BaseEventTrigger; "
            f"{qualname} is not one."
        )
    if "run" in vars(cls):
        raise StatefulUsageError(
            f"@shared_source on {qualname}: the class defines run(), which the decorator writes. "
            f"Split it into `async def poll(self)` (one listing per cycle) and "
            f"`def select(self, watermark, listing)`."
        )
    poll, select = getattr(cls, "poll", None), getattr(cls, "select", None)
    if not inspect.isasyncgenfunction(poll):
        raise StatefulUsageError(
            f"@shared_source on {qualname} needs `async def poll(self) -> AsyncIterator[Listing]`, an async "
            f"generator yielding one listing of the source per cycle."
        )
    if not inspect.isgeneratorfunction(select):
        raise StatefulUsageError(
            f"@shared_source on {qualname} needs `def select(self, watermark: Watermark, listing) -> "
            f"Iterator[TriggerEvent]`, a plain generator (it runs on the triggerer's loop: no I/O)."
        )
    params = list(inspect.signature(select).parameters.values())
    if len(params) != 3:
        raise StatefulUsageError(
            f"select() of {qualname} takes (self, watermark, listing), "
            f"not ({', '.join(p.name for p in params)})."
        )
    return _resolve_annotation(select, params[1], f"{qualname}.select")


async def _standalone(self: Any, watermark: Any) -> AsyncIterator[Any]:
    """The body of the written ``run()``: this trigger's own poll, then its own selection."""
    async for listing in self.poll():
        for event in self.select(watermark, listing):
            yield event


@dataclass(frozen=True)
class _Shared:
    """What the decorator was given, kept on the class as ``__shared_source__``."""

    spec: StatefulSpec
    source: NameTemplate
    qualname: str

    def key(self, trigger: Any) -> Hashable:
        cls = type(trigger)
        resolved = resolve_name(self.source, trigger, f"@shared_source on {self.qualname} (source)")
        return ("airflow-stateful-shared", f"{cls.__module__}.{cls.__qualname__}", resolved)


@dataclass(eq=False)
class _Batch:
    """One raw event of the shared stream: one member's events from one listing, or its error."""

    member: _Member
    generation: int
    seq: int
    events: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    taken: bool = False  # the member's filter yielded every event (Airflow bound them all)


class _Member:
    """One subscribed trigger: its watermark session, saved only as its own events are confirmed."""

    _ids = itertools.count()

    def __init__(self, trigger: Any, shared: _Shared) -> None:
        self.id = next(self._ids)
        self.trigger = trigger
        self.shared = shared
        self.store: AsyncStateBackend | None = None
        self.session: WatermarkSession[Any] | None = None
        self.generation = 0
        self.left = False
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        scope = self.session.scope if self.session is not None else "(not loaded)"
        return f"<{self.shared.qualname} watcher {self.id} {scope}>"

    def rewind(self, why: str) -> None:
        """Drop what is not saved: the next listing reloads the last saved watermark."""
        if self.session is not None:
            self.session.abandon()
            _LOG.warning("stateful: %s goes back to its last saved watermark: %s", self, why)
        self.session = None
        self.generation += 1


class _Source:
    """The members of one shared source in this process (one triggerer)."""

    def __init__(self) -> None:
        self.members: dict[int, _Member] = {}


# Per key: the source's members, and the trigger that asked for the key (the poll runs on it).
# One triggerer per process runs one group per key, so the key needs no more than the source.
_SOURCES: dict[Hashable, _Source] = {}
_ASKED: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()


def _install(cls: type, shared: _Shared) -> None:
    """Give ``cls`` the three members that route its triggers through one shared stream."""

    def shared_stream_key(self: Any) -> Hashable | None:
        if getattr(self, "task_instance", None) is not None:
            return None  # a deferred task's trigger: no ack channel, the one-poller path
        key = shared.key(self)
        _ASKED[key] = self
        return key

    def create_shared_stream_producer(owner: type, kwargs: dict[str, Any]) -> Any:
        probe = owner(**kwargs)
        key = shared.key(probe)
        trigger = _ASKED.get(key)
        return _producer_class()(trigger if trigger is not None else probe, shared, key)

    async def filter_shared_stream(self: Any, shared_stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        # Joining here, on the first pull, is after Airflow registered this subscriber's queue:
        # every batch made for the member is broadcast to it.
        key = shared.key(self)
        source = _SOURCES.setdefault(key, _Source())
        member = _Member(self, shared)
        source.members[member.id] = member
        try:
            async for batch in shared_stream:
                if batch.member is not member:
                    continue  # another watcher's events: resolved as soon as we loop back
                if batch.error is not None:
                    raise batch.error
                for event in batch.events:
                    yield event
                batch.taken = True
        finally:
            member.left = True
            source.members.pop(member.id, None)
            if not source.members and _SOURCES.get(key) is source:
                del _SOURCES[key]  # the last watcher of the source left

    setattr(cls, "shared_stream_key", shared_stream_key)  # noqa: B010
    setattr(cls, "create_shared_stream_producer", classmethod(create_shared_stream_producer))  # noqa: B010
    setattr(cls, "filter_shared_stream", filter_shared_stream)  # noqa: B010


_PRODUCER: list[type] = []


def _producer_class() -> type:
    if _PRODUCER:
        return _PRODUCER[0]
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

    class SharedSourceProducer(SharedStreamProducer):
        """Polls once per cycle; selects and emits each member's events; saves per member."""

        def __init__(self, trigger: Any, shared: _Shared, key: Hashable) -> None:
            self.trigger, self.shared, self.key = trigger, shared, key
            self.outstanding = 0  # batches broadcast and not advanced: what each queue may hold
            self.room = asyncio.Event()
            self.limit = subscriber_queue_size()

        async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
            spec = self.shared.spec
            async for listing in self.trigger.poll():
                source = _SOURCES.get(self.key)
                for member in list(source.members.values()) if source is not None else ():
                    batch = await self._select(member, listing, spec)
                    if batch is None:
                        continue
                    # Every batch goes into every subscriber's queue: never more outstanding
                    # than a queue holds (Airflow fails a subscriber whose queue overflows).
                    while 0 < self.limit <= self.outstanding and not member.left:
                        self.room.clear()
                        await self.room.wait()
                    if member.left:
                        continue
                    self.outstanding += 1
                    yield batch, batch

        async def _select(self, member: _Member, listing: Any, spec: StatefulSpec) -> _Batch | None:
            if member.error is not None:
                error, member.error = member.error, None
                return _Batch(member, member.generation, 0, error=error)
            try:
                if member.session is None:
                    member.store, member.session = await open_session(
                        spec, member.trigger, self.shared.qualname
                    )
                session = member.session
                events, seq = [], 0
                for event in member.trigger.select(session.watermark, listing):
                    seq = session.emitted()
                    events.append(keyed(event, session, spec))
            except Exception as exc:
                member.rewind(f"select() or its load failed: {exc!r}")
                return _Batch(member, member.generation, 0, error=exc)
            return _Batch(member, member.generation, seq, events) if events else None

        def get_advance_lane(self, broker_payload: Any) -> Hashable:
            lane: Hashable = broker_payload.member.id  # a watcher's saves never wait for another's
            return lane

        async def advance(self, batch: Sequence[AdvanceItem]) -> None:
            self.outstanding -= len(batch)
            self.room.set()
            for item in batch:
                await self._advance(item.broker_payload, item.outcome)

        async def _advance(self, batch: _Batch, outcome: Any) -> None:
            member = batch.member
            if member.left or batch.generation != member.generation or member.session is None:
                return  # made before a rewind, or for a watcher that left: saved by nobody
            if not batch.events:
                return
            if not (outcome.failed == 0 and outcome.rejected == 0 and batch.taken):
                member.rewind(
                    f"Airflow did not confirm that its events were stored ({outcome}, taken={batch.taken}); "
                    f"they are emitted again from there"
                )
                return
            session, store = member.session, member.store
            assert store is not None
            try:
                await save(store, session, session.confirm(batch.seq))
            except Exception as exc:
                # Lost a race (another triggerer saved it) or the store failed: this watcher
                # stops (its trigger fails at the next listing and Airflow restarts it); the
                # others go on.
                _LOG.error("stateful: %s stops: saving in %s failed: %s", member, session.scope.store, exc)
                member.rewind(f"its save failed: {exc!r}")
                member.error = EventNotStoredError(
                    f"saving the watermark of {member} failed ({exc}); the trigger restarts from its last "
                    f"saved watermark."
                )
                member.error.__cause__ = exc

    _PRODUCER.append(SharedSourceProducer)
    return SharedSourceProducer
