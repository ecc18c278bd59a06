"""The recipes of docs/testing.md, quoted there verbatim from this file: they run as written."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from examples.local_files import NewFilesTrigger
from examples.sqlite_rows_sensor import NewRowsSensor
from stateful.backends import MemoryBackend, SqlBackend
from stateful.testing import Crash, poke_sensor, restart, run_trigger, use_store

ITEMS = {"a.csv", "b.csv", "c.csv"}


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    directory = tmp_path / "landing"
    directory.mkdir()
    for name in sorted(ITEMS):
        (directory / name).write_text(name)
    return directory


@pytest.fixture
def shop_database(tmp_path: Path) -> str:
    database = str(tmp_path / "shop.db")
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, payload TEXT)")
        connection.executemany("INSERT INTO orders (payload) VALUES (?)", [("a",), ("b",)])
    return database


def test_no_repeat_after_restart(stateful_store: MemoryBackend, landing: Path) -> None:
    trigger = NewFilesTrigger(str(landing), poll_interval=0.05)

    first = asyncio.run(run_trigger(trigger, max_events=3))
    again = asyncio.run(run_trigger(restart(trigger), idle_timeout=0.5))

    assert len(first.events) == 3
    assert again.events == []


@pytest.mark.parametrize("crash", ["before_save", "after_save"])
def test_no_loss_on_crash(stateful_store: MemoryBackend, landing: Path, crash: Crash) -> None:
    trigger = NewFilesTrigger(str(landing), poll_interval=0.05)

    before = asyncio.run(run_trigger(trigger, max_events=2, crash=crash))
    after = asyncio.run(run_trigger(restart(trigger), idle_timeout=0.5))

    names = {Path(event.payload["path"]).name for event in before.events + after.events}
    assert names == ITEMS


def test_each_row_once(stateful_store: MemoryBackend, shop_database: str) -> None:
    sensor = NewRowsSensor(task_id="orders", database=shop_database, table="orders")

    assert poke_sensor(sensor).xcom_value == [1, 2]
    assert not poke_sensor(sensor)  # nothing new


def test_a_store_of_your_choice(landing: Path, tmp_path: Path) -> None:
    store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    with use_store(store):
        result = asyncio.run(run_trigger(NewFilesTrigger(str(landing), poll_interval=0.05), max_events=3))

    record = store.read("files", str(landing / "*"), "watermark")
    assert record is not None and record.version == result.version
    store.dispose()
