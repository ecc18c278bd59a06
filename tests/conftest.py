"""Shared fixtures: a real PostgreSQL server, and a fresh store of every kind.

Also the ``airflow_min`` marker: ``@pytest.mark.airflow_min("3.3", reason="AIP-103 state store")``
skips a test, with that reason in the summary, when the installed Airflow is older (``make
test-oldest`` runs the suite on the oldest supported Airflow).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

import airflow
import pytest
from packaging.version import Version

from stateful.backends import AsyncStateBackend, MemoryBackend, NativeBackend, SqlBackend, StateBackend
from tests._airflow import AirflowStateStore, CompositeComms, metadata_db, migrate
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


class DualBackend(StateBackend, AsyncStateBackend, Protocol):
    """A store implementing both Protocols, as every built-in store does."""


POSTGRES_PARAM = pytest.param("postgres", marks=pytest.mark.postgres)
NATIVE_PARAM = pytest.param("native", marks=pytest.mark.airflow_db)


@pytest.fixture(scope="session")
def airflow_metadata_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Airflow metadata database (SQLite, ``airflow db migrate``) used by this process."""
    url = migrate(tmp_path_factory.mktemp("airflow-home"))
    with metadata_db(url):
        yield url


@pytest.fixture
async def airflow_state_store(airflow_metadata_db: str) -> AsyncIterator[AirflowStateStore]:
    """Fresh assets and Airflow's own accessors, with ``SUPERVISOR_COMMS`` wired as in Airflow."""
    from airflow.sdk.execution_time.supervisor import set_supervisor_comms

    comms = CompositeComms()
    with set_supervisor_comms(comms):
        yield AirflowStateStore(comms)
        await comms.aclose()


def unique_table() -> str:
    # One table per test keeps PostgreSQL tests independent without dropping anything.
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=["memory", "sqlite", POSTGRES_PARAM, NATIVE_PARAM])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DualBackend]:
    """A fresh, empty store of each kind."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    if request.param == "native":
        airflow: AirflowStateStore = request.getfixturevalue("airflow_state_store")
        yield NativeBackend(airflow.accessors(airflow.new_asset()))
        return
    if request.param == "sqlite":
        store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = SqlBackend(server.url, table_name=unique_table())
    yield store
    store.dispose()


AIRFLOW_VERSION = Version(airflow.__version__)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers("airflow_min"):
            needed = Version(marker.args[0])
            if needed > AIRFLOW_VERSION:
                why = marker.kwargs.get("reason", "a newer Airflow feature")
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"needs Airflow >= {needed} ({why}); installed: {AIRFLOW_VERSION}"
                    )
                )
