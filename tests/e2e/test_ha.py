"""Highly-available triggerers: two of them on a PostgreSQL metadata database, the watermark too.

The production shape of Airflow: a real deployment (``dags/`` of its own: ``ha_dags/ha_files.py``)
whose metadata database is a PostgreSQL server started by the tests from the system binaries,
with **two triggerers**, and the ``@stateful`` watcher's watermark in PostgreSQL as well (the
SQL store). Files arrive continuously, one every half second, while

1. the triggerer holding the watcher is SIGKILLed: the other one takes the trigger over once the
   dead one's heartbeat is ``triggerer_health_check_threshold`` seconds old (6 s here);
2. the triggerer holding the watcher is frozen (SIGSTOP) past that threshold, so that the other
   takes it over, and resumed (SIGCONT) once its successor has saved: for a moment two
   triggerers run the same trigger, and Airflow 3.3.2 stores the events of both. The resumed,
   stale one must stop before it emits more than a handful (fencing before emitting).

In each phase no file may be lost, and the events may be at most 1.2 times the files. The
figures (lost, repeats, failover seconds) are printed in the run's summary and recorded in
docs/running-in-airflow.md. Marked ``ha`` (``-m "not ha"`` leaves it out locally); CI runs it.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests._figures import Figures
from tests._postgres import INSTALL_HINT, PostgresServer, find_bindir
from tests.e2e.conftest import e2e_required
from tests.e2e.harness import AirflowDeployment, DeploymentError

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.ha,
    pytest.mark.postgres,
    pytest.mark.airflow_min("3.3", reason="the end-to-end suite runs Airflow 3.3"),
    pytest.mark.xdist_group("e2e-ha"),
]

REPO = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).resolve().parent / "ha_dags"
ASSET = "e2e_ha"
#: Seconds without a heartbeat after which a triggerer's triggers move to another one.
THRESHOLD = 6
#: One file arrives every this many seconds.
ARRIVAL = 0.5
#: What "a handful" of events is: the most a stale triggerer may still hand over.
HANDFUL = 5


@dataclass
class HaWorld:
    """The deployment, its watched directory and how to read its PostgreSQL databases."""

    deployment: AirflowDeployment
    directory: Path
    metadata: str  # libpq conninfo of Airflow's metadata database
    watermarks: str  # libpq conninfo of the watermark store's database
    asset_id: int = 0
    _names: Iterator[int] = field(default_factory=itertools.count)

    def query(self, conninfo: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(conninfo, autocommit=True) as db:
            return db.execute(sql, params).fetchall()

    def counts(self) -> collections.Counter[str]:
        """How many asset events each file (path) became."""
        rows = self.query(self.metadata, "SELECT extra FROM asset_event WHERE asset_id = %s", self.asset_id)
        return collections.Counter(extra["payload"]["path"] for (extra,) in rows)

    def last_event_id(self) -> int:
        rows = self.query(self.metadata, "SELECT max(id) FROM asset_event WHERE asset_id = %s", self.asset_id)
        return int(rows[0][0] or 0)

    def holder(self) -> int | None:
        """The job id of the triggerer holding the watcher's trigger (``None``: not assigned)."""
        rows = self.query(
            self.metadata,
            "SELECT t.triggerer_id FROM trigger t JOIN asset_watcher w ON w.trigger_id = t.id",
        )
        return rows[0][0] if rows else None

    def live_triggerers(self) -> set[int]:
        """The job ids of the triggerers that heartbeat within the threshold."""
        rows = self.query(
            self.metadata,
            "SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' "
            "AND latest_heartbeat > now() - make_interval(secs => %s)",
            THRESHOLD / 2,
        )
        return {row[0] for row in rows}

    def watermark_version(self) -> int | None:
        rows = self.query(self.watermarks, "SELECT max(version) FROM stateful_process_state")
        return None if rows[0][0] is None else int(rows[0][0])

    def drop(self, stem: str) -> str:
        """One new file ``<stem>.csv``, written under another name and renamed when complete."""
        path = self.directory / f"{stem}.csv"
        partial = path.with_suffix(".partial")
        partial.write_text(f"{stem}\n")
        os.rename(partial, path)
        return str(path)

    def barrier(self) -> str:
        """Drop a file and wait for its event: the files before it have all been handled."""
        path = self.drop(f"barrier-{next(self._names):03d}")
        self.deployment.wait_for(f"the asset event of {path}", lambda: self.counts()[path] > 0, 240)
        return path


