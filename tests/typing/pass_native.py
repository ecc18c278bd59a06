"""Must pass mypy --strict: the native store and the resolution functions, as users call them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from typing_extensions import assert_type

from stateful import Watermark, stateful
from stateful.backends import AsyncStateBackend, NativeBackend, StateBackend
from stateful.backends._resolve import resolve_async_store, resolve_sync_store
from stateful.backends.native import NativeDocument, native_key, parse_native_key

sync_store: StateBackend = NativeBackend()
async_store: AsyncStateBackend = NativeBackend(max_value_bytes=0)


class WatchedTrigger(BaseEventTrigger):
    def __init__(self, directory: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
        self.directory = directory

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.typing.pass_native.WatchedTrigger", {"directory": self.directory})

    @stateful(namespace="files", name="{directory}", backend=NativeBackend())
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        watermark.advance(key="a.csv")
        yield TriggerEvent({"path": "a.csv"})


def sensor_side(task: object, context: Mapping[str, Any]) -> StateBackend:
    choice = resolve_sync_store(None, task, context)
    assert_type(choice.reason, str)
    return choice.store


async def trigger_side(trigger: WatchedTrigger) -> AsyncStateBackend:
    choice = await resolve_async_store(None, trigger)
    return choice.store


key: str = native_key("files", "landing")
address: tuple[str, str, str] | None = parse_native_key(key)
document: dict[str, Any] = NativeDocument.create(
    "files", "landing", "watermark", "{}", updated_by=None
).to_json_value()
