"""The SQL store's ``reason`` column: kept with each version, added to tables made before it.

A database made by the release before reasons has state and history tables without the
column; a store opening it adds the column to both (``ALTER TABLE ... ADD COLUMN``) and goes on,
and one that may not alter them keeps working without reasons, saying so once.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from stateful.backends import SqlBackend
from stateful.backends.sql.schema import UtcDateTime
from tests._postgres import PostgresServer
from tests.conftest import unique_table

NS, NAME, KEY = "files", "landing", "watermark"
EDITOR = "stateful set by alice@ops-1"


def _release_tables(table: str) -> tuple[sa.Table, sa.Table]:
    """The state and history tables as the release before reasons creates them."""
    metadata = sa.MetaData()

    def address() -> list[sa.Column[str]]:
        return [sa.Column(c, sa.String(255), primary_key=True) for c in ("namespace", "name", "key")]

    state = sa.Table(
        table,
        metadata,
        *address(),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=True),
    )
    history = sa.Table(
        f"{table}_history",
        metadata,
        *address(),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=True),
    )
    return state, history


@contextlib.contextmanager
def _database(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _make_release_database(url: str, table: str) -> None:
    """Tables of the earlier release holding version 1, written by a triggerer."""
    state, history = _release_tables(table)
    row = {
        "namespace": NS,
        "name": NAME,
        "key": KEY,
        "value": '{"cursor":1}',
        "version": 1,
        "updated_at": datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc),
        "updated_by": "triggerer-1:4242",
    }
    with _database(url) as engine, engine.begin() as conn:
        state.metadata.create_all(conn)
        conn.execute(sa.insert(state), row)
        conn.execute(sa.insert(history), row)


def _columns(url: str, table: str) -> set[str]:
    with _database(url) as engine:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def test_tables_made_by_the_earlier_release_gain_the_column_and_keep_their_history(
    url_and_table: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    url, table = url_and_table
    _make_release_database(url, table)
    assert "reason" not in _columns(url, table)
    store = SqlBackend(url, table_name=table, history_versions=10)
    try:
        with caplog.at_level(logging.INFO, logger="stateful.backends.sql"):
            before = store.read(NS, NAME, KEY)
        assert before is not None and (before.version, before.reason) == (1, None)
        assert f"added column 'reason' to table '{table}'" in caplog.text
        assert "reason" in _columns(url, table) and "reason" in _columns(url, f"{table}_history")

        store.write(
            NS, NAME, KEY, '{"cursor":9}', expected_version=1, updated_by=EDITOR, reason="replay Monday"
        )

        assert [(r.version, r.updated_by, r.reason) for r in store.history(NS, NAME, KEY)] == [
            (2, EDITOR, "replay Monday"),
            (1, "triggerer-1:4242", None),
        ]
        (listed,) = store.list()
        assert listed.reason == "replay Monday"
    finally:
        store.dispose()
    # A second store (another process) finds the column there and adds nothing.
    again = SqlBackend(url, table_name=table, history_versions=10)
    try:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="stateful.backends.sql"):
            record = again.read(NS, NAME, KEY)
        assert record is not None and record.reason == "replay Monday"
        assert "added column" not in caplog.text
    finally:
        again.dispose()


@pytest.mark.postgres
def test_without_permission_to_add_the_column_the_store_keeps_working_without_reasons(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    table, role, password = unique_table(), f"r_{secrets.token_hex(4)}", secrets.token_hex(8)
    admin = make_url(postgres.url)
    _make_release_database(postgres.url, table)  # owned by the admin: the role may not alter it
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
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table}, {table}_history TO {role}")
    limited = SqlBackend(
        admin.set(username=role, password=password).render_as_string(hide_password=False),
        table_name=table,
        history_versions=10,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="stateful.backends.sql"):
            limited.write(NS, NAME, KEY, '{"cursor":2}', expected_version=1, updated_by=EDITOR, reason="why")

        assert f"keeps no reasons for edits: table '{table}' has no column 'reason'" in caplog.text
        assert f"ALTER TABLE {table} ADD COLUMN reason TEXT" in caplog.text  # what to run
        assert password not in caplog.text
        assert [(r.version, r.updated_by, r.reason) for r in limited.history(NS, NAME, KEY)] == [
            (2, EDITOR, None),
            (1, "triggerer-1:4242", None),
        ]
        assert "reason" not in _columns(postgres.url, table)
    finally:
        limited.dispose()
