"""The decisions for a keyed run: one :class:`~stateful._core.WatermarkSession` per partition.

:class:`KeyedSession` stands where a driver holds a :class:`WatermarkSession` (it is one, to the
drivers): it hands user code a :class:`~stateful.Keyed` instead of a watermark, and turns each
event into the events of the partitions it touched. What it costs:

* **load**: the stored partitions' records are read in one listing of the name
  (:meth:`~stateful.backends.base.SupportsWriteMany.list_name`) and kept as text; a partition
  is parsed and validated by its first lookup (O(that partition));
* **per event**: O(partitions looked up since the previous event) — each gets its own
  snapshot (:meth:`WatermarkSession.emitted`), and the event's journal entry names them;
* **per save**: O(partitions changed): :meth:`confirm` confirms, in each partition touched by
  the confirmed events, the newest of its own snapshots, and the partitions whose state moved
  become one :class:`KeyedSave`, written with one call of the store's ``write_many`` (one
  transaction in the SQL store: every partition, or none).

Example:
    >>> from stateful import Watermark
    >>> from stateful.backends import MemoryBackend
    >>> from stateful.backends.base import Address
    >>> from stateful._core import Scope
    >>> store = MemoryBackend()
    >>> session = KeyedSession(Watermark, Scope(Address("files", "landing", "watermark"), "MemoryBackend"),
    ...                        commit="after_event")
    >>> keyed = session.load_partitions([])
    >>> keyed["eu"].advance(key="a.csv")
    >>> save = session.after_resume(session.emitted())
    >>> [part.scope.key for part in save.parts]
    ['watermark[eu]']
    >>> save.write(store)
    1
    >>> store.read("files", "landing", "watermark[eu]").version
    1
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stateful._address import partition_key, partition_of
from stateful._core import Save, Scope, WatermarkSession
from stateful._keyed import Keyed
from stateful._layout import Layout
from stateful._repair import History
from stateful._spec import CommitMode, StatefulSpec
from stateful.backends.base import (
    Address,
    AsyncStateBackend,
    StateBackend,
    StateRecord,
    SupportsWriteMany,
    Write,
)
from stateful.errors import StoreConfigError
from stateful.types import Watermark

__all__ = [
    "INLINE_RENDER_PARTITIONS",
    "KeyedSave",
    "KeyedSession",
    "astored_partitions",
    "log_loaded_keyed",
    "session_for",
    "stored_partitions",
]

_LOG = logging.getLogger("stateful")

#: Up to this many partitions a save's texts are rendered on the loop; more in a worker thread.
INLINE_RENDER_PARTITIONS = 16


@dataclass(frozen=True)
class KeyedSave(Save):
    """A save of the partitions that changed: one :class:`Save` per partition, written together.

    Attributes:
        parts: each changed partition's save, in partition order.
        session: the session that decided it (renders the texts, records the versions).
    """

    parts: tuple[Save, ...] = ()
    session: KeyedSession | None = field(default=None, compare=False, repr=False)

    def writes(self) -> list[Write]:
        """The compare-and-set writes: one text per changed partition (O(those partitions))."""
        return self._session().writes(self)

    def write(self, store: StateBackend) -> int:
        """Write every partition with one ``write_many`` (or one write each); return how many."""
        writes = self.writes()
        if isinstance(store, SupportsWriteMany):
            versions = store.write_many(writes)
        else:
            versions = [store.write(*w.address, w.value, expected_version=w.expected_version) for w in writes]
        self._session().saved_parts(self, versions)
        return len(versions)

    async def awrite(self, store: AsyncStateBackend) -> int:
        """Async :meth:`write`: the texts are rendered off the loop when there are many.

        Each partition's session counts the save as its own under way while it runs, so a fence
        reading that partition's version meanwhile lets the save decide (:mod:`stateful._fence`).
        """
        with contextlib.ExitStack() as in_flight:
            for session in self._session().sessions_of(self):
                in_flight.enter_context(session.saving())
            if len(self.parts) <= INLINE_RENDER_PARTITIONS:
                writes = self.writes()
            else:
                writes = await asyncio.to_thread(self.writes)
            write_many = getattr(store, "awrite_many", None)
            if write_many is not None:
                versions = await write_many(writes)
            else:  # one compare-and-set after the other (a store without transactions)
                versions = [
                    await store.awrite(*w.address, w.value, expected_version=w.expected_version)
                    for w in writes
                ]
            self._session().saved_parts(self, versions)
        return len(versions)

    def _session(self) -> KeyedSession:
        if self.session is None:
            raise RuntimeError("a KeyedSave made without its session cannot be written")
        return self.session


class KeyedSession(WatermarkSession[Any]):
    """A :class:`WatermarkSession` whose watermark is a :class:`~stateful.Keyed` of partitions.

    Args:
        model: the model of every partition's watermark.
        scope: the keyed watermark's address (its key is the plain watermark's; each partition
            lives under ``watermark[partition]``).
        commit: the decorator's commit mode.
        lookback: every partition's lookback.
        max_untimed_keys: every partition's cap on keys without a timestamp.
    """

    def __init__(
        self,
        model: type[Watermark[Any]],
        scope: Scope,
        *,
        commit: CommitMode,
        lookback: timedelta = timedelta(0),
        max_untimed_keys: int | None = None,
    ) -> None:
        super().__init__(model, scope, commit=commit, lookback=lookback, max_untimed_keys=max_untimed_keys)
        self._records: dict[str, StateRecord] = {}
        self._sessions: dict[str, WatermarkSession[Any]] = {}
        self._touched: dict[str, None] = {}  # looked up since the previous event, in order
        # Partitions the next event moved, snapshotted before it was emitted (by moving()): their
        # own event numbers.
        self._moving: dict[str, int] = {}
        # Per event: (its number, ((partition, the partition's own event number), ...)).
        self._journal: deque[tuple[int, tuple[tuple[str, int], ...]]] = deque()
        self._history: Callable[[Address], History | None] = lambda address: None
        self._keyed: Keyed[Any] | None = None

    # -- loading -----------------------------------------------------------------------------------

    def load_partitions(
        self,
        records: Iterable[StateRecord],
        history: Callable[[Address], History | None] | None = None,
    ) -> Keyed[Any]:
        """Keep the stored partitions' records (not validated yet); return the :class:`Keyed`.

        Args:
            records: the documents stored under the keyed watermark's name; those whose key is
                not a partition's are ignored.
            history: the kept versions of a partition, for the error of one that does not load.
        """
        for record in records:
            partition = partition_of(record.key)
            if partition is not None:
                self._records[partition] = record
        if history is not None:
            self._history = history
        self._keyed = Keyed(self)
        return self._keyed

    @property
    def watermark(self) -> Keyed[Any]:
        """The :class:`~stateful.Keyed` handed to user code (after :meth:`load_partitions`)."""
        if self._keyed is None:
            raise RuntimeError("KeyedSession.load_partitions() has not been called")
        return self._keyed

    @property
    def stored(self) -> int:
        """How many partitions were stored when the run started."""
        return len(self._records)

    def partition(self, partition: str) -> Watermark[Any]:
        """The watermark of ``partition``: validated at its first lookup, fresh if none is stored."""
        session = self._sessions.get(partition)
        if session is None:
            address = Address(self.scope.namespace, self.scope.name, partition_key(partition))
            session = WatermarkSession(
                self.model,
                Scope(address, self.scope.store),
                commit=self.commit,
                lookback=self._lookback,
                max_untimed_keys=self._max_untimed_keys,
            )
            session.load(self._records.pop(partition, None), self._history(address))
            self._sessions[partition] = session
        self._touched[partition] = None
        watermark: Watermark[Any] = session.watermark
        return watermark

    def partitions(self) -> list[str]:
        """The partitions stored or looked up so far, sorted."""
        return sorted(self._records.keys() | self._sessions.keys())

    def has_partition(self, partition: str) -> bool:
        """Whether ``partition`` is stored or was looked up."""
        return partition in self._sessions or partition in self._records

    # -- events and saves --------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """How many emitted events are not yet confirmed."""
        return len(self._journal)

    @property
    def timestamp(self) -> datetime | None:
        """The oldest timestamp of the loaded partitions: the keyed watermark lags as its laggiest."""
        stamps = [s.timestamp for s in self._sessions.values()]
        return min((t for t in stamps if t is not None), default=None)

    @property
    def skipped_late(self) -> int:
        """Items skipped as late so far, over the loaded partitions."""
        return sum(s.skipped_late for s in self._sessions.values())

    @property
    def size(self) -> int:
        """How many partitions are loaded."""
        return len(self._sessions)

    @property
    def digest(self) -> str:
        """The loaded partitions' digests, combined (O(partitions); for the max_lag checks only).

        It changes when a partition's state does, and when a partition is loaded for the first time.
        """
        combined = hashlib.sha256()
        for partition, session in self._sessions.items():
            combined.update(f"{partition}\x00{session.digest}\x00".encode())
        return combined.hexdigest()

    def emitted(self) -> int:
        """Take a snapshot of each partition looked up since the previous event (O(those)).

        The event's idempotency key covers the partitions whose state the event moved, in
        partition order: the same transitions after a restart give the same key, whichever other
        partitions the code looked up on the way.
        """
        self._seq += 1
        self._snapshot()
        moved = sorted(self._moving.items())
        self._moving.clear()
        digest = hashlib.sha256(self._key_seed)
        for partition, _ in moved:
            digest.update(f"{partition}\x00{self._sessions[partition].event_key}\x00".encode())
        self.event_key = digest.hexdigest()[:32]
        if self.commit != "never":  # every event, so that pending counts them all (ack mode's backpressure)
            self._journal.append((self._seq, tuple(moved)))
        return self._seq

    def moving(self) -> list[WatermarkSession[Any]]:
        """The sessions of the partitions the next event moves: O(partitions looked up since the last event).

        Called before the event is handed over (the fence reads these partitions' stored
        versions, :mod:`stateful._fence`): the partitions looked up since the previous event are
        snapshotted now, and :meth:`emitted` keeps these snapshots for the event. A partition only
        looked up, whose state the event did not move, is not among them.

        Example:
            >>> from stateful import Watermark
            >>> from stateful.backends.base import Address
            >>> scope = Scope(Address("files", "landing", "watermark"), "MemoryBackend")
            >>> session = KeyedSession(Watermark, scope, commit="after_event")
            >>> keyed = session.load_partitions([])
            >>> keyed["eu"].advance(key="a.csv")
            >>> [part.scope.key for part in session.moving()]
            ['watermark[eu]']
            >>> session.emitted(), session.pending
            (1, 1)
            >>> _ = keyed["eu"]  # looked up again, not moved
            >>> session.moving()
            []
        """
        self._snapshot()
        return [self._sessions[partition] for partition in self._moving]

    def _snapshot(self) -> None:
        """Snapshot each partition looked up since the previous snapshot; note those that moved."""
        for partition in self._touched:
            session = self._sessions[partition]
            before = session._previous
            local = session.emitted()
            if session._previous != before:
                self._moving[partition] = local
        self._touched.clear()

    def confirm(self, seq: int) -> Save | None:
        """Confirm every event up to ``seq``; a :class:`KeyedSave` of the partitions that moved."""
        newest: dict[str, int] = {}
        while self._journal and self._journal[0][0] <= seq:
            for partition, local in self._journal.popleft()[1]:
                newest[partition] = local
        return self._decide_parts(seq, ((p, self._sessions[p].confirm(local)) for p, local in newest.items()))

    def finish(self) -> Save | None:
        """A normal return: save every loaded partition as user code left it, if it changed."""
        self._journal.clear()
        self._touched.clear()
        self._moving.clear()
        return self._decide_parts(self._seq, ((p, s.finish()) for p, s in self._sessions.items()))

    def abandon(self) -> None:
        """An error, a cancellation or a close: save nothing."""
        self._journal.clear()
        self._touched.clear()
        self._moving.clear()
        for session in self._sessions.values():
            session.abandon()

    def render(self, save: Save) -> str:
        """Not used for a keyed save (its partitions are written by :meth:`KeyedSave.write`)."""
        if isinstance(save, KeyedSave):
            return ""
        return super().render(save)

    def layout(self, save: Save) -> Layout:
        """Not available: a keyed save is written partition by partition."""
        raise RuntimeError("a keyed save has no single layout; write it with KeyedSave.write()")

    def saved(self, save: Save, version: int) -> None:
        """Nothing to do: :meth:`KeyedSave.write` records each partition's version."""

    def sessions_of(self, save: KeyedSave) -> list[WatermarkSession[Any]]:
        """The sessions of ``save``'s partitions, in its order."""
        return [self._sessions[_partition(part)] for part in save.parts]

    def writes(self, save: KeyedSave) -> list[Write]:
        """The texts of ``save``'s partitions, as compare-and-set writes."""
        writes = []
        for part in save.parts:
            session = self._sessions[_partition(part)]
            writes.append(Write(part.scope.address, session.render(part), part.expected_version))
        return writes

    def saved_parts(self, save: KeyedSave, versions: Sequence[int]) -> None:
        """Record that the store acknowledged ``save``'s partitions as ``versions``."""
        for part, version in zip(save.parts, versions, strict=True):
            self._sessions[_partition(part)].saved(part, version)
        _LOG.debug(
            "stateful: saved %d partition%s of %s in %s (event %d)",
            len(save.parts),
            "" if len(save.parts) == 1 else "s",
            self.scope,
            self.scope.store,
            save.seq,
        )

    def _decide_parts(self, seq: int, decided: Iterable[tuple[str, Save | None]]) -> KeyedSave | None:
        parts = tuple(save for _, save in sorted(decided, key=lambda item: item[0]) if save is not None)
        if not parts:
            return None
        return KeyedSave(
            scope=self.scope, digest="", expected_version=None, seq=seq, parts=parts, session=self
        )


