"""Example tests for :class:`stateful.types.Watermark` (properties: test_watermark_properties.py)."""

from __future__ import annotations

import copy
import doctest
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, JsonValue, ValidationError

import stateful._document
import stateful.types
from stateful.errors import StatefulError, StatefulUsageError, WatermarkValueError
from stateful.types import DEFAULT_MAX_UNTIMED_KEYS, SCHEMA_VERSION, Watermark

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NAIVE = datetime(2024, 5, 1, 12, 0, 0)


def reload(wm: Watermark[Any]) -> Watermark[Any]:
    """Simulate a restart: store the JSON, load it into a fresh instance of the same class."""
    return type(wm).from_state_json(wm.to_state_json())


class Partition(BaseModel):
    name: str
    offset: int = 0


class OrdersState(Watermark[int]):
    batches: int = 0
    tags: set[str] = Field(default_factory=set)
    history: list[int] = Field(default_factory=list)
    partitions: list[Partition] = Field(default_factory=list)
    note: str = ""
    last_seen: datetime | None = None


# --- the boundary window -----------------------------------------------------------------------


def test_tie_example_three_objects_with_the_same_last_modified() -> None:
    # Three S3 objects share LastModified; two are emitted before a restart, the third lands after.
    wm = Watermark()
    for key in ("landing/a.csv@e1", "landing/b.csv@e2"):
        assert wm.is_new(key, T0)
        wm.advance(timestamp=T0, key=key)

    stored = wm.to_state_json()
    assert json.loads(stored) == {
        "cursor": None,
        "schema_version": 1,
        "seen": {
            "landing/a.csv@e1": "2024-05-01T12:00:00.000000Z",
            "landing/b.csv@e2": "2024-05-01T12:00:00.000000Z",
        },
        "timestamp": "2024-05-01T12:00:00.000000Z",
    }

    after = Watermark.from_state_json(stored)
    assert not after.is_new("landing/a.csv@e1", T0)
    assert not after.is_new("landing/b.csv@e2", T0)
    assert after.is_new("landing/c.csv@e3", T0)  # same timestamp, never emitted: new
    assert after.is_new("landing/a.csv@e4", T0)  # same object, new etag: a new version fires
    assert not after.is_new("landing/old.csv@e0", T0 - timedelta(microseconds=1))


def test_lookback_late_arrival_fires_once_inside_the_window_and_never_outside() -> None:
    wm = Watermark().configure(lookback=timedelta(minutes=10))
    wm.advance(timestamp=T0, key="on-time")

    late = T0 - timedelta(minutes=5)
    assert wm.is_new("late", late)
    wm.advance(timestamp=late, key="late")
    assert wm.timestamp == T0  # a late item never moves the watermark back
    assert not wm.is_new("late", late)
    assert not reload(wm).configure(lookback=timedelta(minutes=10)).is_new("late", late)

    assert wm.is_new("edge", T0 - timedelta(minutes=10))  # the window is closed: [T - L, T]
    assert not wm.is_new("too-late", T0 - timedelta(minutes=10, microseconds=1))


def test_without_lookback_only_the_boundary_timestamp_is_in_the_window() -> None:
    wm = Watermark()
    wm.advance(timestamp=T0, key="a")
    assert wm.is_new("b", T0)
    assert not wm.is_new("b", T0 - timedelta(microseconds=1))
    assert wm.is_new("a", T0 + timedelta(microseconds=1))  # strictly newer wins over seen


def test_advance_prunes_keys_that_left_the_window_and_keeps_ties() -> None:
    wm = Watermark().configure(lookback=timedelta(seconds=10))
    wm.advance(timestamp=T0, key="old")
    wm.advance(timestamp=T0 + timedelta(seconds=10), key="edge")
    assert set(wm.seen) == {"old", "edge"}  # "old" sits exactly on the floor
    wm.advance(timestamp=T0 + timedelta(seconds=10, microseconds=1), key="new")
    assert set(wm.seen) == {"edge", "new"}


def test_pruning_still_works_for_keys_re_advanced_many_times() -> None:
    # Each newer timestamp for a key leaves a stale expiry entry behind; enough of them trigger a
    # rebuild of the expiry index, after which pruning must still find every key.
    wm = Watermark().configure(lookback=timedelta(hours=1))
    wm.advance(timestamp=T0, key="cold")
    for i in range(1, 500):
        wm.advance(timestamp=T0 + timedelta(seconds=i), key="hot")
    assert set(wm.seen) == {"cold", "hot"}
    assert wm.seen_at("hot") == T0 + timedelta(seconds=499)
    wm.advance(timestamp=T0 + timedelta(hours=1, seconds=1), key="later")
    assert set(wm.seen) == {"hot", "later"}
    wm.advance(timestamp=T0 + timedelta(hours=3), key="latest")
    assert set(wm.seen) == {"latest"}


