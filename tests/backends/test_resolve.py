"""Which store ``@stateful`` uses (stateful.backends._resolve), and switching stores safely."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.configuration import conf
from airflow.triggers.base import TriggerEvent

from stateful import Watermark, stateful
from stateful._links import docs_url
from stateful.backends import MemoryBackend, NativeBackend, SqlBackend
from stateful.backends._resolve import (
    aload,
    asset_scope,
    choose,
    configured_backend,
    load,
    resolve_async_store,
    resolve_sync_store,
)
from stateful.backends.sql import dispose_default_stores
from stateful.errors import StoreConfigError, StoreSwitchError
from tests._airflow import AirflowStateStore
from tests.conftest import NEEDS_AIP_103
from tests.triggers import CounterBase

NS, NAME, KEY = "tests", "src", "watermark"
ENV = "AIRFLOW__STATEFUL__BACKEND"


@pytest.fixture(autouse=True)
def sql_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "default.db"
    monkeypatch.setenv("STATEFUL_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.delenv(ENV, raising=False)
    dispose_default_stores()
    yield path
    dispose_default_stores()


class Trigger(CounterBase):
    @stateful(namespace=NS, name="{source}", save_batch=1)  # one save per event: tests count versions
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        async for event in self.body(watermark):
            yield event


class Plain:
    """An object with no asset scope: a deferred task's trigger, or code run outside Airflow."""


async def payloads(run: AsyncIterator[TriggerEvent]) -> list[Any]:
    return [event.payload async for event in run]


def exists(path: Path) -> bool:
    return path.exists()


# ---- the option ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(None, "auto"), ("native", "native"), (" SQL ", "sql")])
def test_the_option_and_its_values(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str) -> None:
    if value is not None:
        monkeypatch.setenv(ENV, value)
    assert configured_backend() == expected


def test_an_unknown_value_is_refused_with_the_accepted_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "postgres")
    with pytest.raises(StoreConfigError, match=r"'postgres'.*auto, native, sql"):
        configured_backend()
    with pytest.raises(StoreConfigError):
        resolve_sync_store(None, Plain())


# ---- the rule -------------------------------------------------------------------------------------


def test_the_asset_scope_of_tasks_and_triggers() -> None:
    scope = object()
    trigger = Plain()
    assert asset_scope(trigger) is None
    trigger.asset_state_store = scope  # type: ignore[attr-defined]
    assert asset_scope(trigger) is scope
    assert asset_scope(Plain(), {"asset_state_store": scope}) is scope
    assert asset_scope(Plain(), {"ti": None}) is None


def test_without_an_asset_scope_the_sql_store(sql_default: Path) -> None:
    choice = choose(None, Plain(), None)
    assert isinstance(choice.store, SqlBackend) and str(sql_default) in choice.store.description
    assert "Plain has no asset state store" in choice.reason and "STATEFUL_DATABASE_URL" in choice.reason
    assert choice.other is None  # nothing to switch from


def test_with_an_asset_scope_the_native_store(airflow_state_store: AirflowStateStore) -> None:
    scope = airflow_state_store.accessors(airflow_state_store.new_asset())
    choice = choose(None, Plain(), scope)
    assert isinstance(choice.store, NativeBackend) and choice.store.bound
    assert isinstance(choice.other, SqlBackend)
    assert choice.reason == "[stateful] backend is auto and Plain has an asset state store"


def test_the_option_overrides_the_scope(
    airflow_state_store: AirflowStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = airflow_state_store.accessors(airflow_state_store.new_asset())
    monkeypatch.setenv(ENV, "sql")
    choice = choose(None, Plain(), scope)
    assert isinstance(choice.store, SqlBackend) and isinstance(choice.other, NativeBackend)
    assert choice.reason.startswith("[stateful] backend is sql")

    monkeypatch.setenv(ENV, "native")
    assert isinstance(choose(None, Plain(), scope).store, NativeBackend)
    with pytest.raises(StoreConfigError, match="is native, but Plain has no asset state store"):
        choose(None, Plain(), None)


def test_a_given_store_wins_and_is_not_second_guessed(
    airflow_state_store: AirflowStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "native")
    memory = MemoryBackend()
    scope = airflow_state_store.accessors(airflow_state_store.new_asset())
    choice = choose(memory, Plain(), scope)
    assert (choice.store, choice.other, choice.reason) == (memory, None, "backend= given to @stateful")
    resolved = resolve_sync_store(memory, Plain(), {"asset_state_store": scope})
    store, reason = resolved.store, resolved.reason
    assert store is memory and reason == "backend= given to @stateful"


def test_native_backend_given_unbound_is_bound_to_the_scope(airflow_state_store: AirflowStateStore) -> None:
    asset = airflow_state_store.new_asset()
    choice = choose(NativeBackend(), Plain(), airflow_state_store.accessors(asset))
    assert isinstance(choice.store, NativeBackend) and choice.store.assets == (f"asset {asset.name!r}",)
    assert isinstance(choice.other, SqlBackend)
    with pytest.raises(StoreConfigError, match=r"backend=NativeBackend\(\) was given.*no asset state store"):
        choose(NativeBackend(), Plain(), None)


async def test_resolution_is_logged_at_info_when_chosen_and_debug_when_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="stateful")
    await resolve_async_store(None, Plain())
    await resolve_async_store(MemoryBackend(), Plain())
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "uses" in r.getMessage()]
    assert lines[0][0] == logging.INFO and "Plain uses SqlBackend" in lines[0][1] and "auto" in lines[0][1]
    assert lines[1] == (logging.DEBUG, "stateful: Plain uses MemoryBackend (backend= given to @stateful)")


