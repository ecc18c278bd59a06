"""Event-driven: a DAG run for new or updated objects under an S3 prefix (an AssetWatcher).

The triggerer runs :class:`examples.s3.NewS3ObjectsTrigger` for the asset's watcher; each event
(up to ``batch_size`` objects) becomes an asset event whose ``extra["payload"]["objects"]``
lists the objects, and ``s3_process_new_objects`` runs for it.

Configure with environment variables (or edit the constants): ``S3_WATCH_BUCKET``,
``S3_WATCH_PREFIX``, ``S3_WATCH_CONN_ID`` (an AWS connection; ``aws_default`` by default). The
``examples`` package must be importable by the dag-processor, the triggerer and the workers, and
the triggerer needs ``pip install 'aiobotocore[boto3]>=2.13'``.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from examples.s3 import NewS3ObjectsTrigger

BUCKET = os.environ.get("S3_WATCH_BUCKET", "landing")
PREFIX = os.environ.get("S3_WATCH_PREFIX", "incoming/")
CONN_ID = os.environ.get("S3_WATCH_CONN_ID", "aws_default")

new_objects = Asset(
    name="s3_new_objects",
    uri=f"s3://{BUCKET}/{PREFIX}",
    watchers=[
        AssetWatcher(
            name="s3_new_objects_watcher",
            trigger=NewS3ObjectsTrigger(
                BUCKET, PREFIX, aws_conn_id=CONN_ID, poll_interval=60, batch_size=100
            ),
        )
    ],
)


with DAG(
    dag_id="s3_process_new_objects",
    schedule=[new_objects],
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["stateful", "s3"],
):

    @task
    def list_objects(**context: Any) -> list[str]:
        """The URIs of the objects behind the asset events that started this run."""
        uris: list[str] = []
        for events in context["triggering_asset_events"].values():
            for event in events:
                uris += [obj["uri"] for obj in event.extra.get("payload", {}).get("objects", [])]
        print(f"{len(uris)} new or updated object(s): {uris}")
        return uris

    list_objects()
