"""The DAG of scenario i: a deferrable task that reports the files of a directory over its runs.

``e2e_deferred_burst`` runs continuously, one run at a time, once the test unpauses it (it is
created paused). Each run's task reports the oldest new files, at most ``LIMIT``, as its XCom,
deferring to a ``@stateful`` trigger while there are none
(:class:`tests.e2e.deferred.NewFilesBatchSensor`). The directory comes from the environment.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from tests.e2e.deferred import DAG_ID, LIMIT, TASK_ID, NewFilesBatchSensor

with DAG(
    DAG_ID,
    schedule="@continuous",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
):
    NewFilesBatchSensor(
        task_id=TASK_ID,
        directory=os.environ["STATEFUL_E2E_DEFERRED"],
        pattern="*.csv",
        limit=LIMIT,
        poll_interval=0.5,
    )
