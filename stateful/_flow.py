"""Sharing the triggerer's event loop with a burst: pacing, and backpressure in ack mode.

A scan that finds thousands of new items hands them over one after another. Two things keep
such a burst from hurting the triggerer:

* :class:`Pacer` yields to the event loop whenever the SDK has held it for :data:`PACE_SECONDS`,
  so the other triggers, the runner's own bookkeeping and (in ack mode) the shared stream's
  subscriber all get their turn while a burst is emitted.
* :class:`Backpressure` holds an ack-mode producer back while as many events await Airflow's
  confirmation as its shared-stream subscriber queue holds. Airflow puts every raw event a
  producer yields into each subscriber's queue (``[triggerer] shared_stream_subscriber_queue_size``,
  1,024 by default) and fails the trigger when a queue is full; an event stays unconfirmed at
  least as long as it sits in a queue, so a producer that never has more unconfirmed events
  than the queue holds can never overflow it, however many subscribers there are. The wait is
  an :class:`asyncio.Event` set when Airflow confirms a batch: no polling, no busy wait.

Example:
    >>> import asyncio
    >>> async def burst() -> int:
    ...     pacer, emitted = Pacer(), 0
    ...     for _ in range(1000):
    ...         await pacer.pace()  # lets the loop run every few milliseconds
    ...         emitted += 1
    ...     return emitted
    >>> asyncio.run(burst())
    1000
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

__all__ = ["PACE_SECONDS", "Backpressure", "Pacer", "subscriber_queue_size"]

_LOG = logging.getLogger("stateful")

#: How long the SDK's own per-event work may hold the event loop before it yields to the loop.
PACE_SECONDS = 0.005


class Pacer:
    """Yields to the event loop once the caller has held it for ``budget`` seconds.

    Args:
        budget: the longest stretch, in seconds, between two yields to the loop.
    """

    def __init__(self, budget: float = PACE_SECONDS) -> None:
        self._budget = budget
        self._since = time.perf_counter()

    async def pace(self) -> None:
        """Yield to the loop (``asyncio.sleep(0)``) if the budget is spent; else return at once."""
        if time.perf_counter() - self._since >= self._budget:
            await asyncio.sleep(0)
            self._since = time.perf_counter()


def subscriber_queue_size() -> int:
    """The triggerer's ``[triggerer] shared_stream_subscriber_queue_size`` (``<= 0``: unbounded).

    Read from the configuration the triggerer's ``TriggerRunner`` reads it from (Airflow-core's),
    with Airflow's own default when the option is absent.
    """
    from airflow.configuration import conf
    from airflow.triggers.shared_stream import DEFAULT_SUBSCRIBER_QUEUE_MAX

    return int(
        conf.getint("triggerer", "shared_stream_subscriber_queue_size", fallback=DEFAULT_SUBSCRIBER_QUEUE_MAX)
    )


class Backpressure:
    """Holds an ack-mode producer back while ``limit`` of its events await Airflow's confirmation.

    :func:`stateful._trigger_driver.emit` calls :meth:`pulling` around asking the decorated
    ``run()`` for its next event, :meth:`room` once it has one and :meth:`emitted` after handing it
    over; the producer calls :meth:`released` whenever Airflow confirmed a batch, or with the
    failure that must stop it (fencing). A *burst* ends when nothing
    awaits confirmation while ``run()`` itself is waiting (between two scans); the first wait
    of a burst is logged at INFO, and so is the end of a burst that had to wait.

    Args:
        limit: the most events that may await confirmation at once (``<= 0``: no limit).
        unconfirmed: how many emitted events await confirmation now.
        what: names the trigger and its watermark in the log lines.
    """

    def __init__(self, limit: int, unconfirmed: Callable[[], int], what: str) -> None:
        self.limit = limit
        self._unconfirmed = unconfirmed
        self._what = what
        self._drained = asyncio.Event()
        self._failure: BaseException | None = None
        self._pulling = False
        # The current burst: when it started, events emitted in it, waits and time spent waiting.
        self._started = 0.0
        self._emitted = 0
        self._waits = 0
        self._waited = 0.0

    @property
    def full(self) -> bool:
        """Whether emitting one more event now could overflow a subscriber queue."""
        return 0 < self.limit <= self._unconfirmed()

    def pulling(self, pulling: bool) -> None:
        """The producer starts (``True``) or stops waiting for ``run()``'s next event."""
        self._pulling = pulling
        if pulling:
            self._end_burst()

    async def room(self) -> None:
        """Return once one more event may be emitted.

        Raises:
            BaseException: the failure :meth:`released` was given: the producer emits no more.
        """
        if self._failure is not None:
            raise self._failure
        if not self.full:
            return
        if self._waits == 0:
            _LOG.info(
                "stateful: %s holds the rest of a burst back: %d events emitted so far, %d await "
                "Airflow's confirmation, as many as a shared-stream subscriber queue holds "
                "([triggerer] shared_stream_subscriber_queue_size = %d); it emits more as Airflow "
                "confirms them",
                self._what,
                self._emitted,
                self._unconfirmed(),
                self.limit,
            )
        self._waits += 1
        started = time.monotonic()
        try:
            while self.full and self._failure is None:
                self._drained.clear()
                await self._drained.wait()
        finally:
            self._waited += time.monotonic() - started
        if self._failure is not None:
            raise self._failure

    def emitted(self) -> None:
        """Count an event just emitted (the first one of a burst starts its clock)."""
        if self._emitted == 0:
            self._started = time.monotonic()
        self._emitted += 1

    def released(self, failure: BaseException | None = None) -> None:
        """Airflow confirmed a batch: wake the waiter.

        Args:
            failure: the producer must stop (a save lost a race, an event was not stored): every
                later :meth:`room` raises it, and so does the one waiting now.
        """
        self._drained.set()
        if failure is not None:
            self._failure = self._failure or failure
        elif self._pulling:
            self._end_burst()

    def _end_burst(self) -> None:
        if self._emitted == 0 or self._unconfirmed() > 0:
            return
        if self._waits:
            _LOG.info(
                "stateful: %s delivered a burst of %d events in %.1f s, %.1f s of it waiting %d times "
                "for Airflow's confirmations",
                self._what,
                self._emitted,
                time.monotonic() - self._started,
                self._waited,
                self._waits,
            )
        self._emitted = self._waits = 0
        self._waited = 0.0
