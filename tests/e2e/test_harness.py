"""The deployment's components share one configuration, whatever order they start in."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.harness import AirflowDeployment


def test_components_started_together_share_one_fernet_key(tmp_path: Path) -> None:
    """Airflow processes started at once in a home without ``airflow.cfg`` each write one with a key
    of their own (or read a half-written one and have none); the dag-processor's key must be the
    triggerer's, or the triggerer cannot read the watchers' arguments."""
    deployment = AirflowDeployment(home=tmp_path / "home", dags_folder=tmp_path / "dags")
    config = deployment.home / "airflow.cfg"
    written = config.read_text()
    command = [deployment.airflow, "config", "get-value", "core", "fernet_key"]
    processes = [
        subprocess.Popen(command, env=deployment.environment, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    # The value is the last line (Airflow 3.0 also prints log lines on stdout).
    keys = [process.communicate(timeout=120)[0].strip().splitlines()[-1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert keys[0] == keys[1] == deployment.environment["AIRFLOW__CORE__FERNET_KEY"]
    assert config.read_text() == written  # no process wrote a configuration of its own
