"""The page's list on the server (no api-server): filter, order and pages, with keyed partitions.

The api-server tests (``test_api.py``) cover the same rules end to end; these cover the order of
missing values and what the server reads to answer: only the documents a filter or a sort needs
and those of the page returned.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from stateful._address import partition_key
from stateful.backends.base import StateRecord
from stateful.plugin._listing import Listed, select
from stateful.plugin._rows import Located
from stateful.types import Watermark

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
SQL = Located("sql", "SqlBackend(sqlite:///stateful.db)", store=None)


def _listed(name: str, key: str, watermark: Watermark[Any], saved_by: str | None = "host:1") -> Listed:
    record = StateRecord("files", name, key, watermark.to_state_json(), 1, NOW, saved_by, None)
    return Listed(SQL, record, NOW, timedelta(hours=1))


def _partitions(count: int) -> list[Listed]:
    def watermark(n: int) -> Watermark[int]:
        return Watermark[int](cursor=n, timestamp=NOW - timedelta(minutes=n))

    return [_listed("bucket", partition_key(f"p{n}"), watermark(n)) for n in range(1, count + 1)]


def _names(page: list[Listed]) -> list[str]:
    return [f"{e.record.name}{'' if e.partition is None else ' · ' + e.partition}" for e in page]


def test_partitions_sort_in_natural_order_after_the_namespace_and_name() -> None:
    listed = [*_partitions(12), _listed("archive", "watermark", Watermark[int](cursor=1))]

    page, matched = select(listed, None, limit=4)
    last, _ = select(listed, None, limit=4, offset=11)

    assert matched == 13
    assert _names(page) == ["archive", "bucket · p1", "bucket · p2", "bucket · p3"]
    assert _names(last) == ["bucket · p11", "bucket · p12"]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_missing_values_stay_last_in_both_orders(order: str) -> None:
    listed = [
        _listed("a", "watermark", Watermark[int](cursor=1)),  # no timestamp, no partition
        _listed("b", partition_key("eu"), Watermark[int](cursor=2, timestamp=NOW - timedelta(hours=3))),
        _listed("c", partition_key("us"), Watermark[int](cursor=3, timestamp=NOW - timedelta(hours=1))),
    ]

    by_lag, _ = select(listed, None, "lag_seconds", order)  # type: ignore[arg-type]
    by_partition, _ = select(listed, None, "partition", order)  # type: ignore[arg-type]

    ascending = order == "asc"
    assert _names(by_lag) == (["c · us", "b · eu", "a"] if ascending else ["b · eu", "c · us", "a"])
    assert _names(by_partition) == (["b · eu", "c · us", "a"] if ascending else ["c · us", "b · eu", "a"])


def test_the_filter_matches_the_partition_the_address_and_the_cursor() -> None:
    listed = [
        *_partitions(3),
        _listed("plain", "watermark", Watermark[int](cursor=777), saved_by="stateful set by alice"),
    ]

    assert _names(select(listed, "watermark[p2")[0]) == ["bucket · p2"]
    assert _names(select(listed, "FILES/BUCKET")[0]) == ["bucket · p1", "bucket · p2", "bucket · p3"]
    assert _names(select(listed, "777")[0]) == ["plain"]
    assert _names(select(listed, "alice")[0]) == ["plain"]
    assert select(listed, "nothing like it") == ([], 0)
    # A cursor whose stored text differs from its shown text (escaped quotes, JSON spacing).
    quoted = _listed("quoted", "watermark", Watermark[str](cursor='say "hi"'))
    listing = _listed("listing", "watermark", Watermark[list[int]](cursor=[41, 42]))
    assert _names(select([quoted, listing], 'say "HI"')[0]) == ["quoted"]
    assert _names(select([quoted, listing], "41, 42")[0]) == ["listing"]


def test_only_the_page_returned_is_read_when_neither_filter_nor_order_needs_the_documents() -> None:
    listed = _partitions(2000)

    page, matched = select(listed, None, limit=50)
    by_name, _ = select(listed, "bucket", "name", "desc", limit=50)

    assert (len(page), matched) == (50, 2000)
    assert not any("summary" in e.__dict__ for e in listed)  # no document parsed yet
    assert len(by_name) == 50
    assert not any("summary" in e.__dict__ for e in listed)
    by_cursor, _ = select(listed, None, "cursor", limit=50)
    assert all("summary" in e.__dict__ for e in listed)  # sorting by cursor reads every one
    assert _names(by_cursor)[:3] == ["bucket · p1", "bucket · p2", "bucket · p3"]  # numbers by value


def test_an_unknown_sort_key_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot sort by 'value'"):
        select([], None, "value")  # type: ignore[arg-type]
