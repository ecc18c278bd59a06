"""The I/O-free decision core shared by the async (``run()``) and sync (``poke()``) drivers.

The drivers do the I/O (read from a store, write to it); this module decides everything else:
how stored text becomes a validated watermark, which snapshot of the watermark each emitted
event covers, when a snapshot may be saved, and with which compare-and-set version. Keeping it
free of I/O lets one piece of logic serve both drivers and makes every decision testable
without a store.

The life of one ``run()`` (or one ``poke()``)::

    load(record) ──► user code mutates the watermark ──► emitted() ──► seq
                                                            │
                     before_yield(seq) / after_resume(seq) ─┴─► Save | None ──► driver writes
                                                                                  │
                                                         saved(save, new_version) ◄┘
    finish() on a normal return; abandon() on an error, a cancellation or aclose().

"Pending" (snapshots taken when events were emitted) and "saved" (the last snapshot the store
acknowledged) are kept apart on purpose: a save can later be held until Airflow confirms that
the events it covers were persisted, by confirming sequence numbers at that moment instead of
at resume time.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from stateful._spec import CommitMode
from stateful.backends.base import Address, StateRecord
from stateful.errors import StateValidationError
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
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Save:
    """A decision to write ``value`` if the stored version is still ``expected_version``."""

    scope: Scope
    value: str
    expected_version: int | None
    seq: int


class WatermarkSession(Generic[W]):
    """The decisions for one run of a decorated ``run()`` or one call of ``poke()``.

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
        # Last value the store acknowledged, and its version; None/None when nothing is stored.
        self.saved_value: str | None = None
        self.saved_version: int | None = None
        # Snapshots taken when events were emitted, oldest first, awaiting confirmation.
        self._pending: deque[tuple[int, str]] = deque()
        self._seq = 0
        # The snapshot before the latest event ("" when nothing was stored), for event keys.
        self._previous = ""
        #: The idempotency key of the latest emitted event (see :meth:`emitted`).
        self.event_key = ""

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

    def load(self, record: StateRecord | None) -> W:
        """Validate the stored record (or start fresh) and return the watermark for user code.

        Raises:
            StateValidationError: the stored value does not validate against the model. It is
                never replaced by a default.
        """
        if record is None:
            watermark = self.model()
        else:
            try:
                watermark = self.model.from_state_json(record.value)
            except ValueError as exc:
                raise StateValidationError(
                    namespace=self.scope.namespace,
                    name=self.scope.name,
                    key=self.scope.key,
                    backend=self.scope.store,
                    model=f"{self.model.__module__}.{self.model.__qualname__}",
                    detail=str(exc),
                ) from exc
            self.saved_value = record.value
            self.saved_version = record.version
            self._previous = record.value
        watermark.configure(lookback=self._lookback, max_untimed_keys=self._max_untimed_keys)
        self._watermark = watermark
        return watermark

    def snapshot(self) -> str:
        """Serialise the live watermark as it is now."""
        return self.watermark.to_state_json()

    def emitted(self) -> int:
        """Record that an event was emitted; return its sequence number.

        The watermark is snapshotted now, so changes made after the event (while preparing the
        next one) are never saved on this event's behalf. :attr:`event_key` becomes the event's
        idempotency key: the same transition (same stored state, same advance) after a restart
        gets the same key, so consumers can drop the repeats at-least-once implies.
        """
        self._seq += 1
        value = self.snapshot()
        self.event_key = transition_key(self.scope, self._previous, value)
        self._previous = value
        if self.commit != "never":  # nothing will ever be saved: keep no snapshots
            self._pending.append((self._seq, value))
        return self._seq

    def confirm(self, seq: int) -> Save | None:
        """Confirm every event up to ``seq``; return a save of the newest confirmed snapshot.

        Returns ``None`` when the confirmed snapshot equals what is already stored.
        """
        value: str | None = None
        while self._pending and self._pending[0][0] <= seq:
            _, value = self._pending.popleft()
        if value is None:
            return None
        return self._decide(value, seq)

    def before_yield(self, seq: int) -> Save | None:
        """The save to make before handing event ``seq`` over (``before_event``: at-most-once)."""
        return self.confirm(seq) if self.commit == "before_event" else None

    def after_resume(self, seq: int) -> Save | None:
        """The save to make once the consumer took event ``seq`` (``after_event``: at-least-once)."""
        return self.confirm(seq) if self.commit == "after_event" else None

    def finish(self) -> Save | None:
        """A normal return: save the watermark as user code left it, if it changed."""
        self._pending.clear()
        if self.commit == "never":
            return None
        return self._decide(self.snapshot(), self._seq)

    def abandon(self) -> None:
        """An error, a cancellation or a close: drop every pending snapshot, save nothing."""
        self._pending.clear()

    def saved(self, save: Save, version: int) -> None:
        """Record that the store acknowledged ``save`` as ``version``."""
        self.saved_value = save.value
        self.saved_version = version

    def _decide(self, value: str, seq: int) -> Save | None:
        if value == self.saved_value:
            return None
        return Save(scope=self.scope, value=value, expected_version=self.saved_version, seq=seq)


def transition_key(scope: Scope, before: str, after: str) -> str:
    """The idempotency key of an event that moved ``scope``'s watermark from ``before`` to ``after``.

    Example:
        >>> from stateful._document import DEFAULT_KEY
        >>> from stateful.backends.base import Address
        >>> scope = Scope(Address("files", "landing", DEFAULT_KEY), "MemoryBackend")
        >>> transition_key(scope, "", '{"cursor":1}') == transition_key(scope, "", '{"cursor":1}')
        True
        >>> len(transition_key(scope, "", '{"cursor":1}'))
        32
    """
    digest = hashlib.sha256()
    for part in (scope.namespace, scope.name, scope.key, before, after):
        digest.update(part.encode())
        # NUL separates the parts: names refuse control characters and JSON text escapes them.
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


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