def test_set_semantics_without_timestamps() -> None:
    wm = Watermark[int]()
    assert wm.is_new("k")
    wm.advance(key="k")
    assert not wm.is_new("k")
    assert not wm.is_new("k", T0)  # the watermark has no timestamp: only the key decides
    wm.advance(timestamp=T0, cursor=1)
    assert not wm.is_new("k")  # the item has no timestamp: only the key decides


def test_advance_never_moves_timestamp_or_cursor_back() -> None:
    wm = Watermark[int]()
    wm.advance(timestamp=T0, cursor=10)
    wm.advance(timestamp=T0 - timedelta(days=1), cursor=3)
    assert (wm.timestamp, wm.cursor) == (T0, 10)
    wm.advance(timestamp=T0 + timedelta(seconds=1), cursor=11)
    assert (wm.timestamp, wm.cursor) == (T0 + timedelta(seconds=1), 11)


def test_a_key_keeps_its_newest_timestamp_and_a_timestamp_beats_none() -> None:
    wm = Watermark().configure(lookback=timedelta(hours=1))
    wm.advance(key="k")
    assert wm.seen_at("k") is None
    wm.advance(timestamp=T0, key="k")
    assert wm.seen_at("k") == T0
    wm.advance(timestamp=T0 - timedelta(minutes=1), key="k")
    wm.advance(key="k")
    assert wm.seen_at("k") == T0


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: Watermark().advance(timestamp=NAIVE),
        lambda: Watermark().advance(timestamp=NAIVE, key="k"),
        lambda: Watermark().is_new("k", NAIVE),
        lambda: Watermark(timestamp=T0).is_new("k", NAIVE),
    ],
    ids=["advance", "advance-with-key", "is_new", "is_new-with-watermark-timestamp"],
)
def test_naive_datetimes_are_refused_with_a_fix(call: Callable[[], object]) -> None:
    with pytest.raises(WatermarkValueError, match="naive") as info:
        call()
    assert "datetime.now(timezone.utc)" in str(info.value)
    assert "dt.replace(tzinfo=timezone.utc)" in str(info.value)


def test_naive_timestamp_refused_by_constructor_and_assignment() -> None:
    with pytest.raises(ValidationError, match=r"naive.*datetime\.now\(timezone\.utc\)"):
        Watermark(timestamp=NAIVE)
    wm = Watermark(timestamp=T0)
    with pytest.raises(ValidationError, match="naive"):
        wm.timestamp = NAIVE
    assert wm.timestamp == T0


def test_timestamps_are_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    wm = Watermark(timestamp=datetime(2024, 5, 1, 14, 0, tzinfo=paris))
    assert wm.timestamp == T0 and wm.timestamp.tzinfo is UTC
    wm.advance(timestamp=datetime(2024, 5, 1, 15, 0, 0, 1, tzinfo=paris), key="k")
    assert wm.seen_at("k") == T0 + timedelta(hours=1, microseconds=1)
    assert json.loads(wm.to_state_json())["timestamp"] == "2024-05-01T13:00:00.000001Z"


def test_advance_with_nothing_is_refused() -> None:
    with pytest.raises(WatermarkValueError, match="at least one of"):
        Watermark().advance()


@pytest.mark.parametrize(
    ("start", "cursor", "match"),
    [
        (None, {"a": 1}, "dict is not ordered"),
        (5, "x", "cannot be compared"),
        ([1, "a"], [1, 2], "cannot be compared"),
        (None, [{"a": 1}], "dict is not ordered"),
        (None, float("nan"), "not ordered"),
        (None, [1, None], "NoneType is not ordered"),
    ],
)
def test_unordered_cursors_are_refused(start: JsonValue, cursor: JsonValue, match: str) -> None:
    wm = Watermark(cursor=start)
    with pytest.raises(WatermarkValueError, match=match) as info:
        wm.advance(cursor=cursor, timestamp=T0, key="k")
    assert "totally ordered" in str(info.value) and "tuple" in str(info.value)
    assert wm == Watermark(cursor=start)  # a refused call changes nothing


def test_datetime_cursor_must_be_aware() -> None:
    wm = Watermark[datetime]()
    with pytest.raises(WatermarkValueError, match="naive"):
        wm.advance(cursor=NAIVE)
    wm.advance(cursor=T0)
    wm.advance(cursor=T0 - timedelta(seconds=1))
    assert wm.cursor == T0


