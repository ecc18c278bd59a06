"""``@shared_source`` without shared streams: before Airflow 3.3 each watcher polls on its own.

Runs on every supported Airflow: on 3.3 and later it is the path of a trigger serving a deferred
task (no ack channel); before 3.3 the only one. Each trigger is driven by
:func:`stateful.testing.run_trigger` as the triggerer drives a plain trigger; the watermarks are
in a real SQLite file, at the same addresses the shared path uses.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, shared_source
from stateful._ack import ack_mode_available
from stateful.backends import SqlBackend
from stateful.testing import run_trigger

ITEMS = ["a:1", "b:1", "a:2", "b:2", "b:3"]
POLLS: Counter[str] = Counter()


def tenants_class(store: SqlBackend) -> type[Any]:
    @shared_source(namespace="tests", name="{source}/{tenant}", source="{source}", backend=store)
    class Tenants(BaseEventTrigger):
        def __init__(self, source: str, tenant: str) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.source, self.tenant = source, tenant

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return ("tests.Tenants", {"source": self.source, "tenant": self.tenant})

        if TYPE_CHECKING:

            def run(self) -> AsyncIterator[TriggerEvent]: ...

        async def poll(self) -> AsyncIterator[list[str]]:
            while True:
                POLLS[self.tenant] += 1
                yield ITEMS
                await asyncio.sleep(0.01)

        def select(self, watermark: Watermark[int], listing: list[str]) -> Iterator[TriggerEvent]:
            for item in listing:
                tenant, n = item.split(":")
                if tenant == self.tenant and (watermark.cursor is None or int(n) > watermark.cursor):
                    watermark.advance(cursor=int(n))
                    yield TriggerEvent(item)

    return Tenants


def test_each_watcher_polls_on_its_own_with_its_own_watermark(tmp_path: Path) -> None:
    store = SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    trigger_class = tenants_class(store)
    POLLS.clear()
    runs = {t: asyncio.run(run_trigger(trigger_class("src", t), ack=False, idle_timeout=0.3)) for t in "ab"}
    assert [e.payload for e in runs["a"].events] == ["a:1", "a:2"]
    assert [e.payload for e in runs["b"].events] == ["b:1", "b:2", "b:3"]
    assert POLLS["a"] >= 1 and POLLS["b"] >= 1  # one poller each
    for tenant, last in (("a", 2), ("b", 3)):
        record = store.read("tests", f"src/{tenant}", "watermark")
        assert record is not None and json.loads(record.value)["cursor"] == last
    # A restart emits nothing more: each resumes from its own watermark.
    assert asyncio.run(run_trigger(trigger_class("src", "b"), ack=False, idle_timeout=0.3)).events == []


def test_shared_streams_are_used_exactly_where_airflow_has_them(tmp_path: Path) -> None:
    trigger_class = tenants_class(SqlBackend(f"sqlite:///{tmp_path / 'state.db'}"))
    members = {"shared_stream_key", "create_shared_stream_producer", "filter_shared_stream"}
    assert (members <= set(vars(trigger_class))) == ack_mode_available()
