"""The Airflow-native store through Airflow's REST API: a real `airflow api-server` process.

The watermarks are written and read on the Airflow side by the native store itself
(``NativeBackend`` over the accessors the triggerer injects, see tests/_airflow.py), and on the
operator's side by the command line through ``/api/v2/assets/{asset_id}/state-store``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stateful._address import display_address
from stateful.backends import NativeBackend
from stateful.backends.native import NativeDocument, native_key
from stateful.backends.native.parts import part_key
from stateful.types import Watermark
from tests._airflow import AirflowStateStore
from tests._api_server import api_server_process
from tests.backends.test_native_parts import named, s3_state
from tests.cli.conftest import WM, Cli, OpenTerminal

# One group: under pytest-xdist (--dist loadgroup) these tests share one worker and its one
# api-server (the session fixture below) instead of each worker starting its own.
pytestmark = [
    pytest.mark.airflow_db,
    pytest.mark.airflow_min("3.3", reason="AIP-103 state-store REST API"),
    pytest.mark.xdist_group("cli-api-server"),
]


@pytest.fixture(scope="session")
def api_server(airflow_metadata_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``airflow api-server`` on the session's metadata database; its base URL."""
    log = tmp_path_factory.mktemp("api-server") / "api-server.log"
    # No token needed: every user is an admin.
    with api_server_process(
        airflow_metadata_db, log, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True"
    ) as url:
        yield url


# A name that starts with "/" and holds "*" and a space: the key has "//" and must be quoted.
NAME = "/data/in bound/*.csv"


def wm(cursor: int) -> str:
    return Watermark[int](cursor=cursor).to_state_json()


async def test_operators_see_and_fix_what_the_trigger_wrote(
    airflow_state_store: AirflowStateStore, api_server: str, cli: Cli
) -> None:
    asset = airflow_state_store.new_asset("cli")
    # The api-server is shared by the session: other tests leave (on purpose) values that do not
    # validate in other namespaces, and a listing that meets one exits 1. A namespace of its own.
    ns = asset.name
    trigger_store = NativeBackend(airflow_state_store.accessors(asset))  # as a watcher has it
    version = await trigger_store.awrite(ns, "landing/in/", WM, wm(41), expected_version=None)
    version = await trigger_store.awrite(ns, "landing/in/", WM, wm(99), expected_version=version)
    where = ["--airflow-url", api_server, "--asset", asset.name]

    shown = cli("show", ns, "landing/in/", *where, "--json")
    listed = cli("list", "--airflow-url", api_server, "--namespace", ns, "--json")
    rewound = cli("set", ns, "landing/in/", "--cursor", "41", *where, "--yes")
    history = cli("history", ns, "landing/in/", *where)

    assert shown.returncode == 0, shown.stderr
    doc = shown.json()
    assert (doc["version"], doc["cursor"]) == (2, 99)
    assert doc["store"] == f"NativeBackend(asset {asset.name!r}) via {api_server}"
    assert listed.returncode == 0, listed.stderr
    mine = [w for w in listed.json()["watermarks"] if w["asset"] == asset.name]
    assert [(w["name"], w["version"]) for w in mine] == [("landing/in/", 2)]
    assert rewound.returncode == 0, rewound.stderr
    assert "Wrote version 3." in rewound.stdout
    record = await trigger_store.aread(ns, "landing/in/", WM)  # the trigger's next load
    assert record is not None and (record.version, Watermark[int].from_state_json(record.value).cursor) == (
        3,
        41,
    )
    stored = NativeDocument.from_json_value(airflow_state_store.stored(asset, native_key(ns, "landing/in/")))
    assert stored.updated_by is not None and stored.updated_by.startswith("stateful set by ")
    assert history.returncode == 0, history.stderr
    rows = [line.split() for line in history.stdout.splitlines()[2:-1]]
    assert [row[1] if row[0] == "*" else row[0] for row in rows] == ["3", "2", "1"]