class Arrivals:
    """Files arriving in the background, one every :data:`ARRIVAL` seconds."""

    def __init__(self, world: HaWorld, prefix: str, count: int) -> None:
        self.paths: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(world, prefix, count), daemon=True)
        self._thread.start()

    def _run(self, world: HaWorld, prefix: str, count: int) -> None:
        for i in range(count):
            self.paths.append(world.drop(f"{prefix}-{i:03d}"))
            time.sleep(ARRIVAL)

    def join(self) -> list[str]:
        self._thread.join()
        return self.paths


@pytest.fixture(scope="module")
def ha(
    airflow_command: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HaWorld]:
    """The deployment: PostgreSQL metadata database, watermark store on PostgreSQL, two triggerers."""
    if find_bindir() is None and e2e_required():
        pytest.fail(f"the HA scenario needs the PostgreSQL server binaries ({INSTALL_HINT}); required here")
    postgres: PostgresServer = request.getfixturevalue("postgres")
    with psycopg.connect(postgres.conninfo, autocommit=True) as db:
        for name in ("airflow_ha", "stateful_ha"):
            db.execute(f"DROP DATABASE IF EXISTS {name}")
            db.execute(f"CREATE DATABASE {name}")
    server = make_url(postgres.url)
    metadata_url = server.set(drivername="postgresql+psycopg", database="airflow_ha")
    store_url = server.set(database="stateful_ha")
    root = tmp_path_factory.mktemp("airflow-ha")
    directory = root / "arriving"
    directory.mkdir()
    url = metadata_url.render_as_string(hide_password=False)
    deployment = AirflowDeployment(
        home=root / "home",
        dags_folder=DAGS,
        pythonpath=[REPO],
        triggerer_health_check_threshold=THRESHOLD,
        env={
            "STATEFUL_E2E_HA": str(directory),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": url,  # psycopg 3 is async too
            "AIRFLOW__STATEFUL__BACKEND": "sql",
            "STATEFUL_DATABASE_URL": store_url.render_as_string(hide_password=False),
        },
    )
    migrated = subprocess.run(
        [airflow_command, "db", "migrate"],
        env=deployment.environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if migrated.returncode != 0:
        raise DeploymentError(
            f"airflow db migrate on PostgreSQL failed:\n{migrated.stdout}\n{migrated.stderr}"
        )
    world = HaWorld(
        deployment,
        directory,
        metadata=psycopg.conninfo.make_conninfo(postgres.conninfo, dbname="airflow_ha"),
        watermarks=psycopg.conninfo.make_conninfo(postgres.conninfo, dbname="stateful_ha"),
    )
    try:
        deployment.start()
        deployment.wait_healthy()
        world.asset_id = deployment.wait_for(
            f"asset {ASSET!r} with its watcher", lambda: _watched(deployment)
        )
        world.barrier()  # the watcher runs
        yield world
    finally:
        with contextlib.suppress(KeyError, ProcessLookupError):
            os.killpg(deployment.pid("triggerer"), signal.SIGCONT)  # never leave one frozen
        deployment.stop_all()


def _watched(deployment: AirflowDeployment) -> int | None:
    try:
        asset = deployment.asset(ASSET)
    except DeploymentError:
        return None
    return int(asset["id"]) if asset["watchers"] else None


def _second_triggerer(world: HaWorld) -> int:
    """Start a second triggerer beside the one holding the trigger; return the holder's job id."""
    holder = world.deployment.wait_for("a live triggerer holding the trigger", lambda: _held(world))
    world.deployment.start_spare("triggerer")
    world.deployment.wait_for("two live triggerers", lambda: len(world.live_triggerers()) >= 2)
    return holder


def _held(world: HaWorld) -> int | None:
    holder = world.holder()
    return holder if holder is not None and holder in world.live_triggerers() else None


def _phase(world: HaWorld, paths: list[str], what: str) -> tuple[int, int, int]:
    """Wait until every file of the phase was handled; return (files, lost, repeats)."""
    paths = [*paths, world.barrier()]
    counts = world.counts()
    lost = [path for path in paths if counts[path] == 0]
    repeats = sum(counts[path] - 1 for path in paths if counts[path] > 1)
    events = sum(counts[path] for path in paths)
    assert not lost, f"{what}: {len(lost)} of {len(paths)} files lost: {lost}"
    assert events <= 1.2 * len(paths), f"{what}: {events} events for {len(paths)} files"
    return len(paths), len(lost), repeats


def test_ha_two_triggerers_on_postgres_lose_nothing_and_a_stale_one_stops(
    ha: HaWorld, figures: Figures
) -> None:
    started = time.monotonic()
    deployment = ha.deployment

    # 1. SIGKILL the triggerer holding the watcher while files arrive; the other takes it over.
    holder = _second_triggerer(ha)
    arrivals = Arrivals(ha, "kill", 30)
    time.sleep(10 * ARRIVAL)
    before = ha.last_event_id()
    deployment.kill("triggerer")  # the holder: the spare becomes the running triggerer
    killed = time.monotonic()
    deployment.wait_for(
        "the trigger to move to the other triggerer", lambda: ha.holder() not in (None, holder)
    )
    moved = time.monotonic() - killed
    deployment.wait_for("an event from the other triggerer", lambda: ha.last_event_id() > before)
    failover = time.monotonic() - killed
    files, lost, repeats = _phase(ha, arrivals.join(), "SIGKILL")
    figures.append(
        f"[HA, PostgreSQL] SIGKILL of the triggerer holding the watcher, {files} files arriving: "
        f"{lost} lost, {repeats} repeated; trigger re-assigned after {moved:.1f} s, first event from "
        f"the other triggerer {failover:.1f} s after the kill"
    )

    # 2. SIGSTOP the holder past its heartbeat threshold; SIGCONT once its successor saved.
    holder = _second_triggerer(ha)
    stale_pid, stale_log = deployment.pid("triggerer"), deployment.log_path("triggerer")
    arrivals = Arrivals(ha, "freeze", 40)
    time.sleep(6 * ARRIVAL)
    version = ha.watermark_version()
    os.killpg(stale_pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        deployment.wait_for(
            "the trigger to move to the other triggerer", lambda: ha.holder() not in (None, holder)
        )
        moved = time.monotonic() - frozen
        deployment.wait_for(
            "the successor's first save", lambda: (ha.watermark_version() or 0) > (version or 0)
        )
    finally:
        os.killpg(stale_pid, signal.SIGCONT)
    freeze = time.monotonic() - frozen
    files, lost, repeats = _phase(ha, arrivals.join(), "SIGSTOP/SIGCONT")
    log = stale_log.read_text(errors="replace")
    fenced = "StateTakenOverError" in log or "stops before emitting more" in log
    figures.append(
        f"[HA, PostgreSQL] the holder frozen {freeze:.1f} s (SIGSTOP, past the {THRESHOLD} s heartbeat "
        f"threshold) then resumed beside its successor, {files} files arriving: {lost} lost, {repeats} "
        f"repeated; trigger re-assigned after {moved:.1f} s; the stale one "
        f"{'stopped by the fence' if fenced else 'cancelled by its triggerer'}"
    )
    assert repeats <= HANDFUL, f"the stale triggerer emitted {repeats} repeats after it resumed"
    figures.append(f"[HA, PostgreSQL] scenario duration {time.monotonic() - started:.0f} s")
