"""`stateful list`, `show` and `history`, and what every command shares (help, errors, stores)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from stateful.types import Watermark
from tests._postgres import PostgresServer
from tests.cli.conftest import REPO, WM, Cli
from tests.triggers import OrdersState

T = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
COMMANDS = ["run", "list", "show", "set", "reset", "delete", "history", "rewind", "export", "import"]


def wm(cursor: int | None = None, *keys: str, ts: datetime | None = T) -> Watermark[int]:
    mark = Watermark[int](timestamp=ts, cursor=cursor)
    for key in keys:
        mark.advance(key=key, timestamp=ts)
    return mark


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli: Cli, command: str) -> None:
    result = cli(command, "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: stateful {command} ")
    assert "--help" in result.stdout


def test_console_script_and_module_are_the_same_program(cli: Cli) -> None:
    # Both as a user runs them: the installed script and `python -m stateful`, each a process.
    script = shutil.which("stateful", path=str(Path(sys.executable).parent))
    assert script is not None, "the console script is not installed next to the interpreter"
    by_script = subprocess.run([script, "--help"], capture_output=True, text=True, check=False, cwd=REPO)
    by_module = cli.process("--help")

    assert by_script.returncode == by_module.returncode == 0
    assert by_script.stdout == by_module.stdout
    assert all(f"  {command} " in by_module.stdout for command in COMMANDS)


def test_the_option_naming_the_native_store_wins_over_a_database_url_in_the_environment(cli: Cli) -> None:
    """The command line applies @stateful's rule: [stateful] backend is read before the SQL URL."""
    cli.seed("files", "/data/landing/*.csv", wm(None, "a.csv@1"))

    refused = cli("list", AIRFLOW__STATEFUL__BACKEND="native")  # STATEFUL_DATABASE_URL is set too
    assert refused.returncode != 0 and refused.stdout == ""
    assert (
        "[stateful] backend is native" in refused.stderr
        and "--airflow-url URL --asset NAME" in refused.stderr
    )

    explicit = cli("list", "--database-url", cli.url, AIRFLOW__STATEFUL__BACKEND="native")  # a flag wins
    assert explicit.returncode == 0, explicit.stderr
    assert "/data/landing/*.csv" in explicit.stdout
    assert cli("list", AIRFLOW__STATEFUL__BACKEND="sql").returncode == 0


def test_list_shows_store_version_writer_and_summary(cli: Cli) -> None:
    cli.seed("files", "/data/landing/*.csv", wm(None, "a.csv@1"), wm(None, "a.csv@1", "b.csv@2"))
    cli.seed("orders", "public.orders", OrdersState(cursor=41870, batches=7))

    result = cli("list")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"store: SqlBackend({cli.url}) (chosen by: environment variable STATEFUL_DATABASE_URL)"
    assert lines[1].split() == [
        "NAMESPACE",
        "NAME",
        "VERSION",
        "UPDATED_AT",
        "UPDATED_BY",
        "TIMESTAMP",
        "CURSOR",
        "SEEN",
        "SIZE",
    ]
    files, orders = lines[2].split(), lines[3].split()
    assert files[:3] == ["files", "/data/landing/*.csv", "2"]
    assert files[5:8] == ["2025-06-02T09:00:00.000000Z", "null", "2"]
    assert orders[:3] == ["orders", "public.orders", "1"] and orders[6] == "41870"
    assert ":" in files[4]  # host:pid of the writer


def test_list_json_and_namespace_filter(cli: Cli) -> None:
    cli.seed("files", "x", wm(3))
    cli.seed("orders", "y", OrdersState(cursor=1, batches=2))

    result = cli("list", "--namespace", "orders", "--json")

    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert doc["store"] == f"SqlBackend({cli.url})"
    [entry] = doc["watermarks"]
    assert (entry["namespace"], entry["name"], entry["key"], entry["version"]) == ("orders", "y", WM, 1)
    assert entry["cursor"] == 1 and entry["fields"] == {"batches": 2} and entry["valid"] is True
    assert entry["updated_at"].endswith("Z") and entry["size_bytes"] > 0
    assert result.stderr == ""


def test_list_of_an_empty_store_says_so(cli: Cli) -> None:
    cli.store().open()  # the store exists (its tables too) and holds nothing
    result = cli("list")

    assert result.returncode == 0
    assert "No watermarks are stored there yet." in result.stdout