async def test_stores_without_the_needed_methods_are_refused() -> None:
    class SyncOnly:
        description = "SyncOnly"

        def read(self, namespace: str, name: str, key: str) -> None:
            return None

        write = delete = list = read

    class AsyncOnly:
        description = "AsyncOnly"

        async def aread(self, namespace: str, name: str, key: str) -> None:
            return None

        awrite = adelete = alist = aread

    with pytest.raises(StoreConfigError, match="no async methods"):
        await resolve_async_store(SyncOnly(), Plain())  # type: ignore[arg-type]
    with pytest.raises(StoreConfigError, match="no blocking methods"):
        resolve_sync_store(AsyncOnly(), Plain())  # type: ignore[arg-type]


# ---- switching stores ------------------------------------------------------------------------------


async def test_moving_to_the_native_store_refuses_to_start_from_nothing(
    airflow_state_store: AirflowStateStore, sql_default: Path
) -> None:
    airflow = airflow_state_store
    # Before: the trigger ran as a deferred task's trigger (no asset scope): the SQL store.
    assert await payloads(Trigger("src", [1, 2]).run()) == [1, 2]
    assert exists(sql_default)

    # Now an AssetWatcher runs it: auto picks the asset state store, which is empty.
    asset = airflow.new_asset()
    with pytest.raises(StoreSwitchError) as info:
        await payloads(airflow.watch(Trigger("src", [1, 2, 3]), asset).run())
    err = info.value
    message = str(err)
    assert (err.namespace, err.name, err.key) == (NS, NAME, KEY)
    assert "NativeBackend(asset" in err.chosen and "SqlBackend(sqlite" in err.other
    how = docs_url("stores", "switching-stores")  # a page of the site: a wheel user has no docs/
    for part in (
        "version 2",
        "stateful export --namespace tests",
        "stateful import FILE",
        how,
        "backend = sql",
    ):
        assert part in message
    assert airflow.stored(asset, "stateful/tests/watermark/src") is None  # nothing started

    # Migrated (what `stateful import` does: the same document, now in the asset's store)...
    record = SqlBackend(f"sqlite:///{sql_default}").read(NS, NAME, KEY)
    assert record is not None
    native = NativeBackend(airflow.accessors(asset))
    await native.awrite(NS, NAME, KEY, record.value, expected_version=None)
    # ...the trigger resumes where it was.
    assert await payloads(airflow.watch(Trigger("src", [1, 2, 3]), asset).run()) == [3]


async def test_moving_to_the_sql_store_refuses_to_start_from_nothing(
    airflow_state_store: AirflowStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    assert await payloads(airflow.watch(Trigger("src", [1]), asset).run()) == [1]

    monkeypatch.setenv(ENV, "sql")
    with pytest.raises(StoreSwitchError) as info:
        await payloads(airflow.watch(Trigger("src", [1, 2]), asset).run())
    assert "SqlBackend" in info.value.chosen and "NativeBackend" in info.value.other
    assert "backend = native (or auto)" in str(info.value)


async def test_no_state_anywhere_starts_empty_without_creating_the_sqlite_file(
    airflow_state_store: AirflowStateStore, sql_default: Path
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    choice = await resolve_async_store(None, airflow.watch(Trigger("src", []), asset))
    assert choice.other is not None  # the SQL store is the other candidate...
    assert await aload(choice, NS, NAME, KEY) is None  # ...but its file does not exist: not read
    assert not exists(sql_default)
    assert await payloads(airflow.watch(Trigger("src", [1]), asset).run()) == [1]
    assert not exists(sql_default)


def test_the_sync_side_checks_the_other_store_too(
    airflow_state_store: AirflowStateStore, sql_default: Path
) -> None:
    SqlBackend(f"sqlite:///{sql_default}").write(NS, NAME, KEY, "{}", expected_version=None)
    context = {"asset_state_store": airflow_state_store.accessors(airflow_state_store.new_asset())}
    choice = resolve_sync_store(None, Plain(), context)
    assert "has an asset state store" in choice.reason
    with pytest.raises(StoreSwitchError):
        load(choice, NS, NAME, KEY)
    assert load(choice, NS, "other", KEY) is None


# ---- a real task, run by Airflow's task runner -------------------------------------------------------

_DAG_FILE = """
from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Asset, task

ORDERS = Asset(name="stateful-resolve-orders", uri="test://stateful-resolve/orders")

with DAG(dag_id="stateful_resolve_task", schedule=None) as dag:

    @task(inlets=[ORDERS])
    def advance(**context: Any) -> dict[str, Any]:
        from stateful.backends._resolve import resolve_sync_store

        choice = resolve_sync_store(None, context["task"], context)
        store, reason = choice.store, choice.reason
        record = store.read("tests", "orders", "watermark")
        expected = None if record is None else record.version
        value = '{"runs":%d}' % (expected or 0)
        version = store.write("tests", "orders", "watermark", value, expected_version=expected)
        return {"reason": reason, "store": store.description, "version": version}

    advance()
"""


@pytest.fixture
def dags_folder(airflow_metadata_db: str, tmp_path: Path) -> Iterator[Path]:
    """A DAG bundle folder for ``dag.test()`` (which parses the DAG's file into the database)."""
    folder = tmp_path / "dags"
    folder.mkdir()
    bundles = [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder)},
        }
    ]
    settings = {
        ("core", "dags_folder"): str(folder),
        ("core", "load_examples"): "False",
        ("dag_processor", "dag_bundle_config_list"): json.dumps(bundles),
    }
    previous = {option: conf.get(*option) for option in settings}
    for (section, key), value in settings.items():
        conf.set(section, key, value)
    yield folder
    for (section, key), value in previous.items():
        conf.set(section, key, value)


