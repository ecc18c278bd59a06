"""SqlBackend specifics: lazy construction, drivers, password masking, SQLite set-up, engine reuse."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sqlite3
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy

from stateful.backends import SqlBackend
from stateful.backends.sql.engine import SQLALCHEMY_2
from stateful.errors import MissingDependencyError, StatefulError, StoreError
from tests._postgres import PG_DRIVER, PostgresServer

SECRET = "hunter2-Sup3rSecret"
UNREACHABLE = f"postgresql+{PG_DRIVER}://airflow:{SECRET}@127.0.0.1:1/airflow"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        orig = getattr(current, "orig", None)
        pending += [current.__cause__, current.__context__, orig if isinstance(orig, BaseException) else None]
    yield from seen


def _all_text(exc: BaseException) -> str:
    """Everything a log line or traceback could show about ``exc`` and its chain."""
    parts = [text for e in _chain(exc) for text in (str(e), repr(e))]
    parts.append("".join(traceback.format_exception(exc)))
    return "\n".join(parts)


@pytest.fixture
def count_engines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the thread of every create_engine call SqlBackend makes."""
    threads: list[int] = []
    real = sqlalchemy.create_engine

    def counting(*args: Any, **kwargs: Any) -> sqlalchemy.Engine:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlalchemy, "create_engine", counting)
    return threads


# -- construction ------------------------------------------------------------------------------


def test_construction_does_not_connect(tmp_path: Path) -> None:
    # Nothing listens on port 1: connecting would fail.
    store = SqlBackend(UNREACHABLE)
    assert store.description == f"SqlBackend(postgresql+{PG_DRIVER}://airflow:***@127.0.0.1:1/airflow)"

    db = tmp_path / "missing-dir" / "state.db"
    SqlBackend(f"sqlite:///{db}")
    assert not db.parent.exists()


