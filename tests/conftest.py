"""Shared fixtures: a real PostgreSQL server for tests marked ``postgres``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._postgres import INSTALL_HINT, PostgresServer, find_bindir, postgres_required


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session; its ``url`` has a password.

    Without the server binaries the tests using it are skipped, except in CI (``CI`` set, or
    ``STATEFUL_REQUIRE_POSTGRES=1``), where they fail: CI must never pass by skipping them.
    """
    bindir = find_bindir()
    if bindir is None:
        message = f"PostgreSQL tests need initdb and pg_ctl, which were not found: {INSTALL_HINT}"
        if postgres_required():
            pytest.fail(f"{message} (required here because CI or STATEFUL_REQUIRE_POSTGRES is set)")
        pytest.skip(message)
    server = PostgresServer.start(bindir)
    try:
        yield server
    finally:
        server.stop()
