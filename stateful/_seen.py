"""Bookkeeping behind ``Watermark.seen``: the keys emitted inside the boundary window.

Private: :class:`stateful.types.Watermark` is the public face. Timestamps given here are
already validated (timezone-aware, UTC).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime
from enum import Enum
from typing import Final, TypeVar

_T = TypeVar("_T")


class _Absent(Enum):
    TOKEN = 0


#: A key's value in a change when it is not in the log (before it was added, after it left).
ABSENT: Final = _Absent.TOKEN
#: What a key is recorded with: a timestamp, ``None`` (no timestamp), or :data:`ABSENT`.
Entry = datetime | None | _Absent


class SeenLog:
    """The keys recorded by ``advance()``, each with its timestamp (or none)."""

    def __init__(self, entries: Mapping[str, datetime | None] | None = None) -> None:
        entries = entries or {}
        self.timed = {k: ts for k, ts in entries.items() if ts is not None}
        # Insertion-ordered: the oldest-recorded untimed keys are evicted first. Stored JSON is
        # sorted by key, so after a reload the loaded keys count as oldest, in key order.
        self.untimed: OrderedDict[str, None] = OrderedDict(
            (k, None) for k, ts in entries.items() if ts is None
        )
        # Min-heap of (timestamp, key) so pruning costs O(log n) per key, not a scan per advance.
        # Entries go stale when a key gets a newer timestamp; they are skipped when popped.
        self._expiry = [(ts, key) for key, ts in self.timed.items()]
        heapq.heapify(self._expiry)
        # Off until journal() turns it on: each changed key's value before its first change
        # since the last drain(), so a session can save a delta instead of the whole log.
        self._journal: dict[str, Entry] | None = None

    def __contains__(self, key: object) -> bool:
        return key in self.timed or key in self.untimed

    def __len__(self) -> int:
        return len(self.timed) + len(self.untimed)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeenLog):
            return NotImplemented
        # Eviction order is bookkeeping: the stored JSON (sorted) does not carry it.
        return self.timed == other.timed and self.untimed.keys() == other.untimed.keys()

    def get(self, key: str) -> Entry:
        """The value ``key`` is recorded with, or :data:`ABSENT`."""
        if key in self.untimed:
            return None
        return self.timed.get(key, ABSENT)

    def journal(self) -> None:
        """Start recording changes (each key's value before its first change) for :meth:`drain`."""
        if self._journal is None:
            self._journal = {}

    def drain(self) -> dict[str, tuple[Entry, Entry]]:
        """The changes since the last drain, ``key -> (before, after)``; forget them.

        A key changed and changed back is left out. Costs O(keys changed), not O(len(self)).
        """
        journal, self._journal = self._journal or {}, {}
        changes = {key: (old, self.get(key)) for key, old in journal.items()}
        return {key: change for key, change in changes.items() if change[0] != change[1]}

    def _note(self, key: str) -> None:
        if self._journal is not None and key not in self._journal:
            self._journal[key] = self.get(key)

    def copy(self) -> SeenLog:
        clone = SeenLog(self.timed)
        clone.untimed = self.untimed.copy()  # keeps the eviction order
        return clone

    def entries(self) -> dict[str, datetime | None]:
        return {**self.timed, **self.untimed}

    def add(self, key: str, ts: datetime | None) -> None:
        """Record ``key``; a newer timestamp wins, and any timestamp beats none."""
        if ts is None:
            if key not in self.timed and key not in self.untimed:
                self._note(key)
                self.untimed[key] = None
            return
        old = self.timed.get(key)
        if old is None or ts > old:
            self._note(key)
            self.untimed.pop(key, None)
            self.timed[key] = ts
            heapq.heappush(self._expiry, (ts, key))
            if len(self._expiry) > 2 * len(self.timed) + 64:  # mostly stale entries: rebuild
                self._expiry = [(t, k) for k, t in self.timed.items()]
                heapq.heapify(self._expiry)

    def prune(self, floor: datetime) -> None:
        """Drop the timed keys recorded strictly before ``floor``."""
        while self._expiry and self._expiry[0][0] < floor:
            ts, key = heapq.heappop(self._expiry)
            if self.timed.get(key) == ts:
                self._note(key)
                del self.timed[key]

    def evict(self, cap: int) -> int:
        """Drop the oldest untimed keys beyond ``cap``; return how many were dropped."""
        evicted = max(0, len(self.untimed) - cap)
        for _ in range(evicted):
            key = next(iter(self.untimed))
            self._note(key)
            del self.untimed[key]
        return evicted


class SeenKeys(AbstractSet[str]):
    """Read-only live view of a :class:`SeenLog`'s keys; iterates in sorted order."""

    __slots__ = ("_log",)

    def __init__(self, log: SeenLog) -> None:
        self._log = log

    def __contains__(self, key: object) -> bool:
        return key in self._log

    def __len__(self) -> int:
        return len(self._log)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted([*self._log.timed, *self._log.untimed]))

    @classmethod
    def _from_iterable(cls, it: Iterable[_T]) -> AbstractSet[_T]:
        return frozenset(it)  # results of set operators (a & b, ...) are plain frozensets

    def __repr__(self) -> str:
        keys = list(self)
        shown = ", ".join(map(repr, keys[:5])) + (f", ... ({len(keys)} keys)" if len(keys) > 5 else "")
        return f"seen({{{shown}}})"
