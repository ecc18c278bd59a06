"""Who made an edit, and why: `--reason` on set, reset, rewind and import, shown by show and history."""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path

import pytest

from stateful.cli._edit import MAX_REASON_CHARS
from stateful.types import Watermark
from tests.cli.conftest import WM, Cli, Result

NS, NAME = "files", "/data/landing/*.csv"
OPERATOR = f"{getpass.getuser()}@{socket.gethostname()}"


def _ok(result: Result) -> None:
    assert result.returncode == 0, result.stderr


def _seed(cli: Cli, *cursors: int) -> int:
    return cli.seed(NS, NAME, *(Watermark[int](cursor=c) for c in cursors))


def test_each_edit_keeps_who_and_why_and_history_shows_both(cli: Cli) -> None:
    _seed(cli, 1, 2)

    _ok(cli("set", NS, NAME, "--cursor", "40", "--reason", " skip the broken batch, INC-42 ", "--yes"))
    _ok(cli("reset", NS, NAME, "--reason", "reprocess everything", "--yes"))
    rewind = cli("rewind", NS, NAME, "--to", "3", "--reason", "the reset was a mistake", "--yes")

    assert rewind.returncode == 0, rewind.stderr
    # The rewind names the reason of the version it restores, and its own.
    assert (
        "by stateful set by " in rewind.stdout and "(reason: skip the broken batch, INC-42)" in rewind.stdout
    )
    assert "reason: the reset was a mistake" in rewind.stdout
    records = cli.store().history(NS, NAME, WM)
    assert [(r.version, r.updated_by, r.reason) for r in records] == [
        (5, f"stateful rewind to version 3 by {OPERATOR}", "the reset was a mistake"),
        (4, f"stateful reset by {OPERATOR}", "reprocess everything"),
        (3, f"stateful set by {OPERATOR}", "skip the broken batch, INC-42"),  # stripped
        (2, records[3].updated_by, None),  # the trigger's (here: the test's) save gives none
        (1, records[4].updated_by, None),
    ]

    text = cli("history", NS, NAME)
    assert text.returncode == 0, text.stderr
    header, *rows = text.stdout.splitlines()[1:6]
    assert header.split()[-1] == "REASON"
    assert rows[0].startswith("* 5") and rows[0].endswith("the reset was a mistake")
    assert rows[3].endswith(" -")  # no reason
    listed = cli("history", NS, NAME, "--json").json()["versions"]
    assert [(v["version"], v["reason"]) for v in listed] == [(r.version, r.reason) for r in records]


def test_show_gives_the_reason_of_the_current_version(cli: Cli) -> None:
    _seed(cli, 1)
    _ok(cli("set", NS, NAME, "--cursor", "7", "--reason", "backfill from 7", "--yes"))

    text = cli("show", NS, NAME)
    assert text.returncode == 0, text.stderr
    assert f"updated_by  stateful set by {OPERATOR}" in text.stdout
    assert "reason      backfill from 7" in text.stdout
    assert cli("show", NS, NAME, "--json").json()["reason"] == "backfill from 7"
    assert cli("list", "--json").json()["watermarks"][0]["reason"] == "backfill from 7"


def test_the_json_result_of_an_edit_names_who_and_why(cli: Cli) -> None:
    _seed(cli, 1)

    result = cli("set", NS, NAME, "--cursor", "2", "--reason", "why not", "--yes", "--json")

    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert (doc["version"], doc["updated_by"], doc["reason"]) == (2, f"stateful set by {OPERATOR}", "why not")


def test_an_edit_without_a_reason_is_allowed(cli: Cli) -> None:
    _seed(cli, 1)

    _ok(cli("set", NS, NAME, "--cursor", "2", "--yes"))

    record = cli.store().read(NS, NAME, WM)
    assert record is not None and (record.updated_by, record.reason) == (f"stateful set by {OPERATOR}", None)
    assert "reason      -" in cli("show", NS, NAME).stdout


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("   ", "--reason is empty"),
        ("line one\nline two", "--reason must be one line of text"),
        ("x" * (MAX_REASON_CHARS + 1), f"at most {MAX_REASON_CHARS} are kept"),
    ],
)
@pytest.mark.parametrize("command", [["set", "--cursor", "2"], ["reset"], ["rewind", "--to", "1"]])
def test_an_unusable_reason_is_refused_before_anything_is_written(
    cli: Cli, command: list[str], reason: str, message: str
) -> None:
    _seed(cli, 1, 2)

    result = cli(command[0], NS, NAME, *command[1:], "--reason", reason, "--yes")

    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    record = cli.store().read(NS, NAME, WM)
    assert record is not None and record.version == 2


def test_import_keeps_its_reason_with_every_version_it_writes(cli: Cli, tmp_path: Path) -> None:
    _seed(cli, 1)
    exported = cli("export")
    assert exported.returncode == 0, exported.stderr
    line = json.loads(exported.stdout.splitlines()[0])
    line["value"]["cursor"] = 99
    dump = tmp_path / "edited.jsonl"
    dump.write_text(json.dumps(line) + "\n", encoding="utf-8")

    result = cli("import", str(dump), "--reason", "restore from the DR copy", "--yes")

    assert result.returncode == 0, result.stderr
    record = cli.store().read(NS, NAME, WM)
    assert record is not None
    assert (record.version, record.updated_by, record.reason) == (
        2,
        f"stateful import by {OPERATOR}",
        "restore from the DR copy",
    )
