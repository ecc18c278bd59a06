"""docs/tutorial.md, executed: its files are written, its commands run, its DAG file loaded by Airflow.

The page is the source: each ``python`` block with a ``title`` is written to that path of a fresh
project directory, each ``$`` line of a ``console`` block is run there (a fresh ``AIRFLOW_HOME``,
this interpreter's ``stateful`` and ``python``), in the page's order. Then the checks below say
what each step must have shown, and the deploy step's DAG file is loaded with Airflow's
``DagBag`` (as the DAG processor does, with the DAGs folder on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(
    r'^```(?P<lang>python|console)(?: title="(?P<title>[^"]+)")?\n(?P<body>.*?)^```', re.S | re.M
)


@dataclass
class Step:
    command: str
    stdout: str
    stderr: str
    returncode: int


def _environment(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATEFUL_", "AIRFLOW__", "PYTEST_"))}
    env["AIRFLOW_HOME"] = str(project / "airflow-home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Step]]:
    """Follow the page; the project directory and every command's outcome."""
    project = tmp_path_factory.mktemp("tutorial")
    env = _environment(project)
    steps: list[Step] = []
    for block in BLOCK.finditer(PAGE.read_text()):
        if block["lang"] == "python":
            if block["title"]:
                path = project / block["title"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(block["body"])
            continue
        for line in block["body"].splitlines():
            if not line.startswith("$ "):
                continue
            done = subprocess.run(
                ["bash", "-c", line[2:]], cwd=project, env=env, capture_output=True, text=True, timeout=600
            )
            steps.append(Step(line[2:], done.stdout, done.stderr, done.returncode))
    return project, steps


def _step(steps: list[Step], starts: str, nth: int = 0) -> Step:
    return [step for step in steps if step.command.startswith(starts)][nth]


def test_every_command_of_the_page_succeeds(tutorial: tuple[Path, list[Step]]) -> None:
    _, steps = tutorial
    assert len(steps) == 8
    for step in steps:
        assert step.returncode == 0, f"$ {step.command}\n{step.stdout}\n{step.stderr}"


def test_the_local_run_fires_each_file_once(tutorial: tuple[Path, list[Step]]) -> None:
    _, steps = tutorial
    first, second = _step(steps, "stateful run", 0), _step(steps, "stateful run", 1)
    fired = [
        json.loads(line.split(None, 2)[2])["path"]
        for line in first.stdout.splitlines()
        if line.startswith("event")
    ]
    assert fired == ["landing/orders-1.csv", "landing/orders-2.csv"]
    assert "stopped after --max-events 2: 2 events taken; stored version 2" in first.stdout
    assert not [line for line in second.stdout.splitlines() if line.startswith("event")]
    assert "stopped after --timeout 1s: 0 events taken" in second.stdout
    shown = _step(steps, "stateful show")
    assert "seen        2 keys" in shown.stdout


def test_the_kit_tests_of_the_page_pass(tutorial: tuple[Path, list[Step]]) -> None:
    _, steps = tutorial
    assert "2 passed" in _step(steps, "python -m pytest").stdout


def test_airflow_loads_the_dag_file_and_its_watcher(tutorial: tuple[Path, list[Step]]) -> None:
    project, _ = tutorial
    code = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder="dags")
dag = bag.dags["process_landing_files"]
asset = next(iter(dag.timetable.asset_condition.iter_assets()))[1]
watcher = asset.watchers[0]
print(json.dumps({"errors": list(bag.import_errors), "watcher": watcher.name,
                  "trigger": type(watcher.trigger).__name__, "serialized": watcher.trigger.serialize()}))
"""
    env = {**_environment(project), "PYTHONPATH": str(project / "dags")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "errors": [],
        "watcher": "landing_files_watcher",
        "trigger": "NewFilesTrigger",
        "serialized": ["new_files.NewFilesTrigger", {"directory": "/data/landing", "poll_interval": 5.0}],
    }
