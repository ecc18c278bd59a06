"""Batches of requests from async callers, run by worker threads: what group commit and grouped reads share.

A caller submits a request and awaits its result; a worker thread takes every request queued at
that moment (up to ``max_batch``) and runs them as one batch
(:meth:`Batches._outcomes`, a subclass's: one transaction for many writes in
:class:`~stateful.backends.sql.group.GroupCommitter`, one ``SELECT`` for many version reads in
:class:`~stateful.backends.sql.versions.VersionReads`). There is no artificial wait: while one
batch runs, new requests queue for the next, so batches grow with the load and stay at one
request when it is light. With ``workers`` > 1 a request that finds every worker busy starts
another, up to that many batches at once. A worker ends after :data:`IDLE_SECONDS` without a
request. The callers of a batch are woken once per event loop and resume at most
:data:`SETTLE_CHUNK` per turn of it.

A caller cancelled while its request still waits in the queue withdraws it: it is never run.
Once a worker has taken it into a batch it runs to the end; its result is dropped.

Example:
    >>> import asyncio
    >>> class Doubles(Batches[int, int]):
    ...     def _outcomes(self, requests):
    ...         return [(2 * request, None) for request in requests]
    >>> async def main():
    ...     return await asyncio.gather(*(Doubles("doubles").submit(i) for i in range(3)))
    >>> asyncio.run(main())
    [0, 2, 4]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["IDLE_SECONDS", "SETTLE_CHUNK", "Batches", "Outcome"]

_In = TypeVar("_In")
_Out = TypeVar("_Out")

#: A worker thread ends after this many seconds without a request (the next one starts it again).
IDLE_SECONDS = 30.0

#: The callers of a batch resume at most this many per turn of their event loop.
SETTLE_CHUNK = 16

#: A request's outcome: its result, or the error its caller gets.
Outcome = tuple[Any, BaseException | None]


@dataclass
class _Queued(Generic[_In]):
    request: _In
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]  # of ``loop``: set there only


class Batches(Generic[_In, _Out]):
    """Runs the requests of async callers in batches, in worker threads (see the module docstring).

    Args:
        thread_name: the worker threads' name.
        max_batch: the most requests in one batch (>= 1).
        workers: the most batches run at once, each by a worker thread of its own (>= 1). A
            worker is started only when a request finds every worker busy.
    """

    def __init__(self, thread_name: str, *, max_batch: int = 256, workers: int = 1) -> None:
        if max_batch < 1 or workers < 1:
            raise ValueError(f"max_batch and workers must be >= 1, got {max_batch!r} and {workers!r}")
        self._thread_name = thread_name
        self._max_batch = max_batch
        self._max_workers = workers
        self._start_over()

    def _outcomes(self, requests: list[_In]) -> list[Outcome]:
        """Run one batch (in a worker thread): one outcome per request, in their order."""
        raise NotImplementedError

    def _start_over(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._queue: deque[_Queued[_In]] = deque()
        self._workers = 0  # worker threads alive
        self._idle = 0  # of which waiting for a request
        self._pid = os.getpid()

    async def submit(self, request: _In) -> _Out:
        """Queue ``request`` for the next batch and return its result once the batch ran.

        Raises:
            Exception: the error of its outcome.
        """
        loop = asyncio.get_running_loop()
        queued: _Queued[_In] = _Queued(request, loop, loop.create_future())
        if self._pid != os.getpid():
            self._start_over()  # a forked child: the parent's worker (and its lock's state) are not ours
        with self._lock:
            self._queue.append(queued)
            if self._idle:
                self._lock.notify()
            elif self._workers < self._max_workers:
                # Kept while there is work (a start waits for the new thread to run).
                self._workers += 1
                threading.Thread(target=self._drain, name=self._thread_name, daemon=True).start()
        # Cancelling the await cancels the future: a request still queued is then dropped, one
        # taken runs to the end with its batch (its result is dropped).
        result: _Out = await queued.future
        return result

    def _drain(self) -> None:
        """A worker: run batches while requests come; end after IDLE_SECONDS without one."""
        while True:
            with self._lock:
                if not self._queue:
                    self._idle += 1
                    self._lock.wait(IDLE_SECONDS)
                    self._idle -= 1
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))]
                if not batch:
                    self._workers -= 1
                    return
            # A request whose caller was cancelled while it waited is dropped here, never run.
            batch = [queued for queued in batch if not queued.future.cancelled()]
            if batch:
                self._run(batch)
            del batch  # not kept (with its callers' futures) while the worker waits for more

    def _run(self, batch: list[_Queued[_In]]) -> None:
        try:
            outcomes = self._outcomes([queued.request for queued in batch])
        except BaseException as exc:  # not the batch's own failure (that is in its outcomes)
            _deliver(batch, [(None, exc)] * len(batch))
            raise
        _deliver(batch, outcomes)


def _deliver(batch: list[_Queued[Any]], outcomes: list[Outcome]) -> None:
    """Hand the outcomes to their callers: one wake-up per event loop, not one per request.

    Each wake-up writes to the loop's self-pipe, which releases the interpreter lock; taking it
    back while the loop is busy can take a switch interval (5 ms), per request if done per request.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
    for queued, (result, error) in zip(batch, outcomes, strict=True):
        by_loop.setdefault(queued.loop, []).append((queued.future, result, error))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: no caller is left to tell
            loop.call_soon_threadsafe(_settle, loop, settled, 0)


def _settle(
    loop: asyncio.AbstractEventLoop,
    settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    start: int,
) -> None:
    """On the callers' loop: set each future not cancelled meanwhile, SETTLE_CHUNK per turn.

    The callers resume in the turn after their future is set: a whole batch at once would hold
    the loop for all of them (hundreds of triggers going on with their work) in one turn.
    """
    end = start + SETTLE_CHUNK
    for future, result, error in settled[start:end]:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    if end < len(settled):
        loop.call_soon(_settle, loop, settled, end)