def test_construction_imports_no_driver() -> None:
    code = (
        "import sys\n"
        "from stateful.backends import SqlBackend\n"
        f"SqlBackend({UNREACHABLE!r})\n"
        "SqlBackend('postgresql+psycopg2://u:p@h/d')\n"
        "SqlBackend('sqlite:////tmp/never-created/x.db')\n"
        "print(sorted(m for m in ('psycopg', 'psycopg2', 'sqlite3') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://airflow:{SECRET}@db:notaport/airflow",
        f"garbage-{SECRET}",
        f"nosuchdialect://airflow:{SECRET}@db/airflow",
        f"postgresql+asyncpg://airflow:{SECRET}@db/airflow",
    ],
)
def test_unusable_url_fails_at_construction_without_showing_it(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        SqlBackend(url)
    assert SECRET not in _all_text(caught.value)


def test_description_and_repr_mask_passwords() -> None:
    store = SqlBackend(f"postgresql+{PG_DRIVER}://u@db/x?password={SECRET}&sslmode=require", table_name="t")
    assert SECRET not in store.description and SECRET not in repr(store)
    assert "sslmode=require" in store.description and "table t" in store.description
    assert repr(store).startswith(f"SqlBackend('postgresql+{PG_DRIVER}://u@db/x?")


# -- drivers -----------------------------------------------------------------------------------


async def test_missing_driver_names_what_to_install() -> None:
    assert importlib.util.find_spec("MySQLdb") is None, "the test needs a driver that is not installed"
    store = SqlBackend(f"mysql+mysqldb://airflow:{SECRET}@127.0.0.1/airflow")

    with pytest.raises(MissingDependencyError, match=r"pip install mysqlclient") as caught:
        store.read("ns", "name", "key")
    assert isinstance(caught.value, ImportError)
    assert isinstance(caught.value.__cause__, ImportError)
    assert SECRET not in _all_text(caught.value)
    with pytest.raises(MissingDependencyError):
        await store.aread("ns", "name", "key")


@pytest.mark.skipif(not SQLALCHEMY_2, reason="SQLAlchemy 1.4 has no psycopg 3 dialect (see the next test)")
def test_missing_psycopg_names_the_postgres_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'airflow-stateful\[postgres\]'"):
        SqlBackend(UNREACHABLE).list()


@pytest.mark.skipif(SQLALCHEMY_2, reason="only SQLAlchemy 1.4 (Airflow 3.0) lacks the psycopg 3 dialect")
def test_psycopg_3_on_sqlalchemy_1_4_says_to_use_psycopg2() -> None:
    with pytest.raises(StoreError, match=r"postgresql\+psycopg2://.*pip install psycopg2-binary") as caught:
        SqlBackend(f"postgresql+psycopg://airflow:{SECRET}@db/airflow")
    assert SECRET not in _all_text(caught.value)


# -- failures never show the password ---------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
async def test_unreachable_server_is_a_store_error_without_password(
    caplog: pytest.LogCaptureFixture, use_async: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    store = SqlBackend(UNREACHABLE)

    with pytest.raises(StoreError) as caught:
        if use_async:
            await store.awrite("ns", "name", "key", "{}", expected_version=None)
        else:
            store.write("ns", "name", "key", "{}", expected_version=None)

    err = caught.value
    assert "write state ns/name" in str(err) and "airflow:***@127.0.0.1:1" in str(err)
    assert "reachable" in str(err)
    assert err.__cause__ is not None
    assert SECRET not in _all_text(err)
    assert SECRET not in caplog.text


def test_driver_error_showing_the_password_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def leaky_connect() -> Any:
        # Some drivers echo the connection string in their errors.
        raise psycopg.OperationalError(f"invalid dsn: host=db password={SECRET} port=x")

    store = SqlBackend(UNREACHABLE, engine_options={"creator": leaky_connect})
    with pytest.raises(StoreError) as caught:
        store.list("ns")

    err = caught.value
    assert "password=***" in str(err) and "list states of namespace 'ns'" in str(err)
    assert err.__cause__ is not None and "OperationalError" in str(err.__cause__)
    assert SECRET not in _all_text(err)
    assert SECRET not in caplog.text


@pytest.mark.postgres
def test_wrong_password_is_a_store_error_without_password(postgres: PostgresServer) -> None:
    store = SqlBackend(postgres.url.replace("@127.0.0.1", "x@127.0.0.1"))
    with pytest.raises(StoreError, match="password authentication failed") as caught:
        store.read("ns", "name", "key")
    assert postgres.password not in _all_text(caught.value)
    assert store.description.count("***") == 1


def test_store_recovers_after_a_failed_first_use(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SqlBackend(f"sqlite:///{blocker / 'state.db'}")
    with pytest.raises(StoreError):
        store.read("ns", "name", "key")

    blocker.unlink()
    assert store.write("ns", "name", "key", "{}", expected_version=None) == 1


# -- engine lifecycle --------------------------------------------------------------------------


def test_engine_is_created_once_under_concurrent_first_use(tmp_path: Path, count_engines: list[int]) -> None:
    store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    barrier = threading.Barrier(8)

    def first_use(_: int) -> None:
        barrier.wait()
        store.read("ns", "name", "key")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(first_use, range(8)))
    assert len(count_engines) == 1

    store.dispose()
    assert store.read("ns", "name", "key") is None  # usable again, with a new engine
    assert len(count_engines) == 2
    store.dispose()


async def test_async_methods_work_off_the_event_loop_thread(tmp_path: Path, count_engines: list[int]) -> None:
    store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    await store.awrite("ns", "name", "key", "{}", expected_version=None)
    assert count_engines and threading.get_ident() not in count_engines

    # The loop stays free while the store waits on the database.
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    records = [await store.aread("ns", "name", "key") for _ in range(5)]
    ticker.cancel()
    assert all(r is not None for r in records) and ticks > 0
    store.dispose()


# -- SQLite specifics --------------------------------------------------------------------------


def test_sqlite_file_uses_wal_and_stores_utc(tmp_path: Path) -> None:
    db = tmp_path / "deeper" / "state.db"
    store = SqlBackend(f"sqlite:///{db}")
    store.write("ns", "name", "key", "{}", expected_version=None)
    record = store.read("ns", "name", "key")
    store.dispose()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        (stored,) = conn.execute("SELECT updated_at FROM stateful_process_state").fetchone()
    conn.close()
    assert record is not None
    assert datetime.fromisoformat(stored).replace(tzinfo=timezone.utc) == record.updated_at


def test_sqlite_in_memory_is_shared_by_threads() -> None:
    store = SqlBackend("sqlite://")
    store.write("ns", "name", "key", "0", expected_version=None)

    def count(_: int) -> int:
        return len(store.list("ns"))

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(count, range(8))) == [1] * 8
    store.dispose()


def test_custom_table_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    custom, default = SqlBackend(url, table_name="my_state"), SqlBackend(url)
    custom.write("ns", "name", "key", "{}", expected_version=None)

    assert default.read("ns", "name", "key") is None
    assert custom.table_name == "my_state"
    custom.dispose()
    default.dispose()


def test_errors_are_stateful_errors() -> None:
    with pytest.raises(StatefulError):
        SqlBackend(UNREACHABLE).read("ns", "name", "key")
