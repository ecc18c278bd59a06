"""Support for :mod:`stateful.backends.sql`: the table, URL checks and SQLite connection set-up."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.exc import NoSuchModuleError

from stateful.errors import StoreError

__all__ = [
    "DRIVER_INSTALL",
    "SQLALCHEMY_2",
    "WRITE_OPTION",
    "UtcDateTime",
    "check_dialect",
    "install_sqlite_hooks",
    "parse_url",
    "sqlite_path",
    "state_table",
]

# Airflow 3.0 pins SQLAlchemy < 2: the store then runs on 1.4 in its 2.0-style ("future") mode.
SQLALCHEMY_2 = int(sa.__version__.split(".", 1)[0]) >= 2

# Connection execution option marking a transaction that will write (see _sqlite_on_begin).
WRITE_OPTION = "stateful_write"
# Racing SQLite writers wait for each other this long before failing with "database is locked".
_SQLITE_BUSY_TIMEOUT_MS = 30_000
# What to install when a driver is missing, by SQLAlchemy driver name.
DRIVER_INSTALL = {
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


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database, including those without a zone type."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(timezone.utc)
        # SQLite and MySQL store no offset: keep naive UTC there, re-marked as UTC on read.
        return value if dialect.name in {"postgresql", "oracle", "mssql"} else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def state_table(table_name: str) -> sa.Table:
    """The state table: one row per ``(namespace, name, key)``."""
    return sa.Table(
        table_name,
        sa.MetaData(),
        # 255 characters keeps the three-column primary key within MySQL's index limit.
        sa.Column("namespace", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=True),
    )


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


def install_sqlite_hooks(engine: Engine) -> None:
    """WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for writes: so processes can share a file."""
    sa.event.listen(engine, "connect", _sqlite_on_connect)
    sa.event.listen(engine, "begin", _sqlite_on_begin)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take over BEGIN from the sqlite3 module (see _sqlite_on_begin); set the busy timeout first
    # so that even switching to WAL waits for a concurrent opener instead of failing.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
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
    immediate = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
