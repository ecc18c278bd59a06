"""The command line on a watermark whose model changed: ``set --field/--drop-field``, and the fixes
the load errors suggest, run as they are written (pasted into a shell, or typed on a terminal)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from stateful.errors import StateModelVersionError, StateValidationError
from stateful.testing import run_trigger, use_store
from tests.cli.conftest import WM, Cli, OpenTerminal
from tests.evolving import NAMESPACE, NoHook, OrdersV1, RenamedOnly, TwoSteps, trigger_for

# A name with a space and a glob: a suggested command only works pasted if it is quoted.
NAME = "landing dir/*.csv"
V1 = OrdersV1(cursor=2, batches=2)


def run(cli: Cli, model: type[Any], items: list[int], name: str = NAME) -> Any:
    with use_store(cli.store()):
        return asyncio.run(run_trigger(trigger_for(model)(items, name), max_events=1, idle_timeout=60))


def stored(cli: Cli, name: str = NAME) -> tuple[int, dict[str, Any]]:
    record = cli.store().read(NAMESPACE, name, WM)
    assert record is not None
    return record.version, json.loads(record.value)


def suggested(message: str, before: str) -> str:
    """The command a message suggests right after ``before``, between backquotes."""
    found = re.search(re.escape(before) + r"`([^`]+)`", message)
    assert found, f"no command after {before!r} in: {message}"
    return found.group(1)


def test_the_set_command_an_invalid_state_suggests_works_pasted_into_a_shell(
    cli: Cli, tmp_path: Path
) -> None:
    cli.seed(NAMESPACE, NAME, V1)
    with pytest.raises(StateValidationError) as caught:
        run(cli, NoHook, [1, 2, 3])
    command = suggested(str(caught.value), "correct the value: ")
    assert command == "stateful set orders 'landing dir/*.csv' --drop-field legacy --field region=VALUE"

    # Pasted, with the placeholder filled in and the confirmation answered, in a directory where an
    # unquoted glob would match a file.
    (tmp_path / "landing dir").mkdir()
    (tmp_path / "landing dir" / "a.csv").touch()
    pasted = command.replace("region=VALUE", shlex.quote('region="eu"')) + " --yes"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    shell = subprocess.run(
        pasted,
        shell=True,
        cwd=tmp_path,
        env=cli.environment(PATH=path),
        capture_output=True,
        text=True,
        check=False,
    )

    assert shell.returncode == 0, shell.stderr
    version, doc = stored(cli)
    assert version == 2 and "legacy" not in doc and doc["region"] == "eu"
    assert run(cli, NoHook, [1, 2, 3]).payloads == [3]  # the trigger starts again from cursor 2


def test_the_rewind_a_newer_model_error_suggests_works_as_typed(cli: Cli, terminal: OpenTerminal) -> None:
    cli.seed(NAMESPACE, NAME, OrdersV1(cursor=1, batches=1), V1)  # versions 1, 2: model version 1
    run(cli, TwoSteps, [1, 2, 3])  # version 3: model version 3; then the release is rolled back

    async def start_rolled_back() -> None:
        with use_store(cli.store()):
            events = trigger_for(RenamedOnly)([1, 2, 3, 4], NAME).run()
            assert isinstance(events, AsyncGenerator)
            try:
                await events.__anext__()
            finally:
                await events.aclose()

    with pytest.raises(StateModelVersionError) as caught:
        asyncio.run(start_rolled_back())
    command = suggested(str(caught.value), "or older: ")
    assert command == "stateful rewind orders 'landing dir/*.csv' --to 2"

    typed = terminal(*shlex.split(command)[1:])
    typed.read_until("Write version 4 of")
    typed.type("y\n")

    assert typed.wait() == 0, typed.screen
    assert stored(cli) == (4, json.loads(V1.to_state_json()))
    assert run(cli, RenamedOnly, [1, 2, 3, 4]).payloads == [3]  # upgraded from version 1 again
    assert stored(cli)[1]["model_version"] == 2


def test_set_with_the_model_repairs_a_value_the_model_no_longer_loads(cli: Cli) -> None:
    cli.seed(NAMESPACE, NAME, V1)
    model = "--model", "tests.evolving:NoHook"

    incomplete = cli("set", NAMESPACE, NAME, "--drop-field", "legacy", *model, "--yes")
    repaired = cli(
        "set", NAMESPACE, NAME, "--drop-field", "legacy", "--field", 'region="eu"', *model, "--yes"
    )

    # The input was fine, the stored value was already invalid: status 1, not "bad input".
    assert incomplete.returncode == 1
    assert "does not validate as tests.evolving.NoHook" in incomplete.stderr and "region" in incomplete.stderr
    assert "The stored value does not validate either; nothing was written." in incomplete.stderr
    assert repaired.returncode == 0, repaired.stderr
    assert 'legacy     "unused" -> null' in repaired.stdout and 'region     null -> "eu"' in repaired.stdout
    version, doc = stored(cli)
    assert version == 2 and doc["region"] == "eu" and "legacy" not in doc


def test_set_with_the_model_writes_the_state_upgraded(cli: Cli) -> None:
    cli.seed(NAMESPACE, NAME, V1)

    result = cli("set", NAMESPACE, NAME, "--cursor", "5", "--model", "tests.evolving:TwoSteps", "--yes")

    assert result.returncode == 0, result.stderr
    assert "model_version null -> 3" in result.stdout
    assert stored(cli) == (
        2,
        {
            "batch_count": 2,
            "cursor": 5,
            "model_version": 3,
            "schema_version": 1,
            "seen": {},
            "timestamp": None,
            "zone": 7,
        },
    )


def test_set_field_without_a_model_keeps_the_model_version_and_notes_new_fields(cli: Cli) -> None:
    cli.seed(NAMESPACE, NAME, TwoSteps(cursor=2, batch_count=2))

    result = cli("set", NAMESPACE, NAME, "--field", "zone=9", "--field", 'regoin="eu"', "--yes")

    assert result.returncode == 0, result.stderr
    assert "note: new field(s) regoin: without --model MODULE:CLASS nothing checks them" in result.stdout
    version, doc = stored(cli)
    assert (version, doc["zone"], doc["regoin"], doc["model_version"]) == (2, 9, "eu", 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--field", "region=eu"], "--field region=eu: 'eu' is not JSON. Quote a string as JSON"),
        (["--field", "region"], "--field region: write it as NAME=JSON"),
        (["--field", "=1"], "--field: the field name is empty."),
        (
            ["--drop-field", "region"],
            "--drop-field region: no field 'region' is stored (its own fields: batches, legacy, zone).",
        ),
        (["--field", "cursor=3"], "--field cursor: cursor is not changed this way; use --cursor."),
        (["--drop-field", "seen"], "--drop-field seen: seen is not changed this way; use --clear-seen."),
        (["--drop-field", "model_version"], "pass --model MODULE:CLASS: the model's version is written."),
        (
            ["--field", "zone=7", "--model", "tests.evolving:OrdersV1"],
            "does not validate as tests.evolving.OrdersV1",
        ),
    ],
)
def test_set_field_refuses_bad_input_and_writes_nothing(cli: Cli, args: list[str], message: str) -> None:
    cli.seed(NAMESPACE, NAME, V1)

    result = cli("set", NAMESPACE, NAME, *args, "--yes")

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert stored(cli)[0] == 1


def test_reset_without_a_model_keeps_the_model_version(cli: Cli) -> None:
    cli.seed(NAMESPACE, NAME, TwoSteps(cursor=2, batch_count=2))

    result = cli("reset", NAMESPACE, NAME, "--yes")

    assert result.returncode == 0, result.stderr
    assert "the fields batch_count, zone are dropped" in result.stdout
    assert stored(cli) == (
        2,
        {"cursor": None, "model_version": 3, "schema_version": 1, "seen": {}, "timestamp": None},
    )
    TwoSteps.steps.clear()
    assert run(cli, TwoSteps, [1]).payloads == [1]
    assert TwoSteps.steps == []  # loaded as its own version: the defaults apply, no migration


def test_history_keeps_the_document_the_upgrade_replaced(cli: Cli) -> None:
    cli.seed(NAMESPACE, NAME, V1)
    run(cli, TwoSteps, [1, 2, 3])

    history = cli("history", NAMESPACE, NAME, "--json")
    old = cli("show", NAMESPACE, NAME, "--model", "tests.evolving:RenamedOnly")

    assert history.returncode == 0, history.stderr
    versions = {v["version"]: v["fields"] for v in history.json()["versions"]}
    assert versions[1] == {"batches": 2, "legacy": "unused", "zone": "7"}
    assert versions[2] == {"batch_count": 3, "model_version": 3, "zone": 7}
    assert "newer than this code's model version 2" in old.stdout + old.stderr
