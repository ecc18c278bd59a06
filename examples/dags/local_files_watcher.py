"""Process each CSV file that lands (or is rewritten) in a directory: an asset watcher DAG.

``NewFilesTrigger`` runs in the triggerer and turns every new or modified file into an asset
event; this DAG runs for those events. Point ``EXAMPLE_LANDING_DIRECTORY`` at the directory
(the triggerer must be able to read it). See docs/examples/local-files.md.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from examples.local_files import NewFilesTrigger

LANDING_DIRECTORY = os.environ.get("EXAMPLE_LANDING_DIRECTORY", "/data/landing")

landing_csv_files = Asset(
    "landing_csv_files",
    watchers=[
        AssetWatcher(
            name="landing_csv_files_watcher",
            trigger=NewFilesTrigger(LANDING_DIRECTORY, "*.csv", poll_interval=10.0),
        )
    ],
)

with DAG(
    "process_landing_csv_files",
    schedule=[landing_csv_files],
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["airflow-stateful", "example"],
):

    @task
    def process(*, triggering_asset_events: Any = None) -> list[str]:
        """The files of the events this run was triggered by (several, if the scheduler batched them)."""
        events = triggering_asset_events[landing_csv_files] if triggering_asset_events else []
        paths = [str(event.extra["payload"]["path"]) for event in events]
        for path in paths:
            print(f"processing {path}")
        return paths

    process()
