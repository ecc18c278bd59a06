"""The scenarios' figures reach the terminal summary also when the tests run in xdist workers.

``make test`` runs the suite with ``-n``: a figure recorded in a worker must still be printed by
the controlling process (tests/_figures.py), as without xdist.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._figures import SECTION

REPO = Path(__file__).resolve().parents[2]

_CONFTEST = "from tests._figures import figures, pytest_terminal_summary  # noqa: F401\n"
_TESTS = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_measures(figures, n):
    figures.append(f"figure {n}")

def test_fails_after_measuring(figures):
    figures.extend(["figure of a failed test"])
    assert False
"""


@pytest.mark.parametrize("workers", [None, "2"], ids=["plain", "xdist"])
def test_figures_recorded_in_tests_are_printed_in_the_summary(tmp_path: Path, workers: str | None) -> None:
    (tmp_path / "conftest.py").write_text(_CONFTEST)
    (tmp_path / "test_measured.py").write_text(_TESTS)
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_measured.py"]
    if workers is not None:
        args += ["-n", workers, "--dist", "loadgroup"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )

    assert run.returncode == 1, run.stdout + run.stderr  # the one failing test
    summary = run.stdout[run.stdout.index(SECTION) :]
    printed = [line for line in summary.splitlines() if line.startswith("figure")]
    expected = [*(f"figure {n}" for n in range(4)), "figure of a failed test"]
    assert sorted(printed) == sorted(expected), run.stdout
    if workers is not None:
        assert re.search(r"^\[gw[01]\] ", run.stdout, re.MULTILINE), run.stdout  # it ran in a worker
