"""Fencing before emitting: a stale instance of a trigger stops before it hands over more events.

Two instances of one trigger can run at once: Airflow re-assigns the triggers of a triggerer whose
heartbeat expired, and a triggerer that was only frozen (SIGSTOP, a long GC pause, a suspended VM)
resumes beside its successor. Airflow 3.3.2 still stores the events of the stale one. Its saves
lose their compare-and-set, but a save follows its events (after Airflow confirmed them, or a
batch later): fencing at save time alone lets a resumed instance emit one whole scan first.

So before it hands over the first event after a pause (an event :data:`FENCE_GAP` seconds or
more after the previous one: a new scan, or a resumed process) and at least every
:data:`FENCE_INTERVAL` seconds while events keep coming, a decorated trigger reads the stored
version (:class:`~stateful.backends.base.SupportsVersion`: one indexed lookup, in a worker thread
for a database; never the whole state). If the store holds a version this instance neither loaded
nor saved, it raises :class:`~stateful.errors.StateTakenOverError` and emits nothing more.

A resumed process is checked at its first event: a freeze long enough for Airflow to re-assign
the trigger (the triggerer's heartbeat older than ``[triggerer] triggerer_health_check_threshold``,
30 s by default) is far longer than the gap. A busy trigger is read once per interval, whatever
its event rate (a gap of 50 ms read one version per event of a trigger emitting every 200 ms:
1,000 such triggers sent 5,000 reads a second and kept a fifth of their events); there, its
coalesced saves, at least every ``save_interval`` (5 s by default), fence it too: a save loses its
compare-and-set once another instance saved. The per-event path stays as it was. A store without
the capability is fenced by its compare-and-set saves only.

A keyed run (:class:`~stateful._keyed_session.KeyedSession`) stores each partition under its own
key and has no single version: a check reads the versions of the partitions *the event it
precedes moves* (one read each, O(partitions of that event), never of all partitions), and
compares each with what this instance loaded or saved for that partition. A partition another
instance saved stops this one at the first checked event that moves it; a partition nobody else
wrote does not. An event that moves no partition reads nothing, and the next event that moves one
is checked in its place.

Example:
    >>> import asyncio
    >>> from stateful import Watermark
    >>> from stateful._core import Scope, WatermarkSession
    >>> from stateful.backends import MemoryBackend
    >>> from stateful.backends.base import Address
    >>> store = MemoryBackend()
    >>> scope = Scope(Address("files", "landing", "watermark"), store.description)
    >>> session = WatermarkSession(Watermark, scope, commit="after_event")
    >>> _ = session.load(None)
    >>> fence = Fence(store, session, "NewFilesTrigger.run")
    >>> async def batches() -> None:
    ...     await fence.before_handover()  # the first event: nothing stored, nothing loaded: ours
    ...     store.write("files", "landing", "watermark", "{}", expected_version=None)  # a successor
    ...     await asyncio.sleep(FENCE_GAP)  # run() waited: the next event starts a batch
    ...     await fence.before_handover()
    >>> asyncio.run(batches())
    Traceback (most recent call last):
    ...
    stateful.errors.StateTakenOverError: state files/landing (key 'watermark') in MemoryBackend moved on ...
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any

from stateful._core import WatermarkSession
from stateful._keyed_session import KeyedSession
from stateful.backends.base import AsyncStateBackend, SupportsVersion
from stateful.errors import StateTakenOverError, StoreUnavailableError

__all__ = ["FENCE_GAP", "FENCE_INTERVAL", "Fence"]

_LOG = logging.getLogger("stateful")

#: An event handed over this long (seconds) after the previous one follows a pause: it is checked.
FENCE_GAP = 1.0
#: While events keep coming, the stored version is read at least this often (seconds).
FENCE_INTERVAL = 5.0

# Whether a store's class reads versions alone: isinstance() on a runtime Protocol costs ~100 µs.
_READS_VERSION: dict[type, bool] = {}


class Fence:
    """Reads the stored version after a pause and every few seconds; raises once another writer saved.

    Args:
        store: the run's store; without :class:`~stateful.backends.base.SupportsVersion` the
            fence does nothing (the saves' compare-and-set still fences).
        session: the run's session: what this instance loaded and saved. For a
            :class:`~stateful._keyed_session.KeyedSession`, each check reads the partitions the
            event moves.
        what: names the trigger in the log line.
    """

    def __init__(self, store: AsyncStateBackend, session: WatermarkSession[Any], what: str) -> None:
        kind = type(store)
        reads = _READS_VERSION.get(kind)
        if reads is None:
            reads = _READS_VERSION[kind] = isinstance(store, SupportsVersion)
        self._reader: SupportsVersion | None = store if reads else None  # type: ignore[assignment]
        self._keyed = session if isinstance(session, KeyedSession) else None
        self._plain = (session,)
        self._what = what
        self._handed = -math.inf  # loop time of the previous handover
        self._checked = -math.inf  # loop time of the previous read
        self._due = False  # a check was due at an event that moved no partition: the next one is

    @property
    def active(self) -> bool:
        """Whether this store lets the fence read versions."""
        return self._reader is not None

    async def before_handover(self) -> None:
        """Call before handing over an event: reads the version after a pause or a long burst.

        Raises:
            StateTakenOverError: the store holds a version this instance neither loaded nor saved.
        """
        if self._reader is None:
            return
        now = asyncio.get_running_loop().time()
        previous, self._handed = self._handed, now
        if now - previous < FENCE_GAP and now - self._checked < FENCE_INTERVAL and not self._due:
            return  # no pause, and checked lately
        sessions = self._plain if self._keyed is None else self._keyed.moving()
        if not sessions:  # a keyed event that moved no partition: nothing of it to read
            self._due = True
            return
        await self._check(self._reader, sessions)
        self._checked = asyncio.get_running_loop().time()
        self._due = False

    async def _check(self, reader: SupportsVersion, sessions: Sequence[WatermarkSession[Any]]) -> None:
        """Read the stored version of each session's document; raise at the first moved on."""
        try:
            for session in sessions:
                await self._check_one(reader, session)
        except StoreUnavailableError:
            # The store cannot be reached now: no takeover can be seen, and none can save either.
            # The saves retry (stateful._retry) and bound what is emitted past the last save.
            return

    async def _check_one(self, reader: SupportsVersion, session: WatermarkSession[Any]) -> None:
        scope = session.scope
        before, started, busy = session.saved_version, session.writes_started, session.writing
        found = await reader.aversion(*scope.address)
        after = session.saved_version
        if found == after:
            return
        if busy or session.writes_started != started:
            # A save of ours overlapped the read: it may have read our new version before we
            # recorded it. That save's compare-and-set decides; nothing more to conclude here.
            ours = {before, after, (after or 0) + 1}
            if found in ours:
                return
        error = StateTakenOverError(
            namespace=scope.namespace,
            name=scope.name,
            key=scope.key,
            expected_version=after,
            actual_version=found,
            backend=scope.store,
        )
        _LOG.error("stateful: %s stops before emitting more: %s", self._what, error)
        raise error
