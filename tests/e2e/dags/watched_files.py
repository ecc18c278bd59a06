"""DAGs of the end-to-end suite: two watched directories, each an Asset consumed by a DAG.

* ``e2e_landing`` is watched by the example ``@stateful`` trigger
  (:class:`examples.local_files.NewFilesTrigger`); ``e2e_consume_landing`` is scheduled on it,
  and its task returns the paths of the asset events that triggered the run (an XCom the
  tests read back).
* ``e2e_unacked`` is watched by the example's code under ``@stateful(ack=False)``
  (:class:`tests.e2e.triggers.UnackedFilesTrigger`): the control of the crash scenarios.
* ``e2e_burst`` is watched by the example ``@stateful`` trigger too, in a directory of its own:
  scenario h drops thousands of files into it at once; ``e2e_burst_unacked`` likewise, under
  ``@stateful(ack=False)`` (:class:`tests.e2e.triggers.UnackedBurstTrigger`).
* ``e2e_shared_<folder>``, for each of ``SHARED_FOLDERS``, is watched by
  :class:`tests.e2e.triggers.SharedFolderTrigger` on that folder of one directory: the three
  watchers share one listing of the directory per poll (``@shared_source``, scenario j).
* ``e2e_control`` is watched by the same polling code without ``@stateful``
  (:class:`tests.e2e.triggers.ForgetfulFilesTrigger`); ``e2e_consume_control`` is scheduled on
  it so that its watcher runs (Airflow runs the watchers of assets scheduled by unpaused DAGs).

The directories come from the environment, set by the suite for every Airflow component.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetWatcher, get_current_context, task
from airflow.triggers.base import BaseEventTrigger

from examples.local_files import NewFilesTrigger
from tests.e2e.triggers import (
    SHARED_FOLDERS,
    ForgetfulFilesTrigger,
    SharedFolderTrigger,
    UnackedBurstTrigger,
    UnackedFilesTrigger,
)

LANDING = os.environ["STATEFUL_E2E_LANDING"]
CONTROL = os.environ["STATEFUL_E2E_CONTROL"]
UNACKED = os.environ["STATEFUL_E2E_UNACKED"]
BURST = os.environ["STATEFUL_E2E_BURST"]
BURST_UNACKED = os.environ["STATEFUL_E2E_BURST_UNACKED"]
SHARED = os.environ["STATEFUL_E2E_SHARED"]
PATTERN = "*.csv"
# Short, so that the tests wait little; the watermark logic does not depend on it.
POLL_INTERVAL = 0.5
START = datetime(2026, 1, 1, tzinfo=timezone.utc)

landing = Asset(
    name="e2e_landing",
    watchers=[
        AssetWatcher(
            name="e2e_landing_watcher",
            trigger=NewFilesTrigger(LANDING, PATTERN, poll_interval=POLL_INTERVAL),
        )
    ],
)


def watched(name: str, trigger: BaseEventTrigger) -> Asset:
    """An asset named ``name`` with one watcher, ``<name>_watcher``, running ``trigger``."""
    return Asset(name=name, watchers=[AssetWatcher(name=f"{name}_watcher", trigger=trigger)])


control = watched("e2e_control", ForgetfulFilesTrigger(CONTROL, PATTERN, poll_interval=POLL_INTERVAL))
unacked = watched("e2e_unacked", UnackedFilesTrigger(UNACKED, PATTERN, poll_interval=POLL_INTERVAL))
burst = watched("e2e_burst", NewFilesTrigger(BURST, PATTERN, poll_interval=POLL_INTERVAL))
burst_unacked = watched(
    "e2e_burst_unacked", UnackedBurstTrigger(BURST_UNACKED, PATTERN, poll_interval=POLL_INTERVAL)
)

shared = [
    watched(f"e2e_shared_{folder}", SharedFolderTrigger(SHARED, folder, poll_interval=POLL_INTERVAL))
    for folder in SHARED_FOLDERS
]


@task
def consume() -> list[str]:
    """Return the paths carried by the asset events that triggered this run."""
    events: Any = get_current_context()["triggering_asset_events"]
    return sorted(event.extra["payload"]["path"] for event in events[landing])


with DAG("e2e_consume_landing", schedule=[landing], start_date=START, catchup=False, max_active_runs=16):
    consume()

with DAG("e2e_consume_control", schedule=[control], start_date=START, catchup=False):
    EmptyOperator(task_id="noop")

with DAG("e2e_consume_unacked", schedule=[unacked], start_date=START, catchup=False):
    EmptyOperator(task_id="noop")

with DAG("e2e_consume_burst", schedule=[burst], start_date=START, catchup=False):
    EmptyOperator(task_id="noop")

with DAG("e2e_consume_burst_unacked", schedule=[burst_unacked], start_date=START, catchup=False):
    EmptyOperator(task_id="noop")

for asset in shared:
    with DAG(f"e2e_consume_{asset.name}", schedule=[asset], start_date=START, catchup=False):
        EmptyOperator(task_id="noop")
