"""A fast command line: what each command imports, checked in a fresh interpreter.

``--version`` and ``--help`` (of the group and of every command) import neither Airflow nor
SQLAlchemy; a command whose store is named (``--database-url``, ``STATEFUL_DATABASE_URL``), or
the default SQLite store, never imports Airflow: ``[stateful]`` options are read from the
environment and from airflow.cfg without it (stateful/_airflowconf.py). Timings are in
bench/cli_startup.py, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from stateful.cli._app import COMMANDS, cli
from tests.cli.conftest import REPO, Cli

HEAVY = ("airflow", "sqlalchemy", "pydantic")

# Runs the command line in this interpreter, then reports its status and what it imported.
_PROBE = """
import contextlib, io, json, sys
from stateful.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    status = main(sys.argv[1:])
modules = sorted(m for m in sys.modules if m.split(".")[0] in {"airflow", "sqlalchemy", "pydantic"}
                 or m.startswith("stateful.cli._") or m == "stateful.types")
print(json.dumps({"status": status, "stdout": out.getvalue(), "stderr": err.getvalue(), "modules": modules}))
"""


def _probe(cli: Cli, *args: str, **env: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=REPO,
        env=cli.environment(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _tops(result: dict[str, Any]) -> set[str]:
    return {m.split(".")[0] for m in result["modules"]}


def test_the_group_help_imports_no_command_and_none_of_their_dependencies(cli: Cli) -> None:
    result = _probe(cli, "--help")

    assert result["status"] == 0 and "Commands:" in result["stdout"]
    assert _tops(result) & set(HEAVY) == set()
    assert [m for m in result["modules"] if m.startswith("stateful.cli._")] == [
        "stateful.cli._app",
        "stateful.cli._errors",
        "stateful.cli._output",
    ]
    # The check sees an import when there is one.
    assert "sqlalchemy" in _tops(_probe(cli, "list"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_help_imports_neither_airflow_nor_sqlalchemy(cli: Cli, command: str) -> None:
    result = _probe(cli, command, "--help")

    assert result["status"] == 0 and f"Usage: stateful {command}" in result["stdout"]
    assert _tops(result) & {"airflow", "sqlalchemy"} == set()


def test_the_listing_of_commands_is_the_one_click_makes_from_the_commands() -> None:
    """COMMANDS' summaries, which the group's help lists without importing, are the commands' own."""
    assert sorted(COMMANDS) == sorted(cli.list_commands(click.Context(cli)))
    for name, (_, _, summary) in COMMANDS.items():
        command = cli.get_command(click.Context(cli), name)
        assert command is not None and command.name == name
        assert command.help is not None and command.help.split("\n\n")[0].strip() == summary
        for limit in (30, 45, 80, 200):
            shown = click.Command(None, help=summary).get_short_help_str(limit)
            assert shown == command.get_short_help_str(limit), name


def _write_airflow_cfg(home: Path, **options: str) -> None:
    lines = ["[stateful]", *(f"{key} = {value}" for key, value in options.items())]
    (home / "airflow.cfg").write_text("\n".join(lines) + "\n")


def test_commands_on_a_named_store_never_import_airflow_and_still_follow_its_configuration(
    cli: Cli, tmp_path: Path
) -> None:
    # The history setting comes from airflow.cfg, read without Airflow.
    del cli.env["STATEFUL_HISTORY_VERSIONS"]
    _write_airflow_cfg(cli.home, history_versions="2")
    url = f"sqlite:///{tmp_path / 'named.db'}"
    named = {"STATEFUL_DATABASE_URL": ""}
    steps = [
        ("set", "files", "orders", "--cursor", "1", "--create", "--yes", "--database-url", url),
        ("set", "files", "orders", "--cursor", "2", "--yes", "--database-url", url),
        ("set", "files", "orders", "--cursor", "3", "--yes", "--database-url", url),
        ("list", "--database-url", url),
        ("show", "files", "orders", "--database-url", url),
        ("export", "--database-url", url),
    ]
    for args in steps:
        result = _probe(cli, *args, **named)
        assert result["status"] == 0, result["stderr"]
        assert "airflow" not in _tops(result), args
    history = _probe(cli, "history", "files", "orders", "--json", STATEFUL_DATABASE_URL=url)

    assert "airflow" not in _tops(history)
    assert [v["version"] for v in json.loads(history["stdout"])["versions"]] == [3, 2]


def test_the_default_store_is_chosen_without_importing_airflow(cli: Cli, tmp_path: Path) -> None:
    from_config = tmp_path / "from-config.db"
    _write_airflow_cfg(cli.home, database_url=f"sqlite:///{from_config}")
    unset = {"STATEFUL_DATABASE_URL": ""}

    made = _probe(cli, "set", "files", "orders", "--cursor", "1", "--create", "--yes", **unset)
    listed = _probe(cli, "list", "--json", **unset)

    assert made["status"] == listed["status"] == 0, made["stderr"] + listed["stderr"]
    assert "airflow" not in _tops(made) | _tops(listed)
    assert json.loads(listed["stdout"])["chosen_by"] == "Airflow configuration [stateful] database_url"
    assert from_config.is_file()
