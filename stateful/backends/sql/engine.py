"""The SQL store's engine: URL checks, a lazily created engine per process, SQLite set-up.

The compare-and-set protocol (:mod:`stateful.backends.sql.store`) asks :class:`LazyEngine` for an
engine on every call; the engine is created at first use (never at construction, so a DAG file
can build stores at parse time), re-created in a forked child, and SQLite files are opened so
that several processes can share them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.pool import StaticPool

from stateful.errors import MissingDependencyError, StoreError, StoreNotFoundError

__all__ = [
    "SQLALCHEMY_2",
    "LazyEngine",
    "check_dialect",
    "parse_url",
    "read_transaction",
    "sqlite_path",
    "write_transaction",
]

_log = logging.getLogger(__name__)

# Airflow 3.0 pins SQLAlchemy < 2: the store then runs on 1.4 in its 2.0-style ("future") mode.
SQLALCHEMY_2 = int(sa.__version__.split(".", 1)[0]) >= 2

# Connection execution option marking a transaction that will write (see _sqlite_on_begin).
_WRITE_OPTION = "stateful_write"
# Without it libpq waits for the OS TCP timeout (minutes) on a host that drops packets.
_PG_CONNECT_TIMEOUT_S = 10
# Racing SQLite writers wait for each other this long before failing with "database is locked".
_SQLITE_BUSY_TIMEOUT_MS = 30_000
# What to install when a driver is missing, by SQLAlchemy driver name.
_DRIVER_INSTALL = {
    "psycopg": "pip install 'airflow-stateful[postgres]'",
    "psycopg2": "pip install psycopg2-binary",
    "pg8000": "pip install pg8000",
    "mysqldb": "pip install mysqlclient",
    "pymysql": "pip install pymysql",
    "mysqlconnector": "pip install mysql-connector-python",
    "oracledb": "pip install oracledb",
    "pyodbc": "pip install pyodbc",
    "pymssql": "pip install pymssql",
}


def parse_url(url: str | URL) -> URL:
    """Parse ``url`` without importing any driver; a bad URL is a StoreError that hides it."""
    try:
        return make_url(url)
    except Exception:
        pass
    # The text may hold a password, and so may the parser's message: show the scheme only, and
    # raise outside the handler so the parser's exception is not attached as __context__.
    scheme = str(url).split("://", 1)[0] if "://" in str(url) else "?"
    raise StoreError(
        f"SqlBackend: cannot parse the database URL (scheme {scheme!r}; the rest is not shown as "
        f"it may contain a password). Expected dialect+driver://user:password@host:port/database, "
        f"e.g. postgresql+psycopg://airflow:***@db:5432/airflow or sqlite:////opt/airflow/stateful.db"
    )


def check_dialect(url: URL, masked: str) -> str:
    """Return the driver name; loading a SQLAlchemy dialect class imports no driver."""
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        if url.drivername == "postgresql+psycopg" and not SQLALCHEMY_2:
            raise StoreError(
                f"SqlBackend({masked}): SQLAlchemy {sa.__version__} has no dialect for psycopg 3 "
                f"(it came with SQLAlchemy 2.0, which Airflow 3.0 does not allow). Use psycopg2 "
                f"instead: postgresql+psycopg2://... after `pip install psycopg2-binary`."
            ) from None
        raise StoreError(
            f"SqlBackend({masked}): SQLAlchemy knows no database dialect {url.drivername!r}. Use e.g. "
            f"postgresql+psycopg://... or sqlite:///..., or install the package providing that dialect."
        ) from None
    except ImportError:
        # A third-party dialect that imports its driver eagerly: report it at first use.
        return url.drivername.partition("+")[2] or url.drivername
    if getattr(dialect, "is_async", False):
        raise StoreError(
            f"SqlBackend({masked}): {url.drivername!r} is an asyncio-only driver; SqlBackend needs a "
            f"blocking one (its async methods run it in a worker thread). For PostgreSQL use "
            f"postgresql+psycopg://..."
        )
    return str(dialect.driver)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, or ``None`` for an in-memory database."""
    database = url.database or ""
    if database in {"", ":memory:"} or "mode=memory" in database:
        return None
    if database.startswith("file:"):
        return Path(database[len("file:") :].split("?", 1)[0])
    return Path(database)


def _install_sqlite_hooks(engine: Engine, *, wal: bool = True) -> None:
    """WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for writes: so processes can share a file."""
    sa.event.listen(engine, "connect", _sqlite_on_connect if wal else _sqlite_on_connect_as_is)
    sa.event.listen(engine, "begin", _sqlite_on_begin)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take over BEGIN from the sqlite3 module (see _sqlite_on_begin); set the busy timeout first
    # so that even switching to WAL waits for a concurrent opener instead of failing.
    _sqlite_on_connect_as_is(dbapi_connection, _record)
    cursor = dbapi_connection.cursor()
    try:
        _enable_wal(cursor)
    finally:
        cursor.close()


