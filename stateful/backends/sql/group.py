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
up to that many batches at once. The queue, the workers and the waking of the callers are
:class:`~stateful.backends.sql.batches.Batches`', shared with the grouped version reads.

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

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from stateful.backends.sql.batches import Batches, Outcome

__all__ = [
    "DEFAULT_MAX_BATCH",
    "BatchError",
    "GroupCommitter",
    "Job",
    "savepoint",
]

_T = TypeVar("_T")

#: At most this many jobs share one transaction: a bound on how long one batch holds the write
#: lock (and its row locks), and on how many saves one failed COMMIT takes down with it.
DEFAULT_MAX_BATCH = 256

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


class GroupCommitter(Batches[Job[Any], Any]):
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
        super().__init__("stateful-group-commit", max_batch=max_batch, workers=workers)
        self._transaction = transaction

    async def submit(self, request: Job[_T]) -> _T:
        """Queue the job ``request`` for the next batch and return its result once the batch committed.

        Raises:
            Exception: what the job raised, or what opening or committing its batch raised.
        """
        result: _T = await super().submit(request)
        return result

    def _outcomes(self, requests: list[Job[Any]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        stage = "begin"
        try:
            with self._transaction() as conn:
                stage = "run"
                for job in requests:
                    outcomes.append(_in_savepoint(conn, job))
                stage = "commit"
        except Exception as exc:  # opening or committing the batch failed: every job fails
            return [(None, _batch_error(exc, len(requests), stage)) for _ in requests]
        return outcomes


def _batch_error(error: Exception, jobs: int, stage: str) -> BatchError:
    failure = BatchError(error, jobs, stage)
    failure.__cause__ = error
    return failure


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
