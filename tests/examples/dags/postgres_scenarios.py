"""The PostgreSQL ``NewRowsSensor`` run by Airflow's own task runner (``dag.test()``).

Parsed by Airflow from a temporary dags folder, and run as a script by the tests::

    python postgres_scenarios.py RUNS   # RUNS dag.test() runs, a new row inserted between runs

The sensor reads table ``$STATEFUL_TEST_TABLE`` through the Airflow connection ``scenario_db``
(``AIRFLOW_CONN_SCENARIO_DB``). Its first try of every run finds the rows but cannot push its
XCom, so the try fails and is retried. Each poke, each XCom received downstream and each run's
state are written as JSON lines to ``$STATEFUL_TEST_RESULTS``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, BaseHook, Context, PokeReturnValue, task

from examples.postgres import NewRowsSensor

TABLE = os.environ.get("STATEFUL_TEST_TABLE", "orders")
RESULTS = os.environ.get("STATEFUL_TEST_RESULTS", "results.jsonl")


def record(**fields: Any) -> None:
    with open(RESULTS, "a") as out:
        out.write(json.dumps(fields) + "\n")


class FailsOnceSensor(NewRowsSensor):
    def poke(self, context: Context) -> bool | PokeReturnValue:
        result = super().poke(context)
        try_number = context["ti"].try_number
        ids = result.xcom_value if isinstance(result, PokeReturnValue) and result.is_done else None
        record(kind="poke", try_number=try_number, rows=ids)
        if ids and try_number == 1:
            # Airflow pushes the XCom after execute() returns; this one cannot be serialised.
            return PokeReturnValue(is_done=True, xcom_value=object())
        return result


@task
def collect(rows: Any) -> None:
    record(kind="xcom", rows=rows)


with DAG("postgres_rows", schedule=None, start_date=datetime(2025, 1, 1, tzinfo=timezone.utc)) as dag:
    sensor = FailsOnceSensor(
        task_id="new_rows",
        table=TABLE,
        conn_id="scenario_db",
        mode="poke",
        poke_interval=0.1,
        timeout=60,
        retries=1,
        retry_delay=timedelta(0),
    )
    collect(sensor.output)


if __name__ == "__main__":
    import psycopg

    connection = BaseHook.get_connection("scenario_db")
    for run_number in range(int(sys.argv[1])):
        if run_number:
            with psycopg.connect(connection.get_uri(), autocommit=True) as db:
                db.execute(f"INSERT INTO {TABLE} (payload) VALUES ('run {run_number}')")
        run = dag.test()
        record(kind="run", state=str(run.state))