def _sqlite_on_connect_as_is(dbapi_connection: Any, _record: Any) -> None:
    # The file's journal mode is left as it is: a store that only reads must not change the file.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (readers never block the writer); the mode persists in the file."""
    import sqlite3  # the driver is loaded by now

    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            # Switching needs an exclusive lock, and SQLite may report "locked" at once rather
            # than call the busy handler while another process opens the same new file.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_on_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and then writes
    # fails at once with "database is locked" when another writer got in between, whereas
    # BEGIN IMMEDIATE waits for the busy timeout like any lock.
    immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})  # SQLite: BEGIN IMMEDIATE
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that reads one snapshot (a manifest and its parts agree).

    SQLite's transactions read one snapshot already; PostgreSQL's default (``READ COMMITTED``)
    takes one per statement, so the transaction asks for ``REPEATABLE READ``.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


class LazyEngine:
    """The engine of one store: created at first use, once per process, thread-safely.

    Args:
        url: the parsed URL.
        driver: the driver name (see :func:`check_dialect`), for the missing-driver message.
        description: the store's description (password masked), for logs and errors.
        engine_options: extra keyword arguments for :func:`sqlalchemy.create_engine`; they
            override the defaults (``connect_args`` are merged).
        on_open: called with each new engine before it is used (e.g. to create the tables); if
            it raises, the engine is disposed and the next call starts over.
        location: where the store is (its URL, password masked), for "no store at ...".
        create: whether a SQLite file (and its directory) may be created. ``False``: a missing
            file is a :class:`~stateful.errors.StoreNotFoundError`, and an existing one is left
            in its journal mode (WAL is set only by a store that may write).
    """

    def __init__(
        self,
        url: URL,
        *,
        driver: str,
        description: str,
        engine_options: Mapping[str, Any],
        on_open: Callable[[Engine], None],
        location: str = "",
        create: bool = True,
    ) -> None:
        self._url = url
        self._location = location or description
        self._may_create = create
        self._driver = driver
        self._description = description
        self._engine_options = dict(engine_options)
        self._on_open = on_open
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._pid = os.getpid()
        self._sqlite_memory = url.get_backend_name() == "sqlite" and sqlite_path(url) is None
        # One shared in-memory SQLite connection is only safe if calls take turns.
        self._serial: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._sqlite_memory else contextlib.nullcontext()
        )

    @contextlib.contextmanager
    def use(self) -> Iterator[Engine]:
        """The engine, for one call of the store (calls take turns on in-memory SQLite)."""
        with self._serial:
            yield self._get()

    def dispose(self) -> None:
        """Close the engine and its pooled connections; the next call opens a new engine."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def _get(self) -> Engine:
        engine = self._engine
        if engine is not None and self._pid == os.getpid():
            return engine
        with self._lock:
            if self._engine is not None and self._pid != os.getpid():
                # A forked child must not share the parent's sockets: drop the pool (without
                # closing the parent's connections) and let it open its own.
                self._engine.dispose(close=False)
            self._pid = os.getpid()
            if self._engine is None:
                self._engine = self._create()
            return self._engine

    def _create(self) -> Engine:
        _log.debug("stateful: opening %s", self._description)
        path = sqlite_path(self._url) if self._url.get_backend_name() == "sqlite" else None
        if path is not None and self._may_create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif path is not None and not path.is_file():
            raise StoreNotFoundError(
                f"no store at {self._location}: the SQLite file {path} does not exist (nothing was "
                f"created); a store is created by its first write."
            )
        try:
            engine = sa.create_engine(self._url, **self._options())
        except ImportError as exc:
            install = _DRIVER_INSTALL.get(
                self._driver, f"pip install the package that provides {self._driver!r}"
            )
            raise MissingDependencyError(
                f"{self._description} needs the database driver {self._driver!r}, which cannot be "
                f"imported ({exc}). Install it: {install}"
            ) from exc
        if self._url.get_backend_name() == "sqlite":
            _install_sqlite_hooks(engine, wal=self._may_create)
        try:
            self._on_open(engine)
        except BaseException:
            engine.dispose()  # the next call starts over, e.g. once the database is back
            raise
        return engine

    def _options(self) -> dict[str, Any]:
        # On SQLAlchemy 1.4 the 2.0-style engine (autobegin, no autocommit) that this code assumes.
        options: dict[str, Any] = {} if SQLALCHEMY_2 else {"future": True}
        connect_args: dict[str, Any] = {}
        if self._sqlite_memory:
            options["poolclass"] = StaticPool
            connect_args["check_same_thread"] = False
        elif self._url.get_backend_name() != "sqlite":
            options["pool_pre_ping"] = True  # triggerers live long; databases restart
        if self._driver in {"psycopg", "psycopg2"} and "connect_timeout" not in self._url.query:
            connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
        user = dict(self._engine_options)
        options.update(user)
        options["connect_args"] = {**connect_args, **user.get("connect_args", {})}
        return options
