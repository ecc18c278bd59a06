"""``[stateful]`` options read without Airflow give what Airflow's own configuration gives.

Each case runs in a fresh interpreter (Airflow's configuration is read once per process, at
import): first :func:`stateful._airflowconf.stateful_option` without Airflow, then Airflow's
``conf.get("stateful", ...)``, in the same environment and with the same airflow.cfg.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OPTIONS = ["database_url", "history_versions", "backend", "save_interval", "unset_option"]

_PROBE = f"""
import json, sys
from stateful._airflowconf import stateful_option
fast = {{o: stateful_option(o) for o in {OPTIONS!r}}}
imported = "airflow" in sys.modules
from stateful._airflowconf import airflow_conf
conf = airflow_conf()
slow = {{o: conf.get("stateful", o, fallback=None) for o in {OPTIONS!r}}}
print(json.dumps({{"fast": fast, "slow": slow, "imported": imported}}))
"""


def _compare(env: dict[str, str]) -> dict[str, str | None]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STATEFUL_"))}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["imported"] is False, "stateful_option imported Airflow"
    assert found["fast"] == found["slow"]
    fast: dict[str, str | None] = found["fast"]
    return fast


def test_the_environment_and_the_file_as_airflow_reads_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "airflow.cfg").write_text(
        "[core]\n"
        "load_examples = False\n"
        "[stateful]\n"
        "database_url = sqlite:///$STATE_DIR/%(name)s.db\n"  # environment and interpolation
        "name = from-file\n"
        "history_versions = 7\n"
        "backend = sql\n"
        "save_interval = ~/later\n"
    )

    got = _compare(
        {
            "AIRFLOW_HOME": str(home),
            "STATE_DIR": str(tmp_path / "state"),
            "AIRFLOW__STATEFUL__BACKEND": "native",  # the variable beats the file
            "AIRFLOW__STATEFUL__SAVE_INTERVAL": "$STATE_DIR",
        }
    )

    assert got["database_url"] == f"sqlite:///{tmp_path / 'state'}/from-file.db"
    assert (got["history_versions"], got["backend"]) == ("7", "native")
    assert got["save_interval"] == str(tmp_path / "state")
    assert got["unset_option"] is None


@pytest.mark.parametrize("layout", ["AIRFLOW_CONFIG", "no file", "no section"])
def test_where_the_file_is_and_when_there_is_none(tmp_path: Path, layout: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"AIRFLOW_HOME": str(home)}
    if layout == "AIRFLOW_CONFIG":
        elsewhere = tmp_path / "elsewhere.cfg"
        elsewhere.write_text("[stateful]\nhistory_versions = 3\n")
        (home / "airflow.cfg").write_text("[stateful]\nhistory_versions = 9\n")
        env["AIRFLOW_CONFIG"] = str(elsewhere)
    elif layout == "no section":
        (home / "airflow.cfg").write_text("[core]\nload_examples = False\n")

    got = _compare(env)

    assert got["history_versions"] == ("3" if layout == "AIRFLOW_CONFIG" else None)
