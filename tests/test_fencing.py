"""Fencing before emitting: a stale instance of a trigger stops before it hands over more events.

Two instances of one decorated trigger, each run by Airflow's own ``TriggerRunner`` (as two
triggerers would), share one real store: a SQLite file, or a PostgreSQL server. The first is
frozen between two scans (what SIGSTOP or a long GC pause does to a triggerer), the second takes
the trigger over and saves; when the first resumes, its scan finds the items the second already
emitted, and it must stop before handing any of them over, with an error naming the state, the
store and the takeover. No item may be lost: the second goes on with the new ones.

A keyed trigger (one watermark per partition) is fenced per partition: the check before a batch
reads the partitions the event moves, so a stale instance stops at the first such event that
moves a partition its successor saved, and a partition nobody else wrote does not stop it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Keyed, Watermark, _fence, stateful
from stateful._address import partition_key
from stateful._core import Scope, WatermarkSession
from stateful._fence import FENCE_GAP, FENCE_INTERVAL, Fence
from stateful._keyed_session import KeyedSave, KeyedSession
from stateful.backends import MemoryBackend, SqlBackend
from stateful.backends.base import Address, SupportsVersion, Write
from stateful.backends.native import NativeBackend
from stateful.errors import StateTakenOverError
from tests._triggerer import Triggerer, until

# The fence's pause, shortened for these tests (FENCE_GAP is 1 s: a freeze that lets Airflow
# re-assign a trigger lasts longer than the triggerer's health-check threshold, 30 s by default).
GAP = 0.05


@pytest.fixture(autouse=True)
def short_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fence, "FENCE_GAP", GAP)


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
    sql_store: SqlBackend, ack: bool
) -> None:
    if ack:
        pytest.importorskip(
            "airflow.triggers.shared_stream", reason="shared-stream ack mode (Airflow >= 3.3)"
        )
    source = f"src-{'ack' if ack else 'resume'}"
    SOURCES[source] = list(range(1, 11))
    trigger_class = polling_class(sql_store, ack=ack)

    first, stale = Triggerer(), trigger_class(source)
    first.start(stale, 1)
    await until(lambda: numbers(first) == list(range(1, 11)))
    await saved(sql_store, source, 10)
    stale.running.clear()  # frozen before its next scan

    SOURCES[source] += list(range(11, 21))
    second = Triggerer()
    second.start(trigger_class(source), 2)  # Airflow re-assigned the trigger: the successor
    await until(lambda: numbers(second)[-1:] == [20])
    await saved(sql_store, source, 20)

    SOURCES[source] += list(range(21, 26))
    before = len(first.events)
    # Frozen for longer than the fence's gap: on a fast machine all of the above takes less, and
    # the resumed scan's first event would follow the stale instance's last event without a
    # pause (in a real freeze, seconds pass).
    await asyncio.sleep(2 * GAP)
    stale.running.set()  # resumed: its scan finds 11..25, which it does not own any more
    with pytest.raises(StateTakenOverError) as stopped:
        await first.finished()
    message = str(stopped.value)
    assert f"fence/{source}" in message and sql_store.description in message
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
    await asyncio.sleep(2 * GAP)  # the next batch, and nothing of ours under way: fenced
    with pytest.raises(StateTakenOverError):
        await fence.before_handover()


async def test_a_busy_trigger_is_read_once_an_interval_and_after_every_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A trigger emitting every 200 ms never pauses FENCE_GAP long: before, a gap of 50 ms read
    # one version per event (1,000 such triggers: 5,000 reads a second).
    monkeypatch.setattr(_fence, "FENCE_GAP", FENCE_GAP)  # the real gap, on a clock of the test's
    clock = [1000.0]
    monkeypatch.setattr(asyncio.get_running_loop(), "time", lambda: clock[0])
    store = MemoryBackend()
    read: list[float] = []
    aversion = store.aversion

    async def counted(namespace: str, name: str, key: str) -> int | None:
        read.append(clock[0])
        return await aversion(namespace, name, key)

    monkeypatch.setattr(store, "aversion", counted)
    session = WatermarkSession(
        Watermark, Scope(Address("fence", "busy", "watermark"), store.description), commit="after_event"
    )
    session.load(None)
    fence = Fence(store, session, "busy")
    for _ in range(60):  # 12 s of events every 200 ms
        await fence.before_handover()
        clock[0] += 0.2
    # The first event, then one every FENCE_INTERVAL: 3 reads for 60 events.
    assert read == pytest.approx([1000.0 + FENCE_INTERVAL * k for k in range(3)])

    clock[0] += FENCE_GAP  # a pause: a new scan, or a process that was frozen
    await fence.before_handover()
    assert len(read) == 4 and read[-1] == clock[0]
    clock[0] += 0.2
    await fence.before_handover()  # right after: not read again
    assert len(read) == 4


# -- keyed: one watermark per partition, fenced per partition -------------------------------------

# What each keyed source lists now: (partition, number) pairs, appended as files would arrive.
KEYED_SOURCES: dict[str, list[tuple[str, int]]] = {}


class KeyedPolling(BaseEventTrigger):
    """Polls ``source`` every 10 ms; emits each (partition, number) above that partition's cursor.

    Its watermark is named by ``name``: two instances listing different sources may share it.
    """

    def __init__(self, source: str, name: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source, self.name = source, name
        self.running = asyncio.Event()
        self.running.set()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.test_fencing.KeyedPolling", {"source": self.source, "name": self.name})

    async def scan(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
        while True:
            await self.running.wait()  # cleared: frozen between two scans
            for partition, item in list(KEYED_SOURCES[self.source]):
                watermark = keyed[partition]
                if watermark.cursor is None or item > watermark.cursor:
                    watermark.advance(cursor=item)
                    yield TriggerEvent({"p": partition, "n": item})
            await asyncio.sleep(0.01)


def keyed_polling_class(store: SqlBackend, *, ack: bool) -> type[KeyedPolling]:
    class FencedKeyedPolling(KeyedPolling):
        @stateful(
            namespace="fence",
            name="{name}",
            backend=store,
            ack=ack,
            save_delay=timedelta(milliseconds=10),
            save_interval=timedelta(0),
        )
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
            async for event in self.scan(keyed):
                yield event

    return FencedKeyedPolling


async def partition_saved(store: SqlBackend, name: str, partition: str, cursor: int) -> None:
    """Wait until ``partition``'s ``cursor`` is stored."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        record = await store.aread("fence", name, partition_key(partition))
        if record is not None and json.loads(record.value)["cursor"] == cursor:
            return
        assert loop.time() < deadline, f"cursor {cursor} of partition {partition!r} was never saved"
        await asyncio.sleep(0.01)


