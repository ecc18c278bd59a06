"""Writing saves from the triggerer's loop: one save, and coalesced saves in the background.

:func:`save` writes one decision of the core: the state is laid out in parts (or rendered
whole, for a store that takes no parts) in a worker thread when it is large, and the store's own
async write keeps its I/O off the loop. :class:`Coalescer` lets several taken events share one
save in the plain async driver (``commit="after_event"``): a save starts once half a batch of
events is waiting or the oldest has waited ``delay``, but not sooner than ``interval`` after the
start of the trigger's previous save (three quarters of a batch start it at once); it runs in
the background while the trigger goes on; the trigger waits only when a whole batch (``batch``
events) is taken and not yet saved. So at any moment at most ``batch`` taken events are not yet
saved, and none for longer than ``max(delay, interval)`` plus one save: what a crash can repeat.
A trigger saves at most once per ``interval`` unless its events fill batches sooner, so a
store that commits faster does not make its triggers save more often. A save that fails stops
the trigger at its next event with the store's error (a lost compare-and-set means another
writer: emit nothing more).

Example:
    >>> save_batching(None, None)  # the defaults, with nothing configured
    (100, 1.0)
    >>> save_spacing(None)
    5.0
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeGuard

from stateful._airflowconf import check_seconds, stateful_setting
from stateful._core import Save, WatermarkSession
from stateful._keyed_session import KeyedSave
from stateful._metrics import metrics_of
from stateful._retry import aretry
from stateful.backends.base import AsyncStateBackend, SupportsLayout
from stateful.errors import StateConflictError, StatefulUsageError, StoreUnavailableError

__all__ = [
    "DEFAULT_SAVE_BATCH",
    "DEFAULT_SAVE_DELAY",
    "DEFAULT_SAVE_INTERVAL",
    "INLINE_RENDER_KEYS",
    "Coalescer",
    "check_save_batch",
    "check_save_delay",
    "check_save_interval",
    "save",
    "save_batching",
    "save_spacing",
]

_LOG = logging.getLogger("stateful")

#: Up to this many ``seen`` keys a save's text is rendered on the loop (tens of microseconds);
#: a larger state is rendered in a worker thread.
INLINE_RENDER_KEYS = 256
#: At most this many taken events share one save (``1``: a save after every event).
DEFAULT_SAVE_BATCH = 100
#: A taken event waits at most this long (plus one save) before a save covers it, in seconds.
DEFAULT_SAVE_DELAY = 1.0
#: Two saves of one trigger start at least this long apart, in seconds, but when a whole batch
#: of its events waits (chosen from ``bench/many_triggers.py``: see docs/performance.md).
DEFAULT_SAVE_INTERVAL = 5.0

#: The longest a stopping trigger waits for its best-effort save of the events it handed over.
CLOSE_SAVE_SECONDS = 5.0

BATCH_ENV = "STATEFUL_SAVE_BATCH"
DELAY_ENV = "STATEFUL_SAVE_DELAY"
INTERVAL_ENV = "STATEFUL_SAVE_INTERVAL"


async def save(store: AsyncStateBackend, session: WatermarkSession[Any], decision: Save | None) -> None:
    """Write a save the core decided on (compare-and-set) and record the new version.

    A store that takes a layout (:class:`~stateful.backends.base.SupportsLayout`) is handed the
    state in parts, so it can write only the parts that changed; any other store is handed the
    whole text.
    """
    if decision is None:
        return
    if isinstance(decision, KeyedSave):  # the partitions it changed, with one write_many
        keyed_save = decision
        started = time.perf_counter()
        try:
            await aretry(lambda: keyed_save.awrite(store), f"save {decision.scope}")
        except StateConflictError:
            metrics_of(session).conflict()
            raise
        metrics_of(session).saved(session, None, time.perf_counter() - started)
        return
    scope = decision.scope
    expected = decision.expected_version
    # Bringing the runs of seen up to date is O(change), but a run's first one sorts seen: a
    # small state costs less than the hop to a worker thread.
    inline = session.size <= INLINE_RENDER_KEYS
    started = time.perf_counter()
    write: Callable[[], Awaitable[int]]
    with session.saving():  # a save of its own in flight: the fence lets it decide
        if _takes_layout(store):
            layout = session.layout(decision) if inline else await asyncio.to_thread(session.layout, decision)
            write = functools.partial(store.awrite_layout, *scope.address, layout, expected_version=expected)
            text: Callable[[], str] = layout.text
            size = layout.size
        else:
            value = session.render(decision) if inline else await asyncio.to_thread(session.render, decision)
            write = functools.partial(store.awrite, *scope.address, value, expected_version=expected)
            text = functools.partial(str, value)
            size = len(value)
        try:
            version = await _write_retrying(store, decision, write, text)
        except StateConflictError:
            metrics_of(session).conflict()
            raise
        session.saved(decision, version)
    metrics_of(session).saved(session, size, time.perf_counter() - started)
    _LOG.debug("stateful: saved %s as version %d in %s (event %d)", scope, version, scope.store, decision.seq)


async def _write_retrying(
    store: AsyncStateBackend, decision: Save, write: Callable[[], Awaitable[int]], text: Callable[[], str]
) -> int:
    """``write()``, tried again while the store cannot be reached (:mod:`stateful._retry`).

    A write whose connection was lost may have been committed all the same: when a later attempt
    then loses its compare-and-set, the stored document is read, and if it holds exactly this
    save's text as the version after the expected one, this save is what is stored.
    """
    scope = decision.scope
    unsure = False

    async def attempt() -> int:
        nonlocal unsure
        try:
            return await write()
        except StoreUnavailableError:
            unsure = True
            raise
        except StateConflictError:
            if not unsure:
                raise
            stored = await store.aread(*scope.address)
            expected = decision.expected_version
            if stored is None or stored.version != (expected or 0) + 1:
                raise
            if stored.value != await asyncio.to_thread(text):
                raise
            _LOG.info(
                "stateful: a save of %s lost its connection but was committed (version %d)",
                scope,
                stored.version,
            )
            return stored.version

    return await aretry(attempt, f"save {scope}")


# Whether a store's class takes layouts. A runtime-checkable Protocol's isinstance() inspects the
# Protocol's members each time (about 100 µs, as much as an event costs the loop): once per class.
_TAKES_LAYOUT: dict[type, bool] = {}


def _takes_layout(store: AsyncStateBackend) -> TypeGuard[SupportsLayout]:
    kind = type(store)
    takes = _TAKES_LAYOUT.get(kind)
    if takes is None:
        takes = _TAKES_LAYOUT[kind] = isinstance(store, SupportsLayout)
    return takes


def check_save_batch(value: object, where: str) -> int:
    """Return ``value`` if it is a whole number >= 1, else raise naming ``where``."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StatefulUsageError(
            f"{where} must be a whole number >= 1 (how many taken events may share one save; 1 saves "
            f"after every event), got {value!r}."
        )
    return value