def test_tuple_cursors_compare_element_by_element() -> None:
    wm = Watermark[tuple[str, int]]()
    wm.advance(cursor=("2024-05-01", 7))
    wm.advance(cursor=("2024-05-01", 3))
    wm.advance(cursor=("2024-04-30", 99))
    assert wm.cursor == ("2024-05-01", 7)
    assert reload(wm).cursor == ("2024-05-01", 7)


def test_cursor_of_the_wrong_type_is_refused_without_conversion() -> None:
    wm = Watermark[int](cursor=5)
    for bad in ("7", 7.0, True):
        with pytest.raises(WatermarkValueError, match=r"invalid for Watermark\[int\]"):
            wm.advance(cursor=bad)  # type: ignore[arg-type]
    assert wm.cursor == 5


def test_cursor_constraints_declared_on_the_field_are_enforced_atomically() -> None:
    class Positive(Watermark[int]):
        cursor: Annotated[int, Field(le=100)] | None = None

    wm = Positive()
    with pytest.raises(WatermarkValueError, match="less than or equal"):
        wm.advance(cursor=101, timestamp=T0, key="k")
    assert wm == Positive()


def test_keys_must_be_strings() -> None:
    with pytest.raises(WatermarkValueError, match="str"):
        Watermark().advance(key=1)  # type: ignore[arg-type]
    with pytest.raises(WatermarkValueError, match="str"):
        Watermark().is_new(1)  # type: ignore[arg-type]


def test_errors_belong_to_the_package_tree() -> None:
    with pytest.raises(StatefulError):
        Watermark().advance()
    with pytest.raises(ValueError):
        Watermark().advance()


# --- strict loading ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"schema_version":1,"timestamp":0}', "valid datetime"),
        ('{"schema_version":1,"timestamp":1714564800.5}', "valid datetime"),
        ('{"schema_version":1,"cursor":"5"}', "valid integer"),
        ('{"schema_version":1,"cursor":5.0}', "valid integer"),
        ('{"schema_version":1,"cursor":true}', "valid integer"),
        ('{"schema_version":1,"timestamp":"2024-05-01T12:00:00"}', "naive"),
        ('{"schema_version":1,"timestamp":"2024-05-01"}', "datetime"),
        ('{"schema_version":1,"surprise":1}', "Extra inputs are not permitted"),
        ('{"schema_version":1,"seen":{"a":"2024-05-01T12:00:00"}}', "naive"),
        ('{"schema_version":1,"seen":{"a":1714564800}}', "valid datetime"),
        (
            '{"schema_version":1,"seen":{"a":null,"b":"yesterday"}}',
            r"invalid 'seen'(.|\n)*\nb\n.*valid datetime",
        ),
        (
            '{"schema_version":1,"seen":{"a":"2024-05-01T12:00:00Z","b":true}}',
            r"invalid 'seen'(.|\n)*valid datetime",
        ),
        ('{"schema_version":1,"seen":["a"]}', "seen"),
        ('{"schema_version":2}', "newer airflow-stateful.*Upgrade airflow-stateful"),
        ('{"cursor":5}', "no schema_version"),
        ('{"schema_version":"1"}', "invalid schema_version"),
        ('{"schema_version":true}', "invalid schema_version"),
        ('{"schema_version":0}', "invalid schema_version"),
        ("not json", "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe\xfa", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"schema_version":1,"cursor":NaN}', "NaN"),
        ('{"schema_version":1,"cursor":1,"cursor":2}', "repeats the JSON key 'cursor'"),
    ],
)
def test_loading_is_strict(text: str | bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Watermark[int].from_state_json(text)


def test_loading_accepts_iso_strings_with_offsets_and_bytes() -> None:
    text = (
        '{"schema_version":1,"timestamp":"2024-05-01T14:00:00+02:00",'
        '"seen":{"k":null,"j":"2024-05-01T12:00:00Z"}}'
    )
    wm = Watermark.from_state_json(text.encode())
    assert wm.timestamp == T0 and wm.timestamp.tzinfo is UTC
    assert wm.seen_at("j") == T0 and wm.seen_at("k") is None


def test_loading_never_prunes_or_evicts() -> None:
    # Policy is not stored: a freshly loaded watermark must keep everything until it is configured.
    wm = Watermark().configure(lookback=timedelta(hours=1), max_untimed_keys=3)
    for i in range(3):
        wm.advance(key=f"u{i}")
    wm.advance(timestamp=T0 - timedelta(minutes=30), key="half-hour-ago")
    wm.advance(timestamp=T0, key="now")
    loaded = reload(wm)
    assert loaded == wm and len(loaded.seen) == 5
    loaded.configure(max_untimed_keys=1)
    assert len(loaded.seen) == 5  # configure() drops nothing either
    loaded.advance(cursor=1)
    assert set(loaded.seen) == {"u2", "now"}  # lookback is back to 0 and the cap is 1


def test_migration_hook_upgrades_older_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    def rename_position(doc: dict[str, Any]) -> dict[str, Any]:
        doc["cursor"] = doc.pop("position")
        return doc

    monkeypatch.setattr(stateful._document, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(stateful._document.MIGRATIONS, 1, rename_position)
    wm = Watermark[int].from_state_json('{"schema_version":1,"position":7}')
    assert wm.cursor == 7
    assert json.loads(wm.to_state_json())["schema_version"] == 2
    assert Watermark[int].from_state_json('{"schema_version":2,"cursor":8}').cursor == 8


def test_schema_version_is_one_and_no_migrations_exist_yet() -> None:
    assert SCHEMA_VERSION == 1
    assert stateful._document.MIGRATIONS == {}


# --- JSON format -------------------------------------------------------------------------------


def test_json_is_compact_sorted_and_exact() -> None:
    wm = Watermark[str]()
    wm.advance(timestamp=T0 + timedelta(microseconds=7), cursor="b", key="zé")
    wm.advance(key="a")
    assert wm.to_state_json() == (
        '{"cursor":"b","schema_version":1,"seen":{"a":null,"zé":"2024-05-01T12:00:00.000007Z"},'
        '"timestamp":"2024-05-01T12:00:00.000007Z"}'
    )


def test_timestamps_are_written_with_four_digit_years() -> None:
    wm = Watermark(timestamp=datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert json.loads(wm.to_state_json())["timestamp"] == "0005-01-02T03:04:05.000000Z"
    assert reload(wm) == wm


def test_subclass_fields_round_trip() -> None:
    wm = OrdersState(
        batches=2,
        tags={"b", "ä"},
        history=[3, 1],
        partitions=[Partition(name="p0", offset=5)],
        note="naïve ☃",
        last_seen=datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=-4))),
    )
    wm.advance(timestamp=T0, cursor=3, key="k")
    loaded = OrdersState.from_state_json(wm.to_state_json())
    assert loaded == wm
    assert loaded.partitions == [Partition(name="p0", offset=5)] and loaded.tags == {"b", "ä"}
    assert isinstance(loaded, OrdersState)


