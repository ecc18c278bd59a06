"""The command line on keyed watermarks: list, show, set, rewind and history per ``--partition``.

The partitions are written by a real keyed trigger (``Keyed[Watermark[int]]``) into the SQLite
file the commands read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Keyed, Watermark, stateful
from stateful._address import partition_key
from stateful.backends import SqlBackend
from tests.cli.conftest import Cli

NS, NAME = "s3", "landing"


def run_prefixes(store: SqlBackend, items: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Run a keyed trigger over ``items`` to the end; return what it emitted."""

    class Prefixes(BaseEventTrigger):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.bucket = NAME

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return ("tests.cli.test_keyed.Prefixes", {})

        @stateful(namespace=NS, name="{bucket}", backend=store, save_batch=1)
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
            for prefix, n in items:
                if n > (keyed[prefix].cursor or 0):
                    keyed[prefix].advance(cursor=n)
                    yield TriggerEvent({"prefix": prefix, "n": n})

    async def drain() -> list[tuple[str, int]]:
        return [(e.payload["prefix"], e.payload["n"]) async for e in Prefixes().run()]

    return asyncio.run(drain())


def cursors(cli: Cli) -> dict[str, tuple[int, int | None]]:
    found = {}
    for record in cli.store().list_name(NS, NAME):
        found[record.key] = (record.version, json.loads(record.value)["cursor"])
    return found


def test_list_and_show_name_each_partition(cli: Cli) -> None:
    run_prefixes(cli.store(), [("eu", 1), ("us", 4), ("eu", 2)])

    listed = cli("list", "--namespace", NS)
    shown = cli("show", NS, NAME, "--partition", "eu")
    as_json = cli("show", NS, NAME, "--partition", "us", "--json")

    assert listed.returncode == 0, listed.stderr
    assert "landing [partition eu]" in listed.stdout and "landing [partition us]" in listed.stdout
    assert shown.returncode == 0, shown.stderr
    assert "s3/landing (partition 'eu')" in shown.stdout
    assert "cursor      2" in shown.stdout
    assert "yes, as any Watermark" in shown.stdout  # validated as a watermark, not as plain JSON
    assert as_json.json()["key"] == "watermark[us]" and as_json.json()["value"]["cursor"] == 4


def test_set_and_rewind_one_partition_leave_the_others_alone(cli: Cli) -> None:
    store = cli.store()
    run_prefixes(store, [("eu", 1), ("us", 4)])
    run_prefixes(store, [("eu", 5), ("us", 6)])
    assert cursors(cli) == {"watermark[eu]": (2, 5), "watermark[us]": (2, 6)}

    edited = cli("set", NS, NAME, "--partition", "eu", "--cursor", "3", "--yes", "--reason", "replay eu")
    assert edited.returncode == 0, edited.stderr
    assert "Check it with `stateful show s3 landing --partition eu`" in edited.stdout
    assert cursors(cli) == {"watermark[eu]": (3, 3), "watermark[us]": (2, 6)}

    rewound = cli("rewind", NS, NAME, "--partition", "us", "--to", "1", "--yes")
    assert rewound.returncode == 0, rewound.stderr
    assert cursors(cli) == {"watermark[eu]": (3, 3), "watermark[us]": (3, 4)}

    history = cli("history", NS, NAME, "--partition", "us", "--json")
    assert history.returncode == 0, history.stderr
    # The trigger, once restarted, takes each partition from where the commands left it.
    assert run_prefixes(cli.store(), [("eu", 4), ("us", 5), ("us", 6)]) == [("eu", 4), ("us", 5), ("us", 6)]


def test_a_missing_partition_lists_the_partitions_there_are(cli: Cli) -> None:
    run_prefixes(cli.store(), [("eu", 1), ("us", 1)])

    result = cli("show", NS, NAME, "--partition", "ue")

    assert result.returncode == 4, result.stderr
    assert "has no partition 'ue'" in result.stderr
    assert "its partitions: 'eu', 'us'." in result.stderr


def test_partition_and_key_together_or_a_bad_partition_are_refused(cli: Cli) -> None:
    run_prefixes(cli.store(), [("eu", 1)])

    both = cli("show", NS, NAME, "--partition", "eu", "--key", "other")
    blank = cli("show", NS, NAME, "--partition", " eu")

    assert both.returncode == 2 and "give --partition or --key, not both" in both.stderr
    assert blank.returncode == 2 and "leading or trailing whitespace" in blank.stderr


def test_an_invalid_partition_suggests_commands_that_name_it(cli: Cli) -> None:
    store = cli.store()
    store.write(
        NS,
        NAME,
        partition_key("broken"),
        '{"schema_version": 1, "timestamp": "yesterday"}',
        expected_version=None,
    )

    result = cli("show", NS, NAME, "--partition", "broken")

    assert result.returncode == 1
    assert "stateful history s3 landing --partition broken" in result.stderr
    assert "stateful reset s3 landing --partition broken" in result.stderr


def test_export_and_import_carry_partitions_and_validate_them(cli: Cli, tmp_path: Path) -> None:
    run_prefixes(cli.store(), [("eu", 1), ("us", 2)])
    exported = cli("export")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line["key"] for line in lines] == ["watermark[eu]", "watermark[us]"]

    target = f"sqlite:///{tmp_path / 'target.db'}"
    good = tmp_path / "good.jsonl"
    good.write_text(exported.stdout)
    bad = tmp_path / "bad.jsonl"
    broken = {**lines[0], "value": {"schema_version": 1, "timestamp": "2025-06-02T09:00:00"}}
    bad.write_text(json.dumps(broken) + "\n")

    refused = cli("import", str(bad), "--yes", "--database-url", target)
    imported = cli("import", str(good), "--yes", "--database-url", target)

    assert refused.returncode == 2 and "does not validate" in refused.stderr  # a partition is a watermark
    assert imported.returncode == 0, imported.stderr
    assert [r.key for r in cli.store(target).list_name(NS, NAME)] == ["watermark[eu]", "watermark[us]"]
