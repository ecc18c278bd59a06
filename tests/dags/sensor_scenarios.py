"""DAGs that exercise ``@stateful`` sensors through Airflow's own task runner (``dag.test()``).

Parsed by Airflow from a temporary dags folder, and run as a script by the tests::

    python sensor_scenarios.py DAG_ID [DAG_ID ...]   # one dag.test() after the other

Each run writes JSON lines to ``$STATEFUL_TEST_RESULTS``: one per poke (what it saw) and one
per run of the downstream task (the ids it received through XCom), then the run's state.
The rows live in a SQLite database at ``$STATEFUL_TEST_DB``, in table ``rows_<dag_id>``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, Context, PokeReturnValue, task

from examples.sqlite_rows_sensor import NewRowsSensor, poke_new_rows
from stateful import Watermark, stateful
from stateful.backends import SqlBackend

DB = os.environ.get("STATEFUL_TEST_DB", "rows.db")
RESULTS = os.environ.get("STATEFUL_TEST_RESULTS", "results.jsonl")
STATE_URL = os.environ.get("STATEFUL_DATABASE_URL", "sqlite://")
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
# Short intervals keep the tests quick; nothing asserts on time.
FAST: dict[str, Any] = {"poke_interval": 0.1, "timeout": 60, "retries": 1, "retry_delay": timedelta(0)}


# The DAG being run by __main__; dag.test() runs every task in this process.
CURRENT = {"dag_id": ""}


def record(**fields: Any) -> None:
    with open(RESULTS, "a") as out:
        out.write(json.dumps({"dag_id": CURRENT["dag_id"], **fields}) + "\n")


def stored_version(name: str) -> int | None:
    record_ = SqlBackend(STATE_URL).read("sqlite", name, "watermark")
    return None if record_ is None else record_.version


MARKED = os.path.join(os.path.dirname(os.path.abspath(RESULTS)), "marked_failed.done")


def mark_failed(context: Context) -> None:
    """Set this task instance's state to failed in the metadata database, as "Mark failed" does."""
    from airflow.utils.session import create_session
    from sqlalchemy import text

    ti = context["ti"]
    with create_session() as session:
        session.execute(
            text(
                "UPDATE task_instance SET state = 'failed' "
                "WHERE dag_id = :dag_id AND task_id = :task_id AND run_id = :run_id"
            ),
            {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id},
        )


def add_row(table: str) -> None:
    with sqlite3.connect(DB) as connection:
        connection.execute(f"INSERT INTO {table} (payload) VALUES ('late')")


class ScenarioSensor(NewRowsSensor):
    """The example sensor, plus what a scenario needs: a row that arrives after an empty poke,
    an XCom that cannot be pushed on the first try, another writer racing the save."""

    def __init__(self, *, scenario: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def poke(self, context: Context) -> bool | PokeReturnValue:
        before = stored_version(self.table)
        result = super().poke(context)
        try_number = context["ti"].try_number
        # Counts pokes on this task object: poke mode pokes one object again and again, while
        # each reschedule (and each try) runs on a fresh copy made by Airflow.
        self.pokes_here = getattr(self, "pokes_here", 0) + 1
        record(
            kind="poke", done=bool(result), stored_version=before, try_number=try_number, here=self.pokes_here
        )
        if not result and self.scenario == "arrive":
            add_row(self.table)  # the next poke (a new try process in reschedule mode) finds it
        if result and self.scenario == "xcom_fails_once" and try_number == 1:
            # Airflow pushes the XCom after execute() returns; this one cannot be serialised.
            return PokeReturnValue(is_done=True, xcom_value=object())
        if result and self.scenario == "marked_failed" and not os.path.exists(MARKED):
            # Someone marks this try failed while its poke reports done (or the scheduler fails
            # it): the API server refuses the success report, yet Airflow runs the task's
            # on_success_callback. The watermark must not move past the rows of a failed try.
            open(MARKED, "w").close()
            mark_failed(context)
        if result and self.scenario == "conflict":
            # Another writer moves the watermark between this poke and the task's success.
            backend = SqlBackend(STATE_URL)
            current = backend.read("sqlite", self.table, "watermark")
            theirs = Watermark[int]()
            theirs.advance(cursor=100)
            version = None if current is None else current.version
            backend.write("sqlite", self.table, "watermark", theirs.to_state_json(), expected_version=version)
        return result

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if event is not None:
            record(kind="resumed", event=event)
        return super().execute_complete(context, event)


@task
def collect(ids: Any) -> None:
    record(kind="xcom", ids=ids)


def sensor_dag(dag_id: str, **sensor_kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        rows = ScenarioSensor(
            task_id="rows", database=DB, table=f"rows_{dag_id}", **{**FAST, **sensor_kwargs}
        )
        collect(rows.output)
    return dag


classic_poke = sensor_dag("classic_poke", mode="poke", scenario="arrive")
classic_reschedule = sensor_dag(
    "classic_reschedule", mode="reschedule", exponential_backoff=True, scenario="arrive"
)
soft_fail = sensor_dag("soft_fail", mode="reschedule", timeout=0.5, soft_fail=True)
xcom_fails_once = sensor_dag("xcom_fails_once", mode="poke", scenario="xcom_fails_once")
conflict = sensor_dag("conflict", mode="poke", scenario="conflict")
marked_failed = sensor_dag("marked_failed", mode="poke", scenario="marked_failed", retries=0)
deferrable = sensor_dag("deferrable", deferrable=True, scenario="arrive")

with DAG("taskflow", schedule=None, start_date=START, catchup=False) as taskflow:

    @task.sensor(mode="reschedule", **FAST)
    @stateful(namespace="sqlite", name="{dag_id}.{task_id}")
    def new_ids(watermark: Watermark[int], table: str = "rows_taskflow") -> PokeReturnValue:
        before = stored_version("taskflow.new_ids")
        result = poke_new_rows(DB, table, watermark)
        record(kind="poke", done=bool(result), stored_version=before)
        if not result:
            add_row(table)
        return result

    collect(new_ids())


def _test(dag: DAG) -> Any:
    """``dag.test()``; Airflow 3.0 has it on the scheduler's DAG class only."""
    if hasattr(dag, "test"):
        return dag.test()
    from airflow.models.dag import DAG as SchedulerDAG  # Airflow 3.0

    return SchedulerDAG.from_sdk_dag(dag).test()


if __name__ == "__main__":
    dags = {value.dag_id: value for value in dict(globals()).values() if isinstance(value, DAG)}
    for dag_id in sys.argv[1:]:
        CURRENT["dag_id"] = dag_id
        run = _test(dags[dag_id])
        record(kind="run", state=str(run.state))