def pairs(triggerer: Triggerer) -> list[tuple[str, int]]:
    return [(payload["p"], payload["n"]) for payload in triggerer.events]


def needs_ack(ack: bool) -> None:
    if ack:
        pytest.importorskip(
            "airflow.triggers.shared_stream", reason="shared-stream ack mode (Airflow >= 3.3)"
        )


@pytest.mark.parametrize("ack", [True, False], ids=["ack", "resume"])
async def test_a_resumed_stale_keyed_instance_stops_at_a_partition_its_successor_saved(
    sql_store: SqlBackend, ack: bool
) -> None:
    # Before keyed runs were fenced, the stale instance read the plain key (never written by a
    # keyed run), emitted eu 6..12 again and only failed at its save's compare-and-set.
    needs_ack(ack)
    name = f"keyed-{'ack' if ack else 'resume'}"
    KEYED_SOURCES[name] = [(p, n) for n in range(1, 6) for p in ("eu", "us")]
    trigger_class = keyed_polling_class(sql_store, ack=ack)

    first, stale = Triggerer(), trigger_class(name, name)
    first.start(stale, 1)
    await until(lambda: len(first.events) == 10)
    await partition_saved(sql_store, name, "eu", 5)
    await partition_saved(sql_store, name, "us", 5)
    stale.running.clear()  # frozen before its next scan

    KEYED_SOURCES[name] += [("eu", n) for n in range(6, 11)]
    second = Triggerer()
    second.start(trigger_class(name, name), 2)  # the successor: it moves eu only
    await until(lambda: pairs(second)[-1:] == [("eu", 10)])
    await partition_saved(sql_store, name, "eu", 10)

    KEYED_SOURCES[name] += [("eu", 11), ("us", 6), ("eu", 12)]
    before = len(first.events)
    await asyncio.sleep(2 * GAP)  # frozen for longer than a pause inside one batch
    stale.running.set()  # resumed: its first new item is eu 6, which its successor emitted
    with pytest.raises(StateTakenOverError) as stopped:
        await first.finished()
    message = str(stopped.value)
    assert f"fence/{name} (partition 'eu')" in message and sql_store.description in message
    assert "another instance of this trigger took it over" in message
    assert f"stateful history fence {name} --partition eu" in message
    assert stopped.value.key == "watermark[eu]"
    assert len(first.events) == before  # the stale instance handed over nothing more

    await until(lambda: pairs(second)[-2:] == [("us", 6), ("eu", 12)])
    assert set(pairs(first)) | set(pairs(second)) == set(KEYED_SOURCES[name])  # nothing lost
    assert pairs(second) == [*(("eu", n) for n in range(6, 12)), ("us", 6), ("eu", 12)]
    await second.stop()