def check_save_delay(value: object, where: str) -> float:
    """Return ``value`` in seconds if it is a duration >= 0, else raise naming ``where``."""
    return check_seconds(value, where, "the longest a taken event waits for its save")


def check_save_interval(value: object, where: str) -> float:
    """Return ``value`` in seconds if it is a duration >= 0, else raise naming ``where``."""
    return check_seconds(value, where, "the least time between the starts of two saves of a trigger")


def save_batching(batch: int | None, delay: timedelta | None) -> tuple[int, float]:
    """The batch size and delay (seconds) a run coalesces its saves with.

    Each is the decorator's argument when given, else the environment variable
    (``STATEFUL_SAVE_BATCH``, ``STATEFUL_SAVE_DELAY`` in seconds), else the Airflow option
    (``[stateful] save_batch``, ``[stateful] save_delay``), else the default.
    """
    if batch is None:
        batch = stateful_setting(BATCH_ENV, "save_batch", check_save_batch, DEFAULT_SAVE_BATCH)
    if delay is not None:
        return batch, delay.total_seconds()
    return batch, stateful_setting(DELAY_ENV, "save_delay", check_save_delay, DEFAULT_SAVE_DELAY)


def save_spacing(interval: timedelta | None) -> float:
    """The least time between the starts of two saves of one trigger, in seconds.

    The decorator's ``save_interval`` when given, else ``STATEFUL_SAVE_INTERVAL`` (seconds), else
    ``[stateful] save_interval``, else :data:`DEFAULT_SAVE_INTERVAL`.
    """
    if interval is not None:
        return interval.total_seconds()
    return stateful_setting(INTERVAL_ENV, "save_interval", check_save_interval, DEFAULT_SAVE_INTERVAL)


