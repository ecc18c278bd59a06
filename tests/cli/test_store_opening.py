"""Opening a store from the command line: no file or table made by reading, a new store said aloud.

docs/cli.md, "A store that does not exist": the read-only commands never create anything (a
missing SQLite file or table is "no store at ...", exit 4); the edits never create a SQLite
file; ``run``, ``poke`` and ``import`` create a missing store and say so first. Every command
names the store and the rule that chose it.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from stateful.types import Watermark
from tests._postgres import PostgresServer
from tests.cli.conftest import Cli

NUMBERS = "tests.triggers:Numbers"
READ_ONLY = [
    ("show", "numbers", "counter"),
    ("list",),
    ("history", "numbers", "counter"),
    ("export",),
]
NOTE = "Note: created a new, empty store at"


def _numbers(total: int) -> str:
    return json.dumps({"total": total})


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda args: args[0])
def test_a_read_only_command_on_a_mistyped_path_creates_nothing(
    cli: Cli, tmp_path: Path, args: tuple[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'typo' / 'stateful.db'}"

    text = cli(*args, "--database-url", url)

    assert (text.returncode, text.stdout) == (4, "")
    assert text.stderr.startswith(f"Error: no store at {url}: the SQLite file ")
    assert "(nothing was created)" in text.stderr and "chosen by: --database-url" in text.stderr
    if args[0] != "export":  # export writes JSON lines already; it has no --json
        as_json = cli(*args, "--database-url", url, "--json")
        assert (as_json.returncode, as_json.stdout) == (4, "")
        error = json.loads(as_json.stderr)
        assert error["exit_code"] == 4 and error["error"].startswith(f"no store at {url}")
    assert not (tmp_path / "typo").exists()


def test_show_on_the_default_store_that_does_not_exist_says_which_rule_chose_it(cli: Cli) -> None:
    result = cli("show", "numbers", "counter", STATEFUL_DATABASE_URL="")

    path = cli.home / "stateful.db"
    assert result.returncode == 4
    assert f"no store at sqlite:///{path}" in result.stderr
    assert f"chosen by: default SQLite file {path}" in result.stderr
    assert "If you expected state there, check --database-url" in result.stderr
    assert not path.exists()


def test_a_sqlite_file_without_the_tables_is_no_store_and_stays_as_it_was(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "other-app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    before = path.read_bytes()

    results = [cli(*args, "--database-url", f"sqlite:///{path}") for args in READ_ONLY]

    assert [r.returncode for r in results] == [4] * len(READ_ONLY)
    assert all("has no table 'stateful_process_state'" in r.stderr for r in results)
    assert path.read_bytes() == before


@pytest.fixture
def empty_database(postgres: PostgresServer) -> Iterator[str]:
    """A database of its own on the PostgreSQL server, without any table."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.engine.make_url(postgres.url).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.mark.postgres
def test_a_postgres_database_without_the_tables_is_no_store_and_gets_none(
    cli: Cli, empty_database: str
) -> None:
    results = [cli(*args, "--database-url", empty_database) for args in READ_ONLY]

    assert [r.returncode for r in results] == [4] * len(READ_ONLY)
    for result in results:
        assert "no store at postgresql" in result.stderr and ":***@" in result.stderr
        assert "has no table 'stateful_process_state'" in result.stderr
    engine = sa.create_engine(empty_database)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()


