"""Behaviour of ``@stateful`` on real Airflow triggers, over every store."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from pydantic import Field

from stateful import Watermark, stateful
from stateful.backends import MemoryBackend
from stateful.errors import StateConflictError, StateValidationError
from tests.conftest import DualBackend
from tests.triggers import Boom, make_trigger_class


class OrdersState(Watermark[int]):
    """A user model with its own typed fields."""

    batches: int = 0
    last_batch: list[int] = Field(default_factory=list)


async def take(run: AsyncIterator[TriggerEvent], n: int) -> list[Any]:
    """Take ``n`` events the way the triggerer does: each ``__anext__`` resumes the generator."""
    return [(await anext(run)).payload for _ in range(n)]


def stored(store: DualBackend, name: str = "src") -> dict[str, Any] | None:
    record = store.read("tests", name, "watermark")
    return None if record is None else dict(json.loads(record.value))


async def test_restart_resumes_from_the_saved_state(backend: DualBackend) -> None:
    trigger_class = make_trigger_class(backend)
    first = [e.payload async for e in trigger_class("src", [1, 2, 3]).run()]
    assert first == [1, 2, 3]
    # A new instance, as after a triggerer restart: only items above the saved cursor fire.
    second = [e.payload async for e in trigger_class("src", [1, 2, 3, 4, 5]).run()]
    assert second == [4, 5]
    assert stored(backend) is not None and stored(backend)["cursor"] == 5  # type: ignore[index]


async def test_each_event_is_saved_when_the_consumer_resumes(backend: DualBackend) -> None:
    run = make_trigger_class(backend, save_batch=1)("src", [1, 2, 3], then="block").run()
    assert await take(run, 1) == [1]
    assert stored(backend) is None  # event 1 handed over, not yet taken
    assert await take(run, 1) == [2]  # resuming after 1 saved it
    assert stored(backend)["cursor"] == 1  # type: ignore[index]
    await run.aclose()  # type: ignore[attr-defined]
    assert stored(backend)["cursor"] == 1  # type: ignore[index]
    # Event 2 was handed over but never taken: the next run repeats it (a repeat, not a skip).
    again = make_trigger_class(backend, save_batch=1)("src", [1, 2, 3], then="block").run()
    assert await take(again, 2) == [2, 3]
    await again.aclose()  # type: ignore[attr-defined]


async def test_an_exception_saves_nothing_past_the_last_taken_event(backend: DualBackend) -> None:
    trigger_class = make_trigger_class(backend)
    with pytest.raises(Boom):
        async for _ in trigger_class("src", [1, 2], then="raise").run():
            pass
    # Both events were taken (resumed), so both are saved; the advance to 10_000 before the
    # exception is not.
    assert stored(backend)["cursor"] == 2  # type: ignore[index]
    assert [e.payload async for e in trigger_class("src", [1, 2, 3]).run()] == [3]


async def test_cancellation_saves_nothing_more(backend: DualBackend) -> None:
    trigger_class = make_trigger_class(backend, save_batch=1)
    events: list[Any] = []

    trigger = trigger_class("src", [1, 2], then="block")

    async def consume() -> None:
        async for event in trigger.run():
            events.append(event.payload)

    task = asyncio.create_task(consume())
    await trigger.blocked.wait()  # past both events, waiting for more
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = backend.read("tests", "src", "watermark")
    assert record is not None and json.loads(record.value)["cursor"] == 2
    assert record.version == 2  # one save per taken event, none on cancellation


async def test_before_event_saves_before_the_handover(backend: DualBackend) -> None:
    run = make_trigger_class(backend, commit="before_event")("src", [1, 2], then="block").run()
    assert await take(run, 1) == [1]
    assert stored(backend)["cursor"] == 1  # type: ignore[index]
    await run.aclose()  # type: ignore[attr-defined]
    # At-most-once: event 1 was handed over but not taken, and it is not repeated.
    rerun = make_trigger_class(backend, commit="before_event")("src", [1, 2]).run()
    assert [e.payload async for e in rerun] == [2]


async def test_never_reads_the_saved_state_and_writes_nothing(backend: DualBackend) -> None:
    assert [e.payload async for e in make_trigger_class(backend)("src", [1, 2]).run()] == [1, 2]
    version = backend.read("tests", "src", "watermark").version  # type: ignore[union-attr]
    # A waiting trigger sharing a sensor's watermark: it starts from it and leaves it alone.
    reader = make_trigger_class(backend, commit="never")("src", [1, 2, 3, 4])
    assert [e.payload async for e in reader.run()] == [3, 4]
    assert backend.read("tests", "src", "watermark").version == version  # type: ignore[union-attr]
    assert stored(backend)["cursor"] == 2  # type: ignore[index]


async def test_a_normal_return_saves_pending_changes_and_skips_unchanged_saves(
    backend: DualBackend,
) -> None:
    trigger_class = make_trigger_class(backend)
    assert [e.payload async for e in trigger_class("src", [7]).run()] == [7]
    version = backend.read("tests", "src", "watermark").version  # type: ignore[union-attr]
    assert [e.payload async for e in trigger_class("src", [7]).run()] == []
    assert backend.read("tests", "src", "watermark").version == version  # type: ignore[union-attr]


BATCH_STORE = MemoryBackend()


class BatchTrigger(BaseEventTrigger):
    """Uses a subclassed model; saves on return what it changed without emitting."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.test_decorator.BatchTrigger", {})

    @stateful(namespace="tests", name="orders", backend=BATCH_STORE)
    async def run(self, state: OrdersState) -> AsyncIterator[TriggerEvent]:
        start = (state.cursor or 0) + 1
        batch = list(range(start, start + 3))
        state.advance(cursor=batch[-1])
        state.batches += 1
        state.last_batch = batch
        yield TriggerEvent(batch)
        state.batches += 100  # changed after the last event: saved by the normal return


