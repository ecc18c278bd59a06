"""The garbage collector's share of a benchmark: its pauses, and the objects it tracks.

:class:`CollectorProbe` records every collection (generation, start, end) while it records;
:meth:`CollectorProbe.outside` keeps the loop's stalls that overlap no collection.
:func:`tracked_objects` counts what a full collection walks. Used by ``bench/many_triggers.py``.

Example:
    >>> import gc
    >>> with CollectorProbe() as probe:
    ...     probe.recording = True
    ...     _ = gc.collect()
    >>> [generation for generation, _, _ in probe.pauses]
    [2]
    >>> end = probe.pauses[0][2]
    >>> len(probe.outside([(end + 1.0, end + 1.1)]))  # a ticker gap after the collection
    1
    >>> len(probe.outside([(end - 0.001, end + 0.1)]))  # one across it
    0
"""

from __future__ import annotations

import bisect
import gc
import time
from typing import Any

#: The ticker's sleep, seconds: a gap's lateness is its length minus this.
TICK = 0.005


class CollectorProbe:
    """Records every garbage collection's generation and pause (a ``gc.callbacks`` entry).

    Collections run in whichever thread allocates (the loop's or a store's worker); each holds
    the interpreter lock throughout, so the loop can run nothing while one runs.
    """

    def __init__(self) -> None:
        self.recording = False
        self.pauses: list[tuple[int, float, float]] = []  # (generation, start, end), perf_counter
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._start = now
        elif self.recording:
            self.pauses.append((info["generation"], self._start, now))

    def __enter__(self) -> CollectorProbe:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self)

    def outside(self, gaps: list[tuple[float, float]]) -> list[float]:
        """The lateness of each ticker gap ``(slept, woke)`` that overlaps no collection."""
        starts = [start for _, start, _ in self.pauses]  # in order, never overlapping
        ends = [end for _, _, end in self.pauses]
        late = []
        for slept, woke in gaps:
            i = bisect.bisect_left(starts, woke) - 1  # the last collection started before the wake-up
            if i < 0 or ends[i] <= slept:
                late.append(woke - slept - TICK)
        return late


def tracked_objects() -> int:
    """How many objects the collector tracks once garbage is collected: what a full collection walks."""
    gc.collect()
    return len(gc.get_objects())
