"""examples/demo.py (``make demo``) runs end to end through ``stateful run``, and checks itself."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo.py"


def run_demo(
    tmp_path: Path, *args: str, airflow_home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"AIRFLOW_HOME", "STATEFUL_DATABASE_URL", "AIRFLOW__STATEFUL__DATABASE_URL"}
    }
    if airflow_home is not None:
        env["AIRFLOW_HOME"] = str(airflow_home)
    return subprocess.run(
        [sys.executable, str(DEMO), "--workdir", str(tmp_path / "work"), *args],
        cwd=tmp_path,  # not the repository: the script must find its own imports
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp_path = tmp_path_factory.mktemp("demo")
    return tmp_path, run_demo(tmp_path)


def test_demo_passes_every_phase(first_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, proc = first_run

    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("=>")]
    assert [v.split(":")[0] for v in verdicts] == [
        "=> 3 events (expected 3)",
        "=> 0 events (expected 0)",
        "=> 3 events (expected 3)",
    ]
    commands = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("$ stateful")]
    assert [c.split()[2] for c in commands] == ["run", "run", "run", "show"]
    assert [c.split()[-2:] for c in commands[:3]] == [
        ["--max-events", "3"],
        ["--timeout", "2"],
        ["--max-events", "3"],
    ]
    events = [line.split(None, 2)[2] for line in proc.stdout.splitlines() if line.startswith("  event ")]
    assert [Path(json.loads(e)["path"]).name for e in events] == [
        "orders-001.csv",
        "orders-002.csv",
        "orders-003.csv",
        "orders-004.csv",
        "orders-005.csv",
        "orders-001.csv",
    ]
    assert proc.stdout.count("  saved    version ") == 6  # each event saved once taken
    assert (
        "saved    version 6: timestamp=2025-06-02T09:05:20.000000Z, cursor=null, seen=6 keys" in proc.stdout
    )
    assert "All phases behaved as expected" in proc.stdout


def test_demo_keeps_its_state_under_the_workdir_when_airflow_home_is_unset(
    first_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    tmp_path, proc = first_run

    db = tmp_path / "work" / "airflow-home" / "stateful.db"
    assert db.is_file()
    assert f"sqlite:///{db}" in proc.stdout


def test_demo_prints_the_same_on_every_run(first_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp_path, proc = first_run

    again = run_demo(tmp_path)

    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == proc.stdout


def test_demo_uses_airflow_home_when_set_and_reset_clears_the_workdir(tmp_path: Path) -> None:
    home = tmp_path / "my-airflow"
    stale = tmp_path / "work" / "airflow-home" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("left over")

    proc = run_demo(tmp_path, "--reset", airflow_home=home)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (home / "stateful.db").is_file()
    assert "AIRFLOW_HOME was already set" in proc.stdout
    assert not stale.exists()


@pytest.fixture
def stateful_logger() -> Iterator[None]:
    """Restore the ``stateful`` logger that the demo's main() redirects to stdout."""
    logger = logging.getLogger("stateful")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], level, logger.propagate = saved
    logger.setLevel(level)


@pytest.mark.usefixtures("stateful_logger")
def test_demo_fails_when_a_phase_count_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples import demo
    from stateful.backends.sql import dispose_default_stores

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STATEFUL_DATABASE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW__STATEFUL__DATABASE_URL", raising=False)
    monkeypatch.setattr(demo, "_run_trigger", lambda args: [])  # a trigger that never fires
    dispose_default_stores()
    try:
        status = demo.main(["--workdir", str(tmp_path / "work")])
    finally:
        dispose_default_stores()

    assert status == 1
    out = capsys.readouterr().out
    assert "FAILED: phase 1: 0 events, expected 3; phase 3: 0 events, expected 3; phase 4" in out
