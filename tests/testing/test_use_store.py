"""``use_store``: code declared with ``backend=None`` uses the block's store; nested, per task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stateful import Watermark, stateful
from stateful.backends import MemoryBackend, SqlBackend
from stateful.backends._resolve import resolve_async_store, resolve_sync_store
from stateful.backends._scoped import scoped_store
from stateful.errors import StatefulUsageError
from stateful.testing import poke_sensor, run_trigger, use_store


class Ticks:
    def __init__(self, name: str) -> None:
        self.name = name

    @stateful(namespace="ticks", name="{name}")
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[int]:
        watermark.advance(cursor=(watermark.cursor or 0) + 1)
        yield watermark.cursor or 0


class Sensor:
    @stateful(namespace="ticks", name="sensor")
    def poke(self, context: Any, watermark: Watermark[int]) -> bool:
        watermark.advance(cursor=(watermark.cursor or 0) + 1)
        return True


def test_nested_blocks_restore_the_outer_store_and_leave_nothing() -> None:
    outer, inner = MemoryBackend(), MemoryBackend()
    assert scoped_store() is None
    with use_store(outer):
        with use_store(inner):
            assert resolve_sync_store(None, Sensor()).store is inner
        choice = resolve_sync_store(None, Sensor())
        assert (choice.store, choice.reason) == (
            outer,
            "use_store() in effect and backend=None given to @stateful",
        )
    assert scoped_store() is None


def test_triggers_and_sensors_use_the_scoped_store() -> None:
    with use_store(MemoryBackend()) as store:
        assert asyncio.run(run_trigger(Ticks("a"))).events == [1]
        assert poke_sensor(Sensor())
    assert [record.name for record in store.list("ticks")] == ["a", "sensor"]


def test_concurrent_tasks_each_keep_their_own_store() -> None:
    first, second = MemoryBackend(), MemoryBackend()

    async def one(store: MemoryBackend, name: str) -> str:
        with use_store(store):
            await asyncio.sleep(0.01)  # the other task sets its store meanwhile
            return (await resolve_async_store(None, Ticks(name))).store.description + str(id(store))

    async def both() -> list[str]:
        return list(await asyncio.gather(one(first, "a"), one(second, "b")))

    assert asyncio.run(both()) == [f"MemoryBackend{id(first)}", f"MemoryBackend{id(second)}"]
    assert scoped_store() is None


def test_a_store_given_to_the_decorator_is_kept(tmp_path: Path) -> None:
    given = SqlBackend(f"sqlite:///{tmp_path / 'own.db'}")
    try:
        with use_store(MemoryBackend()):
            assert resolve_sync_store(given, Sensor()).store is given
    finally:
        given.dispose()


def test_the_choice_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="stateful"), use_store(MemoryBackend()):
        resolve_sync_store(None, Sensor())
    assert [r.levelno for r in caplog.records if "uses MemoryBackend (use_store()" in r.getMessage()] == [
        logging.DEBUG
    ]


def test_only_a_store_is_accepted() -> None:
    not_a_store: Any = "sqlite:///x.db"
    with pytest.raises(StatefulUsageError, match=r"needs a state store"), use_store(not_a_store):
        pass


def test_the_fixture_installs_a_fresh_memory_store(stateful_store: MemoryBackend) -> None:
    assert scoped_store() is stateful_store
    assert stateful_store.list() == []
