"""The SQL store's history: the last N versions of each document, safe on existing databases."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Protocol

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from stateful.backends import SqlBackend
from stateful.backends.base import SupportsHistory
from stateful.backends.sql.history import DEFAULT_HISTORY_VERSIONS
from stateful.backends.sql.schema import state_table
from stateful.errors import StateConflictError, StoreError
from tests._postgres import PostgresServer
from tests.backends.conftest import SqlFactory
from tests.conftest import unique_table

NS, NAME, KEY = "files", "landing", "watermark"


def _versions(store: SqlBackend) -> list[tuple[int, str]]:
    return [(r.version, r.value) for r in store.history(NS, NAME, KEY)]


@contextlib.contextmanager
def _database(url: str) -> Iterator[sa.Engine]:
    """An engine of its own on the store's database, as another tool would open it."""
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _has_table(url: str, name: str) -> bool:
    with _database(url) as engine:
        return sa.inspect(engine).has_table(name)


def _write_many(store: SqlBackend, count: int, *, start: int | None = None) -> None:
    version = start
    for i in range(count):
        version = store.write(NS, NAME, KEY, f"v{i + 1}", expected_version=version)


class MakeStore(Protocol):
    def __call__(self, history_versions: int | None = None) -> SqlBackend: ...


@pytest.fixture
def make_store(url_and_table: tuple[str, str]) -> Iterator[MakeStore]:
    """Independent stores (one engine each) on one fresh table."""
    url, table = url_and_table
    made: list[SqlBackend] = []

    def make(history_versions: int | None = None) -> SqlBackend:
        made.append(SqlBackend(url, table_name=table, history_versions=history_versions))
        return made[-1]

    yield make
    for store in made:
        store.dispose()


def test_keeps_the_newest_versions_newest_first_with_who_and_when(make_store: MakeStore) -> None:
    store = make_store(3)
    assert isinstance(store, SupportsHistory)
    _write_many(store, 5)
    store.write(NS, NAME, KEY, "by-alice", expected_version=5, updated_by="cli:alice@ops")

    history = store.history(NS, NAME, KEY)

    assert [(r.version, r.value) for r in history] == [(6, "by-alice"), (5, "v5"), (4, "v4")]
    assert history[0].updated_by == "cli:alice@ops"
    assert history[1].updated_by is not None and history[1].updated_by != "cli:alice@ops"
    assert history[0].updated_at >= history[1].updated_at >= history[2].updated_at
    assert history[0].updated_at.utcoffset() is not None
    current = store.read(NS, NAME, KEY)
    assert current is not None and (current.version, current.value, current.updated_at) == (
        6,
        "by-alice",
        history[0].updated_at,
    )
    assert [(r.version, r.value) for r in store.history(NS, NAME, KEY, limit=2)] == [
        (6, "by-alice"),
        (5, "v5"),
    ]


