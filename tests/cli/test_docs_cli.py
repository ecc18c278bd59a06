"""docs/cli.md's worked incident is run as written, and prints what the page shows.

Only what differs between two runs is masked before comparing: the times of writing (the
incident's own timestamps are all on 2025-06-02), the host and user names, and column padding.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import REPO

PAGE = REPO / "docs" / "cli.md"
PLACE = "/tmp/stateful-incident"

_WRITTEN_AT = re.compile(r"\b(?!2025-06-02)\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_USER_AT_HOST = re.compile(r"\bby [^\s@]+@\S+")
_HOST_PID = re.compile(r"(?<![\w:./-])[A-Za-z][\w.-]*:\d+(?![\w:.])")


def _steps(page: str) -> list[tuple[str, list[str]]]:
    """The incident's commands, each with the output the page shows for it."""
    start = page.index("<!-- incident")
    section = page[start : page.index("\n## ", start)]
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    return steps


def _masked(lines: list[str]) -> list[str]:
    masked = []
    for line in lines:
        line = _WRITTEN_AT.sub("<time>", line)
        line = _USER_AT_HOST.sub("by <user>@<host>", line)
        line = _HOST_PID.sub("<host>:<pid>", line)
        masked.append(" ".join(line.split()))
    return masked


def test_the_worked_incident_runs_as_written(tmp_path: Path) -> None:
    place = str(tmp_path / "incident")
    steps = _steps(PAGE.read_text())
    assert len(steps) >= 12 and any(command.startswith("stateful rewind") for command, _ in steps)
    script = ["set -u"]
    for index, (command, _) in enumerate(steps):
        command = command.replace(PLACE, place).replace("$PWD/.venv/bin", str(Path(sys.executable).parent))
        script += [f"echo '@@@ {index}'", f"{{ {command} ; }} 2>&1", 'echo "@@@ status $?"']
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATEFUL_", "AIRFLOW__STATEFUL__"))}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow-home")

    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    outputs = re.split(r"^@@@ \d+\n", proc.stdout, flags=re.MULTILINE)[1:]
    assert len(outputs) == len(steps), proc.stdout
    for (command, shown), output in zip(steps, outputs, strict=True):
        *printed, status = output.rstrip("\n").split("\n")
        assert status == "@@@ status 0", f"{command}\n{output}"
        expected = _masked([line.replace(PLACE, place) for line in shown])
        assert _masked(printed) == expected, f"$ {command}"
