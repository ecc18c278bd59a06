"""The I/O-free decision core shared by the async (``run()``) and sync (``poke()``) drivers.

The drivers do the I/O (read from a store, write to it); this module decides everything else:
how stored text becomes a validated watermark, which snapshot of the watermark each emitted
event covers, when a snapshot may be saved, and with which compare-and-set version. Keeping it
free of I/O lets one piece of logic serve both drivers and makes every decision testable
without a store.

The life of one ``run()`` (or one ``poke()``)::

    load(record) ──► user code mutates the watermark ──► emitted() ──► seq
                                                            │
                     before_yield(seq) / after_resume(seq) ─┴─► Save | None ──► driver renders
                                                                                  │  and writes
                                                         saved(save, new_version) ◄┘
    finish() on a normal return; abandon() on an error, a cancellation or aclose().

A snapshot is a delta (what changed since the previous event), so an event costs O(change),
not O(state); rendering the whole text happens once per save (:meth:`WatermarkSession.render`).
"Pending" (deltas taken when events were emitted) and "saved" (the last state the store
acknowledged) are kept apart on purpose: a save can later be held until Airflow confirms that
the events it covers were persisted, by confirming sequence numbers at that moment instead of
at resume time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from stateful._address import display_address
from stateful._document import format_utc
from stateful._layout import Layout
from stateful._repair import History, invalid_state
from stateful._shadow import Delta, Shadow, Tracker, Unconfirmed
from stateful._spec import CommitMode
from stateful.backends.base import Address, StateRecord
from stateful.types import Watermark

__all__ = ["Save", "Scope", "WatermarkSession", "log_loaded", "transition_key"]

_LOG = logging.getLogger("stateful")

W = TypeVar("W", bound=Watermark[Any])


@dataclass(frozen=True)
class Scope:
    """Where one watermark lives: its address in a store, and a description of that store."""

    address: Address
    store: str

    @property
    def namespace(self) -> str:
        """The address's namespace."""
        return self.address.namespace

    @property
    def name(self) -> str:
        """The address's name."""
        return self.address.name

    @property
    def key(self) -> str:
        """The address's document key."""
        return self.address.key

    def __str__(self) -> str:
        return display_address(self.namespace, self.name)


@dataclass(frozen=True)
class Save:
    """A decision to write the state ``digest`` if the stored version is still ``expected_version``.

    The text to write is rendered by :meth:`WatermarkSession.render` (O(state): off the event
    loop in the async driver), not held here.
    """

    scope: Scope
    digest: str
    expected_version: int | None
    seq: int


