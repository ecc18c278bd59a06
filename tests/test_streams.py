"""``@shared_source``: one poll for many watchers, each with its own watermark, under Airflow's runner.

Every test runs several watchers of one source in Airflow 3.3's real ``TriggerRunner``, whose
``SharedStreamManager`` groups them by their shared-stream key; the test plays the triggerer's
supervisor (it stores the queued events and confirms their persist sequence numbers) and may
withhold the confirmations of one watcher, as a triggerer whose events for it are never stored.
The watermarks are in a real SQLite file.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, shared_source
from stateful.backends import SqlBackend
from stateful.errors import StatefulUsageError
from tests._streams import Triggerer
from tests._triggerer import until

pytestmark = pytest.mark.airflow_min("3.3", reason="shared streams")

# The source each test lists: items "tenant:n", and how often it was listed.
ITEMS: dict[str, list[str]] = {}
LISTINGS: Counter[str] = Counter()
POLLERS: Counter[str] = Counter()


class Boom(Exception):
    pass


class TenantsBase(BaseEventTrigger):
    """Watches one tenant's items of a source."""

    def __init__(self, source: str, tenant: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source, self.tenant = source, tenant

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.Tenants", {"source": self.source, "tenant": self.tenant})


def tenants_class(store: SqlBackend, *, failing: str = "") -> type[TenantsBase]:
    @shared_source(namespace="tests", name="{source}/{tenant}", source="{source}", backend=store)
    class Tenants(TenantsBase):
        async def poll(self) -> AsyncIterator[list[str]]:
            POLLERS[self.source] += 1
            while True:
                LISTINGS[self.source] += 1
                yield list(ITEMS[self.source])
                await asyncio.sleep(0.01)

        def select(self, watermark: Watermark[int], listing: list[str]) -> Iterator[TriggerEvent]:
            if self.tenant == failing:
                raise Boom(f"select of {self.tenant} failed")
            for item in listing:
                tenant, n = item.split(":")
                if tenant == self.tenant and (watermark.cursor is None or int(n) > watermark.cursor):
                    watermark.advance(cursor=int(n))
                    yield TriggerEvent({"item": item})

    return Tenants


def cursor(store: SqlBackend, source: str, tenant: str) -> int | None:
    record = store.read("tests", f"{source}/{tenant}", "watermark")
    return None if record is None else int(json.loads(record.value)["cursor"])


@pytest.fixture
def store(tmp_path: Path) -> SqlBackend:
    return SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def source(request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.node.name
    ITEMS[name] = []
    yield name
    ITEMS.pop(name, None)


def items(tenant: str, numbers: range) -> list[str]:
    return [f"{tenant}:{n}" for n in numbers]


async def test_one_poll_serves_every_watcher_each_with_its_own_watermark(
    store: SqlBackend, source: str
) -> None:
    ITEMS[source] = items("a", range(1, 4)) + items("b", range(1, 3)) + items("c", range(1, 2))
    trigger_class = tenants_class(store)
    triggerer = Triggerer()
    for trigger_id, tenant in enumerate("abc", start=1):
        triggerer.start(trigger_id, trigger_class(source, tenant))
    await until(lambda: [cursor(store, source, t) for t in "abc"] == [3, 2, 1])
    assert POLLERS[source] == 1  # one poll loop for the three watchers
    assert triggerer.events(1) == items("a", range(1, 4))
    assert triggerer.events(2) == items("b", range(1, 3))
    assert triggerer.events(3) == items("c", range(1, 2))

    # New items for b only: only b's watermark moves; one listing per cycle still serves all.
    version_a = store.read("tests", f"{source}/a", "watermark")
    before = LISTINGS[source]
    ITEMS[source] += items("b", range(3, 6))
    await until(lambda: cursor(store, source, "b") == 5)
    assert store.read("tests", f"{source}/a", "watermark") == version_a
    assert triggerer.events(2) == items("b", range(1, 6))
    assert triggerer.events(1) == items("a", range(1, 4))
    await until(lambda: LISTINGS[source] > before + 2)
    assert POLLERS[source] == 1
    await triggerer.stop()


async def test_an_unconfirmed_watcher_blocks_no_other_and_is_rewound_after_the_ack_timeout(
    store: SqlBackend, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__TRIGGERER__SHARED_STREAM_ACK_TIMEOUT", "1")
    ITEMS[source] = items("a", range(1, 4)) + items("b", range(1, 3))
    trigger_class = tenants_class(store)
    triggerer = Triggerer(withheld=frozenset({1}))  # a's events are never confirmed stored
    triggerer.start(1, trigger_class(source, "a"))
    triggerer.start(2, trigger_class(source, "b"))
    # b's watermark advances while a's events still wait for their confirmation.
    await until(lambda: cursor(store, source, "b") == 2)
    assert triggerer.events(1) == items("a", range(1, 4))
    assert cursor(store, source, "a") is None
    ITEMS[source] += items("b", range(3, 5))
    await until(lambda: cursor(store, source, "b") == 4)
    # Airflow's ack timeout fails a's trigger; its watermark was never advanced.
    await until(lambda: triggerer.tasks[1].done())
    assert "AckTimeout" in repr(triggerer.tasks[1].exception())
    assert cursor(store, source, "a") is None
    # b goes on, alone in the group now.
    ITEMS[source] += items("b", range(5, 7))
    await until(lambda: cursor(store, source, "b") == 6)
    # Nothing of b's lost. Had one of b's items still sat in a's queue when Airflow failed a, it
    # would count as not confirmed and b would emit it again: a repeat, by design.
    assert sorted(set(triggerer.events(2))) == items("b", range(1, 7))

    # Airflow restarts a's trigger: it emits its events again from its own (empty) watermark.
    triggerer.withheld = frozenset()
    triggerer.start(3, trigger_class(source, "a"))
    await until(lambda: cursor(store, source, "a") == 3)
    assert triggerer.events(3) == items("a", range(1, 4))
    assert not triggerer.tasks[2].done()
    await triggerer.stop()


async def test_a_failing_watcher_fails_alone(store: SqlBackend, source: str) -> None:
    ITEMS[source] = items("a", range(1, 3)) + items("b", range(1, 3))
    trigger_class = tenants_class(store, failing="a")
    triggerer = Triggerer()
    triggerer.start(1, trigger_class(source, "a"))
    triggerer.start(2, trigger_class(source, "b"))
    await until(lambda: triggerer.tasks[1].done())
    assert isinstance(triggerer.tasks[1].exception(), Boom)
    await until(lambda: cursor(store, source, "b") == 2)
    ITEMS[source] += items("b", range(3, 4))
    await until(lambda: cursor(store, source, "b") == 3)
    assert cursor(store, source, "a") is None
    assert triggerer.events(1) == []
    await triggerer.stop()


async def test_a_restart_resumes_each_watcher_from_its_own_watermark(store: SqlBackend, source: str) -> None:
    ITEMS[source] = items("a", range(1, 3)) + items("b", range(1, 4))
    trigger_class = tenants_class(store)
    first = Triggerer()
    first.start(1, trigger_class(source, "a"))
    first.start(2, trigger_class(source, "b"))
    await until(lambda: (cursor(store, source, "a"), cursor(store, source, "b")) == (2, 3))
    await first.stop()

    ITEMS[source] += items("a", range(3, 5)) + items("b", range(4, 5))
    second = Triggerer()
    second.start(1, trigger_class(source, "a"))
    second.start(2, trigger_class(source, "b"))
    await until(lambda: (cursor(store, source, "a"), cursor(store, source, "b")) == (4, 4))
    assert second.events(1) == items("a", range(3, 5))
    assert second.events(2) == items("b", range(4, 5))
    await second.stop()


async def test_a_burst_larger_than_a_subscriber_queue_overflows_nothing(
    store: SqlBackend, source: str
) -> None:
    ITEMS[source] = []
    trigger_class = tenants_class(store)
    triggerer = Triggerer()
    for trigger_id, tenant in enumerate("abc", start=1):
        triggerer.start(trigger_id, trigger_class(source, tenant))
    await until(lambda: LISTINGS[source] >= 2)
    # 3,000 items across three watchers, arriving in many small listings and one large one.
    for n in range(1, 301):
        ITEMS[source] += [f"{tenant}:{n}" for tenant in "abc"]
        if n % 10 == 0:
            await asyncio.sleep(0)
    ITEMS[source] += [f"{tenant}:{n}" for n in range(301, 1001) for tenant in "abc"]
    await until(lambda: [cursor(store, source, t) for t in "abc"] == [1000, 1000, 1000])
    for trigger_id, tenant in enumerate("abc", start=1):
        assert triggerer.events(trigger_id) == items(tenant, range(1, 1001))
        assert not triggerer.tasks[trigger_id].done()
    assert POLLERS[source] == 1
    await triggerer.stop()


async def test_the_poll_holds_back_while_a_queue_worth_of_items_awaits_confirmation(
    store: SqlBackend, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__TRIGGERER__SHARED_STREAM_SUBSCRIBER_QUEUE_SIZE", "8")
    trigger_class = tenants_class(store)
    triggerer = Triggerer()
    triggerer.paused = True  # nothing is confirmed: without the hold, the queues would overflow
    for trigger_id, tenant in enumerate("abc", start=1):
        triggerer.start(trigger_id, trigger_class(source, tenant))
    await until(lambda: LISTINGS[source] >= 1)
    for n in range(1, 41):  # 40 listings, each with a new item for every watcher: 120 items
        ITEMS[source] += [f"{tenant}:{n}" for tenant in "abc"]
        await until(functools.partial(moved_on, source, LISTINGS[source], triggerer, 8))
    assert len(triggerer.runner.events) <= 8  # held back at a queue's worth of items
    triggerer.paused = False
    await until(lambda: [cursor(store, source, t) for t in "abc"] == [40, 40, 40])
    for trigger_id, tenant in enumerate("abc", start=1):
        assert not triggerer.tasks[trigger_id].done()
        assert sorted(triggerer.events(trigger_id), key=lambda i: int(i.split(":")[1])) == items(
            tenant, range(1, 41)
        )
    await triggerer.stop()


def moved_on(source: str, listings: int, triggerer: Triggerer, held: int) -> bool:
    """Whether the source was listed again since ``listings``, or ``held`` events were queued."""
    return LISTINGS[source] > listings or len(triggerer.runner.events) >= held


def test_the_class_must_split_run_into_poll_and_select(store: SqlBackend) -> None:
    with pytest.raises(StatefulUsageError, match="defines run"):

        @shared_source(namespace="tests", name="{x}", source="{x}")
        class WithRun(BaseEventTrigger):
            async def run(self) -> AsyncIterator[TriggerEvent]:
                yield TriggerEvent(1)

    with pytest.raises(StatefulUsageError, match="poll"):

        @shared_source(namespace="tests", name="{x}", source="{x}")
        class NoPoll(BaseEventTrigger):
            def select(self, watermark: Watermark, listing: Any) -> Iterator[TriggerEvent]:
                yield TriggerEvent(1)
