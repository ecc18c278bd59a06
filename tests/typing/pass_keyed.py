"""Must pass mypy --strict: a ``Keyed[Model]`` parameter gives one watermark per partition key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from typing_extensions import assert_type

from stateful import Keyed, Watermark, stateful


class TenantState(Watermark[int]):
    batches: int = 0


class PrefixesTrigger(BaseEventTrigger):
    def __init__(self, bucket: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
        self.bucket = bucket

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.typing.pass_keyed.PrefixesTrigger", {"bucket": self.bucket})

    @stateful(namespace="s3", name="{bucket}")
    async def run(self, keyed: Keyed[Watermark[str]]) -> AsyncIterator[TriggerEvent]:
        assert_type(keyed["eu/"], Watermark[str])
        assert_type(keyed["eu/"].cursor, str | None)
        assert_type(list(keyed), list[str])
        assert_type("eu/" in keyed, bool)
        keyed["eu/"].advance(cursor="eu/a.csv")
        yield TriggerEvent({"prefix": "eu/"})


class TenantsSensor(BaseSensorOperator):
    @stateful(namespace="tenants", name="{task_id}")
    def poke(self, context: Context, tenants: Keyed[TenantState]) -> bool | PokeReturnValue:
        state = tenants["acme"]
        assert_type(state, TenantState)
        assert_type(state.batches, int)
        state.batches += 1
        return PokeReturnValue(is_done=True, xcom_value=tenants.keys())


async def use() -> None:
    trigger = PrefixesTrigger("landing")
    async for event in trigger.run():  # the Keyed parameter is injected: run() takes nothing
        assert_type(event, TriggerEvent)
    sensor = TenantsSensor(task_id="t")
    assert_type(sensor.poke({}), bool | PokeReturnValue)