class WatermarkSession(Generic[W]):
    """The decisions for one run of a decorated ``run()`` or one call of ``poke()``.

    Per event the session does O(change) work: :meth:`emitted` drains the watermark's change
    journal into a delta (:mod:`stateful._shadow`), and :meth:`confirm` applies the confirmed
    deltas to a *shadow* of the state; only :meth:`render`, which the drivers call once per save,
    is O(state).

    Example:
        >>> from stateful import Watermark
        >>> from stateful._document import DEFAULT_KEY
        >>> from stateful.backends.base import Address
        >>> scope = Scope(Address("files", "landing", DEFAULT_KEY), "MemoryBackend")
        >>> session = WatermarkSession(Watermark, scope, commit="after_event")
        >>> wm = session.load(None)
        >>> wm.advance(key="a.csv")
        >>> seq = session.emitted()
        >>> session.before_yield(seq) is None          # after_event: nothing before the yield
        True
        >>> save = session.after_resume(seq)
        >>> save.expected_version is None               # first write: nothing may be stored yet
        True
        >>> session.render(save) == wm.to_state_json()
        True
    """

    def __init__(
        self,
        model: type[W],
        scope: Scope,
        *,
        commit: CommitMode,
        lookback: timedelta = timedelta(0),
        max_untimed_keys: int | None = None,
    ) -> None:
        self.model = model
        self.scope = scope
        self.commit = commit
        self._lookback = lookback
        self._max_untimed_keys = max_untimed_keys
        self._watermark: W | None = None
        self._shadow: Shadow | None = None
        self._tracker: Tracker | None = None
        self._rendering = False
        # Digest of the last state the store acknowledged, and its version; None/None when
        # nothing is stored.
        self.saved_digest: str | None = None
        self.saved_version: int | None = None
        # Saves started, and saves under way: a version read overlapping a save of this session
        # may see its new version before saved() records it (stateful._fence).
        self.writes_started = 0
        self.writing = 0
        # Deltas taken when events were emitted, oldest first, awaiting confirmation.
        self._pending = Unconfirmed()
        self._seq = 0
        # Digest of the state before the latest event ("" when nothing was stored), for event keys.
        self._previous = ""
        #: The idempotency key of the latest emitted event (see :meth:`emitted`).
        self.event_key = ""
        self._key_seed = _key_seed(scope)

    @property
    def watermark(self) -> W:
        """The live watermark handed to user code (after :meth:`load`)."""
        if self._watermark is None:
            raise RuntimeError("WatermarkSession.load() has not been called")
        return self._watermark

    @property
    def pending(self) -> int:
        """How many emitted snapshots are not yet confirmed."""
        return len(self._pending)

    @property
    def emitted_count(self) -> int:
        """How many events this run emitted so far."""
        return self._seq

    @property
    def digest(self) -> str:
        """The state's digest as of the latest event (as loaded before any): changes when the state does."""
        return self._previous

    @property
    def timestamp(self) -> datetime | None:
        """The watermark's timestamp, what its lag is measured from (O(1))."""
        return self.watermark.timestamp

    @property
    def skipped_late(self) -> int:
        """How many items this run skipped as older than the lookback so far."""
        return self.watermark.skipped_late

    @property
    def size(self) -> int:
        """How many keys the confirmed state's ``seen`` holds: what rendering it costs."""
        return 0 if self._shadow is None else self._shadow.size

    def load(self, record: StateRecord | None, history: History | None = None) -> W:
        """Validate the stored record (or start fresh) and return the watermark for user code.

        A record saved by an earlier model version is upgraded by the model's ``migrate()``
        first; the upgraded state is written at the next save, not here. O(state): parsing,
        validating and hashing every ``seen`` entry once. The async driver calls it in a worker
        thread.

        Args:
            record: the stored record, ``None`` when nothing is stored.
            history: reads the store's kept versions of the state (if it keeps any): called
                only when the record is from a newer model version, to name the version to
                rewind to.

        Raises:
            StateValidationError: the stored value does not validate against the model (or a
                ``migrate()`` step failed). It is never replaced by a default.
            StateModelVersionError: the stored value is from a newer model version.
        """
        if record is None:
            watermark = self.model()
        else:
            try:
                watermark = self.model.from_state_json(record.value)
            except ValueError as exc:
                raise invalid_state(self.scope.address, self.scope.store, self.model, exc, history) from exc
        watermark.configure(lookback=self._lookback, max_untimed_keys=self._max_untimed_keys)
        shadow = Shadow.of(watermark)
        if record is not None:
            # The digest of the state read, not of its text: a stored text in another spelling
            # of the same state (an older release, a hand edit) is not rewritten for nothing.
            self.saved_digest = self._previous = shadow.digest
            self.saved_version = record.version
        self._shadow, self._tracker = shadow, Tracker(shadow, watermark)
        self._watermark = watermark
        return watermark

    def emitted(self) -> int:
        """Record that an event was emitted; return its sequence number.

        The watermark's changes are taken now (a delta, O(change)), so changes made after the
        event (while preparing the next one) are never saved on this event's behalf.
        :attr:`event_key` becomes the event's idempotency key: the same transition (same stored
        state, same advance) after a restart gets the same key, so consumers can drop the
        repeats at-least-once implies.
        """
        self._seq += 1
        self._log_late()
        delta = self._take()
        self.event_key = _keyed(self._key_seed, self._previous, delta.digest)
        self._previous = delta.digest
        if self.commit != "never":  # nothing will ever be saved: keep no deltas
            self._pending.push(self._seq, delta)
        return self._seq

    def confirm(self, seq: int) -> Save | None:
        """Confirm every event up to ``seq``; return a save of the newest confirmed state.

        Returns ``None`` when the confirmed state equals what is already stored. Must not be
        called while a :meth:`render` runs (the drivers keep one save in flight).
        """
        if self._rendering:
            raise RuntimeError("WatermarkSession.confirm() called while a save is being rendered")
        confirmed = self._pending.apply_through(seq, self._shadow_state())
        return self._decide(seq) if confirmed else None

    def before_yield(self, seq: int) -> Save | None:
        """The save to make before handing event ``seq`` over (``before_event``: at-most-once)."""
        return self.confirm(seq) if self.commit == "before_event" else None

    def after_resume(self, seq: int) -> Save | None:
        """The save to make once the consumer took event ``seq`` (``after_event``: at-least-once)."""
        return self.confirm(seq) if self.commit == "after_event" else None

    def finish(self) -> Save | None:
        """A normal return: save the watermark as user code left it, if it changed."""
        self._log_late()
        delta = self._take()
        if self.commit == "never":
            self._pending.clear()
            return None
        self._pending.push(self._seq, delta)
        return self.confirm(self._seq)

    def abandon(self) -> None:
        """An error, a cancellation or a close: drop every pending snapshot, save nothing."""
        self._pending.clear()
        self._log_late()

    def render(self, save: Save) -> str:
        """The text to write for ``save``: O(state), byte-identical to ``to_state_json()``.

        Safe in a worker thread as long as no :meth:`confirm` runs meanwhile.

        Raises:
            RuntimeError: the confirmed state moved on since ``save`` was decided.
        """
        return self.layout(save).text()

    def layout(self, save: Save) -> Layout:
        """The text to write for ``save``, in parts (:class:`~stateful._layout.Layout`).

        O(changes since the previous save) plus O(runs of ``seen``); its :meth:`Layout.text`
        is :meth:`render`. Safe in a worker thread as long as no :meth:`confirm` runs meanwhile.

        Raises:
            RuntimeError: the confirmed state moved on since ``save`` was decided.
        """
        shadow = self._shadow_state()
        if save.digest != shadow.digest:
            raise RuntimeError(f"save {save.seq} of {self.scope} is stale: the state moved on since")
        self._rendering = True
        try:
            return shadow.layout()
        finally:
            self._rendering = False

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Mark a save of this session's own as under way for the ``with`` block.

        A fence reading the stored version meanwhile may see the new version before
        :meth:`saved` records it; it then lets the save's compare-and-set decide
        (:mod:`stateful._fence`).
        """
        self.writes_started += 1
        self.writing += 1
        try:
            yield
        finally:
            self.writing -= 1

    def saved(self, save: Save, version: int) -> None:
        """Record that the store acknowledged ``save`` as ``version``."""
        self.saved_digest = save.digest
        self.saved_version = version

    def _log_late(self) -> None:
        """Log, at INFO, the items skipped as older than the lookback since the last such line.

        Called when an event is emitted, and when the run (or ``poke()``) ends: once per poll
        for a trigger that polls, then yields what it found.
        """
        watermark = self._watermark
        if watermark is None:
            return
        count, oldest = watermark._take_skipped_late()
        if count:
            _LOG.info(
                "stateful: %s skipped %d item%s older than the lookback (%s before the newest timestamp "
                "%s); the oldest was stamped %s. Raise lookback if such late items must still be emitted.",
                self.scope,
                count,
                "" if count == 1 else "s",
                watermark.lookback,
                None if watermark.timestamp is None else format_utc(watermark.timestamp),
                None if oldest is None else format_utc(oldest),
            )

    def _take(self) -> Delta:
        if self._tracker is None:
            raise RuntimeError("WatermarkSession.load() has not been called")
        return self._tracker.take(self.watermark)

    def _shadow_state(self) -> Shadow:
        if self._shadow is None:
            raise RuntimeError("WatermarkSession.load() has not been called")
        return self._shadow

    def _decide(self, seq: int) -> Save | None:
        digest = self._shadow_state().digest
        if digest == self.saved_digest:
            return None
        return Save(scope=self.scope, digest=digest, expected_version=self.saved_version, seq=seq)


def transition_key(scope: Scope, before: str, after: str) -> str:
    """The idempotency key of an event that moved ``scope``'s watermark from ``before`` to ``after``.

    ``before`` and ``after`` identify the states: the session passes their digests
    (:func:`stateful._shadow.digest`; ``""`` for "nothing stored"), a function of the state
    alone, so a repeat of the same transition after a restart gets the same key.

    Example:
        >>> from stateful._document import DEFAULT_KEY
        >>> from stateful.backends.base import Address
        >>> scope = Scope(Address("files", "landing", DEFAULT_KEY), "MemoryBackend")
        >>> transition_key(scope, "", '{"cursor":1}') == transition_key(scope, "", '{"cursor":1}')
        True
        >>> len(transition_key(scope, "", '{"cursor":1}'))
        32
    """
    return _keyed(_key_seed(scope), before, after)


def _key_seed(scope: Scope) -> bytes:
    """A transition key's first parts (``scope``'s), encoded: a session encodes them once."""
    # NUL separates the parts: names refuse control characters and JSON text escapes them.
    return "".join(part + "\x00" for part in scope.address).encode()


def _keyed(seed: bytes, before: str, after: str) -> str:
    """The transition key from ``seed`` (:func:`_key_seed`): one hash of one string per event."""
    return hashlib.sha256(seed + f"{before}\x00{after}\x00".encode()).hexdigest()[:32]


def log_loaded(session: WatermarkSession[Any], qualname: str) -> None:
    """Log, at INFO, what a driver loaded: the operator's first clue when a watermark looks wrong."""
    scope = session.scope
    if session.saved_version is None:
        _LOG.info(
            "stateful: %s for %s in %s: nothing stored yet, starting from an empty %s",
            scope,
            qualname,
            scope.store,
            session.model.__name__,
        )
    else:
        _LOG.info(
            "stateful: loaded %s for %s from %s (version %d): %s",
            scope,
            qualname,
            scope.store,
            session.saved_version,
            session.watermark.summary(),
        )
