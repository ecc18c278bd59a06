"""Opening a SQL store: ``create=False`` reads an existing store and never creates or alters anything."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from stateful.backends import SqlBackend
from stateful.errors import StoreError, StoreNotFoundError
from tests._postgres import PostgresServer
from tests.conftest import unique_table

NS, NAME, KEY = "files", "landing", "watermark"


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_missing_sqlite_file_is_not_found_and_nothing_is_created(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "deeper" / "stateful.db"
    store = SqlBackend(f"sqlite:///{path}", create=False)

    for call in (store.open, lambda: store.list(), lambda: store.read(NS, NAME, KEY)):
        with pytest.raises(
            StoreNotFoundError, match=r"no store at sqlite:///.*stateful\.db: the SQLite file"
        ):
            call()
    assert not (tmp_path / "typo").exists()
    assert issubclass(StoreNotFoundError, StoreError)


def test_a_sqlite_file_without_the_tables_is_not_found_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    before = path.read_bytes()

    with pytest.raises(
        StoreNotFoundError, match=r"has no table 'stateful_process_state'.*nothing was created"
    ):
        SqlBackend(f"sqlite:///{path}", create=False).open()

    assert path.read_bytes() == before  # no table, and the journal mode was not switched to WAL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_an_existing_store_reads_as_usual_and_without_the_optional_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    writer = SqlBackend(url, history_versions=5)
    writer.write(NS, NAME, KEY, '{"cursor": 1}', expected_version=None)
    writer.write(NS, NAME, KEY, '{"cursor": 2}', expected_version=1)
    writer.dispose()
    tables = _tables(url)

    reader = SqlBackend(url, create=False)
    assert [(r.version, r.value) for r in reader.history(NS, NAME, KEY)] == [
        (2, '{"cursor": 2}'),
        (1, '{"cursor": 1}'),
    ]
    assert reader.read(NS, NAME, KEY) is not None and reader.created is False
    reader.dispose()

    # A state table alone (made by a DBA, or by an older release): read, and no history table made.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {writer.history_table_name}"))
    engine.dispose()
    alone = SqlBackend(url, create=False)
    assert alone.read(NS, NAME, KEY) is not None
    with pytest.raises(StoreError, match=r"keeps no history: table .*_history' is missing"):
        alone.history(NS, NAME, KEY)
    alone.dispose()
    assert _tables(url) == tables - {writer.history_table_name}


def test_created_says_whether_opening_made_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'state.db'}"
    first, second = SqlBackend(url), SqlBackend(url)

    assert first.created is False  # not opened yet
    first.open()
    second.open()

    assert (first.created, second.created) == (True, False)
    first.dispose()
    second.dispose()


@pytest.mark.postgres
def test_postgres_without_the_table_is_not_found_and_nothing_is_created(postgres: PostgresServer) -> None:
    table = unique_table()
    before = _tables(postgres.url)
    store = SqlBackend(postgres.url, table_name=table, create=False)

    with pytest.raises(
        StoreNotFoundError, match=rf"no store at postgresql\S*:\*\*\*@.*has no table '{table}'"
    ):
        store.list()
    store.dispose()

    assert _tables(postgres.url) == before
    writer = SqlBackend(postgres.url, table_name=table)
    writer.write(NS, NAME, KEY, "{}", expected_version=None)
    writer.dispose()
    reader = SqlBackend(postgres.url, table_name=table, create=False)
    assert [r.version for r in reader.history(NS, NAME, KEY)] == [1]
    reader.dispose()
