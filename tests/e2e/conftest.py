"""Fixtures of the end-to-end suite: one real Airflow deployment per state store, shared by a module.

The suite needs the ``airflow`` command of the interpreter's environment (``make test`` installs
``apache-airflow``). Without it the tests are skipped, except in CI (``CI`` set, or
``STATEFUL_REQUIRE_E2E=1``), where they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stateful.backends import SqlBackend
from tests.e2e.harness import AirflowDeployment
from tests.e2e.watched import WatchedDir, WatchedFiles

REPO = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).resolve().parent / "dags"


def e2e_required() -> bool:
    """Whether a missing prerequisite must fail the run (CI) instead of skipping."""
    if os.environ.get("STATEFUL_REQUIRE_E2E", "") not in {"", "0"}:
        return True
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


@dataclass(frozen=True)
class Store:
    """How a deployment is set up to use one state store, and how to read a watermark from it.

    Attributes:
        name: the test id.
        env: environment variables for every Airflow component.
        read: ``read(world, namespace, name)``: the stored watermark document, or ``None``.
    """

    name: str
    env: Callable[[Path], dict[str, str]]
    read: Callable[[WatchedFiles, str, str], str | None]


def _sql_url(home: Path) -> str:
    return f"sqlite:///{home / 'stateful.db'}"


def _read_sql(world: WatchedFiles, namespace: str, name: str) -> str | None:
    store = SqlBackend(_sql_url(world.deployment.home))
    try:
        record = store.read(namespace, name, "watermark")
    finally:
        store.dispose()
    return None if record is None else record.value


# Scenario (e): every scenario runs once per store. The AIP-103 native store joins this list
# when it lands (its `read` goes through GET /api/v2/assets/{id}/state-store).
STORES = [
    pytest.param(
        Store("sql", env=lambda home: {"STATEFUL_DATABASE_URL": _sql_url(home)}, read=_read_sql),
        id="sql-store",
    ),
]


@pytest.fixture(scope="session")
def airflow_command() -> str:
    """The ``airflow`` command next to the running interpreter."""
    command = Path(sys.executable).with_name("airflow")
    if not command.is_file():
        message = f"the end-to-end suite needs Airflow's command, not found at {command} (run `make test`)"
        if e2e_required():
            pytest.fail(f"{message}; required here because CI or STATEFUL_REQUIRE_E2E is set")
        pytest.skip(message)
    return str(command)


@pytest.fixture(scope="module", params=STORES)
def store(request: pytest.FixtureRequest) -> Store:
    """The state store of the module's deployment."""
    chosen: Store = request.param
    return chosen


@pytest.fixture(scope="module")
def world(
    airflow_command: str, store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WatchedFiles]:
    """A running deployment (all four components) with its watchers live, shared by the module.

    ``airflow_command`` is requested first so that a missing Airflow skips (or fails) at once.
    """
    root = tmp_path_factory.mktemp(f"airflow-{store.name}")
    landing, control = root / "landing", root / "control"
    landing.mkdir()
    control.mkdir()
    home = root / "home"
    deployment = AirflowDeployment(
        home=home,
        dags_folder=DAGS,
        pythonpath=[REPO],
        env={
            "STATEFUL_E2E_LANDING": str(landing),
            "STATEFUL_E2E_CONTROL": str(control),
            **store.env(home),
        },
    )
    world = WatchedFiles(
        deployment,
        landing=WatchedDir(landing, "e2e_landing"),
        control=WatchedDir(control, "e2e_control"),
    )
    deployment.migrate()
    try:
        deployment.start()
        deployment.wait_healthy()
        world.resolve_assets()
        # The watchers are live once a file dropped now has become an asset event.
        world.barrier(world.landing)
        world.barrier(world.control)
        yield world
    finally:
        deployment.stop_all()


_FIGURES: list[str] = []


@pytest.fixture(scope="session")
def figures() -> list[str]:
    """Measured figures; printed at the end of the run (they go into docs/running-in-airflow.md)."""
    return _FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("stateful end-to-end figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
