"""`stateful poke`: one poke() of a @stateful sensor outside Airflow; saved only with --commit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from stateful.types import Watermark
from tests.cli.conftest import WM, Cli

SENSOR = "examples.sqlite_rows_sensor:NewRowsSensor"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, payload TEXT)")
        connection.executemany("INSERT INTO orders (payload) VALUES (?)", [("a",), ("b",)])
    return database


def kwargs(shop: Path) -> str:
    return json.dumps({"task_id": "orders", "database": str(shop), "table": "orders"})


def cursor(cli: Cli, url: str | None = None) -> tuple[int, int | None] | None:
    record = cli.store(url).read("sqlite", "orders", WM)
    if record is None:
        return None
    return record.version, Watermark[int].from_state_json(record.value).cursor


def test_prints_the_result_and_what_it_would_save_and_saves_nothing(cli: Cli, shop: Path) -> None:
    result = cli("poke", SENSOR, "--kwargs", kwargs(shop))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"poke     {SENSOR} against SqlBackend({cli.url}) (chosen by: environment variable "
        "STATEFUL_DATABASE_URL) -- nothing is saved without --commit",
        "loaded   sqlite/orders: nothing stored yet, starting empty",
        "result   done: [1, 2]",
        "would save version 1: timestamp=null, cursor=2, seen=0 keys (dry run: not written)",
    ]
    assert cursor(cli) is None
    assert cli("poke", SENSOR, "--kwargs", kwargs(shop)).stdout.splitlines()[2] == "result   done: [1, 2]"


def test_commit_saves_and_the_next_poke_starts_from_it(cli: Cli, shop: Path) -> None:
    committed = cli("poke", SENSOR, "--kwargs", kwargs(shop), "--commit")
    again = cli("poke", SENSOR, "--kwargs", kwargs(shop), "--json")

    assert committed.returncode == again.returncode == 0, committed.stderr + again.stderr
    assert "saved    version 1: timestamp=null, cursor=2, seen=0 keys" in committed.stdout.splitlines()
    assert cursor(cli) == (1, 2)
    lines = again.lines()
    assert [line["type"] for line in lines] == ["start", "loaded", "result", "unsaved"]
    assert (lines[1]["version"], lines[1]["cursor"]) == (1, 2)
    assert lines[2] == {"type": "result", "done": False, "xcom_value": None}
    assert lines[3] == {"type": "unsaved", "reason": "poke() is not done"}


def test_a_preview_applies_compare_and_set(cli: Cli, shop: Path) -> None:
    cli.seed("sqlite", "orders", Watermark[int](cursor=1))
    lines = cli("poke", SENSOR, "--kwargs", kwargs(shop), "--json").lines()
    assert [(line["type"], line.get("version"), line.get("dry_run")) for line in lines[1:]] == [
        ("loaded", 1, None),
        ("result", None, None),
        ("saved", 2, True),
    ]
    assert lines[2]["xcom_value"] == [2]
    assert cursor(cli) == (1, 1)


def test_database_url_chooses_the_store(cli: Cli, shop: Path, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = cli("poke", SENSOR, "--kwargs", kwargs(shop), "--commit", "--database-url", other)
    assert result.returncode == 0, result.stderr
    assert "(chosen by: --database-url)" in result.stdout
    assert cursor(cli, other) == (1, 2) and cursor(cli) is None


def test_a_failing_poke_saves_nothing(cli: Cli, tmp_path: Path) -> None:
    result = cli("poke", SENSOR, "--kwargs", kwargs(tmp_path / "missing.db"), "--commit")
    assert result.returncode == 1
    assert "unable to open database file" in result.stderr
    assert cursor(cli) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.triggers:Numbers"], "poke() is not decorated with @stateful"),
        ([SENSOR, "--kwargs", "{}"], f"cannot create {SENSOR} from --kwargs {{}}"),
        ([SENSOR, "--context", "[1]"], "--context"),
    ],
)
def test_bad_input_is_a_clear_error(cli: Cli, args: list[str], message: str) -> None:
    result = cli("poke", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
