"""The SQL state store, on SQLAlchemy Core (2.x, or 1.4 under Airflow 3.0): SQLite, PostgreSQL, and more.

Example:
    >>> from stateful.backends import SqlBackend
    >>> store = SqlBackend("sqlite:////tmp/stateful-doctest.db")  # connects at first use
    >>> store.description
    'SqlBackend(sqlite:////tmp/stateful-doctest.db)'
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from stateful._address import display_address
from stateful._layout import Layout
from stateful.backends.base import Address, AddressedStore, StateRecord, Write
from stateful.backends.sql import history as _history
from stateful.backends.sql.committing import AsyncWrites, check_commit_workers, in_transaction
from stateful.backends.sql.engine import LazyEngine, check_dialect, parse_url, read_transaction, sqlite_path
from stateful.backends.sql.group import Job
from stateful.backends.sql.redact import Redactor
from stateful.backends.sql.tables import Tables
from stateful.backends.sql.unavailable import unreachable
from stateful.backends.sql.versions import VersionReads
from stateful.backends.sql.writes import Writes
from stateful.errors import StatefulError, StoreError, StoreUnavailableError

__all__ = ["SqlBackend", "WriteJob"]

_T = TypeVar("_T")

#: A write as a function of a connection inside a write transaction; returns the new version.
WriteJob = Job[int]

DEFAULT_TABLE = "stateful_process_state"


class SqlBackend(AddressedStore):
    """Keeps state in one SQL table; implements both store Protocols.

    Construction only parses the URL: it never connects and never imports the database driver,
    so a DAG file can build stores at parse time. The engine is created at first use (once per
    instance, thread-safely), and the table is created then if it is missing. Async methods run
    the blocking code in a worker thread, so the triggerer's event loop never waits on the
    database. Passwords are masked in :attr:`description`, ``repr`` and every error.

    SQLite files are opened in WAL mode with a 30 s busy timeout and writes take the write lock
    up front (``BEGIN IMMEDIATE``), so several processes can share one file. PostgreSQL needs
    ``pip install 'airflow-stateful[postgres]'`` (``postgresql+psycopg://...``); on Airflow 3.0,
    whose SQLAlchemy 1.4 has no psycopg 3 dialect, ``postgresql+psycopg2://...`` with psycopg2.

    Every write also records the version it creates in ``<table_name>_history`` (created when
    missing, also next to a table made by an earlier release) and keeps the newest
    ``history_versions`` of each document; :meth:`history` lists them. Deleting a document
    deletes its history too. A large state handed over in parts (:meth:`write_layout`) is
    stored as a manifest plus the parts not stored yet, in ``<table_name>_parts``
    (:mod:`stateful.backends.sql.parts`); every read returns the whole text.

    **Group commit.** The async writes (``awrite``, ``adelete``: the saves of triggers) of all
    the triggers sharing this instance in one process are written together: every write queued
    while the previous batch commits joins one transaction (up to 256), each in its own
    SAVEPOINT, with one COMMIT (one ``fsync``) for all (on a database server up to
    ``commit_workers`` such batches at once). Each write is still its own
    compare-and-set: a conflict fails only that write, and a write's result is returned only once
    its batch committed (a failed COMMIT fails every write of the batch, none applied). The sync
    methods, and every read, run alone as before. ``group_commit=False`` gives each async write
    its own transaction in a worker thread.

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:////opt/airflow/stateful.db`` or
            ``postgresql+psycopg://user:password@host/db``.
        table_name: the table to use (created if absent).
        engine_options: extra keyword arguments for :func:`sqlalchemy.create_engine`; they
            override this class's defaults (``connect_args`` are merged).
        history_versions: how many versions of each document to keep (0: no history). ``None``
            reads ``STATEFUL_HISTORY_VERSIONS``, else ``[stateful] history_versions``, else 100,
            at first use.
        group_commit: write the async writes of this instance in shared transactions (default).
        commit_workers: with group commit, how many batches may be committed at once, each by a
            worker thread on its own connection. ``None``: 1 on SQLite (one writer at a time),
            4 on other databases.
        create: create what is missing at first use (the SQLite file and its directory, the
            tables), as a store that will be written does. ``False`` opens an existing store
            only, to read it: nothing is created or altered, and if the SQLite file or the
            state table is missing, the first call raises
            :class:`~stateful.errors.StoreNotFoundError`. ``stateful show``, ``list``,
            ``history`` and ``export`` open stores this way.

    Raises:
        StoreError: the URL cannot be parsed, or names a dialect SQLAlchemy does not know.

    Example:
        >>> store = SqlBackend("postgresql://airflow:s3cret@db.internal/airflow")
        >>> store.description
        'SqlBackend(postgresql://airflow:***@db.internal/airflow)'
    """

    def __init__(
        self,
        url: str | URL,
        *,
        table_name: str = DEFAULT_TABLE,
        engine_options: Mapping[str, Any] | None = None,
        history_versions: int | None = None,
        group_commit: bool = True,
        commit_workers: int | None = None,
        create: bool = True,
    ) -> None:
        self._url = parse_url(url)
        self._redactor = Redactor(self._url)
        masked = self._redactor.masked_url
        suffix = "" if table_name == DEFAULT_TABLE else f", table {table_name}"
        self._description = f"SqlBackend({masked}{suffix})"
        if not table_name:
            raise StoreError(f"{self._description}: table_name must not be empty")
        self._table_name = table_name
        keep = (
            None
            if history_versions is None
            else _history.check_history_versions(history_versions, f"{self._description}: history_versions")
        )
        self._tables = Tables(table_name, self._description, keep)
        self._table = self._tables.state
        self._writes = Writes(self._tables)
        self._engine = LazyEngine(
            self._url,
            driver=check_dialect(self._url, masked),
            description=self._description,
            engine_options=engine_options or {},
            on_open=(
                (lambda engine: self._tables.create(engine, self._redactor))
                if create
                else (lambda engine: self._tables.open_existing(engine, masked))
            ),
            location=masked,
            create=create,
        )
        workers = check_commit_workers(commit_workers, self._url.get_backend_name(), self._description)
        self._async = AsyncWrites(
            self._engine, group_commit=group_commit, workers=workers, error_of=self._store_error
        )
        self._versions = VersionReads(self._engine.use, self._table)

    @property
    def description(self) -> str:
        """The store for logs and errors, e.g. ``SqlBackend(postgresql+psycopg://u:***@h/db)``."""
        return self._description

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file, or ``None`` for another database or an in-memory one."""
        if self._url.get_backend_name() != "sqlite":
            return None
        return sqlite_path(self._url)

    @property
    def table_name(self) -> str:
        """The name of the table that holds the state."""
        return self._table_name

    def __repr__(self) -> str:
        return f"SqlBackend({self._redactor.masked_url!r}, table_name={self._table_name!r})"

    @property
    def history_table_name(self) -> str:
        """The name of the table that keeps the history (see :meth:`history`)."""
        return self._tables.history.name

    def dispose(self) -> None:
        """Close the engine and its pooled connections; the next call opens a new engine."""
        self._engine.dispose()

    def open(self) -> None:
        """Connect now, rather than at the first read or write, and set up the tables.

        Raises:
            StoreNotFoundError: the store was made with ``create=False`` and does not exist.
            StoreError: the database cannot be reached or the tables cannot be created.

        Example:
            >>> store = SqlBackend("sqlite://")
            >>> store.open()
            >>> store.created  # the tables were made just now
            True
        """
        self._run("open", "the store", lambda engine: None)

    @property
    def created(self) -> bool:
        """Whether opening this store created its state table: a new, empty store.

        ``False`` until the store is opened (by :meth:`open` or any call).
        """
        return self._tables.created

    # -- the compare-and-set protocol (the public methods are AddressedStore's) ------------------

    def _read(self, address: Address) -> StateRecord | None:
        def run(engine: Engine) -> StateRecord | None:
            with read_transaction(engine) as conn:
                row = conn.execute(self._select().where(*self._pk(address))).first()
                return None if row is None else self._expand(conn, [_record(row)])[0]

        return self._run("read", _where(address), run)

    def version(self, namespace: str, name: str, key: str) -> int | None:
        """The stored version of a document, or ``None``: one primary-key lookup of one column.

        Example:
            >>> store = SqlBackend("sqlite://")
            >>> _ = store.write("files", "landing", "watermark", "{}", expected_version=None)
            >>> store.version("files", "landing", "watermark")
            1
        """
        address = Address(namespace, name, key)

        def run(engine: Engine) -> int | None:
            with engine.connect() as conn:  # one statement: no snapshot to agree with
                found = conn.execute(sa.select(self._table.c.version).where(*self._pk(address))).scalar()
                return None if found is None else int(found)

        return self._run("read the version of", _where(address), run)

    async def aversion(self, namespace: str, name: str, key: str) -> int | None:
        """Async :meth:`version` (see ``SupportsVersion``): the reads of all callers share statements.

        The reads queued while the previous ones run are answered together, by one ``SELECT``
        of their primary keys in a worker thread (:mod:`~stateful.backends.sql.versions`): the
        fences of a thousand triggers in one triggerer cost a few statements a second, not a
        thousand.

        Raises:
            StoreUnavailableError: the database cannot be reached now.
            StoreError: any other failure of the database.
        """
        address = Address(namespace, name, key)
        try:
            return await self._versions.submit(address)
        except StatefulError:
            raise
        except Exception as exc:
            error, cause = self._store_error("read the version of", _where(address), exc, "")
        raise error from cause  # outside the handler: the cause may be a redacted stand-in

    def _write(
        self, address: Address, value: str, expected: int | None, updated_by: str | None, reason: str | None
    ) -> int:
        job = self.write_job(address, value, expected, updated_by, reason)
        return self._run("write", _where(address), lambda engine: in_transaction(engine, job))

    def _write_layout(
        self,
        address: Address,
        layout: Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        job = self.write_job(address, layout, expected, updated_by, reason)
        return self._run("write", _where(address), lambda engine: in_transaction(engine, job))

    def write_job(
        self,
        address: Address,
        content: str | Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None = None,
    ) -> WriteJob:
        """The compare-and-set write of ``content``, as a job to run in a write transaction.

        The job writes the state row (a large layout as a manifest, see
        :mod:`~stateful.backends.sql.parts`), its history row and the parts not stored yet, and
        deletes the parts no kept version names; it returns the new version. A small state
        written over a row that holds no parts is one ``UPDATE`` plus its history row
        (:mod:`~stateful.backends.sql.writes`). It raises
        :class:`~stateful.errors.StateConflictError` when the stored version is not
        ``expected`` (also when a racing first write inserted the row: the insert runs in a
        SAVEPOINT, so the transaction stays usable). It needs the store opened (any call of the
        store opens it). The sync methods run it in a transaction of its own; the async ones
        hand it to the group committer.
        """
        return self._writes.write_job(address, content, expected, updated_by, reason)

    def _write_many(self, writes: Sequence[Write], updated_by: str | None, reason: str | None) -> list[int]:
        job = self._write_many_job(writes, updated_by, reason)
        return self._run("write", _where_many(writes), lambda engine: in_transaction(engine, job))

    async def _awrite_many(
        self, writes: Sequence[Write], updated_by: str | None, reason: str | None
    ) -> list[int]:
        job = self._write_many_job(writes, updated_by, reason)
        return await self._async.submit("write", _where_many(writes), job)

    def _write_many_job(
        self, writes: Sequence[Write], updated_by: str | None, reason: str | None
    ) -> Job[list[int]]:
        """One job for every write: in one transaction (its own SAVEPOINT when group-committed)."""
        jobs = [self.write_job(w.address, w.value, w.expected_version, updated_by, reason) for w in writes]
        return lambda conn: [job(conn) for job in jobs]

    def _list_name(self, namespace: str, name: str) -> list[StateRecord]:
        def run(engine: Engine) -> list[StateRecord]:
            table = self._table
            stmt = self._select().where(table.c.namespace == namespace, table.c.name == name)
            with read_transaction(engine) as conn:
                return self._expand(conn, [_record(row) for row in conn.execute(stmt)])

        return self._run("list", f"the documents of {display_address(namespace, name)}", run)

    def _delete(self, address: Address, expected: int | None) -> bool:
        job = self._writes.delete_job(address, expected)
        return self._run("delete", _where(address), lambda engine: in_transaction(engine, job))

    def _list(self, namespace: str | None) -> list[StateRecord]:
        # Sorted by AddressedStore.list rather than by ORDER BY: the database's collation may not
        # order strings by code point, and every store must order alike.
        def run(engine: Engine) -> list[StateRecord]:
            stmt = self._select()
            if namespace is not None:
                stmt = stmt.where(self._table.c.namespace == namespace)
            with read_transaction(engine) as conn:
                return self._expand(conn, [_record(row) for row in conn.execute(stmt)])

        where = "all states" if namespace is None else f"states of namespace {namespace!r}"
        return self._run("list", where, run)

    # -- history ---------------------------------------------------------------------------------

    @property
    def history_versions(self) -> int | None:
        """How many versions of each document are kept (``None`` until the setting is read)."""
        return self._tables.keep

    def history(
        self, namespace: str, name: str, key: str, *, limit: int | None = None
    ) -> Sequence[StateRecord]:
        """Return the kept versions of a document, newest first, the current one included.

        A document last written before its database had a history table shows its current
        version only; a deleted document has no history.

        Raises:
            StoreError: the store keeps no history (``history_versions=0``, or the history table
                could not be created), or the database failed.

        Example:
            >>> store = SqlBackend("sqlite://", history_versions=2)
            >>> for version, value in enumerate(["a", "b", "c"]):
            ...     _ = store.write("ns", "n", "k", value, expected_version=version or None)
            >>> [(r.version, r.value) for r in store.history("ns", "n", "k")]
            [(3, 'c'), (2, 'b')]
        """
        address = Address(namespace, name, key)

        def run(engine: Engine) -> Sequence[StateRecord]:
            if self._tables.no_history is not None:
                raise StoreError(f"{self._description} keeps no history: {self._tables.no_history}.")
            with read_transaction(engine) as conn:
                current = conn.execute(self._select().where(*self._pk(address))).first()
                if current is None:
                    return []
                rows = conn.execute(
                    _history.select_history(self._tables.history_columns(), address, limit, current.version)
                )
                kept = _history.versions(_record(current), [_record(row) for row in rows], limit)
                return self._expand(conn, kept)

        return self._run("read the history of", _where(address), run)

    # -- the async Protocol: reads in a worker thread, writes by group commit -------------------
    # If the awaiting task is cancelled, the thread still finishes its statement; a write may
    # then be committed although the caller saw CancelledError (see group.py for group commit:
    # a write still queued is withdrawn, one already taken into a batch is committed with it).

    async def _call(self, function: Callable[..., _T], /, *args: Any) -> _T:
        return await asyncio.to_thread(function, *args)

    async def _awrite_layout(
        self,
        address: Address,
        layout: Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        job = self.write_job(address, layout, expected, updated_by, reason)
        return await self._async.submit("write", _where(address), job)

    async def _awrite(
        self, address: Address, value: str, expected: int | None, updated_by: str | None, reason: str | None
    ) -> int:
        job = self.write_job(address, value, expected, updated_by, reason)
        return await self._async.submit("write", _where(address), job)

    async def _adelete(self, address: Address, expected: int | None) -> bool:
        job = self._writes.delete_job(address, expected)
        return await self._async.submit("delete", _where(address), job)

    @property
    def group_commit(self) -> bool:
        """Whether async writes share transactions (group commit; see :class:`SqlBackend`)."""
        return self._async.group_commit

    # -- internals -------------------------------------------------------------------------------

    def _run(self, operation: str, where: str, body: Callable[[Engine], _T]) -> _T:
        """Run ``body`` with the engine; turn anything but our own errors into a masked StoreError."""
        try:
            with self._engine.use() as engine:
                return body(engine)
        except StatefulError:
            raise
        except Exception as exc:
            error, cause = self._store_error(operation, where, exc, "")
        # Raised outside the except block so the original exception is not attached as
        # __context__ when it had to be replaced by a redacted stand-in.
        raise error from cause

    def _store_error(
        self, operation: str, where: str, exc: Exception, detail: str
    ) -> tuple[StoreError, BaseException]:
        """The masked StoreError for ``exc``, and the cause to chain (a redacted stand-in if needed).

        ``detail`` (a sentence or more, with a leading space) follows the database's message.
        """
        summary = self._redactor.summary(exc)
        head = f"{self._description} failed to {operation} {where}: {summary}"
        head += "" if summary.endswith((".", "?", "!")) else "."
        if unreachable(exc):
            # The batch's refusal (``detail``) says what a trigger did before retries: not news here.
            error: StoreError = StoreUnavailableError(
                f"{head} The database cannot be reached now (down, restarting, locked, or a network "
                f"error); nothing was written by this call. Check that it is up and reachable from "
                f"this host."
            )
        else:
            error = StoreError(
                f"{head}{detail} Check that the database is reachable from this host, that the URL "
                f"and credentials are right, and that the user may create, read and write table "
                f"{self._table_name!r}."
            )
        return error, self._redactor.safe_cause(exc)

    def _expand(self, conn: Connection, records: list[StateRecord]) -> list[StateRecord]:
        # A manifest in a table without its parts table is left as it is (and fails to load).
        return records if self._tables.no_parts is not None else self._tables.parts.expand(conn, records)

    def _select(self) -> sa.Select[Any]:
        """Select the state table's columns (``reason`` only once the table has it)."""
        return sa.select(*self._tables.state_columns())

    def _pk(self, address: Address) -> tuple[sa.ColumnElement[bool], ...]:
        c = self._table.c
        return (c.namespace == address.namespace, c.name == address.name, c.key == address.key)


def _where_many(writes: Sequence[Write]) -> str:
    if len(writes) == 1:
        return _where(writes[0].address)
    first = writes[0].address
    return f"{len(writes)} documents of {display_address(first.namespace, first.name)}"


def _where(address: Address) -> str:
    return f"state {display_address(*address)}"


def _record(row: sa.Row[Any]) -> StateRecord:
    return StateRecord(
        namespace=row.namespace,
        name=row.name,
        key=row.key,
        value=row.value,
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        reason=row._mapping.get("reason"),
    )
