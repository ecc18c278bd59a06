"""Shared fixtures: a real PostgreSQL server, and a fresh store of every kind.

Every fixture here is safe to run once per pytest-xdist worker (``make test`` runs the suite with
``-n``): session fixtures make their files under ``tmp_path_factory`` (a directory per worker) and
take free ports, so two workers each start their own PostgreSQL server and metadata database.

Also the ``airflow_min`` marker: ``@pytest.mark.airflow_min("3.3", reason="AIP-103 state store")``
skips a test, with that reason in the summary, when the installed Airflow is older (``make
test-oldest`` runs the suite on the oldest supported Airflow). A module whose imports need the
newer Airflow declares it as its module-level ``pytestmark = pytest.mark.airflow_min(...)``: on
an older Airflow it is not imported, and stands in the summary as one skipped test with the reason.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Protocol

import airflow
import pytest
from packaging.version import Version

from stateful.backends import AsyncStateBackend, MemoryBackend, NativeBackend, SqlBackend, StateBackend
from stateful.backends.base import SupportsLayout
from tests._airflow import AirflowStateStore, CompositeComms, copy_metadata_db, metadata_db, migrate
from tests._figures import figures, pytest_terminal_summary
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


class DualBackend(StateBackend, AsyncStateBackend, SupportsLayout, Protocol):
    """A store implementing both Protocols and taking layouts, as every built-in store does."""


AIRFLOW_VERSION = Version(airflow.__version__)
NEEDS_AIP_103 = pytest.mark.airflow_min("3.3", reason="AIP-103 asset state store")
POSTGRES_PARAM = pytest.param("postgres", marks=pytest.mark.postgres)
NATIVE_PARAM = pytest.param("native", marks=[pytest.mark.airflow_db, NEEDS_AIP_103])


@pytest.fixture(scope="session")
def migrated_airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow metadata database made by ``airflow db migrate``, once per session: a template.

    Nothing opens it: a test or module that needs a metadata database copies it
    (:func:`airflow_home` for a subprocess, :func:`airflow_metadata_db` for this process).
    """
    return migrate(tmp_path_factory.mktemp("airflow-migrated"))


@pytest.fixture
def airflow_home(migrated_airflow_db: Path, tmp_path: Path) -> Path:
    """A fresh ``AIRFLOW_HOME`` holding its own copy of the migrated metadata database."""
    home = tmp_path / "airflow"
    copy_metadata_db(migrated_airflow_db, home)
    return home


@pytest.fixture(scope="session")
def airflow_metadata_db(migrated_airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Airflow metadata database (a copy of the migrated one) used by this process."""
    url = copy_metadata_db(migrated_airflow_db, tmp_path_factory.mktemp("airflow-home"))
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


# The end-to-end suite's measured figures: a fixture, and the hook that prints them. Here, not in
# tests/e2e/conftest.py: under pytest-xdist the controlling process, which writes the summary,
# loads this conftest but never the e2e one (it collects nothing).
__all__ = ["figures", "pytest_terminal_summary"]


def unique_table() -> str:
    # One table per test keeps PostgreSQL tests independent without dropping anything.
    return f"t_{uuid.uuid4().hex[:16]}"


def fresh_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DualBackend]:
    """A fresh, empty store of ``kind`` (``yield from`` it in a fixture): in memory, a SQLite
    file, a table of its own on the PostgreSQL server, or a new asset's state store in Airflow's
    metadata database. A SQL store is disposed of afterwards."""
    if kind == "memory":
        yield MemoryBackend()
        return
    if kind == "native":
        airflow: AirflowStateStore = request.getfixturevalue("airflow_state_store")
        yield NativeBackend(airflow.accessors(airflow.new_asset()))
        return
    if kind == "sqlite":
        store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = SqlBackend(server.url, table_name=unique_table())
    yield store
    store.dispose()


@pytest.fixture(params=["memory", "sqlite", POSTGRES_PARAM, NATIVE_PARAM])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DualBackend]:
    """A fresh, empty store of each kind."""
    yield from fresh_store(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """A fresh SQL store: a SQLite file, or a table of its own on the PostgreSQL server."""
    for store in fresh_store(request.param, request, tmp_path):
        assert isinstance(store, SqlBackend)
        yield store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "airflow_state_store" in getattr(item, "fixturenames", ()):
            item.add_marker(NEEDS_AIP_103)  # the fixture is an AIP-103 asset state store
        for marker in item.iter_markers("airflow_min"):
            needed = Version(marker.args[0])
            if needed > AIRFLOW_VERSION:
                why = marker.kwargs.get("reason", "a newer Airflow feature")
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"needs Airflow >= {needed} ({why}); installed: {AIRFLOW_VERSION}"
                    )
                )


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    needed = _module_airflow_min(module_path)
    if needed is None or Version(needed[0]) <= AIRFLOW_VERSION:
        return None  # collected as usual
    reason = f"needs Airflow >= {needed[0]} ({needed[1]}); installed: {AIRFLOW_VERSION}"
    return _NotImported.from_parent(parent, path=module_path, reason=reason)


def _module_airflow_min(path: Path) -> tuple[str, str] | None:
    """``(version, reason)`` of a module-level ``pytestmark = pytest.mark.airflow_min(...)``."""
    for node in ast.parse(path.read_text(), str(path)).body:
        if not (
            isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
        ):
            continue
        calls = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
        for call in calls:
            if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "airflow_min":
                version = ast.literal_eval(call.args[0])
                reason = next((ast.literal_eval(k.value) for k in call.keywords if k.arg == "reason"), "")
                return str(version), str(reason or "a newer Airflow feature")
    return None


class _NotImported(pytest.File):
    """A test module that needs a newer Airflow: one skipped item instead of an import error."""

    def __init__(self, *, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def collect(self) -> Iterator[pytest.Item]:
        yield _SkippedModule.from_parent(self, name=self.path.name, reason=self.reason)


class _SkippedModule(pytest.Item):
    def __init__(self, *, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker(pytest.mark.skip(reason=reason))

    def runtest(self) -> None:
        raise AssertionError("never run: marked skip")  # pragma: no cover

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name