def test_unknown_namespace_is_an_error_naming_the_known_ones(cli: Cli) -> None:
    cli.seed("files", "x", wm(1))

    listed = cli("list", "--namespace", "flies")
    shown = cli("show", "flies", "x")
    as_json = cli("show", "flies", "x", "--json")

    assert listed.returncode == shown.returncode == as_json.returncode == 4
    assert listed.stdout == shown.stdout == as_json.stdout == ""
    assert "unknown namespace 'flies'" in listed.stderr and "'files'" in listed.stderr
    assert "unknown namespace 'flies'" in shown.stderr and "Did you mean 'files'?" in shown.stderr
    error = json.loads(as_json.stderr)
    assert error["exit_code"] == 4 and "unknown namespace 'flies'" in error["error"]


def test_unknown_name_suggests_close_names(cli: Cli) -> None:
    cli.seed("files", "/data/landing/*.csv", wm(1))

    result = cli("show", "files", "/data/landng/*.csv")

    assert result.returncode == 4
    assert "no watermark files/'/data/landng/*.csv'" in result.stderr
    assert "Did you mean '/data/landing/*.csv'?" in result.stderr


def test_show_gives_every_detail(cli: Cli) -> None:
    cli.seed("orders", "public.orders", OrdersState(cursor=5, batches=1), OrdersState(cursor=9, batches=2))

    result = cli("show", "orders", "public.orders")

    assert result.returncode == 0, result.stderr
    fields = dict(line.strip().split(None, 1) for line in result.stdout.splitlines()[1:])
    assert result.stdout.splitlines()[0] == "orders/public.orders"
    assert fields["version"] == "2" and fields["key"] == WM
    assert fields["cursor"] == "9" and fields["batches"] == "2" and fields["seen"] == "0 keys"
    assert fields["timestamp"] == "-"
    assert fields["valid"] == "yes, as any Watermark"
    assert fields["store"].startswith(f"SqlBackend({cli.url})")
    assert fields["updated_at"].endswith("Z") and fields["size"].endswith(" bytes")


def test_show_value_and_json(cli: Cli) -> None:
    mark = wm(7, "a@1")
    cli.seed("files", "x", mark)

    raw = cli("show", "files", "x", "--value")
    as_json = cli("show", "files", "x", "--json")

    assert raw.returncode == as_json.returncode == 0
    assert json.loads(raw.stdout) == json.loads(mark.to_state_json())
    doc = as_json.json()
    assert doc["value"] == json.loads(mark.to_state_json())
    assert (doc["version"], doc["cursor"], doc["seen_keys"], doc["timestamp"]) == (
        1,
        7,
        1,
        "2025-06-02T09:00:00.000000Z",
    )


def test_show_validates_against_a_model_and_shows_a_corrupt_value(cli: Cli) -> None:
    store = cli.store()
    store.write(
        "orders",
        "bad-type",
        WM,
        '{"schema_version":1,"cursor":"12","seen":{},"timestamp":null}',
        expected_version=None,
    )
    store.write("files", "corrupt", WM, "{not json", expected_version=None)

    typed = cli("show", "orders", "bad-type", "--model", "tests.triggers:Orders")
    untyped = cli("show", "orders", "bad-type")
    corrupt = cli("show", "files", "corrupt")
    listed = cli("list")

    # Everything is printed; a stored value that does not validate then exits 1 (the exit table).
    assert typed.returncode == corrupt.returncode == listed.returncode == 1
    assert untyped.returncode == 0
    assert "NO: does not validate as tests.triggers.OrdersState" in typed.stdout
    assert "stateful rewind" in typed.stderr  # what to do next
    assert "yes, as any Watermark" in untyped.stdout
    assert "NO: not JSON" in corrupt.stdout
    assert "INVALID" in listed.stdout and "1 of the 2 watermarks listed do not validate" in listed.stderr


