"""examples/dags/s3_*.py: parsed by Airflow, and run against the S3 API server.

* Both files parse with Airflow's own ``DagBag`` without import errors.
* The watcher's trigger, as the dag-processor serializes it and the triggerer rebuilds it, runs
  in Airflow's ``TriggerRunner`` and fires for the objects under the configured prefix.
* The sensor DAG runs twice with ``dag.test()`` on a real metadata database, in a subprocess
  that reaches the S3 server over HTTP through an Airflow connection.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.jobs.triggerer_job_runner import TriggerRunner
from airflow.serialization.serialized_objects import BaseSerialization, DagSerialization

from tests.examples.s3.conftest import Bucket, add_connection

pytestmark = pytest.mark.airflow_min("3.1", reason="the examples use airflow.sdk.BaseHook and DAG bundles")

ROOT = Path(__file__).resolve().parents[3]
DAGS = ROOT / "examples" / "dags"
T0 = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)


def configure(monkeypatch: pytest.MonkeyPatch, bucket: Bucket) -> None:
    """Point the example DAGs at the test bucket, through the default AWS connection."""
    add_connection(monkeypatch, "aws_default", bucket)
    monkeypatch.setenv("S3_WATCH_BUCKET", bucket.name)
    monkeypatch.setenv("S3_WATCH_PREFIX", "incoming/")
    monkeypatch.setenv("S3_WATCH_POKE_INTERVAL", "0.1")


@pytest.mark.parametrize(
    ("file", "dag_id"),
    [("s3_watcher.py", "s3_process_new_objects"), ("s3_sensor.py", "s3_sensor_new_objects")],
)
def test_the_dag_file_parses_without_import_errors(file: str, dag_id: str) -> None:
    bag = DagBag(dag_folder=str(DAGS / file))

    assert bag.import_errors == {}
    assert list(bag.dags) == [dag_id]


async def test_the_watcher_trigger_as_the_triggerer_gets_it_fires_for_its_prefix(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, bucket)
    bucket.put("incoming/a.csv", at=T0)
    bucket.put("incoming/b.csv", at=T0 + timedelta(seconds=1))
    bucket.put("elsewhere/c.csv", at=T0)
    dag = DagBag(dag_folder=str(DAGS / "s3_watcher.py")).dags["s3_process_new_objects"]

    # What the dag-processor stores for the asset's watcher, and the triggerer rebuilds.
    serialized = json.loads(json.dumps(DagSerialization.to_dict(dag)))
    (asset,) = serialized["dag"]["timetable"]["__var"]["asset_condition"]["objects"]
    (watcher,) = asset["watchers"]
    module, _, name = watcher["trigger"]["classpath"].rpartition(".")
    kwargs = {k: BaseSerialization.deserialize(v) for k, v in watcher["trigger"]["kwargs"].items()}
    trigger = getattr(importlib.import_module(module), name)(**{**kwargs, "poll_interval": 0.02})

    runner = TriggerRunner()
    task = asyncio.create_task(runner.run_trigger(1, trigger))
    runner.triggers[1] = {"task": task, "is_watcher": True, "name": watcher["name"], "events": 0}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while trigger.polls < 2:
        assert loop.time() < deadline, "the trigger did not complete two polls"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    payloads = [entry.event.payload for entry in runner.events]
    assert [obj["key"] for payload in payloads for obj in payload["objects"]] == [
        "incoming/a.csv",
        "incoming/b.csv",
    ]
    assert len(payloads) == 1  # batch_size=100 in the DAG: one asset event for both


def run_sensor_dag(home: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.examples.s3._run_sensor_dag", str(home / "dags" / "s3_sensor.py")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_the_sensor_dag_reports_each_object_once_across_runs(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch, airflow_home: Path
) -> None:
    configure(monkeypatch, bucket)
    home = airflow_home  # with a copy of a migrated metadata database
    (home / "dags").mkdir(parents=True)
    shutil.copy(DAGS / "s3_sensor.py", home / "dags")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "STATEFUL_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        STATEFUL_DATABASE_URL=f"sqlite:///{home / 'state.db'}",
        PYTHONPATH=str(ROOT),
    )

    bucket.put("incoming/a.csv", b"v1", at=T0)
    bucket.put("incoming/b.csv", at=T0)
    bucket.put("elsewhere/c.csv", at=T0)
    first = run_sensor_dag(home, env)
    bucket.put("incoming/d.csv", at=T0 + timedelta(seconds=2))
    etag = bucket.put("incoming/a.csv", b"v2", at=T0 + timedelta(seconds=1))  # rewritten
    second = run_sensor_dag(home, env)

    for run in (first, second):
        assert run["state"] == "success"
        assert {task["state"] for task in run["tasks"].values()} == {"success"}
    assert [o["key"] for o in first["tasks"]["new_objects"]["xcom"]] == ["incoming/a.csv", "incoming/b.csv"]
    assert first["tasks"]["process"]["xcom"] == 2
    reported = [(o["key"], o["etag"]) for o in second["tasks"]["new_objects"]["xcom"]]
    assert [key for key, _ in reported] == ["incoming/a.csv", "incoming/d.csv"]
    assert reported[0][1] == etag
    assert second["tasks"]["process"]["xcom"] == 2
