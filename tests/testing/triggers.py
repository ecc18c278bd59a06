"""Triggers for the kit's tests: one correct, two deliberately broken, as users might write them.

Each emits one event per item of ``items`` (sorted integers, as a source would list them),
declared with ``backend=None`` so that ``use_store`` / the ``stateful_store`` fixture picks the
store. Module-level, so that ``restart()`` rebuilds them from ``serialize()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, stateful


class _Items(BaseEventTrigger):
    def __init__(self, items: list[int], source: str = "items") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.items, self.source = items, source

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"items": self.items, "source": self.source},
        )


class Correct(_Items):
    """Advances the watermark to each item as it yields it; then waits for more, like a watcher."""

    @stateful(namespace="kit", name="{source}")
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        for item in self.items:
            if watermark.cursor is None or item > watermark.cursor:
                watermark.advance(cursor=item)
                yield TriggerEvent(item)
        await asyncio.Event().wait()


class CorrectPlain(Correct):
    """:class:`Correct` outside ack mode (saves when the triggerer resumes it)."""

    @stateful(namespace="kit", name="{source}", ack=False)
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        for item in self.items:
            if watermark.cursor is None or item > watermark.cursor:
                watermark.advance(cursor=item)
                yield TriggerEvent(item)
        await asyncio.Event().wait()


class RefiresAfterRestart(_Items):
    """Bug: remembers what it emitted on the instance, not in the watermark."""

    @stateful(namespace="kit", name="{source}")
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        emitted: set[int] = getattr(self, "emitted", set())
        self.emitted = emitted
        for item in self.items:
            if item not in emitted:
                emitted.add(item)
                yield TriggerEvent(item)
        await asyncio.Event().wait()


class SkipsOnCrash(_Items):
    """Bug: advances the watermark to the whole batch before emitting the batch's first item."""

    @stateful(namespace="kit", name="{source}")
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        batch = [item for item in self.items if watermark.cursor is None or item > watermark.cursor]
        if batch:
            watermark.advance(cursor=batch[-1])
        for item in batch:
            yield TriggerEvent(item)
        await asyncio.Event().wait()