def test_history_lists_versions_newest_first_with_who_and_what(cli: Cli) -> None:
    cli.seed("numbers", "counter", *(wm(n) for n in range(1, 6)))
    changed = cli("set", "numbers", "counter", "--cursor", "3", "--yes")
    assert changed.returncode == 0, changed.stderr

    result = cli("history", "numbers", "counter")
    limited = cli("history", "numbers", "counter", "--limit", "2", "--json")

    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:-1]]
    assert rows[0][:2] == ["*", "6"]  # the current version is marked
    assert [row[1] if row[0] == "*" else row[0] for row in rows] == ["6", "5", "4", "3", "2", "1"]
    assert "stateful set by " in result.stdout
    assert result.stdout.rstrip().endswith("(the store keeps the last 100 versions of each watermark)")
    versions = limited.json()["versions"]
    assert [(v["version"], v["cursor"], v["current"]) for v in versions] == [(6, 3, True), (5, 5, False)]
    assert versions[0]["updated_by"].startswith("stateful set by ")


def test_history_of_a_store_without_history_is_a_clear_error(cli: Cli) -> None:
    cli.seed("numbers", "counter", wm(1))

    result = cli("history", "numbers", "counter", STATEFUL_HISTORY_VERSIONS="0")
    missing = cli("history", "numbers", "nope")

    assert result.returncode == 1
    assert "keeps no history: history_versions is 0" in result.stderr
    assert missing.returncode == 4


def test_history_setting_comes_from_airflow_configuration(cli: Cli) -> None:
    cli.env.pop("STATEFUL_HISTORY_VERSIONS")
    for n in range(1, 5):
        assert (
            cli(
                "set",
                "numbers",
                "counter",
                "--cursor",
                str(n),
                "--create",
                "--yes",
                AIRFLOW__STATEFUL__HISTORY_VERSIONS="2",
            ).returncode
            == 0
        )

    result = cli("history", "numbers", "counter", "--json", AIRFLOW__STATEFUL__HISTORY_VERSIONS="2")

    assert [v["version"] for v in result.json()["versions"]] == [4, 3]


def test_default_store_follows_the_decorators_rules(cli: Cli, tmp_path: Path) -> None:
    # No STATEFUL_DATABASE_URL: [stateful] database_url, then $AIRFLOW_HOME/stateful.db.
    configured = f"sqlite:///{tmp_path / 'configured.db'}"
    cli.seed("a", "from-config", wm(1), url=configured)
    cli.env["STATEFUL_DATABASE_URL"] = ""

    by_config = cli("list", AIRFLOW__STATEFUL__DATABASE_URL=configured)
    by_home = cli("list")

    assert by_config.returncode == 0, by_config.stderr
    assert (
        "Airflow configuration [stateful] database_url" in by_config.stdout
        and "from-config" in by_config.stdout
    )
    # The default file does not exist: reading it creates nothing (docs/cli.md).
    assert by_home.returncode == 4
    assert f"chosen by: default SQLite file {cli.home / 'stateful.db'}" in by_home.stderr


@pytest.mark.postgres
def test_postgres_store_with_its_password_masked(cli: Cli, postgres: PostgresServer) -> None:
    from sqlalchemy.engine import make_url

    password = make_url(postgres.url).password
    assert password
    cli.seed("pg", "watermark-1", wm(11), url=postgres.url)

    listed = cli("list", "--namespace", "pg", "--database-url", postgres.url)
    shown = cli("show", "pg", "watermark-1", "--json", STATEFUL_DATABASE_URL=postgres.url)

    assert listed.returncode == shown.returncode == 0, listed.stderr + shown.stderr
    assert "pg " in listed.stdout and "watermark-1" in listed.stdout
    assert ":***@" in listed.stdout and ":***@" in shown.json()["store"]
    for output in (listed.stdout, listed.stderr, shown.stdout, shown.stderr):
        assert password not in output


def test_unreachable_database_is_an_error_without_the_password(cli: Cli) -> None:
    secret = "hunter2-Sup3rSecret"
    url = f"postgresql+psycopg://airflow:{secret}@127.0.0.1:1/airflow"

    results = [cli("list", "--database-url", url), cli("show", "a", "b", "--database-url", url, "--json")]

    for result in results:
        assert result.returncode == 1
        assert result.stdout == ""
        assert "postgresql+psycopg://airflow:***@127.0.0.1:1/airflow" in result.stderr
        # Airflow 3.0 (SQLAlchemy 1.4) refuses the psycopg 3 URL before connecting, as clearly.
        assert any(
            text in result.stderr
            for text in (
                "failed to open the store",
                "failed to list",
                "failed to read",
                "no dialect for psycopg",
            )
        )
        assert secret not in result.stderr
        assert "Traceback" not in result.stderr
