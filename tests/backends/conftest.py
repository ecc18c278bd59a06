"""Fixtures for the store tests: every backend kind, and SQL stores sharing one database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from stateful.backends import AsyncStateBackend, MemoryBackend, SqlBackend, StateBackend
from tests._postgres import PostgresServer


class DualBackend(StateBackend, AsyncStateBackend, Protocol):
    """A store implementing both Protocols, as every built-in store does."""


SqlFactory = Callable[[], SqlBackend]

_POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


def _unique_table() -> str:
    # One table per test keeps PostgreSQL tests independent without dropping anything.
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=["memory", "sqlite", _POSTGRES])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DualBackend]:
    """A fresh, empty store of each kind."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    if request.param == "sqlite":
        store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = SqlBackend(server.url, table_name=_unique_table())
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", _POSTGRES])
def sql_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlFactory]:
    """Builds independent SqlBackend instances (own engine each) on one fresh database table."""
    if request.param == "sqlite":
        url, table = f"sqlite:///{tmp_path / 'shared.db'}", "stateful_process_state"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url, table = server.url, _unique_table()
    made: list[SqlBackend] = []

    def make() -> SqlBackend:
        made.append(SqlBackend(url, table_name=table))
        return made[-1]

    yield make
    for store in made:
        store.dispose()
