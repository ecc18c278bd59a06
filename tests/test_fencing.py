"""Fencing before emitting: a stale instance of a trigger stops before it hands over more events.

Two instances of one decorated trigger, each run by Airflow's own ``TriggerRunner`` (as two
triggerers would), share one real store: a SQLite file, or a PostgreSQL server. The first is
frozen between two scans (what SIGSTOP or a long GC pause does to a triggerer), the second takes
the trigger over and saves; when the first resumes, its scan finds the items the second already
emitted, and it must stop before handing any of them over, with an error naming the state, the
store and the takeover. No item may be lost: the second goes on with the new ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, stateful
from stateful._core import Scope, WatermarkSession
from stateful._fence import FENCE_GAP, Fence
from stateful.backends import MemoryBackend, SqlBackend
from stateful.backends.base import Address, SupportsVersion
from stateful.errors import StateTakenOverError
from tests._postgres import PostgresServer
from tests._triggerer import Triggerer, until
from tests.conftest import POSTGRES_PARAM, unique_table

# What each source lists now: the test appends items as files would arrive.
SOURCES: dict[str, list[int]] = {}


class Polling(BaseEventTrigger):
    """Polls its source every 10 ms and emits every item above the cursor; ``running`` freezes it."""

    def __init__(self, source: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source = source
        self.running = asyncio.Event()
        self.running.set()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.test_fencing.Polling", {"source": self.source})

    async def scan(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        while True:
            await self.running.wait()  # cleared: frozen between two scans, like a stopped process
            for item in list(SOURCES[self.source]):
                if watermark.cursor is None or item > watermark.cursor:
                    watermark.advance(cursor=item)
                    yield TriggerEvent({"n": item})
            await asyncio.sleep(0.01)


def polling_class(store: SqlBackend, *, ack: bool) -> type[Polling]:
    class FencedPolling(Polling):
        @stateful(
            namespace="fence",
            name="{source}",
            backend=store,
            ack=ack,
            save_delay=timedelta(milliseconds=10),
            save_interval=timedelta(0),
        )
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            async for event in self.scan(watermark):
                yield event

    return FencedPolling


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """One real store both instances use: a SQLite file, or a table on a PostgreSQL server."""
    if request.param == "sqlite":
        store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = SqlBackend(server.url, table_name=unique_table())
    yield store
    store.dispose()


async def stored_cursor(store: SqlBackend, source: str) -> int | None:
    record = await store.aread("fence", source, "watermark")
    return None if record is None else int(json.loads(record.value)["cursor"])


async def saved(store: SqlBackend, source: str, cursor: int) -> None:
    """Wait until ``cursor`` is stored (the second instance's save)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while await stored_cursor(store, source) != cursor:
        assert loop.time() < deadline, f"cursor {cursor} was never saved"
        await asyncio.sleep(0.01)


def numbers(triggerer: Triggerer) -> list[int]:
    return [payload["n"] for payload in triggerer.events]


@pytest.mark.parametrize("ack", [True, False], ids=["ack", "resume"])
async def test_a_resumed_stale_instance_stops_before_emitting_and_nothing_is_lost(
    shared_store: SqlBackend, ack: bool
) -> None:
    if ack:
        pytest.importorskip(
            "airflow.triggers.shared_stream", reason="shared-stream ack mode (Airflow >= 3.3)"
        )
    source = f"src-{'ack' if ack else 'resume'}"
    SOURCES[source] = list(range(1, 11))
    trigger_class = polling_class(shared_store, ack=ack)

    first, stale = Triggerer(), trigger_class(source)
    first.start(stale, 1)
    await until(lambda: numbers(first) == list(range(1, 11)))
    await saved(shared_store, source, 10)
    stale.running.clear()  # frozen before its next scan

    SOURCES[source] += list(range(11, 21))
    second = Triggerer()
    second.start(trigger_class(source), 2)  # Airflow re-assigned the trigger: the successor
    await until(lambda: numbers(second)[-1:] == [20])
    await saved(shared_store, source, 20)

    SOURCES[source] += list(range(21, 26))
    before = len(first.events)
    # Frozen for longer than FENCE_GAP: on a fast machine all of the above takes less, and the
    # resumed scan's first event would count as part of the stale instance's last batch (in a
    # real freeze, seconds pass).
    await asyncio.sleep(2 * FENCE_GAP)
    stale.running.set()  # resumed: its scan finds 11..25, which it does not own any more
    with pytest.raises(StateTakenOverError) as stopped:
        await first.finished()
    message = str(stopped.value)
    assert f"fence/{source}" in message and shared_store.description in message
    assert "another instance of this trigger took it over" in message
    assert len(first.events) == before  # the stale instance handed over nothing more

    await until(lambda: numbers(second)[-1:] == [25])
    assert set(numbers(first)) | set(numbers(second)) == set(range(1, 26))  # nothing lost
    assert numbers(second) == list(range(11, 26))  # and the successor repeated nothing
    await second.stop()


async def test_a_save_of_its_own_under_way_is_not_taken_for_a_takeover() -> None:
    store = MemoryBackend()
    assert isinstance(store, SupportsVersion)
    session = WatermarkSession(
        Watermark, Scope(Address("fence", "own", "watermark"), store.description), commit="after_event"
    )
    session.load(None)
    fence = Fence(store, session, "own")
    # Our save committed version 1 but has not recorded it yet when the version is read.
    store.write("fence", "own", "watermark", "{}", expected_version=None)
    session.writes_started += 1
    session.writing += 1
    await fence.before_handover()  # not fenced: the save's own compare-and-set decides
    session.writing -= 1
    await asyncio.sleep(2 * FENCE_GAP)  # the next batch, and nothing of ours under way: fenced
    with pytest.raises(StateTakenOverError):
        await fence.before_handover()
