"""``@stateful`` sensors run by Airflow's own task runner: ``dag.test()`` on a real metadata DB.

One subprocess (a fresh Airflow, its own ``AIRFLOW_HOME`` with a copy of the session's migrated
metadata database) runs every scenario DAG of ``tests/dags/sensor_scenarios.py`` one after the
other, some twice; the tests below then check what each run's pokes saw, what reached the
downstream task through XCom, and what the store holds. The sensors read rows from a real SQLite
table and keep their watermark in a real SQLite state store.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from stateful import Watermark
from stateful.backends import SqlBackend
from tests._airflow import copy_metadata_db
from tests.conftest import AIRFLOW_VERSION

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "dags" / "sensor_scenarios.py"

# The order the DAGs run in; a DAG listed twice runs twice (its second run sees new rows only).
RUNS = [
    "classic_poke",
    "classic_poke",
    "classic_reschedule",
    "classic_reschedule",
    "soft_fail",
    "xcom_fails_once",
    "conflict",
    "deferrable",
    "deferrable",
    "taskflow",
    "taskflow",
]
EMPTY_TABLES = {"soft_fail"}
# Airflow 3.0's dag.test() runs tasks through the scheduler's TaskInstance, whose success simply
# overwrites a state marked failed meanwhile: the race needs the task SDK's runner (3.1+).
SDK_DAG_TEST = Version("3.1") <= AIRFLOW_VERSION
if SDK_DAG_TEST:
    RUNS += ["marked_failed", "marked_failed"]


@dataclass
class Outcome:
    records: list[dict[str, Any]]
    log: str
    store: SqlBackend

    def runs(self, dag_id: str) -> list[list[dict[str, Any]]]:
        """The records of each run of ``dag_id``, in order; each ends with its "run" record."""
        runs: list[list[dict[str, Any]]] = [[]]
        for record in self.records:
            if record["dag_id"] == dag_id:
                runs[-1].append(record)
                if record["kind"] == "run":
                    runs.append([])
        assert runs[-1] == [], f"records after the last run of {dag_id}: {runs[-1]}"
        return runs[:-1]

    def stored(self, name: str) -> tuple[int | None, int | None]:
        """(version, cursor) of the stored watermark ``sqlite/name``."""
        record = self.store.read("sqlite", name, "watermark")
        if record is None:
            return None, None
        return record.version, Watermark[int].from_state_json(record.value).cursor


def kinds(run: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in run if r["kind"] == kind]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory, migrated_airflow_db: Path) -> Outcome:
    home = tmp_path_factory.mktemp("airflow")
    copy_metadata_db(migrated_airflow_db, home)  # AIRFLOW_HOME's default metadata database
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(SCENARIOS, dags)
    rows, results, state_url = home / "rows.db", home / "results.jsonl", f"sqlite:///{home}/state.db"
    with sqlite3.connect(rows) as connection:
        for dag_id in set(RUNS):
            table = f"rows_{dag_id}"
            connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, payload TEXT)")
            if dag_id not in EMPTY_TABLES:
                connection.executemany(f"INSERT INTO {table} (payload) VALUES (?)", [("a",), ("b",)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STATEFUL_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        STATEFUL_DATABASE_URL=state_url,
        STATEFUL_TEST_DB=str(rows),
        STATEFUL_TEST_RESULTS=str(results),
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, str(dags / SCENARIOS.name), *RUNS], env=env, capture_output=True, text=True
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    return Outcome(records, log, SqlBackend(state_url))


def test_every_run_succeeds(outcome: Outcome) -> None:
    # dag.test() reports even marked_failed's first run successful: it goes by the state the
    # task runner computed in process, not by the database's (which says failed).
    states = [(r["dag_id"], r["state"]) for r in outcome.records if r["kind"] == "run"]
    assert states == [(dag_id, "success") for dag_id in RUNS]


@pytest.mark.parametrize("dag_id", ["classic_poke", "classic_reschedule", "deferrable", "taskflow"])
def test_the_first_run_reports_the_rows_and_the_second_only_the_new_one(
    outcome: Outcome, dag_id: str
) -> None:
    first, second = outcome.runs(dag_id)
    assert [r["ids"] for r in kinds(first, "xcom")] == [[1, 2]]
    # The second run's first poke starts from what the first run saved, finds nothing, saves
    # nothing; a row arrives; a later poke reports it alone.
    pokes = kinds(second, "poke")
    assert [p["done"] for p in pokes] == [False, True]
    assert [p["stored_version"] for p in pokes] == [1, 1]
    assert [r["ids"] for r in kinds(second, "xcom")] == [[3]]


@pytest.mark.parametrize(
    ("dag_id", "name"), [("classic_poke", "rows_classic_poke"), ("taskflow", "taskflow.new_ids")]
)
def test_each_successful_run_saves_once(outcome: Outcome, dag_id: str, name: str) -> None:
    assert outcome.stored(name) == (2, 3)


def test_poke_mode_pokes_one_task_object_and_reschedule_mode_a_fresh_one_each_time(outcome: Outcome) -> None:
    # Each reschedule is a new execution: state can only have come from the store.
    assert [p["here"] for p in kinds(outcome.runs("classic_poke")[1], "poke")] == [1, 2]
    assert [p["here"] for p in kinds(outcome.runs("classic_reschedule")[1], "poke")] == [1, 1]
    assert outcome.stored("rows_classic_reschedule") == (2, 3)


def test_false_pokes_save_nothing_and_soft_fail_still_skips(outcome: Outcome) -> None:
    (run,) = outcome.runs("soft_fail")
    pokes = kinds(run, "poke")
    assert pokes and not any(p["done"] for p in pokes)
    assert kinds(run, "xcom") == []  # the sensor timed out and was skipped, so was collect
    assert outcome.stored("rows_soft_fail") == (None, None)


def test_a_try_that_fails_after_poke_reported_done_is_retried_with_the_same_rows(outcome: Outcome) -> None:
    (run,) = outcome.runs("xcom_fails_once")
    pokes = kinds(run, "poke")
    # Try 1 found the rows but its XCom could not be pushed: nothing was saved, and try 2 (a
    # retry) started from the same (empty) watermark and reported the same rows.
    assert [(p["try_number"], p["done"], p["stored_version"]) for p in pokes] == [
        (1, True, None),
        (2, True, None),
    ]
    assert [r["ids"] for r in kinds(run, "xcom")] == [[1, 2]]
    assert "cannot serialize object" in outcome.log.lower()  # Airflow 3.0 words it in lower case
    assert outcome.stored("rows_xcom_fails_once") == (1, 2)


def test_a_save_that_loses_a_race_is_logged_loudly_and_overwrites_nothing(outcome: Outcome) -> None:
    (run,) = outcome.runs("conflict")
    assert [r["ids"] for r in kinds(run, "xcom")] == [[1, 2]]
    # The other writer's watermark (cursor 100) stands; the sensor's save was refused.
    assert outcome.stored("rows_conflict") == (1, 100)
    assert "stateful: FAILED to save sqlite/rows_conflict" in outcome.log
    assert "StateConflictError" in outcome.log


def test_a_deferrable_sensor_and_its_trigger_share_one_watermark(outcome: Outcome) -> None:
    first, second = outcome.runs("deferrable")
    assert kinds(first, "resumed") == []  # rows were there: no deferral
    # The trigger read the sensor's watermark (cursor 2), fired, and saved nothing; the
    # resumed sensor poked again and its task's success saved the watermark.
    (resumed,) = kinds(second, "resumed")
    assert resumed["event"]["after"] == 2 and len(resumed["event"]["stateful_idempotency_key"]) == 32
    assert outcome.stored("rows_deferrable") == (2, 3)


@pytest.mark.airflow_min("3.1", reason="dag.test() through the task SDK's runner and execution API")
def test_a_try_marked_failed_as_its_poke_reports_done_saves_nothing(outcome: Outcome) -> None:
    # The try's success report is refused (409: it is failed already), yet Airflow runs the
    # on_success_callback; the sensor asks the try's state and does not save.
    first, second = outcome.runs("marked_failed")
    assert [(p["done"], p["stored_version"]) for p in kinds(first, "poke")] == [(True, None)]
    assert "Failed to report terminal task state" in outcome.log  # Airflow's own line: the 409
    assert "NOT saving sqlite/rows_marked_failed" in outcome.log
    assert "'failed' in Airflow's database" in outcome.log
    # The next run starts from the unmoved watermark and reports the same rows.
    assert [(p["done"], p["stored_version"]) for p in kinds(second, "poke")] == [(True, None)]
    assert [r["ids"] for r in kinds(second, "xcom")] == [[1, 2]]
    assert outcome.stored("rows_marked_failed") == (1, 2)