def _partition(save: Save) -> str:
    partition = partition_of(save.scope.key)
    if partition is None:
        raise RuntimeError(f"{save.scope} is not a partition")
    return partition


def stored_partitions(store: StateBackend, scope: Scope) -> Sequence[StateRecord]:
    """The documents stored under ``scope``'s name (its partitions among them), in one listing.

    Raises:
        StoreConfigError: the store cannot list a name's documents (it has no ``list_name``).
    """
    if not isinstance(store, SupportsWriteMany) or not getattr(store, "lists_names", True):
        raise _no_listing(scope)
    return store.list_name(scope.namespace, scope.name)


async def astored_partitions(store: AsyncStateBackend, scope: Scope) -> Sequence[StateRecord]:
    """Async :func:`stored_partitions` (a store needs only ``alist_name`` for it)."""
    lister = getattr(store, "alist_name", None)
    if lister is None or not getattr(store, "lists_names", True):
        raise _no_listing(scope)
    records: Sequence[StateRecord] = await lister(scope.namespace, scope.name)
    return records


def _no_listing(scope: Scope) -> StoreConfigError:
    return StoreConfigError(
        f"keyed watermark {scope} needs a store that can list the partitions stored under one name, "
        f"and {scope.store} cannot. Give @stateful backend=SqlBackend(...) (or MemoryBackend() in tests), "
        f"or set [stateful] backend = sql."
    )


def log_loaded_keyed(session: KeyedSession, qualname: str) -> None:
    """Log, at INFO, how many partitions a keyed run found (they are validated when looked up)."""
    _LOG.info(
        "stateful: keyed %s for %s in %s: %d partition%s stored (each loaded at its first lookup)",
        session.scope,
        qualname,
        session.scope.store,
        session.stored,
        "" if session.stored == 1 else "s",
    )


def session_for(spec: StatefulSpec, scope: Scope) -> WatermarkSession[Any]:
    """The session of one run of a decorated method: keyed (one watermark per partition) or not.

    One place for what both drivers build from the decorator's spec.
    """
    kind = KeyedSession if spec.keyed else WatermarkSession
    return kind(
        spec.model,
        scope,
        commit=spec.commit,
        lookback=spec.lookback,
        max_untimed_keys=spec.max_untimed_keys,
    )
