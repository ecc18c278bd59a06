"""`stateful set`, `reset`, `rewind`, `delete`: validated, confirmed, compare-and-set."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from stateful.types import Watermark
from tests.cli.conftest import WM, Cli, OpenTerminal
from tests.triggers import OrdersState

T = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
NS, NAME = "files", "/data/landing/*.csv"


def wm(cursor: int | None = None, *keys: str, ts: datetime | None = T) -> Watermark[int]:
    mark = Watermark[int](timestamp=ts, cursor=cursor)
    for key in keys:
        mark.advance(key=key, timestamp=ts)
    return mark


def stored(cli: Cli, namespace: str = NS, name: str = NAME) -> tuple[int, dict[str, Any]] | None:
    record = cli.store().read(namespace, name, WM)
    return None if record is None else (record.version, json.loads(record.value))


def test_set_timestamp_writes_a_new_version_with_who(cli: Cli) -> None:
    cli.seed(NS, NAME, wm(None, "a@1"))

    result = cli("set", NS, NAME, "--timestamp", "2025-06-02T13:30:00+02:00", "--yes")

    assert result.returncode == 0, result.stderr
    assert 'timestamp  "2025-06-02T09:00:00.000000Z" -> "2025-06-02T11:30:00.000000Z"' in result.stdout
    assert "Wrote version 2." in result.stdout
    version, doc = stored(cli) or (0, {})
    assert version == 2 and doc["timestamp"] == "2025-06-02T11:30:00.000000Z"
    assert doc["seen"] == {"a@1": "2025-06-02T09:00:00.000000Z"}  # kept
    record = cli.store().read(NS, NAME, WM)
    assert record is not None and record.updated_by is not None
    assert record.updated_by.startswith("stateful set by ")


def test_set_moves_backwards_clears_seen_and_reports_json(cli: Cli) -> None:
    cli.seed(NS, NAME, wm(9, "a@1", "b@2"))

    result = cli(
        "set",
        NS,
        NAME,
        "--timestamp",
        "2025-06-01T00:00:00Z",
        "--cursor",
        "4",
        "--clear-seen",
        "--yes",
        "--json",
    )

    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert (doc["action"], doc["previous_version"], doc["version"], doc["dry_run"]) == ("set", 1, 2, False)
    assert doc["changes"]["cursor"] == {"before": 9, "after": 4}
    assert doc["changes"]["seen"]["removed"] == ["a@1", "b@2"]
    assert stored(cli) == (
        2,
        json.loads(
            Watermark[int](timestamp=datetime(2025, 6, 1, tzinfo=timezone.utc), cursor=4).to_state_json()
        ),
    )


def test_set_dry_run_writes_nothing(cli: Cli) -> None:
    cli.seed(NS, NAME, wm(1))
    before = stored(cli)

    result = cli("set", NS, NAME, "--cursor", "2", "--dry-run")

    assert result.returncode == 0
    assert "cursor     1 -> 2" in result.stdout and "Dry run: nothing was written." in result.stderr
    assert stored(cli) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timestamp", "yesterday"], "is not an ISO 8601 date-time"),
        (["--timestamp", "2025-06-02T09:00:00"], "has no time zone"),
        (["--cursor", "abc"], "the stored cursor is integer 1, the new one would be string"),
        ([], "nothing to set"),
    ],
)
def test_set_refuses_bad_input_and_writes_nothing(cli: Cli, args: list[str], message: str) -> None:
    cli.seed(NS, NAME, wm(1))
    before = stored(cli)

    result = cli("set", NS, NAME, *args, "--yes")

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert stored(cli) == before


def test_set_validates_against_the_triggers_model(cli: Cli) -> None:
    cli.seed("orders", "t", OrdersState(cursor=10, batches=3))

    refused = cli("set", "orders", "t", "--cursor", '"11"', "--model", "tests.triggers:Orders", "--yes")
    accepted = cli("set", "orders", "t", "--cursor", "8", "--model", "tests.triggers:OrdersState", "--yes")
    not_a_model = cli("set", "orders", "t", "--cursor", "8", "--model", "tests.triggers:Plain", "--yes")

    assert refused.returncode == 2 and "does not validate as tests.triggers.OrdersState" in refused.stderr
    assert "cursor" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert stored(cli, "orders", "t") == (2, {**json.loads(OrdersState(cursor=8, batches=3).to_state_json())})
    assert not_a_model.returncode == 2 and "neither a Watermark model nor" in not_a_model.stderr


def test_set_can_fix_a_value_the_model_no_longer_loads(cli: Cli) -> None:
    cli.store().write(
        "orders",
        "t",
        WM,
        '{"batches":1,"cursor":"12","schema_version":1,"seen":{},"timestamp":null}',
        expected_version=None,
    )

    result = cli("set", "orders", "t", "--cursor", "12", "--model", "tests.triggers:Orders", "--yes")

    assert result.returncode == 0, result.stderr
    assert stored(cli, "orders", "t") == (2, json.loads(OrdersState(cursor=12, batches=1).to_state_json()))


def test_set_needs_create_for_a_new_watermark(cli: Cli) -> None:
    cli.seed(NS, "other", wm(1))

    missing = cli("set", NS, NAME, "--cursor", "5", "--yes")
    created = cli("set", NS, NAME, "--cursor", "5", "--create", "--yes")

    assert missing.returncode == 4 and "pass --create" in missing.stderr
    assert created.returncode == 0, created.stderr
    assert stored(cli) == (1, json.loads(Watermark[int](cursor=5).to_state_json()))


def test_changes_need_confirmation_when_nobody_can_answer(cli: Cli) -> None:
    cli.seed(NS, NAME, wm(1), wm(2))
    before = stored(cli)

    results = [
        cli("set", NS, NAME, "--cursor", "7"),
        cli("reset", NS, NAME),
        cli("rewind", NS, NAME, "--to", "1"),
        cli("delete", NS, NAME),
    ]

    for result in results:
        assert result.returncode == 1
        assert "stdin is not a terminal" in result.stderr and "--yes" in result.stderr
    assert stored(cli) == before


def test_confirmation_on_a_terminal(cli: Cli, terminal: OpenTerminal) -> None:
    cli.seed(NS, NAME, wm(1))

    declined = terminal("set", NS, NAME, "--cursor", "2")
    declined.read_until("Write version 2 of files/'/data/landing/*.csv'? [y/N]:")
    declined.type("n\n")
    assert declined.wait() == 1
    assert "Not confirmed; nothing was changed." in declined.screen
    assert stored(cli) == (1, json.loads(wm(1).to_state_json()))

    accepted = terminal("set", NS, NAME, "--cursor", "2")
    accepted.read_until("[y/N]:")
    accepted.type("y\n")
    assert accepted.wait() == 0
    assert "Wrote version 2." in accepted.screen
    assert stored(cli) == (2, json.loads(wm(2).to_state_json()))


def test_a_change_made_while_deciding_is_a_version_conflict(cli: Cli, terminal: OpenTerminal) -> None:
    cli.seed(NS, NAME, wm(1), wm(2))

    term = terminal("set", NS, NAME, "--cursor", "0")
    term.read_until("Write version 3")
    cli.seed(NS, NAME, wm(5))  # the trigger saves version 3 while the operator decides
    term.type("y\n")

    assert term.wait() == 3
    assert "changed while you were deciding: it was version 2 when read, it is version 3 now" in term.screen
    assert "Nothing was written" in term.screen
    assert stored(cli) == (3, json.loads(wm(5).to_state_json()))  # the trigger's save stands


def test_reset_empties_the_watermark_and_history_keeps_the_old_one(cli: Cli) -> None:
    old = wm(7, "a@1")
    cli.seed(NS, NAME, old)

    result = cli("reset", NS, NAME, "--yes")
    back = cli("rewind", NS, NAME, "--to", "1", "--yes")

    assert result.returncode == 0, result.stderr
    assert "seen       1 -> 0 keys; 1 removed: a@1" in result.stdout
    assert back.returncode == 0, back.stderr
    version, doc = stored(cli) or (0, {})
    assert version == 3 and doc == json.loads(old.to_state_json())
    history = cli.store().history(NS, NAME, WM)
    assert json.loads(history[1].value) == json.loads(Watermark().to_state_json())


def test_reset_without_a_model_says_it_drops_the_models_fields(cli: Cli) -> None:
    cli.seed("orders", "t", OrdersState(cursor=10, batches=3))

    plain = cli("reset", "orders", "t", "--yes")
    typed = cli("reset", "orders", "t", "--yes", "--model", "tests.triggers:Orders")

    assert plain.returncode == 0 and "the fields batches are dropped" in plain.stdout
    assert typed.returncode == 0
    assert stored(cli, "orders", "t") == (3, json.loads(OrdersState().to_state_json()))


def test_rewind_to_a_version_shows_the_difference_first(cli: Cli) -> None:
    good = wm(41, "a@1")
    cli.seed(
        NS, NAME, wm(40), good, wm(99, "a@1", "b@2", ts=datetime(2025, 6, 2, 11, 0, tzinfo=timezone.utc))
    )

    preview = cli("rewind", NS, NAME, "--to", "2", "--dry-run")
    done = cli("rewind", NS, NAME, "--to", "2", "--yes")

    assert preview.returncode == 0, preview.stderr
    assert 'timestamp  "2025-06-02T11:00:00.000000Z" -> "2025-06-02T09:00:00.000000Z"' in preview.stdout
    assert "cursor     99 -> 41" in preview.stdout
    assert "seen       2 -> 1 keys; 1 removed: b@2" in preview.stdout
    assert "restores version 2, written " in preview.stdout
    assert done.returncode == 0, done.stderr
    assert "Wrote version 4." in done.stdout
    assert stored(cli) == (4, json.loads(good.to_state_json()))
    newest = cli.store().history(NS, NAME, WM)[0]
    assert newest.updated_by is not None and newest.updated_by.startswith("stateful rewind to version 2 by ")


def test_rewind_to_a_time_restores_the_version_current_then(cli: Cli) -> None:
    cli.seed(NS, NAME, wm(1), wm(2))
    store = cli.store()
    between = store.history(NS, NAME, WM)[0].updated_at  # when version 2 was written
    cli.seed(NS, NAME, wm(3))

    result = cli("rewind", NS, NAME, "--to", between.isoformat(), "--yes", "--json")
    too_early = cli("rewind", NS, NAME, "--to", "2000-01-01T00:00:00Z", "--yes")

    assert result.returncode == 0, result.stderr
    assert result.json()["changes"]["cursor"] == {"before": 3, "after": 2}
    assert stored(cli) == (4, json.loads(wm(2).to_state_json()))
    assert (
        too_early.returncode == 4
        and "no kept version of files/'/data/landing/*.csv' was current" in too_early.stderr
    )


@pytest.mark.parametrize(
    ("target", "code", "message"),
    [("9", 4, "version 9 is not in the history"), ("last week", 2, "neither a version number")],
)
def test_rewind_to_something_unknown_is_refused(cli: Cli, target: str, code: int, message: str) -> None:
    cli.seed(NS, NAME, wm(1), wm(2))

    result = cli("rewind", NS, NAME, "--to", target, "--yes")

    assert result.returncode == code
    assert message in result.stderr
    assert stored(cli) == (2, json.loads(wm(2).to_state_json()))


def test_delete_removes_the_watermark_and_its_history(cli: Cli) -> None:
    cli.seed(NS, NAME, wm(1), wm(2))
    cli.seed(NS, "kept", wm(5))

    result = cli("delete", NS, NAME, "--yes")
    again = cli("delete", NS, NAME, "--yes")

    assert result.returncode == 0, result.stderr
    assert "Deleted files/'/data/landing/*.csv' (it was version 2)." in result.stdout
    assert stored(cli) is None
    assert cli.store().history(NS, NAME, WM) == []
    assert stored(cli, NS, "kept") is not None
    assert again.returncode == 4


def test_show_history_and_rewind_work_on_a_state_saved_in_parts(cli: Cli) -> None:
    from stateful._core import Scope, WatermarkSession
    from stateful.backends.base import Address

    store = cli.store()
    session = WatermarkSession(Watermark, Scope(Address(NS, NAME, WM), "test"), commit="after_event")
    mark = session.load(None)
    texts = []
    for batch in (range(1_000), range(1_000, 1_010)):  # 1,000 keys: about 85 KB, in two parts
        for index in batch:
            mark.advance(key=f"landing/2025/06/02/{index:06d}-{'x' * 24}.csv@1", timestamp=T)
        save = session.after_resume(session.emitted())
        assert save is not None
        layout = session.layout(save)
        session.saved(save, store.write_layout(NS, NAME, WM, layout, expected_version=save.expected_version))
        texts.append(layout.text())
    record = store.read(NS, NAME, WM)
    assert record is not None and record.value == texts[1]

    shown = cli("show", NS, NAME, "--value")
    back = cli("rewind", NS, NAME, "--to", "1", "--yes")

    assert shown.returncode == 0 and json.loads(shown.stdout) == json.loads(texts[1])
    assert back.returncode == 0, back.stderr
    assert stored(cli) == (3, json.loads(texts[0]))
    assert [r.value for r in cli.store().history(NS, NAME, WM)] == [texts[0], texts[1], texts[0]]
