"""Clear answers to mistakes outside the command line: swapped poke() parameters, names with
surrounding whitespace, addresses that cannot be confused, and items skipped as too late."""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pytest
from airflow.sdk import BaseSensorOperator, Context
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, stateful
from stateful._address import command, display_address
from stateful.backends import MemoryBackend
from stateful.errors import StatefulUsageError, StateNameError
from stateful.sensors import commit

T = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)


# -- the swapped poke() ---------------------------------------------------------------------------


def test_swapped_poke_parameters_are_named_as_such() -> None:
    with pytest.raises(StatefulUsageError) as caught:

        class Swapped(BaseSensorOperator):
            @stateful(namespace="n", name="x", backend=MemoryBackend())  # type: ignore[arg-type]
            def poke(self, watermark: Watermark, context: Context) -> bool:  # type: ignore[override]
                return True

    message = str(caught.value)
    assert "Swap the two parameters" in message
    assert "`def poke(self, context: Context, watermark: Watermark) -> bool`" in message
    assert "found `poke(self, watermark, context)`" in message
    assert "annotated" not in message  # not blamed on context's annotation


def test_swapped_unannotated_poke_parameters_are_named_as_such() -> None:
    with pytest.raises(StatefulUsageError, match="Swap the two parameters"):

        @stateful(namespace="n", name="x", backend=MemoryBackend())
        def poke(self: object, watermark, context) -> bool:  # type: ignore[no-untyped-def]
            return True


def test_a_poke_in_the_right_order_is_accepted() -> None:
    @stateful(namespace="n", name="x", backend=MemoryBackend())
    def poke(self: object, context: Context, watermark: Watermark) -> bool:
        return True

    assert poke.__stateful__.form == "sensor"  # type: ignore[attr-defined]


# -- surrounding whitespace ------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", [" files", "files ", "files\t", "\nfiles"])
def test_a_namespace_with_surrounding_whitespace_is_refused_at_decoration(namespace: str) -> None:
    with pytest.raises(StateNameError, match="leading or trailing whitespace"):
        stateful(namespace=namespace, name="x", backend=MemoryBackend())


class Labelled(BaseEventTrigger):
    def __init__(self, label: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.label = label

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.test_mistakes.Labelled", {"label": self.label})

    @stateful(namespace="files", name="{label}", backend=MemoryBackend())
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent({"label": self.label})


class Called(Labelled):
    @stateful(namespace="files", name=lambda self: self.label, backend=MemoryBackend())
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent({"label": self.label})


async def _first(trigger: Labelled) -> Any:
    events = cast("AsyncGenerator[TriggerEvent, None]", trigger.run())
    try:
        return await events.__anext__()
    finally:
        await events.aclose()


@pytest.mark.parametrize("cls", [Labelled, Called])
def test_a_name_with_surrounding_whitespace_is_refused_when_rendered(cls: type[Labelled]) -> None:
    assert asyncio.run(_first(cls("landing"))).payload["label"] == "landing"
    with pytest.raises(StateNameError, match="leading or trailing whitespace: 'landing '"):
        asyncio.run(_first(cls("landing ")))


# -- addresses and suggested commands --------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [(("a/b", "q"), ("a", "b/q")), (("a", "b c"), ("a b", "c")), (("a", "'b'"), ("a", "b"))],
)
def test_different_addresses_never_display_alike(one: tuple[str, str], other: tuple[str, str]) -> None:
    assert display_address(*one) != display_address(*other)


@pytest.mark.parametrize("name", ["/data/landing/*.csv", "daily reports", "it's", "$HOME", "a;b"])
def test_a_suggested_command_splits_back_into_its_arguments(name: str) -> None:
    assert shlex.split(command("stateful", "show", "files", name)) == ["stateful", "show", "files", name]


def test_the_drivers_log_lines_show_the_address_unambiguously(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="stateful"):
        asyncio.run(_first(Labelled("in/coming")))

    assert "files/'in/coming'" in caplog.text


# -- items older than the lookback -----------------------------------------------------------------