def test_an_edit_never_creates_a_sqlite_file_but_set_create_starts_a_store(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "typo" / "stateful.db"
    url = f"sqlite:///{path}"

    edits = [
        cli("set", "numbers", "counter", "--cursor", "3", "--yes", "--database-url", url),
        cli("reset", "numbers", "counter", "--yes", "--database-url", url),
        cli("rewind", "numbers", "counter", "--to", "1", "--yes", "--database-url", url),
        cli("delete", "numbers", "counter", "--yes", "--database-url", url),
    ]
    assert [r.returncode for r in edits] == [4, 4, 4, 4]
    assert all(f"no store at {url}" in r.stderr for r in edits)
    assert not path.parent.exists()

    created = cli("set", "numbers", "counter", "--cursor", "3", "--create", "--yes", "--database-url", url)
    assert created.returncode == 0, created.stderr
    assert created.stderr.startswith(f"{NOTE} SqlBackend({url}) (chosen by: --database-url)")
    assert path.is_file()


def test_run_on_a_new_store_says_it_created_it_and_only_then(cli: Cli) -> None:
    first = cli("run", NUMBERS, "--kwargs", _numbers(2), "--max-events", "2")
    second = cli("run", NUMBERS, "--kwargs", _numbers(3), "--max-events", "1")

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stderr.startswith(
        f"{NOTE} SqlBackend({cli.url}) (chosen by: environment variable STATEFUL_DATABASE_URL): "
        "nothing was stored there before, so a watermark starts empty."
    )
    assert NOTE not in second.stderr
    assert "loaded   numbers/counter version 2" in second.stdout


def test_run_on_a_mistyped_path_creates_it_and_says_so(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "stateufl" / "stateful.db"
    cli.seed("numbers", "counter", Watermark[int](cursor=1))  # the state is in the right store
    mistyped = ("--database-url", f"sqlite:///{path}")

    result = cli("run", NUMBERS, "--kwargs", _numbers(2), "--max-events", "1", *mistyped)
    as_json = cli("run", NUMBERS, "--kwargs", _numbers(2), "--max-events", "1", "--json", *mistyped)

    assert result.returncode == as_json.returncode == 0, result.stderr + as_json.stderr
    assert result.stderr.startswith(f"{NOTE} SqlBackend(sqlite:///{path}) (chosen by: --database-url)")
    assert "check --database-url and STATEFUL_DATABASE_URL" in result.stderr
    assert "loaded   numbers/counter: nothing stored yet, starting empty" in result.stdout
    assert path.is_file()
    # With --json stdout is JSON lines and stderr only errors: the note is the text mode's.
    assert as_json.stderr == "" and as_json.lines()[0]["type"] == "start"


def test_every_command_names_its_store_and_the_rule_that_chose_it(cli: Cli, tmp_path: Path) -> None:
    cli.seed("numbers", "counter", Watermark[int](cursor=1), Watermark[int](cursor=2))
    exported = tmp_path / "out.jsonl"
    named = f"store: SqlBackend({cli.url}) (chosen by: environment variable STATEFUL_DATABASE_URL)"

    on_stderr = {
        "history": cli("history", "numbers", "counter"),
        "set": cli("set", "numbers", "counter", "--cursor", "5", "--yes"),
        "rewind": cli("rewind", "numbers", "counter", "--to", "2", "--yes"),
        "reset": cli("reset", "numbers", "counter", "--yes"),
        "export": cli("export", "--output", str(exported)),
        "delete": cli("delete", "numbers", "counter", "--yes"),
        "import": cli("import", str(exported), "--yes"),
    }
    on_stdout = {
        "list": cli("list"),
        "show": cli("show", "numbers", "counter"),
        "run": cli("run", NUMBERS, "--kwargs", _numbers(1), "--max-events", "1"),
    }

    for command, result in on_stderr.items():
        assert result.returncode == 0, (command, result.stderr)
        assert result.stderr.splitlines()[0] == named, command
    for command, result in on_stdout.items():
        assert result.returncode == 0, (command, result.stderr)
        assert "(chosen by: environment variable STATEFUL_DATABASE_URL)" in result.stdout, command
        assert "store: " not in result.stderr, command
    as_json = cli("history", "numbers", "counter", "--json")
    assert as_json.returncode == 0 and as_json.stderr == ""


def test_a_store_that_holds_nothing_at_all_says_so_and_which_rule_chose_it(cli: Cli) -> None:
    cli.store().open()  # made, as by an earlier `stateful run` against the wrong path

    shown = cli("show", "numbers", "counter")
    listed = cli("list", "--namespace", "numbers")

    assert shown.returncode == listed.returncode == 4
    for result in (shown, listed):
        assert f"SqlBackend({cli.url}) holds no watermark at all" in result.stderr
        assert "(chosen by: environment variable STATEFUL_DATABASE_URL)" in result.stderr
        assert "If you expected state there, check --database-url" in result.stderr
