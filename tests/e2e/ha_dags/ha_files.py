"""The DAG of the highly-available scenario: one watched directory, its asset consumed by a DAG.

``e2e_ha`` is watched by the example ``@stateful`` trigger
(:class:`examples.local_files.NewFilesTrigger`, ack mode, its watermark in the SQL store the
deployment names); ``e2e_consume_ha`` is scheduled on it so that its watcher runs (Airflow runs
the watchers of assets scheduled by unpaused DAGs). The directory comes from the environment.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetWatcher

from examples.local_files import NewFilesTrigger

HA = os.environ["STATEFUL_E2E_HA"]

arriving = Asset(
    name="e2e_ha",
    watchers=[AssetWatcher(name="e2e_ha_watcher", trigger=NewFilesTrigger(HA, "*.csv", poll_interval=0.5))],
)

with DAG(
    "e2e_consume_ha",
    schedule=[arriving],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
):
    EmptyOperator(task_id="noop")
