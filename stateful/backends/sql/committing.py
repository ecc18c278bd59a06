"""How a SQL store runs its async writes: by group commit, or each alone in a worker thread.

:class:`AsyncWrites` is the glue between a store and :class:`~stateful.backends.sql.group.GroupCommitter`:
it picks how many batches may be committed at once, runs a job and turns a failure into the
store's :class:`~stateful.errors.StoreError`. When the transaction of a whole batch fails (its
COMMIT refused, say by a deferred constraint, or the connection lost), the error says that the
batch was refused: how many saves it held, that none was applied, and what a trigger does next.

Example:
    >>> [check_commit_workers(None, backend, "SqlBackend(...)") for backend in ("sqlite", "postgresql")]
    [1, 4]
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine

from stateful.backends.sql.engine import LazyEngine, write_transaction
from stateful.backends.sql.group import BatchError, GroupCommitter, Job
from stateful.errors import StatefulError, StoreError

__all__ = ["AsyncWrites", "StoreErrorOf", "check_commit_workers", "in_transaction"]

_T = TypeVar("_T")

# Group commit on a database server: at most this many batches are committed at once.
_SERVER_WORKERS = 4

#: Builds the store's error for ``operation`` on ``where`` that failed with ``exc`` (adding
#: ``detail`` after the database's message), and the cause to chain to it.
StoreErrorOf = Callable[[str, str, Exception, str], tuple[StoreError, BaseException]]


def check_commit_workers(workers: int | None, backend: str, description: str) -> int:
    """How many batches may be committed at once: ``workers``, else 1 on SQLite, 4 elsewhere.

    Raises:
        StoreError: ``workers`` is not a whole number >= 1.
    """
    if workers is None:
        # SQLite has one writer at a time: more workers would only queue for its lock.
        return 1 if backend == "sqlite" else _SERVER_WORKERS
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise StoreError(
            f"{description}: commit_workers must be a whole number >= 1 (how many batches of "
            f"writes may be committed at once), got {workers!r}; or None for the default."
        )
    return workers


class AsyncWrites:
    """Runs a store's async write jobs (see :class:`~stateful.backends.sql.store.SqlBackend`).

    Args:
        engine: the store's engine.
        group_commit: share transactions (else each job runs alone, in a worker thread).
        workers: with group commit, the most batches committed at once.
        error_of: the store's error for a failure.
    """

    def __init__(
        self, engine: LazyEngine, *, group_commit: bool, workers: int, error_of: StoreErrorOf
    ) -> None:
        self._engine = engine
        self._error_of = error_of
        self._committer = GroupCommitter(self._batch_transaction, workers=workers) if group_commit else None

    @property
    def group_commit(self) -> bool:
        """Whether the jobs share transactions."""
        return self._committer is not None

    async def submit(self, operation: str, where: str, job: Job[_T]) -> _T:
        """Run ``job`` in a shared transaction (or alone in a worker thread); return its result.

        Raises:
            StatefulError: what the job raised (a lost compare-and-set), or a StoreError for any
                failure of the database, naming ``operation`` and ``where``.
        """
        try:
            if self._committer is None:
                return await asyncio.to_thread(self._run_alone, job)
            return await self._committer.submit(job)
        except StatefulError:
            raise
        except BatchError as exc:
            error, cause = self._error_of(operation, where, exc.error, _refused(exc))
        except Exception as exc:
            error, cause = self._error_of(operation, where, exc, "")
        raise error from cause  # outside the handler: the cause may be a redacted stand-in

    def _run_alone(self, job: Job[_T]) -> _T:
        with self._engine.use() as engine:
            return in_transaction(engine, job)

    @contextlib.contextmanager
    def _batch_transaction(self) -> Iterator[Connection]:
        """One write transaction for a batch of the group committer (in its worker thread)."""
        with self._engine.use() as engine, write_transaction(engine) as conn:
            yield conn


def in_transaction(engine: Engine, job: Job[_T]) -> _T:
    """Run one write job alone, in a write transaction of its own (the sync path)."""
    with write_transaction(engine) as conn:
        return job(conn)


def _refused(exc: BatchError) -> str:
    """What a failed batch means for its writes, and for the triggers that made them."""
    what = {"begin": "Opening the transaction", "commit": "The COMMIT", "run": "The transaction"}[exc.stage]
    others = exc.jobs - 1
    shared = (
        f" (shared with {others} other write{'s' if others != 1 else ''} by group commit)" if others else ""
    )
    return (
        f" {what} of this write's batch{shared} failed, so the database refused the whole "
        f"batch: none of its {exc.jobs} write{'s' if exc.jobs != 1 else ''} was applied. Each caller gets "
        f"this error; a trigger stops, and once Airflow restarts it, it resumes from its last stored "
        f"watermark and emits the events since then again. If the COMMIT itself was refused (a deferred "
        f"constraint or trigger on the table, a full disk), fix that; SqlBackend(group_commit=False) "
        f"gives each save a transaction of its own, so a refused one takes no other save with it."
    )
