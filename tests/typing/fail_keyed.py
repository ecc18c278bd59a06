"""Must FAIL mypy --strict: every line whose comment starts with "E:" is an error mypy must report."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from stateful import Keyed, Watermark, stateful


class PrefixesTrigger(BaseTrigger):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("x.PrefixesTrigger", {})

    @stateful(namespace="s3", name="landing")
    async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
        keyed["eu"].advance(cursor="not-an-int")  # E: each partition's cursor is typed int
        keyed[3].advance(cursor=1)  # E: partition keys are str
        keyed.advance(cursor=1)  # E: a Keyed is not a watermark: look a partition up first
        yield TriggerEvent({})


async def misuse() -> None:
    PrefixesTrigger().run(Keyed)  # E: the keyed watermarks are injected, not passed


@stateful(namespace="s3", name="landing")
async def wrong_model(self: object, keyed: Keyed[int]) -> AsyncIterator[int]:  # E: int is no Watermark
    yield 1
