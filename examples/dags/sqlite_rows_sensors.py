"""Two ways to wait for new rows of a SQLite table with ``@stateful``: a sensor DAG.

* ``NewRowsSensor``: a classic sensor class from examples/sqlite_rows_sensor.py;
* ``new_payment_ids``: a TaskFlow ``@task.sensor`` function with ``@stateful`` under it.

Each keeps its own watermark and returns the ids of the rows it has not reported before; the
watermark is saved once the sensor task succeeded. Point ``EXAMPLE_SHOP_DATABASE`` at the
database file. See docs/sensors.md.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, PokeReturnValue, task

from examples.sqlite_rows_sensor import NewRowsSensor, poke_new_rows
from stateful import Watermark, stateful

SHOP_DATABASE = os.environ.get("EXAMPLE_SHOP_DATABASE", "/data/shop.db")

with DAG(
    "sqlite_new_rows_sensors",
    schedule=timedelta(minutes=10),
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # two runs at once would report the same rows twice
    tags=["airflow-stateful", "example"],
):
    # Classic form; deferrable=True would wait in the triggerer instead of a worker slot.
    new_order_ids = NewRowsSensor(
        task_id="new_order_ids",
        database=SHOP_DATABASE,
        table="orders",
        mode="reschedule",
        poke_interval=60,
        timeout=timedelta(minutes=9).total_seconds(),
        soft_fail=True,
    )

    # TaskFlow form: the watermark is the first parameter; the name formats over the task.
    @task.sensor(
        mode="reschedule", poke_interval=60, timeout=timedelta(minutes=9).total_seconds(), soft_fail=True
    )
    @stateful(namespace="sqlite", name="{dag_id}.{task_id}")
    def new_payment_ids(watermark: Watermark[int]) -> PokeReturnValue:
        return poke_new_rows(SHOP_DATABASE, "payments", watermark)

    # `ids` is the sensor's XCom: an XComArg while the DAG is built, a list[int] when it runs.
    @task
    def process(kind: str, ids: Any) -> int:
        print(f"processing {kind} {ids}")
        return len(ids)

    process("orders", new_order_ids.output)
    process("payments", new_payment_ids())