class Coalescer:
    """Saves taken events in the background, several per save (see the module docstring).

    Args:
        store: where to save.
        session: the run's session; only this object calls its :meth:`~WatermarkSession.confirm`.
        batch: the most taken events not yet saved (``>= 2``).
        delay: the longest a taken event waits before a save covering it starts, in seconds
            (unless the interval holds the save back).
        what: names the trigger in the log lines.
        interval: the least time between the starts of two saves, in seconds, but when three
            quarters of a batch wait.
    """

    def __init__(
        self,
        store: AsyncStateBackend,
        session: WatermarkSession[Any],
        batch: int,
        delay: float,
        what: str,
        interval: float = 0.0,
    ) -> None:
        self._store = store
        self._session = session
        self._batch = batch
        self._start_at = max(1, batch // 2)
        # From here on a save starts whatever the interval, so that it is under way (and the
        # trigger seldom waits) when a whole batch is taken.
        self._force_at = max(self._start_at, batch - batch // 4)
        self._delay = delay
        self._interval = interval
        self._what = what
        self._taken = 0  # the newest event taken
        self._durable = 0  # the newest event a completed save covers
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # when the timer fires (loop time)
        self._last_start = -math.inf  # when the last save started (loop time)
        self._failure: Exception | None = None
        self._closed = False
        self._owner: asyncio.Task[Any] | None = None
        self._stopped_owner = False
        #: Set by the driver while ``owner`` waits for the decorated ``run()`` (its own code).
        self.pulling = False

    def stop_on_failure(self, owner: asyncio.Task[Any] | None) -> None:
        """Cancel ``owner`` (the task that drives the run) as soon as a background save fails.

        Without it a trigger that finds nothing new after its save failed polls on, emitting
        nothing, until its next event raises the error; cancelled, it ends at once, and its
        driver raises the save's error instead (:meth:`stopped_by_failure`). Only while
        :attr:`pulling`: the cancellation then lands in the trigger's own code. Otherwise the
        triggerer is handling the run's last event (its code, not to be cancelled) and resumes
        the run in a moment, which raises the error (:meth:`check`).
        """
        self._owner = owner

    def stopped_by_failure(self) -> Exception | None:
        """The save's error when this saver cancelled its owner for it, else ``None``."""
        return self._failure if self._stopped_owner else None

    def check(self) -> None:
        """Raise the error of a background save that failed: the trigger must emit no more."""
        if self._failure is not None:
            raise self._failure

    async def taken(self, seq: int) -> None:
        """The consumer took event ``seq``: save it soon; wait if a whole batch is unsaved."""
        self.check()
        self._taken = seq
        while self._taken - self._durable >= self._batch and self._task is not None:
            await asyncio.shield(self._task)  # a save of the older half is under way
            self.check()
        if self._task is not None:
            return
        unsaved = self._taken - self._durable
        if unsaved >= self._force_at:
            self._start()  # three quarters of a batch wait: at once, whatever the interval
        elif unsaved >= self._start_at:
            self._start_at_or_after(self._last_start + self._interval)
        elif unsaved > 0 and self._timer is None:
            self._start_at_or_after(asyncio.get_running_loop().time() + self._delay)

    async def flush(self) -> None:
        """Save everything taken (a normal finish); raise the error of a failed save."""
        self._closed = True
        self._cancel_timer()
        if self._task is not None:
            await asyncio.shield(self._task)
        self.check()
        if self._taken > self._durable:
            await self._save_up_to(self._taken)

    async def close(self) -> None:
        """Best effort on an error, a cancellation or a close: save what was taken, if possible.

        Never after a failed save (another writer may own the state now); a failure here is
        logged, and the events it would have covered are repeated after a restart.
        """
        self._closed = True
        self._cancel_timer()
        try:
            # Bounded: with the store away a save retries for up to a minute, longer than a
            # triggerer shutting down should wait.
            await asyncio.wait_for(self._last_save(), CLOSE_SAVE_SECONDS)
        except Exception as exc:
            _LOG.warning(
                "stateful: %s stopped; saving %s in %s for the events it handed over failed: %s. "
                "They are emitted again when it restarts.",
                self._what,
                self._session.scope,
                self._session.scope.store,
                exc,
            )

    async def _last_save(self) -> None:
        task = self._task
        if task is not None:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                task.cancel()  # the wait timed out: the save in the background stops too
                raise
        if self._failure is None and self._taken > self._durable:
            await self._save_up_to(self._taken)

    def _start_at_or_after(self, at: float) -> None:
        """Start a save at loop time ``at`` (now if it is past) or when the interval allows."""
        at = max(at, self._last_start + self._interval)
        if self._timer is not None and self._due <= at:
            return  # one is due sooner
        loop = asyncio.get_running_loop()
        if at <= loop.time():
            self._start()
        else:
            self._cancel_timer()
            self._timer, self._due = loop.call_at(at, self._start), at

    def _start(self) -> None:
        self._cancel_timer()
        if self._closed or self._task is not None or self._failure is not None:
            return
        if self._taken > self._durable:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._last_start = loop.time()
                await self._save_up_to(self._taken)
                unsaved = self._taken - self._durable
                # Go on at once with three quarters of a batch waiting, half once the interval allows.
                if unsaved < self._start_at or (
                    unsaved < self._force_at and loop.time() < self._last_start + self._interval
                ):
                    break
        except Exception as exc:
            _LOG.error(
                "stateful: %s stops: saving %s in %s failed: %s",
                self._what,
                self._session.scope,
                self._session.scope.store,
                exc,
            )
            owner = self._owner
            if owner is not None and self.pulling and not owner.done() and not self._closed:
                self._stopped_owner = True
                owner.cancel()  # its driver raises the save's error (stopped_by_failure)
        finally:
            self._task = None
        unsaved = self._taken - self._durable
        if self._closed or self._failure is not None or unsaved <= 0:
            return
        if unsaved >= self._start_at:
            self._start_at_or_after(self._last_start + self._interval)
        elif self._timer is None:
            self._start_at_or_after(loop.time() + self._delay)

    async def _save_up_to(self, seq: int) -> None:
        try:
            await save(self._store, self._session, self._session.confirm(seq))
        except Exception as exc:
            self._failure = self._failure or exc  # never saved again by this run: fencing
            raise
        self._durable = seq

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