async def test_a_subclassed_model_round_trips_its_fields() -> None:
    assert [e.payload async for e in BatchTrigger().run()] == [[1, 2, 3]]
    assert [e.payload async for e in BatchTrigger().run()] == [[4, 5, 6]]
    record = BATCH_STORE.read("tests", "orders", "watermark")
    assert record is not None
    loaded = OrdersState.from_state_json(record.value)
    assert (loaded.cursor, loaded.batches, loaded.last_batch) == (6, 202, [4, 5, 6])


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not json", "tests/src"),
        ('{"schema_version": 1, "timestamp": null, "cursor": "7", "seen": {}}', "cursor"),
        ('{"schema_version": 1, "timestamp": 1700000000, "cursor": null, "seen": {}}', "timestamp"),
    ],
    ids=["corrupt-json", "cursor-of-another-type", "int-timestamp"],
)
async def test_state_that_does_not_validate_raises_and_is_left_untouched(
    backend: DualBackend, value: str, fragment: str
) -> None:
    backend.write("tests", "src", "watermark", value, expected_version=None)
    with pytest.raises(StateValidationError) as info:
        async for _ in make_trigger_class(backend)("src", [1]).run():
            pass
    message = str(info.value)
    assert "tests/src" in message and fragment in message
    assert "stateful show tests src" in message and "stateful reset tests src" in message
    record = backend.read("tests", "src", "watermark")
    assert record is not None and (record.value, record.version) == (value, 1)


async def test_a_changed_model_raises_instead_of_resetting(backend: DualBackend) -> None:
    # Saved by a model with an extra field, loaded by one that no longer has it.
    backend.write("tests", "src", "watermark", OrdersState(cursor=3).to_state_json(), expected_version=None)
    with pytest.raises(StateValidationError, match="batches"):
        async for _ in make_trigger_class(backend)("src", [1]).run():
            pass


async def test_two_instances_racing_on_one_state_conflict(backend: DualBackend) -> None:
    trigger_class = make_trigger_class(backend, save_batch=1)
    one = trigger_class("src", [1, 2], then="block").run()
    two = trigger_class("src", [1, 2], then="block").run()
    assert await take(one, 1) == [1]
    assert await take(two, 1) == [1]
    assert await take(one, 1) == [2]  # one saves version 1
    with pytest.raises(StateConflictError) as info:
        await take(two, 1)  # two read "nothing stored" and loses the compare-and-set
    assert (info.value.expected_version, info.value.actual_version) == (None, 1)
    await one.aclose()  # type: ignore[attr-defined]


async def test_load_is_logged_at_info_and_saves_at_debug(
    backend: DualBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stateful")
    trigger_class = make_trigger_class(backend)
    [e async for e in trigger_class("src", [1]).run()]
    [e async for e in trigger_class("src", [1, 2]).run()]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    debugs = [
        r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "saved" in r.getMessage()
    ]
    assert "nothing stored yet" in infos[0] and "tests/src" in infos[0]
    assert "loaded tests/src" in infos[1] and "version 1" in infos[1] and "cursor=1" in infos[1]
    assert len(debugs) == 2 and "version 2" in debugs[1]