def test_subclass_fields_load_strictly_and_assign_with_validation() -> None:
    with pytest.raises(ValueError, match="batches"):
        OrdersState.from_state_json('{"schema_version":1,"batches":"3"}')
    wm = OrdersState()
    with pytest.raises(ValidationError):
        wm.batches = "3"  # type: ignore[assignment]
    with pytest.raises(ValidationError, match="Object has no attribute 'unknown'"):
        wm.unknown = 1  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="Extra inputs"):
        OrdersState(unknown=1)  # type: ignore[call-arg]


def test_reserved_names_cannot_be_fields() -> None:
    with pytest.raises(StatefulUsageError, match="reserved field name"):

        class Bad(Watermark[int]):
            schema_version: int = 0

    with (
        pytest.raises(StatefulUsageError, match="reserved field name"),
        pytest.warns(UserWarning, match="shadows"),
    ):

        class Shadow(Watermark[int]):
            lookback: int = 0  # type: ignore[assignment]


def test_generic_default_is_any_json_value_at_runtime() -> None:
    wm = Watermark(cursor={"nested": [1, 2.5, "x", None, True]})
    assert reload(wm) == wm
    with pytest.raises(ValidationError, match="not a valid JSON value"):
        Watermark(cursor={1, 2})  # mypy infers Watermark[set[int]] here; pydantic refuses it


def test_watermark_of_str() -> None:
    wm = Watermark[str]()
    wm.advance(cursor="2024-05-01/0007")
    wm.advance(cursor="2024-04-30/9999")
    assert wm.cursor == "2024-05-01/0007"
    with pytest.raises(ValueError, match="valid string"):
        Watermark[str].from_state_json('{"schema_version":1,"cursor":7}')


# --- seen view, equality, copies, summary ------------------------------------------------------


def test_seen_is_a_read_only_sorted_live_view() -> None:
    wm = Watermark()
    view = wm.seen
    for key in ("b", "c", "a"):
        wm.advance(key=key)
    assert list(view) == ["a", "b", "c"] and len(view) == 3 and "b" in view and "z" not in view
    assert view & {"a", "z"} == {"a"}
    assert not hasattr(view, "add") and not hasattr(view, "discard")
    with pytest.raises(AttributeError):
        wm.seen = frozenset()  # type: ignore[misc]
    with pytest.raises(KeyError):
        wm.seen_at("z")


