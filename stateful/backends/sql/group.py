"""Group commit: the async writes of one SQL store share transactions, one COMMIT for many.

A durable COMMIT (an ``fsync`` of SQLite's WAL, a round trip and a WAL flush on PostgreSQL)
costs far more than the statements of a save. When many triggers share one store in one
process, :class:`GroupCommitter` writes their saves together: a caller submits a *job* (a
function of a :class:`~sqlalchemy.engine.Connection` that runs its statements and returns its
result) and awaits it; a worker thread takes every job queued at that moment (up to
``max_batch``), opens one write transaction (on SQLite ``BEGIN IMMEDIATE``), runs each job in
its own SAVEPOINT, and commits once. There is no artificial wait: while one batch commits, new
jobs queue for the next, so batches grow with the load and stay at one job when it is light.
With ``workers`` > 1 (a database server) a job that finds every worker busy starts another,
up to that many batches at once. The callers of a batch are woken once per event loop and
resume at most :data:`SETTLE_CHUNK` per turn of it.

Each job stays independent of the others:

* a job that raises (a lost compare-and-set, a duplicate key) has its SAVEPOINT rolled back and
  its error delivered to its own caller only; the other jobs of the batch go on;
* a job's result is delivered only once the COMMIT succeeded; if the COMMIT (or opening the
  transaction) fails, every job of the batch fails with a :class:`BatchError` (caused by that
  error, saying how many jobs the batch had and at which stage it failed), and none of them is
  applied;
* a caller cancelled while its job still waits in the queue withdraws it: it is never run. Once
  the worker has taken it into a batch it runs to the end, and it is committed with the batch
  although its caller saw :class:`asyncio.CancelledError` (as with a write in a worker thread,
  whose statement finishes anyway). The other jobs of the batch are not affected either way.

Example:
    >>> import asyncio, sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://")
    >>> committer = GroupCommitter(engine.begin)
    >>> async def main():
    ...     jobs = [lambda conn, i=i: conn.execute(sa.text(f"SELECT {i}")).scalar_one() for i in range(3)]
    ...     return await asyncio.gather(*(committer.submit(job) for job in jobs))
    >>> asyncio.run(main())
    [0, 1, 2]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection

__all__ = [
    "DEFAULT_MAX_BATCH",
    "IDLE_SECONDS",
    "SETTLE_CHUNK",
    "BatchError",
    "GroupCommitter",
    "Job",
    "savepoint",
]

_T = TypeVar("_T")

#: At most this many jobs share one transaction: a bound on how long one batch holds the write
#: lock (and its row locks), and on how many saves one failed COMMIT takes down with it.
DEFAULT_MAX_BATCH = 256

#: The worker thread ends after this many seconds without a job (the next one starts it again).
IDLE_SECONDS = 30.0

#: The callers of a batch resume at most this many per turn of their event loop.
SETTLE_CHUNK = 16

#: A job: runs its statements on the batch's connection, inside its own SAVEPOINT.
Job = Callable[[Connection], _T]


class BatchError(Exception):
    """The transaction of a whole batch failed: none of its jobs was applied.

    Raised (from the database's error) to the caller of every job of the batch.

    Args:
        error: what the database raised.
        jobs: how many jobs the batch had.
        stage: ``"begin"`` (opening the transaction), ``"commit"`` (its COMMIT) or ``"run"``
            (between the two, e.g. a SAVEPOINT that could not be rolled back to).

    Example:
        >>> str(BatchError(OSError("disk full"), 3, "commit"))
        'the commit of a batch of 3 writes failed: disk full'
    """

    def __init__(self, error: Exception, jobs: int, stage: str) -> None:
        super().__init__(f"the {stage} of a batch of {jobs} writes failed: {error}")
        self.error = error
        self.jobs = jobs
        self.stage = stage


@dataclass
class _Queued(Generic[_T]):
    job: Job[_T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[_T]  # of ``loop``: set there only


class GroupCommitter:
    """Runs the write jobs of async callers in shared transactions (see the module docstring).

    Args:
        transaction: opens one write transaction and yields its connection; it commits when the
            block ends normally and rolls back when it raises (e.g.
            ``lambda: write_transaction(engine)``). Called in the worker thread, once per batch.
        max_batch: the most jobs in one transaction (>= 1).
        workers: the most batches committed at once, each by a worker thread on a connection
            of its own (>= 1). A worker is started only when a job finds every worker busy, so
            under a light load one worker does it all. Use 1 where writers take turns anyway
            (SQLite); a database server commits concurrent transactions in parallel, and several
            workers keep it busy while one of them waits for the interpreter lock.
    """

    def __init__(
        self,
        transaction: Callable[[], contextlib.AbstractContextManager[Connection]],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        workers: int = 1,
    ) -> None:
        if max_batch < 1 or workers < 1:
            raise ValueError(f"max_batch and workers must be >= 1, got {max_batch!r} and {workers!r}")
        self._transaction = transaction
        self._max_batch = max_batch
        self._max_workers = workers
        self._start_over()

    def _start_over(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._queue: deque[_Queued[Any]] = deque()
        self._workers = 0  # worker threads alive
        self._idle = 0  # of which waiting for a job
        self._pid = os.getpid()

    async def submit(self, job: Job[_T]) -> _T:
        """Queue ``job`` for the next batch and return its result once the batch committed.

        Raises:
            Exception: what ``job`` raised, or what opening or committing its batch raised.
        """
        loop = asyncio.get_running_loop()
        queued: _Queued[_T] = _Queued(job, loop, loop.create_future())
        if self._pid != os.getpid():
            self._start_over()  # a forked child: the parent's worker (and its lock's state) are not ours
        with self._lock:
            self._queue.append(queued)
            if self._idle:
                self._lock.notify()
            elif self._workers < self._max_workers:
                # Kept while there is work (a start waits for the new thread to run).
                self._workers += 1
                threading.Thread(target=self._drain, name="stateful-group-commit", daemon=True).start()
        # Cancelling the await cancels the future: a job still queued is then dropped, one taken
        # runs to the end with its batch (its result is dropped).
        return await queued.future

    def _drain(self) -> None:
        """A worker: run batches while jobs come; end after IDLE_SECONDS without one."""
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
            # A job whose caller was cancelled while it waited is dropped here, never run.
            batch = [queued for queued in batch if not queued.future.cancelled()]
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Queued[Any]]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        stage = "begin"
        try:
            with self._transaction() as conn:
                stage = "run"
                for queued in batch:
                    outcomes.append(_in_savepoint(conn, queued.job))
                stage = "commit"
        except Exception as exc:  # opening or committing the batch failed: every job fails
            failed: list[tuple[Any, BaseException | None]] = [
                (None, _batch_error(exc, len(batch), stage)) for _ in batch
            ]
            _deliver(batch, failed)
            return
        except BaseException as exc:
            _deliver(batch, [(None, exc)] * len(batch))
            raise
        _deliver(batch, outcomes)


def _batch_error(error: Exception, jobs: int, stage: str) -> BatchError:
    failure = BatchError(error, jobs, stage)
    failure.__cause__ = error
    return failure


def _deliver(batch: list[_Queued[Any]], outcomes: list[tuple[Any, BaseException | None]]) -> None:
    """Hand the outcomes to their callers: one wake-up per event loop, not one per job.

    Each wake-up writes to the loop's self-pipe, which releases the interpreter lock; taking it
    back while the loop is busy can take a switch interval (5 ms), per job if done per job.
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


@contextlib.contextmanager
def savepoint(conn: Connection, name: str) -> Iterator[None]:
    """A SAVEPOINT around the block: rolled back to if the block raises, released otherwise.

    Plain SQL (SQLite, PostgreSQL, MySQL, ...): ``Connection.begin_nested()`` compiles its
    SAVEPOINT and RELEASE anew each time, which costs more than a save's own statements.
    """
    conn.exec_driver_sql(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")  # if this fails, so does the batch
        conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        raise
    conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")


def _in_savepoint(conn: Connection, job: Job[_T]) -> tuple[_T | None, Exception | None]:
    """Run ``job`` in a SAVEPOINT: its result, or its error with its statements rolled back."""
    try:
        with savepoint(conn, "stateful_job"):
            return job(conn), None
    except Exception as exc:
        return None, exc
