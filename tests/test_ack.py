"""Ack mode: a watcher saves only what Airflow confirmed it stored, through Airflow's own runner.

Each test runs a ``@stateful`` ``BaseEventTrigger`` in Airflow 3.3's ``TriggerRunner`` with its
``SharedStreamManager``; the test plays the triggerer's supervisor, which stores queued events
and confirms their persist sequence numbers (``Triggerer.store_events``). A cancelled task
stands for a triggerer killed before those confirmations arrived.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent

from stateful import Watermark, stateful
from stateful.backends import MemoryBackend, SqlBackend
from stateful.errors import EventNotStoredError, StateConflictError
from tests._triggerer import Triggerer, until
from tests.conftest import DualBackend
from tests.triggers import CounterBase, make_trigger_class

pytestmark = pytest.mark.airflow_min("3.3", reason="shared-stream ack mode")

KEY = "stateful_idempotency_key"


def cursor(store: DualBackend) -> int | None:
    record = store.read("tests", "src", "watermark")
    return None if record is None else int(json.loads(record.value)["cursor"])


def keys(triggerer: Triggerer) -> list[str]:
    return [entry.event.payload[KEY] for entry in triggerer.entries]


class DictCounter(CounterBase):
    """The counter trigger with dict payloads (which carry idempotency keys)."""

    async def body(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        async for event in super().body(watermark):
            yield TriggerEvent({"n": event.payload})


def dict_counter(store: DualBackend, **options: Any) -> type[DictCounter]:
    class Counter(DictCounter):
        @stateful(namespace="tests", name="{source}", backend=store, **options)
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            async for event in self.body(watermark):
                yield event

    return Counter


def test_a_decorated_event_trigger_gets_the_shared_stream_members() -> None:
    trigger_class = make_trigger_class(MemoryBackend())
    assert "create_shared_stream_producer" in vars(trigger_class)
    trigger = trigger_class("src", [1])
    assert trigger.shared_stream_key() == trigger_class("src", [1]).shared_stream_key()
    assert trigger.shared_stream_key() != trigger_class("other", [1]).shared_stream_key()


def test_ack_false_and_other_commit_modes_keep_the_standalone_path() -> None:
    for trigger_class in (
        make_trigger_class(MemoryBackend(), ack=False),
        make_trigger_class(MemoryBackend(), commit="before_event"),
    ):
        assert "create_shared_stream_producer" not in vars(trigger_class)
        assert trigger_class("src", [1]).shared_stream_key() is None


def test_a_class_with_its_own_shared_stream_is_left_alone() -> None:
    class OwnStream(CounterBase):
        def shared_stream_key(self) -> Any:
            return "mine"

        @stateful(namespace="tests", name="{source}", backend=MemoryBackend())
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            async for event in self.body(watermark):
                yield event

    assert "create_shared_stream_producer" not in vars(OwnStream)
    assert OwnStream("src", [1]).shared_stream_key() == "mine"


def test_a_subclass_that_replaces_run_is_run_itself() -> None:
    parent = make_trigger_class(MemoryBackend())

    class Replaced(parent):  # type: ignore[valid-type,misc]
        async def run(self) -> AsyncIterator[TriggerEvent]:
            yield TriggerEvent("mine")

    class Inherited(parent):  # type: ignore[valid-type,misc]
        pass

    assert Replaced("src", [1]).shared_stream_key() is None  # the triggerer calls Replaced.run()
    assert Inherited("src", [1]).shared_stream_key() is not None  # the inherited @stateful run()


def test_a_deferred_tasks_trigger_keeps_the_standalone_path() -> None:
    trigger = make_trigger_class(MemoryBackend())("src", [1])
    # What the triggerer sets for a deferred task's trigger (the real TaskInstance has more).
    trigger.task_instance = SimpleNamespace(task_id="wait")  # type: ignore[assignment]
    assert trigger.shared_stream_key() is None


async def test_nothing_is_saved_until_airflow_confirms_the_events(backend: DualBackend) -> None:
    triggerer = Triggerer(store_events=False)
    trigger = make_trigger_class(backend)("src", [1, 2, 3], then="block")
    triggerer.start(trigger)
    await trigger.blocked.wait()
    await until(lambda: triggerer.events == [1, 2, 3])
    for _ in range(20):  # the runner resumed the generator after each event; nothing saved
        await asyncio.sleep(0.005)
    assert cursor(backend) is None
    assert triggerer.store_events() == 3
    await until(lambda: cursor(backend) == 3)
    await triggerer.stop()


async def test_a_crash_before_the_confirmation_repeats_the_events_with_the_same_keys(
    backend: DualBackend,
) -> None:
    trigger_class = dict_counter(backend)
    first = Triggerer(store_events=False)
    trigger = trigger_class("src", [1, 2, 3], then="block")
    first.start(trigger)
    await until(lambda: len(first.entries) == 3)
    # Airflow stored and confirmed event 1 only; then the triggerer was killed.
    first.runner._shared_streams.confirm_persisted([first.entries[0].persist_seq])
    await until(lambda: cursor(backend) == 1)
    await first.stop()

    second = Triggerer()
    second.start(trigger_class("src", [1, 2, 3], then="block"))
    await until(lambda: len(second.entries) == 2)
    await second.settled()
    await second.stop()
    assert second.events == [{"n": 2}, {"n": 3}]  # never a skip
    assert keys(second) == keys(first)[1:]  # a repeat carries the key consumers already saw
    assert cursor(backend) == 3


async def test_an_event_airflow_never_confirms_fails_the_trigger_and_saves_nothing(
    backend: DualBackend,
) -> None:
    triggerer = Triggerer(store_events=False)
    triggerer.runner._shared_streams._ack_timeout = 0.2  # [triggerer] shared_stream_ack_timeout
    triggerer.start(make_trigger_class(backend)("src", [1, 2], then="block"))
    with pytest.raises(Exception) as failure:
        await triggerer.finished()
    assert failure.type.__name__ in {"AckTimeout", EventNotStoredError.__name__}
    assert cursor(backend) is None


async def test_a_producer_that_loses_a_save_race_stops_emitting(backend: DualBackend) -> None:
    trigger_class = make_trigger_class(backend)
    triggerer = Triggerer(store_events=False)
    trigger = trigger_class("src", [1, 2, 3], then="block")
    triggerer.start(trigger)
    await until(lambda: len(triggerer.entries) == 3)
    # Another triggerer running the same watcher saved first.
    theirs = Watermark[int]()
    theirs.advance(cursor=7)
    backend.write("tests", "src", "watermark", theirs.to_state_json(), expected_version=None)
    triggerer.store_events()
    with pytest.raises(StateConflictError):
        await triggerer.finished()
    assert cursor(backend) == 7  # theirs stands


async def test_every_dict_event_carries_a_distinct_idempotency_key() -> None:
    triggerer = Triggerer()
    triggerer.start(dict_counter(MemoryBackend())("src", [1, 2, 3], then="block"))
    await until(lambda: len(triggerer.entries) == 3)
    await triggerer.settled()
    await triggerer.stop()
    assert len(set(keys(triggerer))) == 3 and all(len(k) == 32 for k in keys(triggerer))


async def test_the_idempotency_key_can_be_turned_off_and_never_replaces_a_users_field() -> None:
    plain = [e.payload async for e in dict_counter(MemoryBackend(), idempotency_key=False)("s", [1]).run()]
    assert plain == [{"n": 1}]

    class OwnKey(CounterBase):
        @stateful(namespace="tests", name="{source}", backend=MemoryBackend())
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            watermark.advance(cursor=1)
            yield TriggerEvent({KEY: "mine"})

    assert [e.payload async for e in OwnKey("s", [1]).run()] == [{KEY: "mine"}]


# -- bursts larger than a shared-stream subscriber queue -------------------------------------------
#
# Airflow puts each raw event a producer yields into every subscriber's queue, bounded by
# [triggerer] shared_stream_subscriber_queue_size, and fails the trigger when one is full. Without
# backpressure a scan of more new items than that killed the watcher before a single event was
# stored, again after every restart.

QUEUE = 100


@pytest.fixture
def small_queue(monkeypatch: pytest.MonkeyPatch) -> int:
    """A subscriber queue of ``QUEUE`` events, read by the TriggerRunner the test builds afterwards."""
    monkeypatch.setenv("AIRFLOW__TRIGGERER__SHARED_STREAM_SUBSCRIBER_QUEUE_SIZE", str(QUEUE))
    return QUEUE


async def test_a_burst_fifty_times_the_subscriber_queue_is_delivered_once_and_saved(
    small_queue: int, tmp_path: Any
) -> None:
    store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    items = list(range(1, 5001))
    triggerer = Triggerer()  # stores and confirms queued events continuously, as the supervisor does
    triggerer.start(dict_counter(store)("src", items, then="block"))
    await until(lambda: len(triggerer.entries) == len(items) or triggerer.task.done())  # type: ignore[union-attr]
    assert triggerer.task is not None and not triggerer.task.done(), "the trigger failed"
    await triggerer.settled()
    await triggerer.stop()
    store.dispose()

    assert triggerer.events == [{"n": n} for n in items]  # every event once, in order
    assert all(entry.persist_seq is not None for entry in triggerer.entries)  # each one ack-gated
    assert len(set(keys(triggerer))) == len(items)
    assert cursor(SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")) == 5000  # nothing past the burst


async def test_backpressure_holds_a_burst_at_the_queue_size_until_airflow_confirms(
    small_queue: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="stateful")
    store = MemoryBackend()
    triggerer = Triggerer(store_events=False)
    trigger = make_trigger_class(store)("src", list(range(1, 1001)), then="block")
    triggerer.start(trigger)
    await until(lambda: len(triggerer.entries) == small_queue)
    for _ in range(40):  # the loop runs freely: the producer waits, it does not spin or overflow
        await asyncio.sleep(0.005)
    assert len(triggerer.entries) == small_queue
    assert triggerer.task is not None and not triggerer.task.done()
    assert cursor(store) is None  # nothing confirmed, nothing saved
    held = [r.getMessage() for r in caplog.records if "holds the rest of a burst back" in r.getMessage()]
    assert len(held) == 1 and f"{small_queue} await Airflow's confirmation" in held[0]

    # Airflow stores and confirms the first 40: the watermark moves to them, 40 more are emitted.
    triggerer.runner._shared_streams.confirm_persisted([e.persist_seq for e in triggerer.entries[:40]])
    triggerer.stored = 40
    await until(lambda: cursor(store) == 40 and len(triggerer.entries) == small_queue + 40)
    for _ in range(20):
        await asyncio.sleep(0.005)
    assert len(triggerer.entries) == small_queue + 40

    # The supervisor catches up: the rest of the burst follows, once each, and the burst is logged.
    auto = asyncio.create_task(_store_continuously(triggerer))
    await trigger.blocked.wait()
    await until(lambda: cursor(store) == 1000)
    auto.cancel()
    await triggerer.stop()
    assert triggerer.events == list(range(1, 1001))
    held = [r.getMessage() for r in caplog.records if "holds the rest of a burst back" in r.getMessage()]
    done = [r.getMessage() for r in caplog.records if "delivered a burst of 1000 events" in r.getMessage()]
    assert len(held) == 1 and len(done) == 1  # once per burst


async def test_a_new_burst_after_a_quiet_moment_is_logged_again(
    small_queue: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="stateful")

    class TwoScans(DictCounter):
        """Two scans of 250 new items, with a quiet poll between them."""

        @stateful(namespace="tests", name="{source}", backend=MemoryBackend())
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            for scan in (range(1, 251), range(251, 501)):
                for n in scan:
                    watermark.advance(cursor=n)
                    yield TriggerEvent({"n": n})
                # A quiet poll: run() waits, and Airflow confirms everything emitted so far
                # (however long a loaded machine takes), which ends the burst.
                await triggerer.settled()
            self.blocked.set()
            await asyncio.Event().wait()

    triggerer = Triggerer()
    trigger = TwoScans("src", [])
    triggerer.start(trigger)
    await trigger.blocked.wait()
    await triggerer.settled()
    await triggerer.stop()
    assert triggerer.events == [{"n": n} for n in range(1, 501)]
    held = [r for r in caplog.records if "holds the rest of a burst back" in r.getMessage()]
    done = [r for r in caplog.records if "delivered a burst of 250 events" in r.getMessage()]
    assert len(held) == 2 and len(done) == 2
    assert {r.levelname for r in held + done} == {"INFO"}


async def test_an_unbounded_queue_never_holds_a_burst_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__TRIGGERER__SHARED_STREAM_SUBSCRIBER_QUEUE_SIZE", "0")  # asyncio: no bound
    caplog.set_level("INFO", logger="stateful")
    triggerer = Triggerer(store_events=False)
    triggerer.start(make_trigger_class(MemoryBackend())("src", list(range(1, 2001)), then="block"))
    await until(lambda: len(triggerer.entries) == 2000)
    await triggerer.stop()
    assert not [r for r in caplog.records if "holds the rest of a burst back" in r.getMessage()]


async def _store_continuously(triggerer: Triggerer) -> None:
    while True:
        triggerer.store_events()
        await asyncio.sleep(0.005)