class LateFiles(BaseEventTrigger):
    """Each poll checks ``polls[i]``'s items (name, minutes after T), oldest first, yielding the new ones.

    A late item's log line comes with the next event handed over (or the end of the run): one
    line per poll for a trigger that checks its items oldest first, as the examples do.
    """

    def __init__(self, polls: list[list[tuple[str, int]]]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.polls = polls
        self.seen_skipped: list[int] = []  # watermark.skipped_late after each poll

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.test_mistakes.LateFiles", {"polls": self.polls})

    @stateful(namespace="late", name="files", backend=MemoryBackend(), lookback=timedelta(minutes=5))
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        for poll in self.polls:
            for key, minutes in poll:
                stamp = T + timedelta(minutes=minutes)
                if watermark.is_new(key, stamp):
                    watermark.advance(timestamp=stamp, key=key)
                    yield TriggerEvent({"key": key})
            self.seen_skipped.append(watermark.skipped_late)


async def _all(trigger: LateFiles) -> list[Any]:
    return [event.payload["key"] async for event in trigger.run()]


def test_items_older_than_the_lookback_are_counted_and_logged_once_per_poll(
    caplog: pytest.LogCaptureFixture,
) -> None:
    polls = [
        [("a", 60)],  # the watermark moves to T+60m; the window starts at T+55m
        [("old-1", 10), ("old-2", 20), ("old-3", 50), ("new", 61)],  # oldest first: three too late, one new
        [("in-window", 58)],  # inside the window: new, not late
        [("old-4", 5), ("newer", 62)],
    ]

    with caplog.at_level(logging.INFO, logger="stateful"):
        trigger = LateFiles(polls)
        keys = asyncio.run(_all(trigger))

    assert keys == ["a", "new", "in-window", "newer"]
    assert trigger.seen_skipped == [0, 3, 3, 4]  # what the trigger sees, polls after poll
    lines = [r.getMessage() for r in caplog.records if "older than the lookback" in r.getMessage()]
    assert len(lines) == 2, lines
    assert all(
        r.levelno == logging.INFO for r in caplog.records if "older than the lookback" in r.getMessage()
    )
    assert "late/files skipped 3 items older than the lookback (0:05:00 before" in lines[0]
    assert "the oldest was stamped 2025-06-02T09:10:00.000000Z" in lines[0]
    assert "skipped 1 item older than the lookback" in lines[1]
    assert "the oldest was stamped 2025-06-02T09:05:00.000000Z" in lines[1]


def test_late_items_of_a_poll_that_emits_nothing_are_logged_when_the_run_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="stateful"):
        asyncio.run(_all(LateFiles([[("a", 60)], [("old", 1)]])))

    lines = [r.getMessage() for r in caplog.records if "older than the lookback" in r.getMessage()]
    assert len(lines) == 1 and "skipped 1 item" in lines[0]


def test_the_count_is_in_the_summary_and_never_stored() -> None:
    wm = Watermark(timestamp=T).configure(lookback=timedelta(minutes=5))
    assert wm.is_new("x", T - timedelta(hours=1)) is False
    assert wm.skipped_late == 1
    assert wm.summary().endswith(", skipped_late=1")
    assert "skipped" not in wm.to_state_json()
    assert Watermark.from_state_json(wm.to_state_json()).skipped_late == 0


def test_a_sensor_logs_its_late_items_once_per_poke(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryBackend()
    store.write("late", "sensor", "watermark", Watermark(timestamp=T).to_state_json(), expected_version=None)

    class LateSensor(BaseSensorOperator):
        @stateful(namespace="late", name="sensor", backend=store, lookback=timedelta(minutes=5))
        def poke(self, context: Context, watermark: Watermark) -> bool:
            for minutes in (-30, -20, 1):
                stamp = T + timedelta(minutes=minutes)
                if watermark.is_new(f"f{minutes}", stamp):
                    watermark.advance(timestamp=stamp, key=f"f{minutes}")
            return True

    sensor = LateSensor(task_id="late")
    with caplog.at_level(logging.INFO, logger="stateful"):
        assert sensor.poke({}) is True
        commit(sensor)

    lines = [r.getMessage() for r in caplog.records if "older than the lookback" in r.getMessage()]
    assert len(lines) == 1 and "late/sensor skipped 2 items" in lines[0]
    assert "the oldest was stamped 2025-06-02T08:30:00.000000Z" in lines[0]
