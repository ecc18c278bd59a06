"""Fixtures of the end-to-end suite: one real Airflow deployment per state store, shared by a module.

Under pytest-xdist (``make test`` runs ``pytest -n ... --dist loadgroup``) each deployment is one
``xdist_group``: its scenarios run in order on one worker, while the other store's deployment and
the rest of the suite run on the other workers. The figures the scenarios measure reach the
terminal summary through their reports (tests/_figures.py).

The suite needs the ``airflow`` command of the interpreter's environment (``make test`` installs
``apache-airflow``). Without it the tests are skipped, except in CI (``CI`` set, or
``STATEFUL_REQUIRE_E2E=1``), where they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stateful.backends import SqlBackend
from stateful.backends.native import NativeDocument, native_key
from tests._airflow import copy_metadata_db
from tests.e2e.harness import AirflowDeployment
from tests.e2e.triggers import SHARED_FOLDERS
from tests.e2e.watched import WatchedDir, WatchedFiles

REPO = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).resolve().parent / "dags"
#: Airflow's triggerer logs "Triggerer's async thread was blocked for X seconds" when its
#: watchdog, which sleeps 0.1 s at a time, wakes more than this many seconds later: here, when
#: the loop was held for more than 20 ms.
LOOP_WATCHDOG_SLEEP = 0.1
LOOP_WATCHDOG_THRESHOLD = LOOP_WATCHDOG_SLEEP + 0.02


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
        env: environment variables for every Airflow component, given the ``AIRFLOW_HOME``.
        read: ``read(world, namespace, name)``: the stored watermark (JSON text), or ``None``.
            Fast (a local read), as the crash scenarios poll it every few milliseconds.
        native: whether it lives in the watched asset's AIP-103 state store.
    """

    name: str
    env: Callable[[Path], dict[str, str]]
    read: Callable[[WatchedFiles, str, str], str | None]
    native: bool


def _sql_url(home: Path) -> str:
    return f"sqlite:///{home / 'stateful.db'}"


def _read_sql(world: WatchedFiles, namespace: str, name: str) -> str | None:
    store = SqlBackend(_sql_url(world.deployment.home))
    try:
        record = store.read(namespace, name, "watermark")
    finally:
        store.dispose()
    return None if record is None else record.value


def _read_native(world: WatchedFiles, namespace: str, name: str) -> str | None:
    # The metadata database's row, as the REST API serves it (scenario d reads it through REST).
    # Each watched asset keeps its own trigger's watermark; the key names it (namespace included).
    ids = [watched.asset_id for watched in world.watched]
    rows = world.deployment.query(
        f"SELECT value FROM asset_state_store WHERE asset_id IN ({', '.join('?' * len(ids))}) AND key = ?",
        *ids,
        native_key(namespace, name),
    )
    return NativeDocument.from_json_value(json.loads(rows[0][0])).value if rows else None


# The SQL store, chosen by the option (and its default SQLite file, named explicitly).
SQL_STORE = pytest.param(
    Store(
        "sql",
        env=lambda home: {"AIRFLOW__STATEFUL__BACKEND": "sql", "STATEFUL_DATABASE_URL": _sql_url(home)},
        read=_read_sql,
        native=False,
    ),
    id="sql-store",
    # One deployment, one pytest-xdist worker: its scenarios share it, in order.
    marks=pytest.mark.xdist_group("e2e-sql-store"),
)

# Scenario (e): every scenario runs once per store (scenario h's ack=False burst and scenario i, the
# deferred task, on the SQL store only).
STORES = [
    # The default rule ([stateful] backend = auto) on Airflow 3.3: an AssetWatcher's trigger has an
    # asset state store, so the native store is chosen; nothing to configure.
    pytest.param(
        Store("native", env=lambda home: {}, read=_read_native, native=True),
        id="native-store",
        marks=pytest.mark.xdist_group("e2e-native-store"),
    ),
    SQL_STORE,
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
    airflow_command: str, store: Store, migrated_airflow_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WatchedFiles]:
    """A running deployment (all four components) with its watchers live, shared by the module.

    ``airflow_command`` is requested first so that a missing Airflow skips (or fails) at once. The
    metadata database is a copy of the session's migrated one (``airflow db migrate`` runs once per
    test process, not once per deployment).
    """
    root = tmp_path_factory.mktemp(f"airflow-{store.name}")
    names = ("landing", "control", "unacked", "burst", "burst-unacked", "deferred", "shared")
    landing, control, unacked, burst, burst_unacked, deferred, shared = (root / name for name in names)
    for directory in (landing, control, unacked, burst, burst_unacked, deferred, shared):
        directory.mkdir()
    for folder in SHARED_FOLDERS:
        (shared / folder).mkdir()
    home = root / "home"
    deployment = AirflowDeployment(
        home=home,
        dags_folder=DAGS,
        pythonpath=[REPO],
        env={
            "STATEFUL_E2E_LANDING": str(landing),
            "STATEFUL_E2E_CONTROL": str(control),
            "STATEFUL_E2E_UNACKED": str(unacked),
            "STATEFUL_E2E_BURST": str(burst),
            "STATEFUL_E2E_BURST_UNACKED": str(burst_unacked),
            "STATEFUL_E2E_DEFERRED": str(deferred),
            "STATEFUL_E2E_SHARED": str(shared),
            # Airflow's watchdog wakes every 0.1 s and logs when it woke later than this: 20 ms
            # late is the longest stall of the triggerer's loop the suite lets pass unreported.
            "AIRFLOW__TRIGGERER__BLOCKED_MAIN_THREAD_WARNING_THRESHOLD": str(LOOP_WATCHDOG_THRESHOLD),
            **store.env(home),
        },
    )
    world = WatchedFiles(
        deployment,
        landing=WatchedDir(landing, "e2e_landing"),
        control=WatchedDir(control, "e2e_control"),
        unacked=WatchedDir(unacked, "e2e_unacked"),
        burst=WatchedDir(burst, "e2e_burst"),
        burst_unacked=WatchedDir(burst_unacked, "e2e_burst_unacked"),
        deferred=deferred,
        shared=tuple(WatchedDir(shared / folder, f"e2e_shared_{folder}") for folder in SHARED_FOLDERS),
    )
    copy_metadata_db(migrated_airflow_db, home)
    try:
        deployment.start()
        deployment.wait_healthy()
        world.resolve_assets()
        # The watchers are live once a file dropped now has become an asset event.
        world.barrier(*world.watched)
        yield world
    finally:
        deployment.stop_all()


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook, which names each test's group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker under ``--dist loadgroup``, fail if a deployment's group was lost.

    pytest-xdist puts a test in its group by appending ``@<group>`` to its node id; when that does
    not take (pytest 9.2 with pytest-xdist 3.8, pytest-dev/pytest-xdist#1386) the scenarios of one
    deployment are spread over the workers, and each worker starts a deployment of its own.
    """
    if not config.getoption("loadgroup", False):  # set in pytest-xdist workers only
        return
    lost = [
        item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if lost:
        raise pytest.UsageError(f"pytest-xdist did not group these tests (--dist loadgroup): {lost}")
