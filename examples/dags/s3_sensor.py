"""Scheduled: each run waits for objects under an S3 prefix that no earlier run reported.

:class:`examples.s3.NewS3ObjectsSensor` pokes with boto3 in reschedule mode (no worker slot held
between pokes) and pushes the objects it reports to XCom; its watermark is saved once the sensor
task succeeded, so a failed try reports the same objects again.

Configure with environment variables (or edit the constants): ``S3_WATCH_BUCKET``,
``S3_WATCH_PREFIX``, ``S3_WATCH_CONN_ID`` (an AWS connection; ``aws_default`` by default). The
workers need ``pip install 'aiobotocore[boto3]>=2.13'``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, task

from examples.s3 import NewS3ObjectsSensor

BUCKET = os.environ.get("S3_WATCH_BUCKET", "landing")
PREFIX = os.environ.get("S3_WATCH_PREFIX", "incoming/")
CONN_ID = os.environ.get("S3_WATCH_CONN_ID", "aws_default")
POKE_INTERVAL = float(os.environ.get("S3_WATCH_POKE_INTERVAL", "60"))


with DAG(
    dag_id="s3_sensor_new_objects",
    schedule=timedelta(hours=1),
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # one watermark: runs must not race on it
    tags=["stateful", "s3"],
):
    new_objects = NewS3ObjectsSensor(
        task_id="new_objects",
        bucket=BUCKET,
        prefix=PREFIX,
        aws_conn_id=CONN_ID,
        max_objects=1000,
        mode="reschedule",
        poke_interval=POKE_INTERVAL,
        timeout=timedelta(hours=1).total_seconds(),
        soft_fail=True,  # nothing new within the hour: skip, not fail
    )

    @task
    def process(objects: list[dict[str, Any]]) -> int:
        """Stand-in for real work: log the objects; return how many."""
        for obj in objects:
            print(f"processing {obj['uri']} ({obj['size']} bytes, etag {obj['etag']})")
        return len(objects)

    process(new_objects.output)  # type: ignore[arg-type]  # XComArg resolves to the list at run time
