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
from collections.abc import Callable
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


def follow(project: Path, commands: Callable[[str], bool] = lambda command: True) -> list[Step]:
    """Write the page's files into ``project`` and run its commands chosen by ``commands``, in order."""
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
            if not line.startswith("$ ") or not commands(line[2:]):
                continue
            done = subprocess.run(
                ["bash", "-c", line[2:]], cwd=project, env=env, capture_output=True, text=True, timeout=600
            )
            steps.append(Step(line[2:], done.stdout, done.stderr, done.returncode))
    return steps


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Step]]:
    """Follow the page; the project directory and every command's outcome."""
    project = tmp_path_factory.mktemp("tutorial")
    return project, follow(project)


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


def test_airflow_loads_the_dag_file_and_its_watcher(tmp_path: Path) -> None:
    # The page's files, and its commands that lay them out (mkdir, cp): no run needed here.
    steps = follow(tmp_path, lambda command: command.startswith(("mkdir", "cp")))
    assert [step.returncode for step in steps] == [0, 0]
    code = """
import json
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow < 3.1
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder="dags")
dag = bag.dags["process_landing_files"]
condition = dag.timetable.asset_condition
asset = condition if hasattr(condition, "watchers") else condition.objects[0]
watcher = asset.watchers[0]
print(json.dumps({"errors": list(bag.import_errors), "asset": asset.name, "watcher": watcher.name,
                  "trigger": type(watcher.trigger).__name__, "serialized": watcher.trigger.serialize()}))
"""
    # The DAG processor and the triggerer have the DAGs folder on sys.path.
    env = {**_environment(tmp_path), "PYTHONPATH": str(tmp_path / "dags")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "errors": [],
        "asset": "landing_files",
        "watcher": "landing_files_watcher",
        "trigger": "NewFilesTrigger",
        "serialized": ["new_files.NewFilesTrigger", {"directory": "/data/landing", "poll_interval": 5.0}],
    }
