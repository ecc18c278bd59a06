"""``stateful --version``: the single-sourced version, printed without importing the commands."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import stateful
from stateful.__about__ import __version__
from stateful.cli import VERSION_LINE
from tests.cli.conftest import Cli

# What a lone --version must not import: the commands' dependencies and Airflow's configuration.
HEAVY = ("click", "pydantic", "sqlalchemy", "airflow", "stateful.types", "stateful.cli._app")


def test_the_version_is_the_one_of_the_package_and_of_its_metadata() -> None:
    assert stateful.__version__ == __version__ == version("airflow-stateful")
    assert f"stateful, version {__version__}" == VERSION_LINE


def test_a_lone_version_and_one_through_the_commands_print_the_same_line(cli: Cli) -> None:
    fast, through_click = cli("--version"), cli("-v", "--version")

    assert (fast.returncode, fast.stdout, fast.stderr) == (0, VERSION_LINE + "\n", "")
    assert (through_click.returncode, through_click.stdout) == (0, fast.stdout)


def test_version_imports_neither_the_commands_nor_airflow() -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from stateful.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    status = main(['--version'])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps([status, out.getvalue(), heavy]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    status, printed, heavy = json.loads(done.stdout)
    assert (status, printed, heavy) == (0, VERSION_LINE + "\n", [])
    # The check sees an import when there is one: any other command loads the commands.
    other = code.replace("['--version']", "['--help']")
    done = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, check=True)
    assert "stateful.cli._app" in json.loads(done.stdout)[2]
