"""Group commit in the SQL store: async writes share transactions, each still its own compare-and-set.

On a real SQLite file and on the PostgreSQL fixture. To put writes in one batch for sure, a test
holds the database's lock from a connection of its own (SQLite's write lock; on PostgreSQL the
row of a "blocker" document), starts a write of the blocker, waits until the store's worker has
opened that batch's transaction (it then waits for the lock), and queues the writes under test:
they all wait for the next batch. Transactions are counted with SQLAlchemy engine events.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from stateful.backends import SqlBackend
from stateful.errors import StateConflictError, StoreError
from tests._postgres import PostgresServer
from tests.conftest import POSTGRES_PARAM, unique_table

NS = "group"
BLOCKER = (NS, "blocker", "watermark")


@dataclass
class Transactions:
    """Counts the transactions begun and committed by SQLAlchemy engines while it listens."""

    begun: int = 0
    committed: int = 0
    listeners: list[tuple[str, Any]] = field(default_factory=list)

    def listen(self) -> None:
        def on_begin(_conn: sa.Connection) -> None:
            self.begun += 1

        def on_commit(_conn: sa.Connection) -> None:
            self.committed += 1

        for name, fn in (("begin", on_begin), ("commit", on_commit)):
            sa.event.listen(sa.engine.Engine, name, fn)
            self.listeners.append((name, fn))

    def stop(self) -> None:
        for name, fn in self.listeners:
            sa.event.remove(sa.engine.Engine, name, fn)
        self.listeners.clear()


@dataclass
class Database:
    """A store on a fresh database, and a connection of the test's own to hold its locks."""

    kind: str
    store: SqlBackend
    url: str
    path: Path | None = None
    conninfo: str | None = None

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold what a write of BLOCKER needs (SQLite: the write lock; PostgreSQL: its row)."""
        if self.path is not None:
            sqlite_conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                sqlite_conn.execute("BEGIN IMMEDIATE")
                yield
            finally:
                sqlite_conn.execute("ROLLBACK")
                sqlite_conn.close()
            return
        assert self.conninfo is not None
        with psycopg.connect(self.conninfo) as pg_conn, pg_conn.transaction():
            where = "namespace = %s AND name = %s AND key = %s"
            pg_conn.execute(f'SELECT 1 FROM "{self.store.table_name}" WHERE {where} FOR UPDATE', BLOCKER)
            yield

    def execute(self, *statements: str) -> None:
        """Run DDL on a connection of the test's own."""
        engine = sa.create_engine(self.url)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "group.db"
        url = f"sqlite:///{path}"
        database = Database("sqlite", SqlBackend(url), url, path=path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        database = Database(
            "postgres",
            SqlBackend(server.url, table_name=unique_table(), commit_workers=1),  # one batch at a time
            server.url,
            conninfo=server.conninfo,
        )
    database.store.write(*BLOCKER, "blocker-1", expected_version=None)  # creates the tables
    yield database
    database.store.dispose()


@pytest.fixture
def transactions() -> Iterator[Transactions]:
    counter = Transactions()
    counter.listen()
    yield counter
    counter.stop()


async def _until(condition: Any, what: str) -> None:
    for _ in range(2000):  # a bound, not a timing assertion: 20 s of polling
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


@contextlib.asynccontextmanager
async def _next_batch(db: Database, transactions: Transactions) -> Any:
    """Within the block, writes queue for one batch; it runs when the block ends.

    Yields the task writing BLOCKER (version 1 -> 2), in a batch of its own before them.
    """
    with db.holding():
        begun = transactions.begun
        blocker = asyncio.create_task(db.store.awrite(*BLOCKER, "blocker-2", expected_version=1))
        await _until(lambda: transactions.begun > begun, "the blocker's batch began")
        yield blocker
    assert await blocker == 2


async def test_a_conflict_fails_only_its_own_write_in_a_shared_transaction(
    db: Database, transactions: Transactions
) -> None:
    store = db.store
    store.write(NS, "a", "k", "a1", expected_version=None)
    store.write(NS, "b", "k", "b1", expected_version=None)
    committed = transactions.committed
    async with _next_batch(db, transactions):
        wins = asyncio.create_task(store.awrite(NS, "a", "k", "a2", expected_version=1))
        loses = asyncio.create_task(store.awrite(NS, "b", "k", "b-stale", expected_version=7))
        new = asyncio.create_task(store.awrite(NS, "c", "k", "c1", expected_version=None))
        await asyncio.sleep(0)  # the three are queued
    assert await wins == 2
    assert await new == 1
    with pytest.raises(StateConflictError) as conflict:
        await loses
    assert (conflict.value.expected_version, conflict.value.actual_version) == (7, 1)
    # The blocker's batch, then one for the three writes.
    assert transactions.committed - committed == 2
    assert [r.value for r in store.history(NS, "a", "k")] == ["a2", "a1"]
    record = store.read(NS, "b", "k")
    assert record is not None and (record.value, record.version) == ("b1", 1)
    assert [r.value for r in store.history(NS, "b", "k")] == ["b1"]
    record = store.read(NS, "c", "k")
    assert record is not None and (record.value, record.version) == ("c1", 1)


async def test_two_first_writes_of_one_document_in_one_batch(
    db: Database, transactions: Transactions
) -> None:
    """A duplicate key rolls back its own savepoint only (PostgreSQL would abort the transaction)."""
    store = db.store
    async with _next_batch(db, transactions):
        first = asyncio.create_task(store.awrite(NS, "new", "k", "first", expected_version=None))
        second = asyncio.create_task(store.awrite(NS, "new", "k", "second", expected_version=None))
        other = asyncio.create_task(store.awrite(NS, "other", "k", "other", expected_version=None))
        await asyncio.sleep(0)
    assert await first == 1
    with pytest.raises(StateConflictError) as conflict:
        await second
    assert (conflict.value.expected_version, conflict.value.actual_version) == (None, 1)
    assert await other == 1
    record = store.read(NS, "new", "k")
    assert record is not None and (record.value, record.version) == ("first", 1)


@pytest.mark.parametrize("group_commit", [True, False])
@pytest.mark.parametrize("kind", ["sqlite", POSTGRES_PARAM])
async def test_many_concurrent_writes(
    request: pytest.FixtureRequest, tmp_path: Path, transactions: Transactions, kind: str, group_commit: bool
) -> None:
    """With the default workers (PostgreSQL: several batches at once)."""
    if kind == "sqlite":
        store = SqlBackend(f"sqlite:///{tmp_path / 'many.db'}", group_commit=group_commit)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = SqlBackend(server.url, table_name=unique_table(), group_commit=group_commit)
    docs, rounds = 40, 5
    for i in range(docs):
        store.write(NS, f"n{i}", "k", "v1", expected_version=None)
    committed = transactions.committed

    async def writer(i: int) -> None:
        for version in range(1, rounds + 1):
            assert (
                await store.awrite(NS, f"n{i}", "k", f"v{version + 1}", expected_version=version)
                == version + 1
            )

    try:
        await asyncio.gather(*(writer(i) for i in range(docs)))
        commits = transactions.committed - committed
        if group_commit:
            assert commits < docs * rounds / 2 if kind == "sqlite" else commits < docs * rounds
        else:
            assert commits == docs * rounds
        for i in range(docs):
            kept = store.history(NS, f"n{i}", "k")
            assert [(r.version, r.value) for r in kept] == [(v, f"v{v}") for v in range(rounds + 1, 0, -1)]
    finally:
        store.dispose()


async def test_a_failed_commit_fails_every_write_of_its_batch(
    db: Database, transactions: Transactions
) -> None:
    """A deferred constraint, checked at COMMIT, refuses value 'poison': the batch is not applied."""
    store = db.store
    table = store.table_name
    if db.kind == "sqlite":
        db.execute(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
            "CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
            f"CREATE TRIGGER poison AFTER UPDATE ON {table} WHEN NEW.value = 'poison' "
            "BEGIN INSERT INTO child VALUES (42); END",
        )

        def foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA foreign_keys = ON")

        sa.event.listen(sa.engine.Engine, "connect", foreign_keys_on)
        store.dispose()  # reconnect with foreign keys checked
    else:
        db.execute(
            f"CREATE FUNCTION {table}_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN IF NEW.value = 'poison' THEN RAISE EXCEPTION 'poison refused at commit'; END IF; "
            f"RETURN NEW; END $$",
            f"CREATE CONSTRAINT TRIGGER {table}_poison AFTER UPDATE ON {table} DEFERRABLE INITIALLY DEFERRED "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_refuse()",
        )
    try:
        store.write(NS, "a", "k", "a1", expected_version=None)
        store.write(NS, "b", "k", "b1", expected_version=None)
        async with _next_batch(db, transactions):
            good = asyncio.create_task(store.awrite(NS, "a", "k", "a2", expected_version=1))
            poison = asyncio.create_task(store.awrite(NS, "b", "k", "poison", expected_version=1))
            fresh = asyncio.create_task(store.awrite(NS, "c", "k", "c1", expected_version=None))
            await asyncio.sleep(0)
        for task in (good, poison, fresh):
            with pytest.raises(StoreError, match=r"failed to write state group/. \(key 'k'\)") as failed:
                await task
            password = sa.engine.make_url(db.url).password
            assert password is None or str(password) not in str(failed.value)
        for name, value in (("a", "a1"), ("b", "b1")):
            record = store.read(NS, name, "k")
            assert record is not None and (record.value, record.version) == (value, 1)
            assert [r.value for r in store.history(NS, name, "k")] == [value]
        assert store.read(NS, "c", "k") is None
        # The store goes on: the next batch commits.
        assert await store.awrite(NS, "a", "k", "a2", expected_version=1) == 2
    finally:
        if db.kind == "sqlite":
            sa.event.remove(sa.engine.Engine, "connect", foreign_keys_on)


async def test_a_write_cancelled_while_queued_is_never_written(
    db: Database, transactions: Transactions
) -> None:
    store = db.store
    async with _next_batch(db, transactions):
        cancelled = asyncio.create_task(store.awrite(NS, "x", "k", "never", expected_version=None))
        kept = asyncio.create_task(store.awrite(NS, "y", "k", "kept", expected_version=None))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    assert await kept == 1
    assert store.read(NS, "x", "k") is None


async def test_async_delete_is_group_committed_and_compare_and_set(
    db: Database, transactions: Transactions
) -> None:
    store = db.store
    store.write(NS, "d", "k", "d1", expected_version=None)
    store.write(NS, "e", "k", "e1", expected_version=None)
    async with _next_batch(db, transactions):
        deleted = asyncio.create_task(store.adelete(NS, "d", "k", expected_version=1))
        refused = asyncio.create_task(store.adelete(NS, "e", "k", expected_version=3))
        absent = asyncio.create_task(store.adelete(NS, "nothing", "k"))
        await asyncio.sleep(0)
    assert await deleted is True
    assert await absent is False
    with pytest.raises(StateConflictError):
        await refused
    assert store.read(NS, "d", "k") is None
    assert store.read(NS, "e", "k") is not None


async def test_a_write_failing_half_way_is_rolled_back_alone(
    db: Database, transactions: Transactions
) -> None:
    """Its state row was updated when its history row was refused: its savepoint undoes the update."""
    store = db.store
    history = store.history_table_name
    if db.kind == "sqlite":
        db.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {history} WHEN NEW.value = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'history row refused'); END"
        )
    else:
        db.execute(
            f"CREATE FUNCTION {history}_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN IF NEW.value = 'refused' THEN RAISE EXCEPTION 'history row refused'; END IF; "
            f"RETURN NEW; END $$",
            f"CREATE TRIGGER refuse BEFORE INSERT ON {history} "
            f"FOR EACH ROW EXECUTE FUNCTION {history}_refuse()",
        )
    store.write(NS, "a", "k", "a1", expected_version=None)
    store.write(NS, "b", "k", "b1", expected_version=None)
    async with _next_batch(db, transactions):
        refused = asyncio.create_task(store.awrite(NS, "a", "k", "refused", expected_version=1))
        kept = asyncio.create_task(store.awrite(NS, "b", "k", "b2", expected_version=1))
        await asyncio.sleep(0)
    with pytest.raises(StoreError, match=r"history row refused"):
        await refused
    assert await kept == 2
    record = store.read(NS, "a", "k")
    assert record is not None and (record.value, record.version) == ("a1", 1)
    assert [r.value for r in store.history(NS, "b", "k")] == ["b2", "b1"]


@pytest.mark.parametrize("workers", [0, -1, True])
def test_commit_workers_must_be_at_least_one(workers: int) -> None:
    with pytest.raises(StoreError, match=r"commit_workers must be a whole number >= 1.*got"):
        SqlBackend("sqlite://", commit_workers=workers)
