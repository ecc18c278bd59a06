"""Typing is a feature: files in tests/typing must pass (pass_*) or fail (fail_*) mypy --strict.

A fail_* file marks each line mypy must report with ``# E:``; the test checks that mypy reports
errors on exactly those lines, so a fail file cannot pass by failing for an unrelated reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

TYPING = Path(__file__).parent / "typing"
ROOT = TYPING.parent.parent
PASS_FILES = sorted(TYPING.glob("pass_*.py"))
FAIL_FILES = sorted(TYPING.glob("fail_*.py"))


def run_mypy(path: Path) -> tuple[int, str]:
    stdout, stderr, status = api.run(
        ["--strict", "--no-error-summary", "--config-file", str(ROOT / "pyproject.toml"), str(path)]
    )
    return status, stdout + stderr


def test_there_are_typing_files() -> None:
    assert PASS_FILES and FAIL_FILES


@pytest.mark.parametrize("path", PASS_FILES, ids=lambda p: p.name)
def test_passes_mypy_strict(path: Path) -> None:
    status, output = run_mypy(path)
    assert status == 0, output


@pytest.mark.parametrize("path", FAIL_FILES, ids=lambda p: p.name)
def test_fails_mypy_strict_exactly_where_marked(path: Path) -> None:
    expected = {n for n, line in enumerate(path.read_text().splitlines(), 1) if "# E:" in line}
    assert expected, f"{path.name} marks no line with '# E:'"
    status, output = run_mypy(path)
    reported = {int(m.group(1)) for m in re.finditer(rf"{re.escape(path.name)}:(\d+): error:", output)}
    assert status == 1, output
    assert reported == expected, output