async def test_history_and_rewind_through_the_rest_api(
    airflow_state_store: AirflowStateStore, api_server: str, cli: Cli
) -> None:
    asset = airflow_state_store.new_asset("rewind")
    trigger_store = NativeBackend(airflow_state_store.accessors(asset))  # keeps 10 versions (default)
    version = None
    for cursor in (41, 99, 7):
        version = await trigger_store.awrite("files", NAME, WM, wm(cursor), expected_version=version)
    where = ["--airflow-url", api_server, "--asset", asset.name]

    history = cli("history", "files", NAME, *where)
    as_json = cli("history", "files", NAME, *where, "--json", "--limit", "2")
    preview = cli("rewind", "files", NAME, "--to", "1", *where, "--dry-run")
    unchanged = await trigger_store.aread("files", NAME, WM)
    done = cli("rewind", "files", NAME, "--to", "1", *where, "--yes")

    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert (
        lines[0]
        == f"History of {display_address('files', NAME)} in NativeBackend(asset {asset.name!r}) "
        + f"via {api_server}, newest first (* = current):"
    )
    rows = [line.split() for line in lines[2:-1]]
    assert [row[1] if row[0] == "*" else row[0] for row in rows] == ["3", "2", "1"]
    assert lines[-1].startswith("(its writer keeps the last 10 versions of this watermark in the asset's")
    assert as_json.returncode == 0, as_json.stderr
    doc = as_json.json()
    assert [(v["version"], v["cursor"], v["current"]) for v in doc["versions"]] == [
        (3, 7, True),
        (2, 99, False),
    ]
    assert doc["history_versions"] == 10
    assert preview.returncode == 0, preview.stderr
    assert "cursor     7 -> 41" in preview.stdout and "restores version 1, written " in preview.stdout
    assert unchanged is not None and unchanged.version == 3  # a dry run writes nothing
    assert done.returncode == 0, done.stderr
    assert "Wrote version 4." in done.stdout
    # The trigger's next load continues from the rewound state; the history keeps what it replaced.
    record = await trigger_store.aread("files", NAME, WM)
    assert record is not None and (record.version, record.value) == (4, wm(41))
    kept = trigger_store.history("files", NAME, WM)
    assert [(r.version, r.value) for r in kept] == [(4, wm(41)), (3, wm(7)), (2, wm(99)), (1, wm(41))]
    assert kept[0].updated_by is not None and kept[0].updated_by.startswith(
        "stateful rewind to version 1 by "
    )


async def test_a_save_by_the_trigger_while_a_rewind_is_confirmed_is_a_conflict(
    airflow_state_store: AirflowStateStore, api_server: str, cli: Cli, terminal: OpenTerminal
) -> None:
    asset = airflow_state_store.new_asset("rewind-conflict")
    trigger_store = NativeBackend(airflow_state_store.accessors(asset))
    await trigger_store.awrite("files", NAME, WM, wm(1), expected_version=None)
    await trigger_store.awrite("files", NAME, WM, wm(2), expected_version=1)
    term = terminal("rewind", "files", NAME, "--to", "1", "--airflow-url", api_server, "--asset", asset.name)
    term.read_until("Write version 3")
    await trigger_store.awrite("files", NAME, WM, wm(3), expected_version=2)
    term.type("y\n")

    assert term.wait() == 3
    assert "it was version 2 when read, it is version 3 now" in term.screen
    record = await trigger_store.aread("files", NAME, WM)
    assert record is not None and (record.version, record.value) == (3, wm(3))


async def test_an_operators_edit_keeps_the_history_the_trigger_keeps(
    airflow_state_store: AirflowStateStore, api_server: str, cli: Cli
) -> None:
    asset = airflow_state_store.new_asset("keep")
    # The trigger's store splits at 4 KB and keeps 3 versions; the CLI has its own default (10).
    trigger_store = NativeBackend(
        airflow_state_store.accessors(asset), max_value_bytes=4000, history_versions=3
    )
    values = [s3_state(range(20 * n, 300 + 20 * n)) for n in range(4)]
    version = None
    for value in values:
        version = await trigger_store.awrite("s3", "landing/", WM, value, expected_version=version)
    where = ["--airflow-url", api_server, "--asset", asset.name]

    done = cli("rewind", "s3", "landing/", "--to", "3", *where, "--yes")
    history = cli("history", "s3", "landing/", *where, "--json")

    assert done.returncode == 0, done.stderr
    assert history.returncode == 0, history.stderr
    assert [v["version"] for v in history.json()["versions"]] == [5, 4, 3]  # still 3, not 10
    assert history.json()["history_versions"] == 3
    kept = trigger_store.history("s3", "landing/", WM)
    assert [(r.version, r.value) for r in kept] == [(5, values[2]), (4, values[3]), (3, values[2])]
    # No key is left that no kept version names (the fallen entries' parts went too).
    doc = airflow_state_store.stored(asset, native_key("s3", "landing/"))
    assert doc["history"] == {"keep": 3, "versions": [4, 3]}
    assert set(airflow_state_store.keys(asset)) == named(airflow_state_store, asset)


