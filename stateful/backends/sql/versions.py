"""Grouped version reads: the fences of many triggers read their stored versions in one ``SELECT``.

Before it hands over an event after a pause, and every few seconds while events keep coming, a
decorated trigger reads the stored version of its watermark (:mod:`stateful._fence`). A thousand
busy triggers of one triggerer would send a read each, a worker thread and a round trip per
read; :class:`VersionReads` takes every read queued at that moment and answers them with one
``SELECT namespace, name, key, version ... WHERE (namespace, name, key) IN (...)`` (up to
:data:`CHUNK` addresses per statement, :data:`MAX_BATCH` per batch), on one connection, outside
any write transaction: one primary-key lookup each, never a document's value. A failed
statement fails every read of its batch (each caller gets the store's error for it, as a read of
its own would).

Example:
    >>> import asyncio, datetime, sqlalchemy as sa
    >>> from stateful.backends.base import Address
    >>> import contextlib
    >>> from stateful.backends.sql.schema import state_table
    >>> engine = sa.create_engine(  # one in-memory database for every thread
    ...     "sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False})
    >>> table = state_table("state")
    >>> table.create(engine)
    >>> reads = VersionReads(lambda: contextlib.nullcontext(engine), table)
    >>> with engine.begin() as conn:
    ...     _ = conn.execute(table.insert().values(namespace="files", name="landing", key="watermark",
    ...         value="{}", version=3, updated_at=datetime.datetime.now(datetime.timezone.utc)))
    >>> async def read(*names):
    ...     return await asyncio.gather(*(reads.submit(Address("files", n, "watermark")) for n in names))
    >>> asyncio.run(read("landing", "archive"))
    [3, None]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stateful.backends.base import Address
from stateful.backends.sql.batches import Batches, Outcome

__all__ = ["CHUNK", "MAX_BATCH", "VersionReads"]

#: At most this many addresses in one ``SELECT`` (three bound values each; SQLite's old limit
#: was 999 values per statement).
CHUNK = 300

#: At most this many reads in one batch (one connection, one statement per :data:`CHUNK`): the
#: fences of a whole triggerer's triggers at once.
MAX_BATCH = 4 * CHUNK


class VersionReads(Batches[Address, "int | None"]):
    """Reads the versions of many documents in one statement (see the module docstring).

    Args:
        use: the store's engine for one call (``LazyEngine.use``: opens the store at first use);
            called in the worker thread, once per batch.
        table: the state table.
    """

    def __init__(self, use: Callable[[], contextlib.AbstractContextManager[Engine]], table: sa.Table) -> None:
        super().__init__("stateful-version-reads", max_batch=MAX_BATCH)
        self._use = use
        c = table.c
        self._select = sa.select(c.namespace, c.name, c.key, c.version).where(
            sa.tuple_(c.namespace, c.name, c.key).in_(sa.bindparam("addresses", expanding=True))
        )

    def _outcomes(self, requests: list[Address]) -> list[Outcome]:
        found: dict[Address, int] = {}
        try:
            with self._use() as engine, engine.connect() as conn:
                unique = list(dict.fromkeys(requests))
                for start in range(0, len(unique), CHUNK):
                    rows = conn.execute(self._select, {"addresses": unique[start : start + CHUNK]})
                    found.update(
                        (Address(row.namespace, row.name, row.key), int(row.version)) for row in rows
                    )
        except Exception as exc:  # every read of the batch fails with it
            return [(None, exc) for _ in requests]
        return [(found.get(address), None) for address in requests]
