"""Must FAIL mypy --strict: every line whose comment starts with "E:" is an error mypy must report."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from stateful import Watermark, stateful


class FilesTrigger(BaseTrigger):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("x.FilesTrigger", {})

    @stateful(namespace="files", name="landing")
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        watermark.advance(cursor="not-an-int")  # E: cursor is typed int
        yield TriggerEvent({})


async def misuse() -> None:
    FilesTrigger().run(Watermark[int]())  # E: the watermark is injected, not passed


@stateful(namespace="files", name="landing")  # E: no watermark parameter
async def no_watermark(self: object) -> AsyncIterator[int]:
    yield 1


@stateful(namespace="files", name="landing")  # E: not a Watermark
async def wrong_annotation(self: object, watermark: int) -> AsyncIterator[int]:
    yield watermark