async def test_a_save_by_the_trigger_while_deciding_is_a_conflict(
    airflow_state_store: AirflowStateStore, api_server: str, cli: Cli, terminal: OpenTerminal
) -> None:
    asset = airflow_state_store.new_asset("conflict")
    trigger_store = NativeBackend(airflow_state_store.accessors(asset))
    await trigger_store.awrite("files", NAME, WM, wm(1), expected_version=None)
    term = terminal("set", "files", NAME, "--cursor", "0", "--airflow-url", api_server, "--asset", asset.name)
    term.read_until("Write version 2")
    await trigger_store.awrite("files", NAME, WM, wm(2), expected_version=1)
    term.type("y\n")

    assert term.wait() == 3
    assert "it was version 1 when read, it is version 2 now" in term.screen
    record = await trigger_store.aread("files", NAME, WM)
    assert record is not None and record.value == wm(2)


async def test_sql_to_native_and_back_through_export_and_import(
    airflow_state_store: AirflowStateStore, api_server: str, cli: Cli, tmp_path: Path
) -> None:
    asset = airflow_state_store.new_asset("moved")
    cli.seed("files", "a", Watermark[int](cursor=5))
    cli.seed("files", "b", Watermark[int](cursor=6), Watermark[int](cursor=7))
    exported = tmp_path / "sql.jsonl"
    assert cli("export", "--output", str(exported)).returncode == 0

    unasked = cli("import", str(exported), "--airflow-url", api_server)
    moved = cli("import", str(exported), "--airflow-url", api_server, "--asset", asset.name, "--json")
    again = cli("import", str(exported), "--airflow-url", api_server, "--asset", asset.name, "--json")
    back = cli("export", "--airflow-url", api_server, "--asset", asset.name)

    assert unasked.returncode == 2 and "give --asset NAME" in unasked.stderr
    assert moved.returncode == 0, moved.stderr
    assert [s["action"] for s in moved.json()["plan"]] == ["create", "create"]
    assert [s["action"] for s in again.json()["plan"]] == ["unchanged", "unchanged"]
    trigger_store = NativeBackend(airflow_state_store.accessors(asset))
    record = await trigger_store.aread("files", "b", WM)
    assert record is not None and record.value == Watermark[int](cursor=7).to_state_json()
    lines = [json.loads(line) for line in back.stdout.splitlines()]
    assert [(d["asset"], d["name"], d["value"]["cursor"]) for d in lines] == [
        (asset.name, "a", 5),
        (asset.name, "b", 7),
    ]
    # Native to native, each line into the asset it came from.
    other = tmp_path / "native.jsonl"
    other.write_text(back.stdout)
    assert (
        cli("delete", "files", "a", "--airflow-url", api_server, "--asset", asset.name, "--yes").returncode
        == 0
    )
    restored = cli("import", str(other), "--airflow-url", api_server, "--json")
    assert restored.returncode == 0, restored.stderr
    assert [s["action"] for s in restored.json()["plan"]] == ["create", "unchanged"]


async def test_run_a_trigger_against_the_native_store(
    airflow_state_store: AirflowStateStore, api_server: str, cli: Cli
) -> None:
    asset = airflow_state_store.new_asset("run")

    result = cli(
        "run",
        "tests.triggers:Numbers",
        "--kwargs",
        '{"total": 2}',
        "--airflow-url",
        api_server,
        "--asset",
        asset.name,
    )

    assert result.returncode == 0, result.stderr
    assert "saved    version 2: timestamp=null, cursor=2" in result.stdout
    record = await NativeBackend(airflow_state_store.accessors(asset)).aread("numbers", "counter", WM)
    assert record is not None and record.version == 2


