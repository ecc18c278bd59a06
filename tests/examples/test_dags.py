"""Every DAG in examples/dags/ is importable by a real Airflow 3.3, as its dag processor parses it.

The folder is parsed in a subprocess with a fresh ``AIRFLOW_HOME`` (see ``tests/examples/_parse_dags.py``),
next to a folder holding one broken DAG file, which proves that an import error is seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.airflow_min("3.1", reason="the examples use airflow.sdk.BaseHook and DAG bundles")

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "examples" / "dags"


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    home = tmp_path_factory.mktemp("airflow")
    broken = tmp_path_factory.mktemp("broken")
    (broken / "broken_dag.py").write_text(
        "from airflow.sdk import DAG\n"
        "from examples.no_such_module import Nothing\n"
        "\n"
        "with DAG('broken'):\n"
        "    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STATEFUL_"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.examples._parse_dags", str(ROOT), str(DAGS), str(broken)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report: dict[str, dict[str, Any]] = json.loads(proc.stdout.splitlines()[-1])
    return {"examples": report[str(DAGS)], "broken": report[str(broken)]}


def test_every_example_dag_file_imports_without_errors(parsed: dict[str, dict[str, Any]]) -> None:
    examples = parsed["examples"]
    assert examples["import_errors"] == {}
    assert examples["serialization_errors"] == {}
    files = {path.name for path in DAGS.glob("*.py") if not path.name.startswith("_")}
    assert files and {dag["file"] for dag in examples["dags"].values()} == files  # each defines a DAG


def test_an_import_error_is_reported(parsed: dict[str, dict[str, Any]]) -> None:
    errors = parsed["broken"]["import_errors"]
    assert len(errors) == 1
    assert "No module named 'examples.no_such_module'" in next(iter(errors.values()))


def test_one_asset_watcher_dag_per_trigger(parsed: dict[str, dict[str, Any]]) -> None:
    watchers = {w["dag_id"]: w for w in parsed["examples"]["watchers"]}
    assert watchers["process_landing_csv_files"]["classpath"] == "examples.local_files.NewFilesTrigger"
    assert watchers["process_new_orders"]["classpath"] == "examples.postgres.NewRowsTrigger"
    # What the triggerer rebuilds from the stored row is the trigger the DAG declared.
    assert all(w["round_trip"] for w in parsed["examples"]["watchers"])


def test_one_dag_per_sensor(parsed: dict[str, dict[str, Any]]) -> None:
    dags = parsed["examples"]["dags"]
    assert "NewRowsSensor" in dags["postgres_new_orders_sensor"]["task_types"]
    # The SQLite one shows both forms: the classic sensor class and a TaskFlow @task.sensor.
    assert {"NewRowsSensor", "DecoratedSensorOperator"} <= set(dags["sqlite_new_rows_sensors"]["task_types"])