@NEEDS_AIP_103
def test_a_task_with_an_asset_inlet_keeps_state_in_that_asset(dags_folder: Path) -> None:
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    path = dags_folder / "resolve_task.py"
    path.write_text(textwrap.dedent(_DAG_FILE))
    spec = importlib.util.spec_from_file_location("resolve_task", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    results = []
    for _ in range(2):  # two DAG runs: the second reads what the first wrote
        run = module.dag.test()
        assert run.state == "success"
        (ti,) = run.get_task_instances()
        results.append(ti.xcom_pull(task_ids="advance"))
    assert [r["version"] for r in results] == [1, 2]
    assert results[0]["store"] == "NativeBackend(asset 'stateful-resolve-orders')"
    assert "has an asset state store" in results[0]["reason"]

    with create_session() as session:
        asset_id = session.query(AssetModel.id).filter(AssetModel.name == "stateful-resolve-orders").scalar()
        row = session.get(AssetStateStoreModel, (asset_id, "stateful/tests/watermark/orders"))
        assert row is not None
        doc = json.loads(row.value)
        assert (doc["version"], doc["value"]) == (2, {"runs": 1})


_SENSOR_DAG_FILE = """
from __future__ import annotations

from airflow.sdk import DAG, Asset

from examples.sqlite_rows_sensor import NewRowsSensor

ORDERS = Asset(name="stateful-sensor-orders", uri="test://stateful-sensor/orders")

with DAG(dag_id="stateful_native_sensor", schedule=None) as dag:
    NewRowsSensor(
        task_id="new_orders", database={database!r}, table="orders", inlets=[ORDERS],
        mode="poke", poke_interval=0.1, timeout=60,
    )
"""


@NEEDS_AIP_103
def test_a_sensor_with_an_asset_inlet_keeps_its_watermark_in_that_asset(
    dags_folder: Path, tmp_path: Path, sql_default: Path
) -> None:
    import sqlite3

    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, payload TEXT)")
        connection.executemany("INSERT INTO orders (payload) VALUES (?)", [("a",), ("b",)])
    path = dags_folder / "native_sensor.py"
    path.write_text(textwrap.dedent(_SENSOR_DAG_FILE.format(database=str(database))))
    spec = importlib.util.spec_from_file_location("native_sensor", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    reported = []
    for new_row in ("c", None):
        run = module.dag.test()
        assert run.state == "success"
        (ti,) = run.get_task_instances()
        reported.append(ti.xcom_pull(task_ids="new_orders"))
        if new_row:
            with sqlite3.connect(database) as connection:
                connection.execute("INSERT INTO orders (payload) VALUES (?)", (new_row,))
    assert reported == [[1, 2], [3]]  # the second run reports only the new row

    with create_session() as session:
        asset_id = session.query(AssetModel.id).filter(AssetModel.name == "stateful-sensor-orders").scalar()
        row = session.get(AssetStateStoreModel, (asset_id, "stateful/sqlite/watermark/orders"))
        assert row is not None
        doc = json.loads(row.value)
    assert (doc["version"], doc["value"]["cursor"]) == (2, 3)  # saved on success, once per run
    assert not exists(sql_default)


# ---- Airflow without AIP-103 -----------------------------------------------------------------------

_NO_AIP103 = """
import sys
sys.modules["airflow.sdk.execution_time.context"] = None  # as on Airflow 3.0-3.2: no asset state store
import stateful, stateful.backends
from stateful.backends import NativeBackend
from stateful.backends._resolve import resolve_sync_store
from stateful.errors import StoreConfigError

choice = resolve_sync_store(None, object())
store, reason = choice.store, choice.reason
print("RESULT", type(store).__name__)
try:
    NativeBackend(object())
except StoreConfigError as exc:
    print("RESULT", exc)
"""


def test_without_the_asset_state_store_stateful_imports_and_uses_sql(sql_default: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_AIP103], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = [line[len("RESULT ") :] for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines[0] == "SqlBackend"
    assert "needs Airflow >= 3.3" in lines[1]
