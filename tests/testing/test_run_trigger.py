"""``run_trigger``, ``restart`` and the crash points, against a correct trigger and two broken ones.

The recipes below are what docs/testing.md tells users to write; each broken trigger must fail one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger

from stateful import Watermark, stateful
from stateful.backends import MemoryBackend
from stateful.errors import StatefulUsageError
from stateful.testing import Crash, restart, run_trigger, use_store
from tests.testing.triggers import Correct, CorrectPlain, RefiresAfterRestart, SkipsOnCrash

ITEMS = [1, 2, 3, 4, 5]
QUIET = 0.2  # these triggers wait forever once done: a short idle timeout ends a run


def no_repeat_after_restart(trigger: BaseEventTrigger) -> None:
    """The recipe: what a run took, a restart does not emit again."""
    first = asyncio.run(run_trigger(trigger, max_events=3))
    again = asyncio.run(run_trigger(restart(trigger), idle_timeout=QUIET))
    assert not set(first.payloads) & set(again.payloads), f"repeated after restart: {again.payloads}"


def no_loss_on_crash(trigger: BaseEventTrigger, crash: Crash, at: int = 2) -> list[Any]:
    """The recipe: crash at the ``at``-th event; after a restart every item has come."""
    before = asyncio.run(run_trigger(trigger, max_events=at, crash=crash))
    assert before.reason == "crash"
    after = asyncio.run(run_trigger(restart(trigger), idle_timeout=QUIET))
    missing = set(ITEMS) - set(before.payloads) - set(after.payloads)
    assert not missing, f"lost after a crash {crash} event {at}: {sorted(missing)}"
    return after.payloads


def test_the_last_event_taken_is_saved_unlike_a_break(stateful_store: MemoryBackend) -> None:
    run = asyncio.run(run_trigger(CorrectPlain(ITEMS), max_events=2))
    assert (run.payloads, run.watermark.cursor, run.reason, run.ack) == ([1, 2], 2, "max_events", False)

    async def natural() -> list[Any]:  # the natural test: break once it has what it wants
        events = []
        async for event in CorrectPlain(ITEMS).run():
            events.append(event.payload)
            break
        return events

    assert asyncio.run(natural()) == [3]  # 3 was handed over, not taken: not saved
    assert asyncio.run(run_trigger(CorrectPlain(ITEMS), idle_timeout=QUIET)).payloads == [3, 4, 5]


@pytest.mark.airflow_min("3.3", reason="shared-stream ack mode")
def test_a_watcher_runs_in_ack_mode_and_each_event_is_confirmed_then_saved(
    stateful_store: MemoryBackend,
) -> None:
    run = asyncio.run(run_trigger(Correct(ITEMS), max_events=2))
    assert (run.payloads, run.watermark.cursor, run.ack, run.version) == ([1, 2], 2, True, 2)
    assert run.store == "MemoryBackend"
    rest = asyncio.run(run_trigger(restart(Correct(ITEMS)), idle_timeout=QUIET))
    assert (rest.payloads, rest.reason, rest.watermark.cursor) == ([3, 4, 5], "idle", 5)


@pytest.mark.parametrize("trigger_class", [Correct, CorrectPlain])
def test_a_correct_trigger_passes_the_no_repeat_recipe(
    stateful_store: MemoryBackend, trigger_class: type[Correct]
) -> None:
    no_repeat_after_restart(trigger_class(ITEMS))


def test_a_trigger_that_refires_after_restart_fails_the_no_repeat_recipe(
    stateful_store: MemoryBackend,
) -> None:
    with pytest.raises(AssertionError, match=r"repeated after restart: \[1, 2, 3"):
        no_repeat_after_restart(RefiresAfterRestart(ITEMS))


@pytest.mark.parametrize(
    ("trigger_class", "crash", "repeated"),
    [
        (CorrectPlain, "before_save", [2, 3, 4, 5]),
        (CorrectPlain, "after_save", [3, 4, 5]),
        pytest.param(
            Correct,
            "before_confirm",
            [2, 3, 4, 5],
            marks=pytest.mark.airflow_min("3.3", reason="shared-stream ack mode"),
        ),
        pytest.param(
            Correct,
            "after_confirm",
            [2, 3, 4, 5],
            marks=pytest.mark.airflow_min("3.3", reason="shared-stream ack mode"),
        ),
        (Correct, "before_save", [2, 3, 4, 5]),
        (Correct, "after_save", [3, 4, 5]),
    ],
)
def test_a_correct_trigger_loses_nothing_at_any_commit_point(
    stateful_store: MemoryBackend, trigger_class: type[Correct], crash: Crash, repeated: list[int]
) -> None:
    # Before the commit: the 2nd event comes again (at-least-once); after it: it does not.
    assert no_loss_on_crash(trigger_class(ITEMS), crash) == repeated


@pytest.mark.parametrize(
    "crash",
    [
        "after_save",
        pytest.param("after_confirm", marks=pytest.mark.airflow_min("3.3", reason="shared-stream ack mode")),
    ],
)
def test_a_trigger_that_saves_ahead_of_its_events_fails_the_no_loss_recipe(
    stateful_store: MemoryBackend, crash: Crash
) -> None:
    with pytest.raises(AssertionError, match=r"lost after a crash .* \[3, 4, 5\]"):
        no_loss_on_crash(SkipsOnCrash(ITEMS), crash)


def test_nothing_is_written_after_a_crash(stateful_store: MemoryBackend) -> None:
    run = asyncio.run(run_trigger(CorrectPlain(ITEMS), max_events=3, crash="before_save"))
    assert (run.payloads, run.watermark.cursor, run.version) == ([1, 2, 3], 2, 2)
    record = stateful_store.read("kit", "items", "watermark")
    assert record is not None and record.version == 2


def test_a_trigger_that_returns_or_fails(stateful_store: MemoryBackend) -> None:
    class Finite:
        @stateful(namespace="kit", name="finite")
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[int]:
            for n in range((watermark.cursor or 0) + 1, 3):
                watermark.advance(cursor=n)
                yield n

    class Failing:
        @stateful(namespace="kit", name="failing")
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[int]:
            watermark.advance(cursor=1)
            yield 1
            raise RuntimeError("the source failed")

    run = asyncio.run(run_trigger(Finite()))
    assert (run.events, run.reason, run.watermark.cursor) == ([1, 2], "returned", 2)
    with pytest.raises(RuntimeError, match="the source failed"):
        asyncio.run(run_trigger(Failing()))
    assert stateful_store.read("kit", "failing", "watermark") is not None  # event 1 was taken


def test_until_stops_while_the_trigger_waits(stateful_store: MemoryBackend) -> None:
    trigger = CorrectPlain(ITEMS)
    run = asyncio.run(run_trigger(trigger, until=lambda: True, idle_timeout=60))
    assert (run.payloads, run.reason, run.watermark.cursor) == ([1, 2, 3, 4, 5], "until", 5)


def test_a_given_store_wins_over_use_store() -> None:
    own = MemoryBackend()

    class Owned:
        @stateful(namespace="kit", name="owned", backend=own)
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[int]:
            watermark.advance(cursor=1)
            yield 1

    with use_store(MemoryBackend()) as scoped:
        asyncio.run(run_trigger(Owned()))
    assert own.read("kit", "owned", "watermark") is not None
    assert scoped.list() == []


def test_misuse_is_explained(stateful_store: MemoryBackend) -> None:
    class NotDecorated:
        async def run(self) -> AsyncIterator[int]:
            yield 1

    with pytest.raises(StatefulUsageError, match=r"NotDecorated.run\(\) is not decorated with @stateful"):
        asyncio.run(run_trigger(NotDecorated()))
    with pytest.raises(StatefulUsageError, match="needs max_events"):
        asyncio.run(run_trigger(Correct(ITEMS), crash="after_save"))
    with pytest.raises(StatefulUsageError, match="outside ack mode the commit points are"):
        asyncio.run(run_trigger(CorrectPlain(ITEMS), max_events=1, crash="before_confirm"))


def test_restart_needs_an_importable_class_path() -> None:
    class Local(Correct):
        pass

    again = restart(Correct([7]))
    assert (type(again), again.items) == (Correct, [7])
    with pytest.raises(StatefulUsageError, match="does not import"):
        restart(Local([1]))
