"""Triggers shared by the tests: real Airflow ``BaseEventTrigger`` classes with ``@stateful``.

* :class:`CounterBase` and :func:`make_trigger_class`: a counter trigger decorated with the
  store, commit mode and ack mode a test needs (the decorator, triggerer, ack-mode and store
  tests).
* :class:`Numbers`, :class:`Named`, :class:`Orders` (with its model :class:`OrdersState`), :class:`Plain` and
  :func:`own_store_trigger`: what the command-line tests give ``stateful run`` and ``--model``
  as ``tests.triggers:NAME``, in this process or in a subprocess.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, stateful
from stateful._spec import CommitMode
from stateful.backends import SqlBackend
from tests.conftest import DualBackend


class Boom(Exception):
    pass


class CounterBase(BaseEventTrigger):
    """Emits every item above its cursor, then returns, fails, or blocks like a watcher."""

    def __init__(self, source: str, items: list[int], then: str = "return") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source = source
        self.items = items
        self.then = then
        self.blocked = asyncio.Event()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.CounterTrigger", {"source": self.source, "items": self.items, "then": self.then})

    async def body(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        for item in self.items:
            if watermark.cursor is None or item > watermark.cursor:
                watermark.advance(cursor=item)
                yield TriggerEvent(item)
        if self.then == "raise":
            watermark.advance(cursor=10_000)  # must never be saved: the run failed
            raise Boom("source failed")
        if self.then == "block":
            watermark.advance(cursor=20_000)  # never emitted: must never be saved
            self.blocked.set()
            await asyncio.Event().wait()  # a watcher polling forever


def make_trigger_class(
    store: DualBackend, commit: CommitMode = "after_event", *, ack: bool = True, save_batch: int | None = None
) -> type[CounterBase]:
    """The counter trigger, decorated with ``store``, ``commit``, ``ack`` and ``save_batch``."""

    class CounterTrigger(CounterBase):
        @stateful(
            namespace="tests", name="{source}", backend=store, commit=commit, ack=ack, save_batch=save_batch
        )
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            async for event in self.body(watermark):
                yield event

    return CounterTrigger


class Numbers(BaseEventTrigger):
    """Emits the numbers after the stored cursor up to ``total``, one event each.

    With ``hold`` it then advances the cursor once more *without emitting* and waits forever:
    that change must never be saved, however the run is stopped. With ``gate``, each number
    after the first waits until the file ``<gate>.<number>`` exists.
    """

    def __init__(
        self, total: int, hold: bool = False, fail_at: int | None = None, gate: str | None = None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.total, self.hold, self.fail_at, self.gate = total, hold, fail_at, gate

    def serialize(self) -> tuple[str, dict[str, Any]]:
        kwargs = {"total": self.total, "hold": self.hold, "fail_at": self.fail_at, "gate": self.gate}
        return ("tests.triggers.Numbers", kwargs)

    @stateful(namespace="numbers", name="counter")
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        n = watermark.cursor or 0
        first = n + 1
        while n < self.total:
            n += 1
            if self.gate and n > first:
                await _wait_for(Path(f"{self.gate}.{n}"))
            if n == self.fail_at:
                raise RuntimeError(f"the source failed at {n}")
            watermark.advance(cursor=n)
            yield TriggerEvent({"n": n})
        if self.hold:
            watermark.advance(cursor=n + 1)  # pending, never emitted
            await asyncio.Event().wait()


async def _wait_for(path: Path) -> None:
    # A file system poll: there is no event to wait on.
    while not await asyncio.to_thread(path.exists):  # noqa: ASYNC110
        await asyncio.sleep(0.02)


class OrdersState(Watermark[int]):
    """A model with a field of its own."""

    batches: int = 0


class Orders(BaseEventTrigger):
    """Only its model matters to the tests (``--model tests.triggers:Orders``)."""

    def __init__(self, table: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.table = table

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.triggers.Orders", {"table": self.table})

    @stateful(namespace="orders", name="{table}")
    async def run(self, watermark: OrdersState) -> AsyncIterator[TriggerEvent]:
        watermark.batches += 1
        watermark.advance(cursor=watermark.batches)
        yield TriggerEvent({"batch": watermark.batches})


def own_store_trigger(url: str) -> type[BaseEventTrigger]:
    """A trigger naming its own store (``backend=``): a SQL store at ``url``."""

    class OwnStore(BaseEventTrigger):
        def serialize(self) -> tuple[str, dict[str, Any]]:
            return ("tests.triggers.OwnStore", {})

        @stateful(namespace="own", name="store", backend=SqlBackend(url))
        async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
            watermark.advance(key="only")
            yield TriggerEvent({"own": True})

    return OwnStore


class Plain(BaseEventTrigger):
    """Not stateful."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.triggers.Plain", {})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent({})


class Named(BaseEventTrigger):
    """Emits the numbers after the stored cursor up to ``total``, stored as ``files``/``label``.

    The command-line tests give it names that need quoting (a glob, spaces) to check the
    commands the CLI suggests.
    """

    def __init__(self, label: str, total: int = 1) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.label, self.total = label, total

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.triggers.Named", {"label": self.label, "total": self.total})

    @stateful(namespace="files", name="{label}")
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        n = watermark.cursor or 0
        while n < self.total:
            n += 1
            watermark.advance(cursor=n)
            yield TriggerEvent({"n": n})
