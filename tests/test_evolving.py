"""Changing a watermark model after state was stored: ``model_version``, ``migrate()``, the errors.

Each test stores state with the model as first deployed (``OrdersV1``, through its trigger), then
runs the trigger with a changed model, through the real drivers and real stores: a SQLite file,
the PostgreSQL fixture, Airflow's asset state store in process.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import BaseSensorOperator, Context

from stateful import Watermark, stateful
from stateful.backends import NativeBackend, SqlBackend
from stateful.errors import StatefulUsageError, StateModelVersionError, StateValidationError
from stateful.sensors import commit
from stateful.testing import run_trigger, use_store
from tests._airflow import AirflowStateStore
from tests._postgres import PostgresServer
from tests.conftest import NEEDS_AIP_103, POSTGRES_PARAM, unique_table
from tests.evolving import (
    NAMESPACE,
    AddedWithDefault,
    AddedWithoutDefault,
    HookRaises,
    HookReturnsInvalid,
    HookReturnsNothing,
    NoHook,
    OrdersV1,
    Removed,
    Renamed,
    RenamedOnly,
    Retyped,
    TwoSteps,
    trigger_for,
)

NAME = "db.orders"
WM = "watermark"
# Each run here ends at max_events; the idle timeout only keeps a stuck run from hanging the suite.
SLOW = 60.0
V1_DOC = {
    "batches": 2,
    "cursor": 2,
    "legacy": "unused",
    "schema_version": 1,
    "seen": {},
    "timestamp": None,
    "zone": "7",
}


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def sql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    if request.param == "sqlite":
        store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}", history_versions=100)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = SqlBackend(server.url, table_name=unique_table(), history_versions=100)
    yield store
    store.dispose()


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SqlBackend]:
    store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}", history_versions=100)
    yield store
    store.dispose()


def deploy_v1(store: Any) -> None:
    """The first release runs: two events, saved as versions 1 and 2 of ``V1_DOC``."""
    with use_store(store):
        run = asyncio.run(run_trigger(trigger_for(OrdersV1)([1, 2]), max_events=2, idle_timeout=SLOW))
    assert (run.version, json.loads(run_and_read(store)[1])) == (2, V1_DOC)


def run_and_read(store: Any) -> tuple[int, str]:
    record = store.read(NAMESPACE, NAME, WM)
    assert record is not None
    return record.version, record.value


def run(store: Any, model: type[Watermark[Any]], items: list[int], **options: Any) -> Any:
    with use_store(store):
        return asyncio.run(run_trigger(trigger_for(model)(items), idle_timeout=SLOW, **options))


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (AddedWithDefault, {"batches": 3, "legacy": "unused", "zone": "7", "note": "none yet"}),
        (
            AddedWithoutDefault,
            {"batches": 3, "legacy": "unused", "zone": "7", "region": "eu", "model_version": 2},
        ),
        (Removed, {"batches": 3, "zone": "7", "model_version": 2}),
        (Renamed, {"batch_count": 3, "legacy": "unused", "zone": "7", "model_version": 2}),
        (Retyped, {"batches": 3, "legacy": "unused", "zone": 7, "model_version": 2}),
    ],
)
def test_a_changed_model_loads_the_old_state_and_saves_it_upgraded_at_the_next_save(
    sqlite: SqlBackend, model: type[Watermark[Any]], fields: dict[str, Any]
) -> None:
    deploy_v1(sqlite)

    # Loaded and upgraded (the cursor went on from 2), then a crash before the save: the load
    # itself wrote nothing, the stored text is still the old one.
    crashed = run(sqlite, model, [1, 2, 3], max_events=1, crash="before_save")
    assert crashed.payloads == [3]
    assert json.loads(run_and_read(sqlite)[1]) == V1_DOC and run_and_read(sqlite)[0] == 2

    saved = run(sqlite, model, [1, 2, 3], max_events=1)
    assert saved.payloads == [3]
    version, text = run_and_read(sqlite)
    assert version == 3
    assert json.loads(text) == {"cursor": 3, "schema_version": 1, "seen": {}, "timestamp": None, **fields}
    history = sqlite.history(NAMESPACE, NAME, WM)
    assert [(r.version, json.loads(r.value)) for r in history][1] == (2, V1_DOC)  # the old one stays


def test_a_two_step_upgrade_runs_each_step_once_in_order(sql: SqlBackend) -> None:
    deploy_v1(sql)
    TwoSteps.steps.clear()

    saved = run(sql, TwoSteps, [1, 2, 3], max_events=1)

    assert TwoSteps.steps == [1, 2]
    assert saved.payloads == [3]
    version, text = run_and_read(sql)
    assert (version, json.loads(text)) == (
        3,
        {
            "batch_count": 3,
            "cursor": 3,
            "model_version": 3,
            "schema_version": 1,
            "seen": {},
            "timestamp": None,
            "zone": 7,
        },
    )
    TwoSteps.steps.clear()
    run(sql, TwoSteps, [1, 2, 3, 4], max_events=1)
    assert TwoSteps.steps == []  # a state at the model's version is not migrated again
    assert [r.version for r in sql.history(NAMESPACE, NAME, WM)] == [4, 3, 2, 1]


@NEEDS_AIP_103
@pytest.mark.airflow_db
async def test_a_two_step_upgrade_in_airflows_asset_state_store(
    airflow_state_store: AirflowStateStore,
) -> None:
    store = NativeBackend(airflow_state_store.accessors(airflow_state_store.new_asset()))
    with use_store(store):
        await run_trigger(trigger_for(OrdersV1)([1, 2]), max_events=2, idle_timeout=SLOW)
        TwoSteps.steps.clear()
        upgraded = await run_trigger(trigger_for(TwoSteps)([1, 2, 3]), max_events=1, idle_timeout=SLOW)

    assert (upgraded.payloads, TwoSteps.steps) == ([3], [1, 2])
    record = await store.aread(NAMESPACE, NAME, WM)
    assert record is not None and record.version == 3
    assert json.loads(record.value)["model_version"] == 3 and json.loads(record.value)["zone"] == 7


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            HookRaises,
            "HookRaises.migrate(1, data), upgrading model version 1 to 2, raised KeyError: 'gone'",
        ),
        (
            HookReturnsInvalid,
            "the state upgraded by HookReturnsInvalid.migrate() from model version 1 to 2 does not validate",
        ),
        (
            HookReturnsNothing,
            "HookReturnsNothing.migrate(1, data), upgrading model version 1 to 2, returned a NoneType, "
            "not a dict",
        ),
    ],
)
def test_a_failing_hook_is_a_validation_error_naming_the_step_and_nothing_is_written(
    sqlite: SqlBackend, model: type[Watermark[Any]], message: str
) -> None:
    deploy_v1(sqlite)

    with pytest.raises(StateValidationError) as caught:
        run(sqlite, model, [1, 2, 3], max_events=1)

    assert message in str(caught.value)
    assert f"stored state {NAMESPACE}/{NAME} (key 'watermark') in {sqlite.description}" in str(caught.value)
    assert run_and_read(sqlite)[0] == 2 and json.loads(run_and_read(sqlite)[1]) == V1_DOC


def test_state_from_a_newer_model_is_refused_naming_the_version_to_rewind_to(sqlite: SqlBackend) -> None:
    deploy_v1(sqlite)  # versions 1 and 2, model version 1
    run(sqlite, TwoSteps, [1, 2, 3], max_events=1)  # version 3, model version 3

    async def first_event() -> Any:  # the plain driver, against the store itself (its history)
        with use_store(sqlite):
            events = trigger_for(RenamedOnly)([1, 2, 3, 4]).run()
            assert isinstance(events, AsyncGenerator)
            try:
                return await events.__anext__()
            finally:
                await events.aclose()

    with pytest.raises(StateModelVersionError) as caught:
        asyncio.run(first_event())

    error = caught.value
    assert (error.stored_version, error.code_version, error.rewind_to) == (3, 2, 2)
    assert isinstance(error, StateValidationError)  # caught as any invalid state is
    assert "model version 3 of tests.evolving.RenamedOnly, newer than this code's model version 2" in str(
        error
    )
    assert "`stateful rewind orders db.orders --to 2`" in str(error)
    assert run_and_read(sqlite)[0] == 3  # nothing written
    # The suggested rewind is run by the command-line tests (tests/cli/test_evolve.py).


def test_without_history_the_newer_model_error_says_how_to_find_the_version(sqlite: SqlBackend) -> None:
    deploy_v1(sqlite)
    run(sqlite, TwoSteps, [1, 2, 3], max_events=1)

    with pytest.raises(StateModelVersionError) as caught:
        run(sqlite, RenamedOnly, [1, 2, 3, 4], max_events=1)  # the test kit's watched store keeps no history

    assert caught.value.rewind_to is None
    assert "`stateful history orders db.orders` lists the kept versions" in str(caught.value)
    assert "`stateful rewind orders db.orders --to VERSION` restores one" in str(caught.value)


def test_without_a_hook_the_error_names_the_set_command_that_repairs_the_state(sqlite: SqlBackend) -> None:
    deploy_v1(sqlite)

    with pytest.raises(StateValidationError) as caught:
        run(sqlite, NoHook, [1, 2, 3], max_events=1)

    message = str(caught.value)
    assert "It was left as it is; nothing was reset." in message
    assert (
        "correct the value: `stateful set orders db.orders --drop-field legacy --field region=VALUE` "
        "(VALUE: the field's value as JSON)"
    ) in message
    assert run_and_read(sqlite)[0] == 2  # never a default in its place
    # Running the command as suggested: tests/cli/test_evolve.py.


def test_model_version_must_be_a_positive_int() -> None:
    with pytest.raises(
        StatefulUsageError, match=r"Broken.model_version is 0: it must be an int of at least 1"
    ):

        class Broken(Watermark[int]):
            model_version = 0

    with pytest.raises(StatefulUsageError, match="reserved field name"):

        class Shadowing(Watermark[int]):
            migrate: int = 0  # type: ignore[assignment]


def test_a_model_that_never_changed_writes_the_same_text_as_before() -> None:
    # No model_version in the text of a version-1 model: older releases read it, and nothing
    # stored before model versions existed is rewritten for it.
    assert OrdersV1(cursor=2, batches=2).to_state_json() == json.dumps(
        V1_DOC, separators=(",", ":"), sort_keys=True
    )
    assert re.search(r'"model_version":2', AddedWithoutDefault(region="eu").to_state_json())


class OrdersSensor(BaseSensorOperator):
    """A sensor with the two-step model: its sync driver loads through the same path."""

    @stateful(namespace=NAMESPACE, name="{task_id}")
    def poke(self, context: Context, watermark: TwoSteps) -> bool:
        watermark.advance(cursor=(watermark.cursor or 0) + 1)
        watermark.batch_count += 1
        return True


class OrdersSensorV1(BaseSensorOperator):
    @stateful(namespace=NAMESPACE, name="{task_id}")
    def poke(self, context: Context, watermark: OrdersV1) -> bool:
        watermark.advance(cursor=(watermark.cursor or 0) + 1)
        watermark.batches += 1
        return True


def test_a_sensor_upgrades_the_state_the_same_way(sqlite: SqlBackend) -> None:
    context: Context = {}
    with use_store(sqlite):
        first = OrdersSensorV1(task_id=NAME)
        assert first.poke(context)
        assert commit(first) == 1
        TwoSteps.steps.clear()
        upgraded = OrdersSensor(task_id=NAME)
        assert upgraded.poke(context)
        assert TwoSteps.steps == [1, 2]
        assert json.loads(run_and_read(sqlite)[1])["batches"] == 1  # not written before the commit
        assert commit(upgraded) == 1

    version, text = run_and_read(sqlite)
    assert version == 2
    assert json.loads(text) == {
        "batch_count": 2,
        "cursor": 2,
        "model_version": 3,
        "schema_version": 1,
        "seen": {},
        "timestamp": None,
        "zone": 7,
    }
