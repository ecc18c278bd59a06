"""Watermark models as a trigger's author changes them over time, and the triggers that use them.

``OrdersV1`` is the model first deployed; the others are what it became, each by one kind of
change (docs/evolving.md). :func:`trigger_for` makes the same trigger for any of them: it
emits each item of ``items`` above the cursor and counts the events in ``batches`` (or
``batch_count``, once renamed), then waits for more, like a watcher. Shared by the driver
tests (tests/test_evolving.py) and the command-line tests (tests/cli/test_evolve.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, stateful

NAMESPACE = "orders"


class OrdersV1(Watermark[int]):
    """As first deployed."""

    batches: int = 0
    legacy: str = "unused"
    zone: str = "7"


class AddedWithDefault(Watermark[int]):
    """A field with a default added: no version, no hook needed."""

    batches: int = 0
    legacy: str = "unused"
    zone: str = "7"
    note: str = "none yet"


class AddedWithoutDefault(Watermark[int]):
    """A field without a default added: the hook fills it."""

    model_version = 2
    batches: int = 0
    legacy: str = "unused"
    zone: str = "7"
    region: str

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        data["region"] = "eu"
        return data


class Removed(Watermark[int]):
    """``legacy`` removed: the hook drops it from stored states."""

    model_version = 2
    batches: int = 0
    zone: str = "7"

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        data.pop("legacy", None)
        return data


class Renamed(Watermark[int]):
    """``batches`` renamed ``batch_count``."""

    model_version = 2
    batch_count: int = 0
    legacy: str = "unused"
    zone: str = "7"

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        data["batch_count"] = data.pop("batches", 0)
        return data


class Retyped(Watermark[int]):
    """``zone`` retyped from text to a number."""

    model_version = 2
    batches: int = 0
    legacy: str = "unused"
    zone: int = 7

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        data["zone"] = int(data["zone"])
        return data


class TwoSteps(Watermark[int]):
    """Version 2 renamed ``batches`` and dropped ``legacy``; version 3 made ``zone`` a number."""

    model_version = 3
    steps: ClassVar[list[int]] = []  # the steps migrate() was called for, in order
    batch_count: int = 0
    zone: int = 7

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        cls.steps.append(version)
        if version == 1:
            data["batch_count"] = data.pop("batches")
            del data["legacy"]
        elif version == 2:
            data["zone"] = int(data["zone"])
        return data


class RenamedOnly(Watermark[int]):
    """Version 2 of the model behind :class:`TwoSteps` (for rolling back to it)."""

    model_version = 2
    batch_count: int = 0
    zone: str = "7"

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        data["batch_count"] = data.pop("batches")
        del data["legacy"]
        return data


class NoHook(Watermark[int]):
    """``legacy`` removed and ``region`` (no default) added, with no version and no hook."""

    batches: int = 0
    zone: str = "7"
    region: str


class HookRaises(Watermark[int]):
    """A hook with a bug: raises on the state it was written for."""

    model_version = 2
    batches: int = 0

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        del data["gone"]
        return data


class HookReturnsInvalid(Watermark[int]):
    """A hook with a bug: returns ``zone`` still as text."""

    model_version = 2
    batches: int = 0
    legacy: str = "unused"
    zone: int = 7

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        return data


class HookReturnsNothing(Watermark[int]):
    """A hook with a bug: changes ``data`` in place and forgets to return it."""

    model_version = 2
    batches: int = 0

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        data.pop("legacy")
        return None  # type: ignore[return-value]


class _Orders(BaseEventTrigger):
    def __init__(self, items: list[int], source: str = "db.orders") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.items, self.source = items, source

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "items": self.items,
            "source": self.source,
        }


_TRIGGERS: dict[type[Watermark[Any]], type[_Orders]] = {}


def trigger_for(model: type[Watermark[Any]]) -> type[_Orders]:
    """The orders trigger, its watermark of type ``model``, declared with ``backend=None``."""
    if model not in _TRIGGERS:
        counter = "batch_count" if "batch_count" in model.model_fields else "batches"

        async def run(self: _Orders, watermark: Any) -> AsyncIterator[TriggerEvent]:
            for item in self.items:
                if watermark.cursor is None or item > watermark.cursor:
                    watermark.advance(cursor=item)
                    setattr(watermark, counter, getattr(watermark, counter) + 1)
                    yield TriggerEvent(item)
            await asyncio.Event().wait()

        run.__annotations__ = {"watermark": model, "return": AsyncIterator[TriggerEvent]}
        decorated = stateful(namespace=NAMESPACE, name="{source}", ack=False)(run)
        _TRIGGERS[model] = type(
            f"{model.__name__}Trigger", (_Orders,), {"run": decorated, "__module__": __name__}
        )
    return _TRIGGERS[model]
