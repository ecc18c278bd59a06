"""A real Airflow deployment for the end-to-end suite, started and stopped by the tests.

:class:`AirflowDeployment` runs ``airflow api-server``, ``scheduler``, ``dag-processor`` and
``triggerer`` as separate processes sharing one ``AIRFLOW_HOME`` with a SQLite metadata database
and the LocalExecutor, waits for them through ``/api/v2/monitor/health``, and reads what they did
through the public REST API (no token: the simple auth manager makes every caller an admin).

Each component runs in its own process group, so that stopping it also stops its children (an
idle LocalExecutor worker can hang the scheduler's shutdown; a killed triggerer's ``serve-logs``
child would keep its port): :meth:`AirflowDeployment.stop` sends SIGTERM to the group and SIGKILL
after a grace period, :meth:`AirflowDeployment.kill` sends SIGKILL at once (a crash).

Every port is a free one picked at start, so several deployments can run on one machine.

The components share one configuration, written before any of them starts: with no
``airflow.cfg`` in ``AIRFLOW_HOME``, every Airflow process that starts writes one with a fernet
key of its own, and a process that reads the file while another is writing it finds no key at all.
A triggerer whose key differs from the dag-processor's cannot read the watchers' arguments: its
trigger runner dies (``json.loads`` of a fernet token, seen once in CI).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

__all__ = ["COMPONENTS", "AirflowDeployment", "DeploymentError", "free_port"]

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# The health report's key for each component that has one (the api-server answers it).
_HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
_T = TypeVar("_T")
_PAGE_LIMIT = 100_000


class DeploymentError(AssertionError):
    """The deployment did not do what a test waited for; the message ends with the components' logs."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Running:
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class AirflowDeployment:
    """One Airflow deployment in ``home``; nothing runs until :meth:`start`.

    ``home/airflow.db`` must hold a migrated metadata database by then: the suite copies one that
    ``airflow db migrate`` made once per test process (``tests/_airflow.py``).

    Args:
        home: the ``AIRFLOW_HOME`` (created if missing): metadata database, logs, component logs.
        dags_folder: the DAG files.
        pythonpath: directories every component (and every task) must import from.
        env: more environment variables for every component (e.g. ``STATEFUL_*`` settings).
        triggerer_health_check_threshold: seconds without a heartbeat after which a triggerer
            counts as dead and its triggers move to another one (Airflow's default is 30).
    """

    home: Path
    dags_folder: Path
    pythonpath: Sequence[Path] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    triggerer_health_check_threshold: int = 6
    port: int = field(default_factory=free_port)
    _running: dict[str, _Running] = field(default_factory=dict, init=False)
    _spares: dict[str, _Running] = field(default_factory=dict, init=False)
    _starts: dict[str, int] = field(default_factory=dict, init=False)
    _client: httpx.Client | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "components").mkdir(exist_ok=True)
        # Present before any component starts, so that none of them writes one (see the module's
        # docstring); every option comes from the environment or Airflow's defaults.
        config = self.home / "airflow.cfg"
        if not config.exists():
            config.write_text("# Written by the test harness: the settings are in the environment.\n")
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.environment = self._environment()

    # -- processes ---------------------------------------------------------------------------

    @property
    def airflow(self) -> str:
        """The ``airflow`` command of the running interpreter's environment."""
        return str(Path(sys.executable).with_name("airflow"))

    def start(self, *components: str) -> None:
        """Start each component (all four if none is named) in a process group of its own."""
        for name in components or COMPONENTS:
            if name not in COMPONENTS:
                raise ValueError(f"unknown component {name!r}; expected one of {COMPONENTS}")
            if self.is_running(name):
                raise RuntimeError(f"{name} is already running")
            self._running[name] = self._launch(name)

    def start_spare(self, name: str) -> None:
        """Start a second process of a running component beside it, unless one is there already.

        The spare starts up (imports, connects, heartbeats) while the component works; the next
        :meth:`stop` or :meth:`kill` of the component makes the spare the component. A spare
        triggerer runs nothing meanwhile: Airflow gives a triggerer only the triggers of no live
        triggerer, so it takes the triggers over once the stopped one's job has ended (a graceful
        stop) or its heartbeat is ``triggerer_health_check_threshold`` seconds old (a crash), as
        the second triggerer of a highly available deployment does.
        """
        if not self.is_running(name):
            raise RuntimeError(f"{name} is not running: start it, not a spare")
        if name not in self._spares:
            self._spares[name] = self._launch(name)

    def has_spare(self, name: str) -> bool:
        """Whether a spare of ``name`` was started and has not become the component yet."""
        return name in self._spares

    def _launch(self, name: str) -> _Running:
        self._starts[name] = self._starts.get(name, 0) + 1
        log_path = self.home / "components" / f"{name}-{self._starts[name]}.log"
        env = self.environment
        if name == "triggerer":  # its own log server: a spare runs beside the triggerer
            env = {**env, "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [self.airflow, name],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, see stop()
            )
        return _Running(process, log_path)

    def is_running(self, name: str) -> bool:
        """Whether ``name`` was started and its main process has not exited."""
        running = self._running.get(name)
        return running is not None and running.process.poll() is None

    def pid(self, name: str) -> int:
        """The process id (and process group id) of a running component."""
        return self._running[name].process.pid

    def stop(self, name: str, grace: float = 10.0) -> int:
        """SIGTERM the component; SIGKILL its process group after ``grace`` seconds.

        SIGTERM goes to the main process only, as ``docker stop`` and Kubernetes send it: the
        component stops its own children (the triggerer tells its trigger runner to stop).

        Returns:
            The main process's exit code (negative: the signal that ended it).
        """
        running = self._pop(name)
        process = running.process
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
        # Also when the main process exited: a child it left behind (a LocalExecutor worker, a
        # serve-logs server) must not outlive it.
        _signal_group(process.pid, signal.SIGKILL)
        return process.wait()

    def kill(self, name: str) -> int:
        """SIGKILL the component's whole process group at once, as a crash would."""
        running = self._pop(name)
        _signal_group(running.process.pid, signal.SIGKILL)
        return running.process.wait()

    def _pop(self, name: str) -> _Running:
        """The component's process, now stopping; its spare (if any) becomes the component."""
        running = self._running.pop(name)
        spare = self._spares.pop(name, None)
        if spare is not None:
            self._running[name] = spare
        return running

    def stop_all(self) -> None:
        """Stop every running component (the triggerer first, the api-server last), spares first."""
        for name in ("triggerer", "dag-processor", "scheduler", "api-server"):
            if name in self._spares:
                spare = self._spares.pop(name)
                spare.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spare.process.wait(timeout=10)
                _signal_group(spare.process.pid, signal.SIGKILL)
                spare.process.wait()
            if name in self._running:
                self.stop(name)
        if self._client is not None:
            self._client.close()
            self._client = None

    def log_path(self, name: str) -> Path:
        """The file that the component's current (or last) process writes its output to."""
        return self._log_path(name)

    def log_text(self, name: str) -> str:
        """Everything the component's current (or last) process has written."""
        return self._log_path(name).read_text(errors="replace")

    def trigger_logs(self, dag_id: str) -> str:
        """Everything the triggers of ``dag_id``'s deferred tasks logged, one file per deferral.

        Airflow writes a deferred task's trigger lines next to the task's log, not to the
        triggerer's (which keeps the lines of triggers without a task: the watchers').
        """
        folder = self.home / "logs" / f"dag_id={dag_id}"
        files = sorted(folder.glob("run_id=*/task_id=*/*.trigger.*.log"))
        return "\n".join(path.read_text(errors="replace") for path in files)

    # -- waiting -----------------------------------------------------------------------------

    def wait_for(
        self, what: str, probe: Callable[[], _T | None], timeout: float = 180, interval: float = 0.25
    ) -> _T:
        """Poll ``probe`` until it returns something other than ``None`` (or ``False``).

        Fails early if a component died, and on timeout; either error says what was awaited and
        ends with the tail of every component's log.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(what)
            try:
                result = probe()
            except httpx.TransportError:  # the api-server is (re)starting
                result = None
            if result is not None and result is not False:
                return result
            if time.monotonic() > deadline:
                raise DeploymentError(self._with_logs(f"timed out after {timeout:.0f} s waiting for {what}"))
            time.sleep(interval)

    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health``."""
        health: dict[str, Any] = self.get("/api/v2/monitor/health")
        return health

    def wait_healthy(self, components: Iterable[str] = COMPONENTS, timeout: float = 180) -> None:
        """Wait until the health report shows each running component (and the database) healthy."""
        keys = ["metadatabase", *(_HEALTH_KEYS[c] for c in components if c in _HEALTH_KEYS)]

        def probe() -> bool:
            report = self.health()
            return all((report.get(key) or {}).get("status") == "healthy" for key in keys)

        self.wait_for(f"{', '.join(keys)} to be healthy", probe, timeout=timeout)

    # -- REST --------------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        """GET a REST path; return the decoded JSON. Raises on an error status, showing the body."""
        return self._request("GET", path, params)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG (``PATCH /api/v2/dags/{dag_id}``)."""
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"update_mask": "is_paused"}, {"is_paused": paused})

    def _request(
        self, method: str, path: str, params: Mapping[str, Any], body: Mapping[str, Any] | None = None
    ) -> Any:
        if self._client is None:
            # No Authorization header at all: with [core] simple_auth_manager_all_admins every
            # caller is an admin, but a header carrying a wrong token would be rejected.
            self._client = httpx.Client(base_url=self.base_url, timeout=30)
        query = {k: v for k, v in params.items() if v is not None}
        response = self._client.request(method, path, params=query, json=body)
        if response.status_code >= 400:
            raise DeploymentError(f"{method} {path} {params}: HTTP {response.status_code}: {response.text}")
        return response.json()

    def _all(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        # One page holds everything (see [api] maximum_page_limit below): paging through results
        # ordered by a column with ties could skip or repeat rows.
        page = self.get(path, limit=_PAGE_LIMIT, **params)
        items: list[dict[str, Any]] = page[key]
        if page["total_entries"] > len(items):
            raise DeploymentError(f"GET {path}: {page['total_entries']} entries, more than one page")
        return items

    def asset(self, name: str) -> dict[str, Any]:
        """The asset called ``name`` (``GET /api/v2/assets?name_pattern=...``); fails if not exactly one."""
        found = [a for a in self._all("/api/v2/assets", "assets", name_pattern=name) if a["name"] == name]
        if len(found) != 1:
            raise DeploymentError(f"expected one asset named {name!r}, found {len(found)}")
        return found[0]

    def asset_events(self, asset_id: int) -> list[dict[str, Any]]:
        """Every event of the asset, oldest first: ``{"id", "extra", "timestamp"}`` each.

        Read from the metadata database, not ``GET /api/v2/assets/events``: in Airflow 3.3.2 that
        endpoint answers 500 while one of the events' DAG runs is queued (its ``start_date`` is
        null and the response model requires one), which is most of the time in a burst.
        """
        rows = self.query(
            "SELECT id, extra, timestamp FROM asset_event WHERE asset_id = ? ORDER BY id", asset_id
        )
        return [{"id": id_, "extra": json.loads(extra), "timestamp": ts} for id_, extra, ts in rows]

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run a read-only query on the metadata database (SQLite in WAL mode: never blocks Airflow)."""
        uri = f"file:{self.home / 'airflow.db'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
            return db.execute(sql, params).fetchall()

    def watcher_trigger_ids(self, asset_id: int) -> list[int]:
        """The ids of the triggers watching the asset (one per watcher)."""
        return [
            row[0] for row in self.query("SELECT trigger_id FROM asset_watcher WHERE asset_id = ?", asset_id)
        ]

    def asset_state_store(self, asset_id: int) -> list[dict[str, Any]]:
        """The asset's AIP-103 state store entries (``GET /api/v2/assets/{id}/state-store``)."""
        return self._all(f"/api/v2/assets/{asset_id}/state-store", "asset_state_store")

    def asset_state_store_entry(self, asset_id: int, key: str) -> dict[str, Any]:
        """One entry of the asset's state store (``GET /api/v2/assets/{id}/state-store/{key}``)."""
        entry: dict[str, Any] = self.get(f"/api/v2/assets/{asset_id}/state-store/{quote(key, safe='/')}")
        return entry

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of the DAG (``GET /api/v2/dags/{dag_id}/dagRuns``)."""
        return self._all(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs")

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The asset events a DAG run consumed."""
        page = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")
        events: list[dict[str, Any]] = page["asset_events"]
        return events

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The value of an XCom (deserialised)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.get(path, deserialize=True)["value"]

    # -- internals ---------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        # Nothing from the caller's own Airflow or stateful configuration leaks in.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "STATEFUL_", "_AIRFLOW")) and k != "PYTHONPATH"
        }
        secret = secrets.token_urlsafe(32)
        # One fernet key for every component: the dag-processor encrypts the watchers' arguments
        # with it and the triggerer decrypts them.
        fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__FERNET_KEY": fernet_key,
                # Airflow runs the watchers of assets that schedule unpaused DAGs only.
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__PARALLELISM": "4",
                # REST calls without a token.
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__MAXIMUM_PAGE_LIMIT": str(_PAGE_LIMIT),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                # One secret for every component: tasks' tokens are signed by the scheduler and
                # checked by the api-server.
                "AIRFLOW__API_AUTH__JWT_SECRET": secret,
                "AIRFLOW__API__SECRET_KEY": secret,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # A killed triggerer's triggers move to a live one after this many seconds.
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(
                    self.triggerer_health_check_threshold
                ),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                # A task's requests to the api-server time out after 5 s by default, and a task
                # whose start-up request times out fails: seen on a 2-core machine loaded by the
                # suite's other deployment and tests (Airflow's advice: raise it under load).
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                "PYTHONPATH": os.pathsep.join(str(p) for p in self.pythonpath),
            }
        )
        env.update(self.env)
        return env

    def _log_path(self, name: str) -> Path:
        running = self._running.get(name)
        if running is not None:
            return running.log_path
        return self.home / "components" / f"{name}-{self._starts.get(name, 1)}.log"

    def _check_alive(self, what: str) -> None:
        processes = [*self._running.items(), *((f"{n} (spare)", r) for n, r in self._spares.items())]
        for name, running in processes:
            code = running.process.poll()
            if code is not None:
                raise DeploymentError(
                    self._with_logs(f"{name} exited with code {code} while waiting for {what}")
                )

    def _with_logs(self, message: str) -> str:
        parts = [message]
        for name in COMPONENTS:
            path = self._log_path(name)
            if path.exists():
                parts.append(f"--- {path.name} (last lines) ---\n{_tail(path)}")
        return "\n".join(parts)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, sig)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
