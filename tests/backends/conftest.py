"""Fixtures for the store tests: every backend kind, and SQL stores sharing one database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stateful.backends import SqlBackend
from tests._postgres import PostgresServer
from tests.conftest import POSTGRES_PARAM, DualBackend, unique_table

__all__ = ["DualBackend", "SqlFactory"]

SqlFactory = Callable[[], SqlBackend]


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def sql_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlFactory]:
    """Builds independent SqlBackend instances (own engine each) on one fresh database table."""
    if request.param == "sqlite":
        url, table = f"sqlite:///{tmp_path / 'shared.db'}", "stateful_process_state"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url, table = server.url, unique_table()
    made: list[SqlBackend] = []

    def make() -> SqlBackend:
        made.append(SqlBackend(url, table_name=table))
        return made[-1]

    yield make
    for store in made:
        store.dispose()


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def url_and_table(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A SQL store's URL and table: a SQLite file, or a table of its own on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}", "stateful_process_state"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url, unique_table()