async def test_a_partition_nobody_else_wrote_does_not_stop_a_keyed_run(sql_store: SqlBackend) -> None:
    # Fencing is per partition: another instance that saved "eu" stops this one at its first
    # checked event that moves "eu", not before; its events of "us" go on (and are saved).
    name = "keyed-untouched"
    KEYED_SOURCES["mine"] = [("eu", 1), ("us", 1)]
    KEYED_SOURCES["other"] = [("eu", 1), ("eu", 2)]
    trigger_class = keyed_polling_class(sql_store, ack=False)

    mine, trigger = Triggerer(), trigger_class("mine", name)
    mine.start(trigger, 1)
    await until(lambda: pairs(mine) == [("eu", 1), ("us", 1)])
    await partition_saved(sql_store, name, "us", 1)
    await partition_saved(sql_store, name, "eu", 1)

    other = Triggerer()
    other.start(trigger_class("other", name), 2)  # another instance of the same watermark
    await until(lambda: pairs(other) == [("eu", 2)])
    await partition_saved(sql_store, name, "eu", 2)
    await other.stop()

    await asyncio.sleep(2 * GAP)  # the next event starts a batch: it is checked
    KEYED_SOURCES["mine"] += [("us", 2), ("us", 3)]
    await until(lambda: pairs(mine)[-2:] == [("us", 2), ("us", 3)])
    await partition_saved(sql_store, name, "us", 3)  # us is still this instance's
    assert mine.task is not None and not mine.task.done()

    await asyncio.sleep(2 * GAP)
    KEYED_SOURCES["mine"] += [("eu", 3)]  # moves eu, which the other instance saved
    with pytest.raises(StateTakenOverError) as stopped:
        await mine.finished()
    assert stopped.value.key == "watermark[eu]"
    assert (stopped.value.expected_version, stopped.value.actual_version) == (1, 2)
    assert ("eu", 3) not in pairs(mine)


