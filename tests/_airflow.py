"""A real Airflow 3.3 asset state store, in this process, for the native store's tests.

Everything below the store is Airflow's own code, as a deployment runs it:

* a SQLite metadata database made by ``airflow db migrate`` in a temporary ``AIRFLOW_HOME``
  (once per test session, then copied: see ``tests/conftest.py``);
* assets registered in it as the dag-processor registers them (``asset`` + ``asset_active`` rows);
* the accessor classes Airflow injects (``AssetStateStoreAccessors``), talking to
  ``SUPERVISOR_COMMS``:

  - async calls (triggers) go through a real ``TriggerCommsDecoder`` over a socket pair to a real
    ``TriggerRunnerSupervisor``, whose request handler calls the Execution API through the same
    in-process API server the ``airflow triggerer`` command uses;
  - sync calls (tasks, sensors) go through ``InProcessSupervisorComms`` to an
    ``InProcessTestSupervisor`` (Airflow's in-process task supervisor, used by ``dag.test()``),
    over the same API.

Nothing is mocked: what is replaced is only the process boundary (a socket pair in this process
instead of a triggerer subprocess's stdin).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import psutil
import structlog
from airflow.sdk import Asset

__all__ = ["AirflowStateStore", "CompositeComms", "copy_metadata_db", "metadata_db", "migrate"]

_T = TypeVar("_T")


def migrate(home: Path) -> Path:
    """Create a metadata database in ``home`` with ``airflow db migrate``; return its file.

    Only Airflow's own settings for this are passed on from the environment.
    """
    path = home / "airflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STATEFUL_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{path}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")
    return path


def copy_metadata_db(migrated: Path, home: Path) -> str:
    """Copy a migrated metadata database to ``home/airflow.db``, where Airflow looks for it by
    default with ``AIRFLOW_HOME=home``; return its URL."""
    home.mkdir(parents=True, exist_ok=True)
    copy = home / "airflow.db"
    shutil.copyfile(migrated, copy)
    return f"sqlite:///{copy}"


@contextlib.contextmanager
def metadata_db(url: str) -> Iterator[None]:
    """Point this process's Airflow ORM at ``url`` (and back afterwards)."""
    from airflow import settings
    from airflow.configuration import conf

    previous = conf.get("database", "sql_alchemy_conn")
    conf.set("database", "sql_alchemy_conn", url)
    settings.dispose_orm(do_log=False)
    settings.configure_vars()
    settings.configure_orm()
    try:
        yield
    finally:
        conf.set("database", "sql_alchemy_conn", previous)
        settings.dispose_orm(do_log=False)
        settings.configure_vars()
        settings.configure_orm()


def add_asset(name: str, uri: str | None = None) -> int:
    """Register an active asset, as the dag-processor does for an asset of a parsed DAG."""
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.utils.session import create_session

    uri = uri or f"test://{name}"
    with create_session() as session:
        model = AssetModel(name=name, uri=uri, group="asset")
        session.add(model)
        session.add(AssetActive(name=name, uri=uri))
        session.flush()
        return int(model.id)


def deactivate_asset(name: str) -> None:
    """What the scheduler does when no DAG declares the asset any more."""
    from airflow.models.asset import AssetActive
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(AssetActive).filter(AssetActive.name == name).delete()


def stored_value(asset_id: int, key: str) -> Any:
    """The row as Airflow's REST API reads it (``GET /api/v2/assets/{id}/state-store/{key}``)."""
    import json

    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.get(AssetStateStoreModel, (asset_id, key))
        return None if row is None else json.loads(row.value)


def stored_keys(asset_id: int) -> list[str]:
    """Every key of an asset's state store, as ``GET /api/v2/assets/{id}/state-store`` lists them."""
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(AssetStateStoreModel.key).filter(AssetStateStoreModel.asset_id == asset_id)
        return sorted(str(row.key) for row in rows)


def drop_value(asset_id: int, key: str) -> None:
    """Delete a row directly, as the REST API's DELETE does (an operator's hand edit)."""
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(AssetStateStoreModel).filter(
            AssetStateStoreModel.asset_id == asset_id, AssetStateStoreModel.key == key
        ).delete()


def put_value(asset_id: int, key: str, value: Any) -> None:
    """Write a row directly, as the REST API's PUT does (an operator's hand edit)."""
    import json

    from airflow._shared.state import AssetScope, AssetStateStoreWriterKind
    from airflow.state.metastore import MetastoreBackend
    from airflow.utils.session import create_session

    with create_session() as session:
        MetastoreBackend().set_asset_state_store(
            AssetScope(asset_id=asset_id),
            key,
            json.dumps(value),
            kind=AssetStateStoreWriterKind.API,
            session=session,
        )


_clients: list[Any] = []


def _triggerer_client(supervisor: Any) -> Any:
    if not _clients:
        _clients.append(supervisor.make_client())
    return _clients[0]


