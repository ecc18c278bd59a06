"""The kit against the shipped examples: the recipes of docs/testing.md, on real files and SQLite.

(The example tests in tests/examples/ drive every example trigger with ``run_trigger`` too; these
are the user-facing recipes: no repeat after a restart, no loss at a crash, a sensor's poke.)
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from examples.local_files import NewFilesTrigger
from examples.sqlite_rows_sensor import NewRowsSensor, NewRowsTrigger
from stateful.backends import MemoryBackend
from stateful.testing import Crash, poke_sensor, restart, run_trigger

POLL = 0.01


def landed(directory: Path, *names: str) -> None:
    for i, name in enumerate(names):
        path = directory / name
        path.write_text(name)
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))


def scan(trigger: NewFilesTrigger) -> list[str]:
    # Three polls: a file fires once it held still for two of them.
    run = asyncio.run(run_trigger(trigger, until=lambda: trigger.polls >= 3, idle_timeout=60))
    return [Path(payload["path"]).name for payload in run.payloads]


def test_new_files_trigger_fires_once_per_file_across_restarts(
    stateful_store: MemoryBackend, tmp_path: Path
) -> None:
    landed(tmp_path, "a.csv", "b.csv")
    trigger = NewFilesTrigger(str(tmp_path), poll_interval=POLL)
    assert scan(trigger) == ["a.csv", "b.csv"]

    again = restart(trigger)
    assert scan(again) == []
    landed(tmp_path, "c.csv")
    assert scan(restart(trigger)) == ["c.csv"]
    assert stateful_store.read("files", str(tmp_path / "*"), "watermark") is not None


@pytest.mark.parametrize(
    ("crash", "after"),
    [
        pytest.param(
            "before_confirm",
            ["b.csv", "c.csv"],
            marks=pytest.mark.airflow_min("3.3", reason="shared-stream ack mode"),
        ),
        ("after_save", ["c.csv"]),
    ],
)
def test_new_files_trigger_loses_nothing_at_a_crash(
    stateful_store: MemoryBackend, tmp_path: Path, crash: Crash, after: list[str]
) -> None:
    landed(tmp_path, "a.csv", "b.csv", "c.csv")
    trigger = NewFilesTrigger(str(tmp_path), poll_interval=POLL)
    before = asyncio.run(run_trigger(trigger, max_events=2, crash=crash, idle_timeout=60))
    assert [Path(p["path"]).name for p in before.payloads] == ["a.csv", "b.csv"]
    assert scan(restart(trigger)) == after


def _table(tmp_path: Path, *payloads: str) -> str:
    database = str(tmp_path / "shop.db")
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, payload TEXT)")
        connection.executemany("INSERT INTO orders (payload) VALUES (?)", [(p,) for p in payloads])
    return database


def test_rows_sensor_reports_each_row_once(stateful_store: MemoryBackend, tmp_path: Path) -> None:
    database = _table(tmp_path, "a", "b")
    sensor = NewRowsSensor(task_id="orders", database=database, table="orders")

    first = poke_sensor(sensor)
    assert first.is_done and first.xcom_value == [1, 2]
    assert not poke_sensor(sensor)  # committed: nothing new
    _table(tmp_path, "c")
    assert poke_sensor(sensor).xcom_value == [3]


def test_a_poke_that_raises_commits_nothing(stateful_store: MemoryBackend, tmp_path: Path) -> None:
    database = _table(tmp_path, "a")
    sensor = NewRowsSensor(task_id="orders", database=database, table="orders")
    broken = NewRowsSensor(task_id="orders", database=str(tmp_path / "missing.db"), table="orders")
    with pytest.raises(sqlite3.OperationalError):
        poke_sensor(broken)
    assert stateful_store.list() == []
    assert poke_sensor(sensor).xcom_value == [1]


def test_rows_trigger_waits_on_the_sensors_watermark_and_never_saves(
    stateful_store: MemoryBackend, tmp_path: Path
) -> None:
    database = _table(tmp_path, "a")
    assert poke_sensor(NewRowsSensor(task_id="orders", database=database, table="orders")).xcom_value == [1]
    trigger = NewRowsTrigger(database, "orders", poll_interval=POLL)
    quiet = asyncio.run(run_trigger(trigger, idle_timeout=0.2))
    assert (quiet.events, quiet.watermark.cursor, quiet.version) == ([], 1, 1)
    _table(tmp_path, "b")
    woke = asyncio.run(run_trigger(restart(trigger), max_events=1))
    assert (woke.watermark.cursor, woke.version) == (1, 1)  # commit="never": the sensor saves
