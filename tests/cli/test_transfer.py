"""`stateful export` and `import`: SQLite to PostgreSQL, validated, idempotent, never backwards."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from stateful.types import Watermark
from tests._postgres import PostgresServer
from tests.cli.conftest import WM, Cli, OpenTerminal
from tests.triggers import OrdersState

T = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)


def wm(cursor: int, *keys: str) -> Watermark[int]:
    mark = Watermark[int](timestamp=T, cursor=cursor)
    for key in keys:
        mark.advance(key=key, timestamp=T)
    return mark


def contents(cli: Cli, url: str | None = None) -> dict[tuple[str, str, str], tuple[int, str]]:
    return {(r.namespace, r.name, r.key): (r.version, r.value) for r in cli.store(url).list()}


@pytest.fixture
def source(cli: Cli) -> Cli:
    cli.seed("files", "/data/a/*.csv", wm(1, "x@1"), wm(2, "x@1", "y@2"))
    cli.seed("files", "/data/b/*.csv", wm(7))
    cli.seed("orders", "public.orders", OrdersState(cursor=41870, batches=12))
    cli.store().write("files", "/data/a/*.csv", "aux", '{"note":"é 🚀"}', expected_version=None)
    return cli


def test_export_writes_one_json_line_per_watermark(source: Cli, tmp_path: Path) -> None:
    result = source("export")
    to_file = source("export", "--namespace", "orders", "--output", str(tmp_path / "orders.jsonl"))

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["namespace"], d["name"], d["key"]) for d in lines] == sorted(contents(source))
    aux, first = lines[0], lines[1]
    assert aux["key"] == "aux" and aux["value"] == {"note": "é 🚀"}
    assert first["kind"] == "stateful.watermark/v1" and first["version"] == 2
    assert first["value"] == json.loads(wm(2, "x@1", "y@2").to_state_json())
    assert first["updated_at"].endswith("Z") and first["updated_by"]
    assert "Exported 4 watermarks from SqlBackend(" in result.stderr
    assert to_file.returncode == 0 and to_file.stdout == ""
    [orders] = [json.loads(line) for line in (tmp_path / "orders.jsonl").read_text().splitlines()]
    assert orders["value"]["batches"] == 12


@pytest.mark.postgres
def test_sqlite_to_postgres_and_importing_twice_changes_nothing(
    source: Cli, postgres: PostgresServer, tmp_path: Path
) -> None:
    exported = tmp_path / "all.jsonl"
    assert source("export", "--output", str(exported)).returncode == 0
    target = source.store(postgres.url)  # the session's database: clear what this test writes
    mine = set(contents(source))
    for address in mine:
        target.delete(*address)

    first = source("import", str(exported), "--database-url", postgres.url, "--json")
    second = source("import", str(exported), "--database-url", postgres.url)

    try:
        assert first.returncode == 0, first.stderr
        assert [step["action"] for step in first.json()["plan"]] == ["create"] * 4
        moved = {k: v for k, v in contents(source, postgres.url).items() if k in mine}
        assert {k: value for k, (_, value) in moved.items()} == {
            k: v for k, (_, v) in contents(source).items()
        }
        assert all(version == 1 for version, _ in moved.values())
        assert second.returncode == 0, second.stderr
        assert "4 unchanged" in second.stdout and "Nothing to import." in second.stderr
        assert {k: v for k, v in contents(source, postgres.url).items() if k in mine} == moved
    finally:
        for address in mine:
            target.delete(*address)


def test_import_refuses_to_overwrite_newer_state_unless_forced(source: Cli, tmp_path: Path) -> None:
    exported = tmp_path / "all.jsonl"
    assert source("export", "--output", str(exported)).returncode == 0
    target = f"sqlite:///{tmp_path / 'target.db'}"
    assert source("import", str(exported), "--database-url", target).returncode == 0
    # The trigger moves on in the target; then someone imports the old export again.
    source.seed("files", "/data/b/*.csv", wm(8), url=target)
    source.seed("files", "/data/a/*.csv", wm(1), url=source.url)  # and the source changed too
    exported_again = tmp_path / "again.jsonl"
    assert source("export", "--output", str(exported_again)).returncode == 0
    before = contents(source, target)

    refused = source("import", str(exported_again), "--database-url", target, "--yes")

    assert refused.returncode == 3
    assert "refuse    files/'/data/b/*.csv' (target version 2 written" in refused.stdout
    assert "update    files/'/data/a/*.csv'" in refused.stdout
    assert "nothing was imported" in refused.stderr and "--force" in refused.stderr
    assert contents(source, target) == before

    forced = source("import", str(exported_again), "--database-url", target, "--yes", "--force", "--json")

    assert forced.returncode == 0, forced.stderr
    actions = {(s["name"], s["key"]): s["action"] for s in forced.json()["plan"]}
    assert actions[("/data/b/*.csv", WM)] == "overwrite" and actions[("/data/a/*.csv", WM)] == "update"
    after = contents(source, target)
    assert json.loads(after[("files", "/data/b/*.csv", WM)][1])["cursor"] == 7
    assert after[("files", "/data/b/*.csv", WM)][0] == 3


def test_import_into_existing_watermarks_asks_first(source: Cli, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'target.db'}"
    source.seed("files", "/data/b/*.csv", wm(3), url=target)  # written before the export: older
    source.seed("files", "/data/b/*.csv", wm(8))
    exported = tmp_path / "all.jsonl"
    assert source("export", "--output", str(exported)).returncode == 0
    before = contents(source, target)

    unconfirmed = source("import", str(exported), "--database-url", target)
    dry = source("import", str(exported), "--database-url", target, "--dry-run")

    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    assert dry.returncode == 0 and "Dry run: nothing was written." in dry.stderr
    assert "update    files/'/data/b/*.csv'" in dry.stdout
    assert contents(source, target) == before


def test_import_from_stdin(source: Cli, tmp_path: Path) -> None:
    exported = source("export", "--namespace", "orders").stdout
    target = f"sqlite:///{tmp_path / 'target.db'}"

    result = source("import", "-", "--database-url", target, stdin=exported)

    assert result.returncode == 0, result.stderr
    assert "import stdin into" in result.stdout
    assert json.loads(contents(source, target)[("orders", "public.orders", WM)][1])["batches"] == 12


def _line(**changes: Any) -> str:
    doc = {
        "kind": "stateful.watermark/v1",
        "namespace": "files",
        "name": "n",
        "key": WM,
        "version": 1,
        "updated_at": "2025-06-02T09:00:00Z",
        "updated_by": "x",
        "value": json.loads(wm(1).to_state_json()),
    }
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 2 is not valid JSON"),
        (json.dumps({"hello": "world"}), "line 2 is not a watermark written by `stateful export`"),
        (_line(name=""), "line 2: invalid name"),
        (
            _line(name="m", updated_at="2025-06-02T09:00:00"),
            "line 2: updated_at: '2025-06-02T09:00:00' has no time zone",
        ),
        (
            _line(name="m", value={"schema_version": 1, "timestamp": "2025-06-02T09:00:00"}),
            "does not validate",
        ),
        (_line(name="m", value={"schema_version": 1, "cursor": {"a": 1}}), "not ordered"),
        (_line(), "line 2 repeats files/n of line 1"),
    ],
)
def test_an_invalid_line_imports_nothing(cli: Cli, tmp_path: Path, bad: str, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(_line() + "\n" + bad + "\n")

    result = cli("import", str(path), "--yes")

    assert result.returncode == 2
    assert message in result.stderr and "Nothing was imported." in result.stderr
    assert contents(cli) == {}


def test_import_validates_against_a_model(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(_line(value=json.loads(Watermark[str](cursor="abc").to_state_json())) + "\n")

    typed = cli("import", str(path), "--model", "tests.triggers:OrdersState")
    untyped = cli("import", str(path))

    assert typed.returncode == 2 and "does not validate as tests.triggers.OrdersState" in typed.stderr
    assert untyped.returncode == 0, untyped.stderr


def test_export_of_an_unknown_namespace_or_a_corrupt_value(cli: Cli) -> None:
    cli.seed("files", "ok", wm(1))
    cli.store().write("files", "broken", WM, "{oops", expected_version=None)

    unknown = cli("export", "--namespace", "nope")
    partial = cli("export")

    assert unknown.returncode == 4 and "unknown namespace 'nope'" in unknown.stderr
    assert partial.returncode == 1
    assert [json.loads(line)["name"] for line in partial.stdout.splitlines()] == ["ok"]
    assert "files/broken (key 'watermark'): not JSON" in partial.stderr


def test_progress_shows_on_a_terminal_only(source: Cli, terminal: OpenTerminal, tmp_path: Path) -> None:
    for n in range(30):
        source.seed("bulk", f"w{n:02d}", wm(n))
    exported = tmp_path / "bulk.jsonl"

    term = terminal("export", "--output", str(exported))
    assert term.wait() == 0
    quiet = source("export", "--output", str(tmp_path / "quiet.jsonl"))

    assert "exporting" in term.screen  # the progress bar, drawn on the terminal
    assert len(exported.read_text().splitlines()) == 34
    assert quiet.returncode == 0 and "exporting" not in quiet.stderr
    assert (tmp_path / "quiet.jsonl").read_text() == exported.read_text()
    target = f"sqlite:///{tmp_path / 'target.db'}"
    piped = source("import", str(exported), "--database-url", target, "--json")
    assert piped.returncode == 0 and piped.stderr == ""
    term = terminal("import", str(exported), "--database-url", f"sqlite:///{tmp_path / 'other.db'}")
    assert term.wait() == 0
    assert "Imported 34 watermark(s)." in term.screen
