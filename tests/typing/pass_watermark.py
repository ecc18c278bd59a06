"""Must pass ``mypy --strict``: the Watermark API as users type it.

``assert_type`` fails the check if a type is inferred as ``Any`` or anything else unexpected.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta, timezone

from pydantic import Field, JsonValue
from typing_extensions import assert_type

from stateful.types import Watermark


class OrdersState(Watermark[int]):
    batches: int = 0
    files: set[str] = Field(default_factory=set)


def bare_watermark_is_watermark_of_json_value() -> None:
    wm = Watermark()
    assert_type(wm, Watermark[JsonValue])
    assert_type(wm.cursor, JsonValue)
    wm.advance(cursor=["any", "ordered", 1], timestamp=datetime.now(timezone.utc), key="k")
    cursor: JsonValue = wm.cursor
    wm.advance(cursor=cursor)
    loaded = Watermark.from_state_json(wm.to_state_json())
    assert_type(loaded, Watermark[JsonValue])
    explicit: Watermark[JsonValue] = loaded
    del explicit


def parametrised_cursor_is_typed() -> None:
    wm = Watermark[int](cursor=3)
    assert_type(wm.cursor, int | None)
    cursor: int | None = wm.cursor
    wm.advance(cursor=(cursor or 0) + 1)
    by_str = Watermark[str].from_state_json('{"schema_version":1,"cursor":"a"}')
    assert_type(by_str, Watermark[str])
    assert_type(by_str.cursor, str | None)
    composite = Watermark[tuple[str, int]](cursor=("2024-05-01", 7))
    assert_type(composite.cursor, tuple[str, int] | None)


def the_rest_of_the_api() -> None:
    wm = Watermark[int]()
    configured = wm.configure(lookback=timedelta(minutes=5), max_untimed_keys=100)
    assert_type(configured, Watermark[int])
    now = datetime.now(timezone.utc)
    is_new: bool = wm.is_new("key@etag", now)
    also_new: bool = wm.is_new("key@etag")
    wm.advance(timestamp=now, cursor=1, key="key@etag")
    timestamp: datetime | None = wm.timestamp
    seen: AbstractSet[str] = wm.seen
    recorded: datetime | None = wm.seen_at("key@etag")
    lookback: timedelta = wm.lookback
    cap: int = wm.max_untimed_keys
    text: str = wm.to_state_json()
    summary: str = wm.summary()
    from_bytes = Watermark[int].from_state_json(text.encode())
    assert_type(from_bytes, Watermark[int])
    del is_new, also_new, timestamp, seen, recorded, lookback, cap, summary


def subclasses_keep_their_type_and_fields() -> None:
    state = OrdersState.from_state_json('{"schema_version":1,"batches":2}')
    assert_type(state, OrdersState)
    assert_type(state.configure(lookback=timedelta(hours=1)), OrdersState)
    assert_type(state.cursor, int | None)
    batches: int = state.batches
    files: set[str] = state.files
    state.batches = batches + 1
    state.files.add("landing/a.csv")
    state.advance(cursor=batches, key=next(iter(files), "none"))
    as_base: Watermark[int] = state
    del as_base