def test_equality_follows_the_stored_json() -> None:
    a = Watermark[int](cursor=1).configure(lookback=timedelta(hours=1))
    b = Watermark[int](cursor=1)
    assert a == b  # the policy is not stored
    a.advance(key="k")
    assert a != b
    b.advance(key="k")
    assert a == b
    b.advance(timestamp=T0, key="k")
    assert a != b  # same keys, different timestamps
    assert Watermark[int](cursor=1) == Watermark(cursor=1)
    assert OrdersState() != Watermark[int]()
    assert Watermark() != object()


def test_equality_ignores_the_eviction_order() -> None:
    a, b = Watermark(), Watermark()
    for key in "xy":
        a.advance(key=key)
    for key in "yx":
        b.advance(key=key)
    assert a == b and a.to_state_json() == b.to_state_json()


def test_copies_do_not_share_seen() -> None:
    wm = Watermark()
    wm.advance(key="a")
    for clone in (wm.model_copy(), copy.copy(wm), copy.deepcopy(wm), wm.model_copy(deep=True)):
        clone.advance(key="b")
        assert set(wm.seen) == {"a"} and set(clone.seen) == {"a", "b"}


def test_summary_and_repr() -> None:
    wm = OrdersState(batches=2)
    assert wm.summary() == "timestamp=None, cursor=None, seen=0 keys"
    wm.advance(timestamp=T0, cursor=9, key="k")
    assert wm.summary() == "timestamp=2024-05-01T12:00:00.000000Z, cursor=9, seen=1 key"
    assert repr(wm).startswith(
        "OrdersState(timestamp=2024-05-01T12:00:00.000000Z, cursor=9, seen=1 key, batches=2"
    )
    assert str(wm) == repr(wm)
    long = Watermark(cursor="x" * 1000)
    assert len(long.summary()) < 120


# --- policy ------------------------------------------------------------------------------------


def test_configure_sets_the_policy_and_returns_self() -> None:
    wm = Watermark()
    assert DEFAULT_MAX_UNTIMED_KEYS == 10_000
    assert (wm.lookback, wm.max_untimed_keys) == (timedelta(0), 10_000)
    assert wm.configure(lookback=timedelta(minutes=3), max_untimed_keys=7) is wm
    assert (wm.lookback, wm.max_untimed_keys) == (timedelta(minutes=3), 7)
    wm.configure(max_untimed_keys=8)
    assert wm.lookback == timedelta(minutes=3)  # what is not given is kept


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"lookback": timedelta(seconds=-1)}, WatermarkValueError),
        ({"lookback": 60}, StatefulUsageError),
        ({"max_untimed_keys": 0}, WatermarkValueError),
        ({"max_untimed_keys": True}, StatefulUsageError),
        ({"max_untimed_keys": 1.5}, StatefulUsageError),
        ({"lookback": timedelta(1), "max_untimed_keys": -1}, WatermarkValueError),
    ],
)
def test_configure_refuses_bad_values_and_changes_nothing(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    wm = Watermark()
    with pytest.raises(error):
        wm.configure(**kwargs)
    assert (wm.lookback, wm.max_untimed_keys) == (timedelta(0), DEFAULT_MAX_UNTIMED_KEYS)


def test_untimed_keys_are_evicted_oldest_first_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    wm = Watermark().configure(max_untimed_keys=3)
    with caplog.at_level(logging.WARNING, logger="stateful"):
        for key in ("k1", "k2", "k3", "k1"):  # re-recording k1 does not make it younger
            wm.advance(key=key)
        assert caplog.records == []
        for key in ("k4", "k5"):
            wm.advance(key=key)
        wm.advance(timestamp=T0, key="timed")  # timed keys do not count against the cap
    assert list(wm.seen) == ["k3", "k4", "k5", "timed"]
    assert wm.is_new("k1")  # evicted: reported new again (a repeat, never a skip)

    warnings = [r for r in caplog.records if r.name == "stateful"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    for expected in ("more than 3 keys", "new again", "at-least-once", "max_untimed_keys", "lookback"):
        assert expected in message

    other = Watermark().configure(max_untimed_keys=1)
    with caplog.at_level(logging.WARNING, logger="stateful"):
        other.advance(key="a")
        other.advance(key="b")
    assert len([r for r in caplog.records if r.name == "stateful"]) == 2  # once per instance


def test_docstring_examples_run() -> None:
    result = doctest.testmod(stateful.types, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0