def test_defaults_to_100_versions_and_reads_the_environment(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATEFUL_HISTORY_VERSIONS", raising=False)
    monkeypatch.delenv("AIRFLOW__STATEFUL__HISTORY_VERSIONS", raising=False)
    default = make_store()
    _write_many(default, DEFAULT_HISTORY_VERSIONS + 5)
    assert default.history_versions == DEFAULT_HISTORY_VERSIONS == 100
    kept = _versions(default)
    assert [v for v, _ in kept] == list(range(105, 5, -1))

    monkeypatch.setenv("STATEFUL_HISTORY_VERSIONS", "2")
    configured = make_store()
    configured.write(NS, NAME, KEY, "next", expected_version=105)
    assert configured.history_versions == 2
    assert _versions(configured) == [(106, "next"), (105, "v105")]


def test_airflow_configuration_sets_the_number_of_versions(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATEFUL_HISTORY_VERSIONS", raising=False)
    monkeypatch.setenv("AIRFLOW__STATEFUL__HISTORY_VERSIONS", "1")
    store = make_store()
    _write_many(store, 3)
    assert _versions(store) == [(3, "v3")]


@pytest.mark.parametrize("bad", ["-1", "many", "1.5"])
def test_a_bad_setting_is_a_clear_error(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("STATEFUL_HISTORY_VERSIONS", bad)
    with pytest.raises(StoreError, match=r"STATEFUL_HISTORY_VERSIONS must be a whole number >= 0.*" + bad):
        make_store().read(NS, NAME, KEY)
    with pytest.raises(StoreError, match="history_versions must be a whole number"):
        make_store(-3)


def test_zero_keeps_no_history_and_says_so(make_store: MakeStore, url_and_table: tuple[str, str]) -> None:
    store = make_store(0)
    _write_many(store, 2)

    with pytest.raises(StoreError, match="keeps no history: history_versions is 0"):
        store.history(NS, NAME, KEY)
    assert not _has_table(url_and_table[0], store.history_table_name)


def test_a_conflicting_write_records_nothing(make_store: MakeStore) -> None:
    store = make_store(10)
    _write_many(store, 2)
    with pytest.raises(StateConflictError):
        store.write(NS, NAME, KEY, "stale", expected_version=1)
    with pytest.raises(StateConflictError):
        store.write(NS, NAME, KEY, "again", expected_version=None)

    assert _versions(store) == [(2, "v2"), (1, "v1")]


def test_delete_forgets_the_history_and_versions_restart_cleanly(make_store: MakeStore) -> None:
    store = make_store(10)
    _write_many(store, 3)
    other = NS, "other", KEY
    store.write(*other, "kept", expected_version=None)

    assert store.delete(NS, NAME, KEY, expected_version=3)
    assert store.history(NS, NAME, KEY) == []
    store.write(NS, NAME, KEY, "reborn", expected_version=None)

    assert _versions(store) == [(1, "reborn")]
    assert [(r.version, r.value) for r in store.history(*other)] == [(1, "kept")]


def test_a_writer_with_history_off_still_deletes_the_history(make_store: MakeStore) -> None:
    store, blind = make_store(10), make_store(0)
    _write_many(store, 4)
    blind.delete(NS, NAME, KEY)
    blind.write(NS, NAME, KEY, "reborn-1", expected_version=None)
    blind.write(NS, NAME, KEY, "reborn-2", expected_version=1)
    store.write(NS, NAME, KEY, "reborn-3", expected_version=2)

    # Versions 1 and 2 were written with history off: not recorded, and the old 1..4 are gone.
    assert _versions(store) == [(3, "reborn-3")]


def test_a_stale_row_at_the_current_version_is_not_shown(
    make_store: MakeStore, url_and_table: tuple[str, str]
) -> None:
    # A writer that knows nothing of history (an earlier release) deleted and recreated the
    # document: the history row for its current version describes the earlier document.
    store = make_store(10)
    _write_many(store, 3)
    assert [v for v, _ in _versions(store)] == [3, 2, 1]
    url, table_name = url_and_table
    table = state_table(table_name)
    with _database(url) as engine, engine.begin() as conn:
        conn.execute(sa.delete(table))
        conn.execute(
            sa.insert(table).values(
                namespace=NS,
                name=NAME,
                key=KEY,
                version=3,
                value="reborn-3",
                updated_at=datetime.now(timezone.utc),
                updated_by="old-release",
            )
        )

    assert _versions(store) == [(3, "reborn-3")]


def test_a_table_made_by_an_earlier_release_gains_history(url_and_table: tuple[str, str]) -> None:
    url, table = url_and_table
    # The schema and a row as the release before history wrote them.
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"CREATE TABLE {table} (namespace VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, "
                    f"key VARCHAR(255) NOT NULL, value TEXT NOT NULL, version INTEGER NOT NULL, "
                    f"updated_at TIMESTAMP WITH TIME ZONE NOT NULL, updated_by TEXT, "
                    f"PRIMARY KEY (namespace, name, key))"
                )
            )
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} VALUES ('files', 'landing', 'watermark', 'old', 7, "
                    f"'2025-01-01 00:00:00', 'host:1')"
                )
            )
    finally:
        engine.dispose()
    store = SqlBackend(url, table_name=table, history_versions=5)
    try:
        record = store.read(NS, NAME, KEY)
        assert record is not None and (record.value, record.version) == ("old", 7)
        assert _versions(store) == [(7, "old")]

        store.write(NS, NAME, KEY, "new", expected_version=7)

        # Version 7 was never recorded: only versions written from now on are kept.
        assert _versions(store) == [(8, "new")]
        assert _has_table(url, f"{table}_history")
    finally:
        store.dispose()


@pytest.mark.postgres
def test_without_permission_to_create_the_history_table_the_store_keeps_working(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    table, role, password = unique_table(), f"r_{secrets.token_hex(4)}", secrets.token_hex(8)
    admin = make_url(postgres.url)
    with psycopg.connect(
        host=admin.host,
        port=admin.port,
        user=admin.username,
        password=admin.password,
        dbname=admin.database,
        autocommit=True,
    ) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
        SqlBackend(postgres.url, table_name=table, history_versions=0).list()  # the DBA makes the table
        conn.execute(f"DROP TABLE {table}_parts")  # as an earlier release left it: no parts table
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")
    limited = SqlBackend(
        admin.set(username=role, password=password).render_as_string(hide_password=False),
        table_name=table,
        history_versions=10,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="stateful.backends.sql"):
            limited.write(NS, NAME, KEY, "a", expected_version=None)
        limited.write(NS, NAME, KEY, "b", expected_version=1)

        record = limited.read(NS, NAME, KEY)
        assert record is not None and (record.value, record.version) == ("b", 2)
        assert f"keeps no history: table '{table}_history' is missing and cannot be created" in caplog.text
        assert f"writes every state whole: table '{table}_parts' is missing" in caplog.text
        assert password not in caplog.text
        with pytest.raises(StoreError, match="keeps no history"):
            limited.history(NS, NAME, KEY)
    finally:
        limited.dispose()


def test_racing_writers_leave_exactly_one_history_row_per_version(sql_factory: SqlFactory) -> None:
    stores = [sql_factory() for _ in range(4)]
    stores[0].write(NS, NAME, KEY, "0", expected_version=None)
    barrier = threading.Barrier(len(stores))

    def work(index: int) -> list[int]:
        won: list[int] = []
        barrier.wait()
        for _ in range(15):
            record = stores[index].read(NS, NAME, KEY)
            assert record is not None
            with contextlib.suppress(StateConflictError):
                won.append(stores[index].write(NS, NAME, KEY, f"w{index}", expected_version=record.version))
        return won

    with ThreadPoolExecutor(len(stores)) as pool:
        wins = {index: versions for index, versions in enumerate(pool.map(work, range(len(stores))))}

    current = stores[0].read(NS, NAME, KEY)
    assert current is not None
    history = stores[0].history(NS, NAME, KEY)
    assert [r.version for r in history] == list(range(current.version, 0, -1))
    winners = {version: f"w{index}" for index, versions in wins.items() for version in versions}
    assert {r.version: r.value for r in history} == {1: "0", **winners}