async def test_a_watermark_kept_in_parts_is_shown_whole_and_deleted_whole(
    airflow_state_store: AirflowStateStore, api_server: str, cli: Cli
) -> None:
    asset = airflow_state_store.new_asset("large")
    # The trigger's store splits at 4 KB here (Airflow's limit is 64 KB): 300 keys, 8 full parts.
    trigger_store = NativeBackend(airflow_state_store.accessors(asset), max_value_bytes=4000)
    value = s3_state(range(300))
    assert await trigger_store.awrite("s3", "landing/", WM, value, expected_version=None) == 1
    assert len(airflow_state_store.keys(asset)) == 9
    where = ["--airflow-url", api_server, "--asset", asset.name]

    shown = cli("show", "s3", "landing/", *where, "--json")
    exported = cli("export", *where)
    changed = cli("set", "s3", "landing/", "--cursor", "7", *where, "--yes")

    assert shown.returncode == 0, shown.stderr
    doc = shown.json()
    assert doc["version"] == 1 and doc["value"] == json.loads(value)
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["value"] for line in exported.stdout.splitlines()] == [json.loads(value)]
    assert changed.returncode == 0, changed.stderr
    record = await trigger_store.aread("s3", "landing/", WM)
    assert record is not None and record.version == 2
    assert json.loads(record.value) == {**json.loads(value), "cursor": 7}
    # Written through the REST API at Airflow's 64 KB: one value again; the parts stay for the
    # history entry of version 1, which names them.
    doc = airflow_state_store.stored(asset, native_key("s3", "landing/"))
    assert "seen" not in doc and doc["history"]["versions"] == [1]
    assert set(airflow_state_store.keys(asset)) == named(airflow_state_store, asset)
    assert len(airflow_state_store.keys(asset)) == 10  # the document, entry 1 and its 8 parts

    await trigger_store.awrite("s3", "landing/", WM, s3_state(range(310)), expected_version=2)
    airflow_state_store.put(asset, part_key(native_key("s3", "landing/"), "99.0"), {"left": "behind"})
    deleted = cli("delete", "s3", "landing/", *where, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert airflow_state_store.keys(asset) == []


def test_rest_errors_are_clear(api_server: str, cli: Cli) -> None:
    unreachable = cli("list", "--airflow-url", "http://127.0.0.1:1")
    unknown = cli("show", "a", "b", "--airflow-url", api_server, "--asset", "no-such-asset")
    orphan = cli("show", "a", "b", "--asset", "x")

    assert (
        unreachable.returncode == 1
        and "cannot reach Airflow's REST API at http://127.0.0.1:1" in unreachable.stderr
    )
    assert unknown.returncode == 1 and "no asset 'no-such-asset'" in unknown.stderr
    assert orphan.returncode == 2 and "--asset needs --airflow-url" in orphan.stderr


def test_a_token_the_api_server_refuses(api_server: str, cli: Cli) -> None:
    result = cli("list", "--airflow-url", api_server, "--token", "not-a-token")

    assert result.returncode == 1
    assert f"Airflow's REST API at {api_server} refused GET /api/v2/assets (HTTP 403)" in result.stderr
    assert "--token" in result.stderr and "not-a-token" not in result.stderr


async def test_a_watermark_whose_parts_cannot_be_read_does_not_hide_the_others(
    airflow_state_store: AirflowStateStore, api_server: str, cli: Cli
) -> None:
    broken, fine = airflow_state_store.new_asset("broken"), airflow_state_store.new_asset("fine")
    # Every asset of the session's api-server is listed; other tests leave values that do not
    # validate (a listing that meets one exits 1), so this one lists a namespace of its own.
    ns = broken.name
    large = NativeBackend(airflow_state_store.accessors(broken), max_value_bytes=4000)
    await large.awrite(ns, "parts/", WM, s3_state(range(300)), expected_version=None)
    key = native_key(ns, "parts/")
    airflow_state_store.drop(broken, next(k for k in airflow_state_store.keys(broken) if k != key))
    await NativeBackend(airflow_state_store.accessors(fine)).awrite(
        ns, "whole/", WM, wm(7), expected_version=None
    )

    listed = cli("list", "--airflow-url", api_server, "--namespace", ns, "--json")
    one_asset = cli("list", "--airflow-url", api_server, "--asset", broken.name, "--json")

    assert listed.returncode == 0, listed.stderr
    names = {(w["asset"], w["name"]) for w in listed.json()["watermarks"]}
    assert names == {(fine.name, "whole/")}
    # The broken one is named, with the store's advice on inspecting or resetting it.
    assert f"Warning: skipped asset {broken.name!r}: reading {ns}/parts/" in listed.stderr
    assert "stateful reset" in listed.stderr
    assert one_asset.returncode == 0, one_asset.stderr
    assert one_asset.json()["watermarks"] == []
    assert f"Warning: skipped asset {broken.name!r}: reading {ns}/parts/" in one_asset.stderr