class _TriggererSide:
    """A real TriggerRunnerSupervisor serving a real TriggerCommsDecoder over a socket pair."""

    def __init__(self, gate: threading.Event) -> None:
        from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder, TriggerRunnerSupervisor
        from airflow.sdk.execution_time.supervisor import length_prefixed_frame_reader

        self.loop = asyncio.get_running_loop()
        parent, self._child = socket.socketpair()
        log = structlog.get_logger()
        self._supervisor = TriggerRunnerSupervisor(
            id=uuid.uuid4(),
            pid=os.getpid(),
            process=psutil.Process(),
            process_log=log,
            stdin=parent,
            capacity=10,
        )
        # Building the in-process API server takes seconds: one client (the one the triggerer
        # itself builds, TriggerRunnerSupervisor.make_client) serves every test.
        self._supervisor.client = _triggerer_client(self._supervisor)
        self._closed = threading.Event()
        self._gate = gate
        self._supervisor.selector.register(
            parent,
            selectors.EVENT_READ,
            length_prefixed_frame_reader(self._supervisor.handle_requests(log), on_close=self._on_close),
        )
        self._thread = threading.Thread(target=self._serve, name="test-trigger-supervisor", daemon=True)
        self._thread.start()
        self._decoder_type = TriggerCommsDecoder
        self.decoder: Any = None

    async def start(self) -> None:
        reader, writer = await asyncio.open_connection(sock=self._child)
        self._writer = writer
        self.decoder = self._decoder_type(async_writer=writer, async_reader=reader, socket=self._child)
        await self.decoder.start_reader()

    def _on_close(self, _sock: socket.socket) -> None:
        self._closed.set()

    def _serve(self) -> None:
        # What TriggerRunnerSupervisor's own loop does with the subprocess's requests.
        selector = self._supervisor.selector
        while not self._closed.is_set():
            for key, _ in selector.select(timeout=0.05):
                self._gate.wait()  # closed by tests that make the API server slow
                handler, on_close = key.data
                try:
                    more = handler(key.fileobj)
                except OSError:
                    more = False
                if not more:
                    sock = cast(socket.socket, key.fileobj)
                    selector.unregister(sock)
                    on_close(sock)
                    sock.close()

    async def aclose(self) -> None:
        task = self.decoder._reader_task if self.decoder is not None else None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.decoder is not None:
            self._writer.close()
            await self._writer.wait_closed()
        else:
            self._child.close()
        self._thread.join(timeout=5)


class CompositeComms:
    """``SUPERVISOR_COMMS``: sync calls as in a task process, async calls as in the triggerer."""

    def __init__(self) -> None:
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms, InProcessTestSupervisor

        supervisor = InProcessTestSupervisor(
            id=uuid.uuid4(),
            pid=os.getpid(),
            process=psutil.Process(),
            process_log=structlog.get_logger(),
            client=InProcessTestSupervisor._api_client(),
        )
        supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
        self._task = supervisor.comms
        self._triggerers: dict[asyncio.AbstractEventLoop, asyncio.Task[_TriggererSide]] = {}
        self.requests = 0
        self.gate = threading.Event()
        self.gate.set()

    def send(self, msg: Any) -> Any:
        self.requests += 1
        return self._task.send(msg)

    async def asend(self, msg: Any) -> Any:
        self.requests += 1
        return await (await self._triggerer()).decoder.asend(msg)

    async def _triggerer(self) -> _TriggererSide:
        # One triggerer side per event loop (each async test has its own loop); concurrent
        # first calls wait for the same start-up.
        loop = asyncio.get_running_loop()
        task = self._triggerers.get(loop)
        if task is None:
            task = self._triggerers[loop] = loop.create_task(self._start())
        return await task

    async def _start(self) -> _TriggererSide:
        side = _TriggererSide(self.gate)
        await side.start()
        return side

    async def aclose(self) -> None:
        """Stop the triggerer side of the running loop (before the loop closes)."""
        self.gate.set()
        task = self._triggerers.pop(asyncio.get_running_loop(), None)
        if task is not None:
            await (await task).aclose()


class AirflowStateStore:
    """Fresh assets in a real metadata database, and the accessors Airflow would inject."""

    def __init__(self, comms: CompositeComms) -> None:
        self.comms = comms
        self.asset_ids: dict[str, int] = {}

    def new_asset(self, prefix: str = "asset") -> Asset:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.asset_ids[name] = add_asset(name)
        return Asset(name=name, uri=f"test://{name}")

    def accessors(self, *assets: Asset) -> Any:
        """What the triggerer sets as ``trigger.asset_state_store`` for these watched assets.

        The same expression as ``TriggerRunner.create_triggers`` in Airflow 3.3.2, over the
        ``RunTrigger.watched_assets`` mapping (name -> URI) the triggerer receives.
        """
        from airflow.sdk.execution_time.context import AssetStateStoreAccessors

        watched_assets = {a.name: a.uri for a in assets}
        return AssetStateStoreAccessors(
            inlets=[Asset(name=name, uri=uri) for name, uri in watched_assets.items()]
        )

    def watch(self, trigger: _T, *assets: Asset) -> _T:
        """Inject the accessors into an event trigger as the triggerer does for a watcher."""
        trigger.asset_state_store = self.accessors(*assets)  # type: ignore[attr-defined]
        return trigger

    def stored(self, asset: Asset, key: str) -> Any:
        return stored_value(self.asset_ids[asset.name], key)

    def put(self, asset: Asset, key: str, value: Any) -> None:
        put_value(self.asset_ids[asset.name], key, value)

    def keys(self, asset: Asset) -> list[str]:
        return stored_keys(self.asset_ids[asset.name])

    def drop(self, asset: Asset, key: str) -> None:
        drop_value(self.asset_ids[asset.name], key)
