"""Property tests for :class:`stateful.types.Watermark`, checked against a naive reference model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, JsonValue

from stateful.types import Watermark

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
ZONES = [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]

# Few keys and a narrow time range, so keys repeat and timestamps tie often.
keys = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])
timestamps = st.builds(
    lambda seconds, micros, zone: (T0 + timedelta(seconds=seconds, microseconds=micros)).astimezone(zone),
    st.integers(0, 120),
    st.sampled_from([0, 0, 1, 999_999]),
    st.sampled_from(ZONES),
)
lookbacks = st.sampled_from(
    [timedelta(0), timedelta(microseconds=1), timedelta(seconds=10), timedelta(hours=1)]
)

Op = tuple[datetime | None, int | None, str | None]
ops = st.tuples(st.none() | timestamps, st.none() | st.integers(-5, 5), st.none() | keys).filter(
    lambda op: op != (None, None, None)
)


@dataclass
class Reference:
    """The documented semantics, written as plainly as possible (full scans, no heap)."""

    lookback: timedelta
    cap: int
    timestamp: datetime | None = None
    cursor: int | None = None
    timed: dict[str, datetime] = field(default_factory=dict)
    untimed: list[str] = field(default_factory=list)

    def advance(self, ts: datetime | None, cursor: int | None, key: str | None) -> None:
        if ts is not None and (self.timestamp is None or ts > self.timestamp):
            self.timestamp = ts
        if cursor is not None and (self.cursor is None or cursor > self.cursor):
            self.cursor = cursor
        if key is not None and ts is None and key not in self.timed and key not in self.untimed:
            self.untimed.append(key)
        if key is not None and ts is not None:
            if key in self.untimed:
                self.untimed.remove(key)
            self.timed[key] = max(ts, self.timed.get(key, ts))
        if self.timestamp is not None:
            floor = self.timestamp - self.lookback
            self.timed = {k: v for k, v in self.timed.items() if v >= floor}
        del self.untimed[: max(0, len(self.untimed) - self.cap)]

    def seen(self) -> dict[str, datetime | None]:
        return {**self.timed, **dict.fromkeys(self.untimed)}


def run(ops: list[Op], lookback: timedelta = timedelta(0), cap: int = 10_000) -> Watermark[int]:
    wm = Watermark[int]().configure(lookback=lookback, max_untimed_keys=cap)
    for ts, cursor, key in ops:
        wm.advance(timestamp=ts, cursor=cursor, key=key)
    return wm


@settings(deadline=None)
@given(st.lists(ops, max_size=60), lookbacks, st.integers(1, 5))
def test_matches_the_reference_model_after_every_step(ops: list[Op], lookback: timedelta, cap: int) -> None:
    wm = Watermark[int]().configure(lookback=lookback, max_untimed_keys=cap)
    ref = Reference(lookback, cap)
    for ts, cursor, key in ops:
        wm.advance(timestamp=ts, cursor=cursor, key=key)
        ref.advance(ts, cursor, key)
        assert (wm.timestamp, wm.cursor) == (ref.timestamp, ref.cursor)
        assert {k: wm.seen_at(k) for k in wm.seen} == ref.seen()
        for probe_key in ("a", "z"):
            for probe_ts in (None, T0, T0 + timedelta(seconds=60)):
                assert wm.is_new(probe_key, probe_ts) == reference_is_new(ref, probe_key, probe_ts)


def reference_is_new(ref: Reference, key: str, ts: datetime | None) -> bool:
    if ts is not None and ref.timestamp is not None:
        if ts > ref.timestamp:
            return True
        if ts < ref.timestamp - ref.lookback:
            return False
    return key not in ref.seen()


@settings(deadline=None)
@given(st.lists(ops, min_size=1, max_size=60), lookbacks)
def test_advance_is_monotonic(ops: list[Op], lookback: timedelta) -> None:
    wm = Watermark[int]().configure(lookback=lookback)
    for ts, cursor, key in ops:
        before = (wm.timestamp, wm.cursor)
        wm.advance(timestamp=ts, cursor=cursor, key=key)
        if before[0] is not None:
            assert wm.timestamp is not None and wm.timestamp >= before[0]
        if before[1] is not None:
            assert wm.cursor is not None and wm.cursor >= before[1]
        if ts is not None:
            assert wm.timestamp is not None and wm.timestamp >= ts
        if cursor is not None:
            assert wm.cursor is not None and wm.cursor >= cursor


@settings(deadline=None)
@given(st.lists(ops, min_size=1, max_size=60), lookbacks, keys, st.integers(1, 10**6))
def test_nothing_strictly_newer_is_reported_old(
    ops: list[Op], lookback: timedelta, key: str, micros_later: int
) -> None:
    wm = run(ops, lookback)
    if wm.timestamp is not None:
        assert wm.is_new(key, wm.timestamp + timedelta(microseconds=micros_later))


@settings(deadline=None)
@given(st.lists(ops, min_size=1, max_size=60), lookbacks)
def test_nothing_advanced_inside_the_window_is_reported_new(ops: list[Op], lookback: timedelta) -> None:
    wm = run(ops, lookback)
    floor = None if wm.timestamp is None else wm.timestamp - lookback
    ever_timed = {key for ts, _, key in ops if ts is not None}
    for ts, _, key in ops:
        if key is None:
            continue
        if ts is not None and (floor is None or ts >= floor):
            assert not wm.is_new(key, ts)
            assert not wm.is_new(key)
        if ts is None and key not in ever_timed:  # untimed keys are bounded by the cap only
            assert not wm.is_new(key)
            assert not wm.is_new(key, wm.timestamp)


@settings(deadline=None)
@given(
    st.lists(st.tuples(st.integers(-30, 10), st.integers(0, 40)), min_size=50, max_size=400),
    lookbacks,
)
def test_seen_stays_bounded_by_the_window_on_long_timestamped_streams(
    steps: list[tuple[int, int]], lookback: timedelta
) -> None:
    # A drifting clock: each item is up to 30s older or 10s newer than the previous one.
    wm = Watermark().configure(lookback=lookback)
    newest: dict[str, datetime] = {}
    clock = T0
    for delta, key_id in steps:
        clock += timedelta(seconds=delta)
        key = f"s3://bucket/{key_id}"
        wm.advance(timestamp=clock, key=key)
        newest[key] = max(clock, newest.get(key, clock))
        assert wm.timestamp is not None
        in_window = {k for k, ts in newest.items() if ts >= wm.timestamp - lookback}
        assert len(wm.seen) <= len(in_window)
        assert set(wm.seen) == in_window


@settings(deadline=None)
@given(st.lists(st.integers(0, 30), max_size=200), st.integers(1, 10))
def test_the_untimed_cap_holds(key_ids: list[int], cap: int) -> None:
    wm = Watermark().configure(max_untimed_keys=cap)
    first_recorded: list[str] = []
    for key_id in key_ids:
        key = f"k{key_id}"
        if key not in wm.seen:
            first_recorded.append(key)
        wm.advance(key=key)
        assert len(wm.seen) <= cap
        assert set(wm.seen) == set(first_recorded[-cap:])


class Inner(BaseModel):
    label: str
    weights: list[float] = Field(default_factory=list)


class Rich(Watermark[int]):
    names: list[str] = Field(default_factory=list)
    inner: Inner | None = None
    at: datetime | None = None
    tags: frozenset[str] = frozenset()


finite_floats = st.floats(allow_nan=False, allow_infinity=False)
aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(ZONES)
)
json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none() | st.booleans() | st.integers() | finite_floats | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(st.none() | aware_datetimes, st.none() | st.integers(), st.none() | st.text()), max_size=20
    ),
    st.lists(st.text(), max_size=4),
    st.none() | st.builds(Inner, label=st.text(), weights=st.lists(finite_floats, max_size=3)),
    st.none() | aware_datetimes,
    st.frozensets(st.text(), max_size=4),
)
def test_json_round_trip_is_identity(
    ops: list[Op], names: list[str], inner: Inner | None, at: datetime | None, tags: frozenset[str]
) -> None:
    wm = Rich(names=names, inner=inner, at=at, tags=tags).configure(lookback=timedelta(days=365 * 10_000))
    for ts, cursor, key in ops:
        if (ts, cursor, key) != (None, None, None):
            wm.advance(timestamp=ts, cursor=cursor, key=key)
    text = wm.to_state_json()
    loaded = Rich.from_state_json(text)
    assert loaded == wm
    assert {k: loaded.seen_at(k) for k in loaded.seen} == {k: wm.seen_at(k) for k in wm.seen}
    if len(tags) <= 1:  # set fields are written in iteration order; the rest is byte-stable
        assert loaded.to_state_json() == text


@settings(deadline=None)
@given(json_values, st.none() | aware_datetimes)
def test_json_round_trip_of_any_json_cursor(cursor: Any, ts: datetime | None) -> None:
    wm = Watermark(cursor=cursor, timestamp=ts)
    text = wm.to_state_json()
    loaded = Watermark.from_state_json(text)
    assert loaded == wm and loaded.to_state_json() == text
    assert loaded.timestamp is None or loaded.timestamp.tzinfo is timezone.utc
