"""Must pass mypy --strict: a decorated run() keeps a signature mypy understands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent
from typing_extensions import assert_type

from stateful import Watermark, stateful
from stateful.backends import MemoryBackend


class OrdersState(Watermark[int]):
    batches: int = 0


class FilesTrigger(BaseEventTrigger):
    def __init__(self, directory: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
        self.directory = directory

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.typing.pass_trigger.FilesTrigger", {"directory": self.directory})

    @stateful(namespace="files", name="{directory}", lookback=timedelta(minutes=5))
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        assert_type(watermark, Watermark)
        if watermark.is_new("a.csv"):
            watermark.advance(key="a.csv")
            yield TriggerEvent({"path": "a.csv"})


class OrdersTrigger(BaseTrigger):
    def __init__(self, table: str, limit: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
        self.table = table
        self.limit = limit

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.typing.pass_trigger.OrdersTrigger", {"table": self.table, "limit": self.limit})

    @stateful(
        namespace="orders", name=lambda self: self.table, backend=MemoryBackend(), commit="before_event"
    )
    async def run(self, state: OrdersState) -> AsyncIterator[TriggerEvent]:
        assert_type(state.cursor, int | None)
        assert_type(state.batches, int)
        state.advance(cursor=(state.cursor or 0) + self.limit)
        state.batches += 1
        yield TriggerEvent({"upto": state.cursor})


async def consume() -> None:
    trigger: BaseTrigger = FilesTrigger("/data")
    assert_type(trigger.run(), AsyncIterator[TriggerEvent])
    assert_type(FilesTrigger("/data").run(), AsyncIterator[TriggerEvent])
    async for event in OrdersTrigger("orders", 10).run():
        assert_type(event, TriggerEvent)
