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
from typing import TypeVar

_T = TypeVar("_T")


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

    def __contains__(self, key: object) -> bool:
        return key in self.timed or key in self.untimed

    def __len__(self) -> int:
        return len(self.timed) + len(self.untimed)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeenLog):
            return NotImplemented
        # Eviction order is bookkeeping: the stored JSON (sorted) does not carry it.
        return self.timed == other.timed and self.untimed.keys() == other.untimed.keys()

    def copy(self) -> SeenLog:
        clone = SeenLog(self.timed)
        clone.untimed = self.untimed.copy()  # keeps the eviction order
        return clone

    def entries(self) -> dict[str, datetime | None]:
        return {**self.timed, **self.untimed}

    def add(self, key: str, ts: datetime | None) -> None:
        """Record ``key``; a newer timestamp wins, and any timestamp beats none."""
        if ts is None:
            if key not in self.timed:
                self.untimed.setdefault(key, None)
            return
        self.untimed.pop(key, None)
        old = self.timed.get(key)
        if old is None or ts > old:
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
                del self.timed[key]

    def evict(self, cap: int) -> int:
        """Drop the oldest untimed keys beyond ``cap``; return how many were dropped."""
        evicted = max(0, len(self.untimed) - cap)
        for _ in range(evicted):
            self.untimed.popitem(last=False)
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
