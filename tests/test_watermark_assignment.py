"""``advance`` assigns ``timestamp`` and ``cursor`` without validating them twice, except where a
subclass adds validation of its own: then that validation still runs, as on any assignment."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from stateful.errors import WatermarkValueError
from stateful.types import Watermark

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
LIMIT = T0 + timedelta(days=1)


def test_advance_marks_the_fields_it_sets_as_set() -> None:
    wm = Watermark[int]()
    wm.advance(key="a")
    assert wm.model_fields_set == set()
    wm.advance(timestamp=T0, cursor=3)
    assert wm.model_fields_set == {"timestamp", "cursor"}
    assert wm.model_dump(exclude_unset=True) == {"timestamp": T0, "cursor": 3}


def test_an_offset_timestamp_is_stored_in_utc() -> None:
    wm = Watermark()
    wm.advance(timestamp=T0.astimezone(timezone(timedelta(hours=2))))
    assert wm.timestamp == T0
    assert wm.timestamp.tzinfo is timezone.utc
    assert Watermark.from_state_json(wm.to_state_json()) == wm


def test_a_model_validator_of_a_subclass_still_runs_on_advance() -> None:
    class Bounded(Watermark[int]):
        @model_validator(mode="after")
        def _within_limit(self) -> Bounded:
            if self.timestamp is not None and self.timestamp > LIMIT:
                raise ValueError("timestamp beyond the limit")
            if self.cursor is not None and self.cursor > 100:
                raise ValueError("cursor beyond the limit")
            return self

    wm = Bounded()
    wm.advance(timestamp=T0, cursor=1)
    with pytest.raises(WatermarkValueError, match="cursor beyond the limit"):
        wm.advance(cursor=101)
    with pytest.raises(ValidationError, match="timestamp beyond the limit"):
        wm.advance(timestamp=LIMIT + timedelta(seconds=1))


def test_a_field_validator_of_a_subclass_still_transforms_the_value() -> None:
    class Seconds(Watermark[int]):
        @field_validator("timestamp")
        @classmethod
        def _whole_seconds(cls, value: datetime | None) -> datetime | None:
            return None if value is None else value.replace(microsecond=0)

        @field_validator("cursor")
        @classmethod
        def _even(cls, value: int | None) -> int | None:
            return None if value is None else value - value % 2

    wm = Seconds()
    wm.advance(timestamp=T0 + timedelta(microseconds=700), cursor=7)
    assert (wm.timestamp, wm.cursor) == (T0, 6)


def test_a_validator_for_every_field_still_runs() -> None:
    seen: list[Any] = []

    class Audited(Watermark[int]):
        @field_validator("*")
        @classmethod
        def _record(cls, value: Any) -> Any:
            seen.append(value)
            return value

    wm = Audited()
    seen.clear()
    wm.advance(timestamp=T0, cursor=5)
    assert seen == [5, T0]


def test_constraints_on_the_field_itself_are_enforced() -> None:
    class Capped(Watermark[int]):
        cursor: int | None = Field(default=None, le=100)

    wm = Capped()
    with pytest.raises(WatermarkValueError, match="less than or equal"):
        wm.advance(cursor=101, timestamp=T0)
    assert wm == Capped()


def test_a_timestamp_annotation_of_a_subclass_is_enforced() -> None:
    def before_limit(value: datetime) -> datetime:
        if value > LIMIT:
            raise ValueError("timestamp beyond the limit")
        return value

    class Limited(Watermark):
        timestamp: Annotated[datetime, AfterValidator(before_limit)] | None = None

    wm = Limited()
    with pytest.raises(ValidationError, match="timestamp beyond the limit"):
        wm.advance(timestamp=LIMIT + timedelta(seconds=1))
    assert wm.timestamp is None


def test_a_frozen_field_stays_frozen() -> None:
    class Pinned(Watermark[int]):
        cursor: int | None = Field(default=None, frozen=True)

    with pytest.raises(WatermarkValueError, match="frozen"):
        Pinned().advance(cursor=1)


def test_a_config_of_a_subclass_still_applies_to_the_cursor() -> None:
    class Lower(Watermark[str]):
        model_config = ConfigDict(str_to_lower=True)

    wm = Lower()
    wm.advance(cursor="B-Part")
    assert wm.cursor == "b-part"


def test_a_setattr_of_a_subclass_still_sees_the_assignments() -> None:
    assigned: list[str] = []

    class Watched(Watermark[int]):
        def __setattr__(self, name: str, value: Any) -> None:
            assigned.append(name)
            super().__setattr__(name, value)

    Watched().advance(timestamp=T0, cursor=1, key="a")
    assert assigned == ["cursor", "timestamp"]