@pytest.mark.parametrize("ack", [True, False], ids=["ack", "resume"])
async def test_a_keyed_burst_nobody_else_writes_is_never_fenced(
    sql_store: SqlBackend, ack: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rounds of events over five partitions, each round a new batch (checked) while the saves of
    # the previous ones (every 10 ms, coalesced; in ack mode once Airflow confirmed) are under way.
    needs_ack(ack)
    name = f"keyed-burst-{'ack' if ack else 'resume'}"
    read: list[str] = []
    aversion = sql_store.aversion

    async def counted(namespace: str, name: str, key: str) -> int | None:
        read.append(key)
        return await aversion(namespace, name, key)

    monkeypatch.setattr(sql_store, "aversion", counted)
    KEYED_SOURCES[name] = []
    triggerer = Triggerer()
    triggerer.start(keyed_polling_class(sql_store, ack=ack)(name, name), 1)
    rounds, partitions = 12, ("a", "b", "c", "d", "e")
    for r in range(rounds):
        KEYED_SOURCES[name] += [(p, r * 10 + i) for i in range(1, 11) for p in partitions]
        await until(lambda: len(triggerer.events) == len(KEYED_SOURCES[name]))
        await asyncio.sleep(2 * GAP)
    for p in partitions:
        await partition_saved(sql_store, name, p, (rounds - 1) * 10 + 10)
    assert triggerer.task is not None and not triggerer.task.done()  # never taken for a takeover
    assert sorted(pairs(triggerer)) == sorted(KEYED_SOURCES[name])
    # Every round's first event was checked, and a check reads a partition, never the plain key.
    assert len(read) >= rounds
    assert set(read) <= {partition_key(p) for p in partitions}
    await triggerer.stop()


def text(cursor: int) -> str:
    return Watermark[int](cursor=cursor).to_state_json()


def keyed_session(store: MemoryBackend, name: str) -> KeyedSession:
    session = KeyedSession(
        Watermark, Scope(Address("fence", name, "watermark"), store.description), commit="after_event"
    )
    session.load_partitions(store.list_name("fence", name))
    return session


async def test_a_keyed_check_reads_only_the_partitions_the_event_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # O(partitions of the event), never O(partitions): 1,000 stored, all looked up, one moved.
    store = MemoryBackend()
    store.write_many(
        [Write(Address("fence", "many", partition_key(f"p{i}")), text(1), None) for i in range(1000)]
    )
    read: list[str] = []
    aversion = store.aversion

    async def counted(namespace: str, name: str, key: str) -> int | None:
        read.append(key)
        return await aversion(namespace, name, key)

    monkeypatch.setattr(store, "aversion", counted)
    session = keyed_session(store, "many")
    keyed = session.watermark
    fence = Fence(store, session, "many")
    for i in range(1000):
        _ = keyed[f"p{i}"]  # looked up, not moved
    keyed["p7"].advance(cursor=2)
    await fence.before_handover()
    session.emitted()
    assert read == [partition_key("p7")]

    await asyncio.sleep(2 * GAP)  # a new batch whose first event moves no partition:
    _ = keyed["p1"]
    await fence.before_handover()  # nothing of it to read...
    session.emitted()
    for p in ("p3", "p2", "p9"):
        keyed[p].advance(cursor=2)
    await fence.before_handover()  # ...so the next event, inside the batch, is checked instead
    session.emitted()
    assert read[1:] == [partition_key(p) for p in ("p3", "p2", "p9")]

    keyed["p4"].advance(cursor=2)
    await fence.before_handover()  # inside a checked burst: nothing read
    session.emitted()
    assert len(read) == 4


async def test_a_keyed_save_of_its_own_under_way_is_not_taken_for_a_takeover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The version read overlaps this instance's own save of the partition: the save committed,
    # but has not recorded its new version yet when the fence reads it.
    store = MemoryBackend()
    session = keyed_session(store, "own")
    keyed = session.watermark
    fence = Fence(store, session, "own")
    write_many = store.awrite_many

    async def committed_then_read(writes: list[Write]) -> list[int]:
        versions = await write_many(writes)
        keyed["eu"].advance(cursor=3)  # the next event, moving eu, checked meanwhile
        await asyncio.sleep(2 * GAP)
        await fence.before_handover()  # not fenced: the save's own compare-and-set decides
        return versions

    monkeypatch.setattr(store, "awrite_many", committed_then_read)
    keyed["eu"].advance(cursor=1)
    await fence.before_handover()
    save = session.after_resume(session.emitted())
    assert isinstance(save, KeyedSave)
    assert await save.awrite(store) == 1
    session.emitted()

    # Another writer saves eu; the next batch that moves eu is fenced.
    store.write("fence", "own", partition_key("eu"), text(9), expected_version=1)
    keyed["eu"].advance(cursor=4)
    await asyncio.sleep(2 * GAP)
    with pytest.raises(StateTakenOverError) as stopped:
        await fence.before_handover()
    assert (stopped.value.key, stopped.value.expected_version, stopped.value.actual_version) == (
        "watermark[eu]",
        1,
        2,
    )


def test_the_native_store_fences_a_keyed_run_by_its_compare_and_set_only() -> None:
    # Airflow's asset state store cannot read a version alone: no check before emitting (a stale
    # instance stops at its first save, whose compare-and-set finds the partition moved on).
    store = NativeBackend()
    assert not isinstance(store, SupportsVersion)
    session = KeyedSession(
        Watermark, Scope(Address("fence", "native", "watermark"), store.description), commit="after_event"
    )
    session.load_partitions([])
    assert not Fence(store, session, "native").active
