"""Process new orders as they are committed to a PostgreSQL table: an asset watcher DAG.

``NewRowsTrigger`` runs in the triggerer, polls the ``orders`` table through the Airflow
connection ``shop_db`` (e.g. ``AIRFLOW_CONN_SHOP_DB=postgresql://user:pass@host:5432/shop``) and
turns each page of new rows into an asset event; this DAG runs for those events. See
docs/examples/postgres.md.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from examples.postgres import NewRowsTrigger

new_orders = Asset(
    "new_orders",
    watchers=[
        AssetWatcher(
            name="new_orders_watcher",
            trigger=NewRowsTrigger(table="public.orders", conn_id="shop_db", poll_interval=10.0),
        )
    ],
)

with DAG(
    "process_new_orders",
    schedule=[new_orders],
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["airflow-stateful", "example"],
):

    @task
    def process(*, triggering_asset_events: Any = None) -> list[int]:
        """The order ids of the events this run was triggered by."""
        events = triggering_asset_events[new_orders] if triggering_asset_events else []
        ids = [int(row["id"]) for event in events for row in event.extra["payload"]["rows"]]
        print(f"processing orders {ids}")
        return ids

    process()
