"""Every 10 minutes, wait for orders not processed yet and process them: a sensor DAG.

``NewRowsSensor`` reads the ``orders`` table through the Airflow connection ``shop_db`` and
returns the new rows as its XCom; its watermark is saved only when the sensor task succeeded,
so a failed try is retried with the same rows. ``max_active_runs=1``: two runs at once would
report the same rows twice. See docs/examples/postgres.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, task

from examples.postgres import NewRowsSensor

with DAG(
    "postgres_new_orders_sensor",
    schedule=timedelta(minutes=10),
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["airflow-stateful", "example"],
):
    new_orders = NewRowsSensor(
        task_id="new_orders",
        table="public.orders",
        conn_id="shop_db",
        limit=5000,
        mode="reschedule",
        poke_interval=60,
        timeout=timedelta(minutes=9).total_seconds(),
        soft_fail=True,  # nothing new this time: skip the run, not fail it
    )

    # `rows` is the sensor's XCom: an XComArg while the DAG is built, a list of
    # {"id": ...} dicts when it runs.
    @task
    def process(rows: Any) -> int:
        print(f"processing orders {[row['id'] for row in rows]}")
        return len(rows)

    process(new_orders.output)
