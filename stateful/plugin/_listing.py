"""The list of watermarks the page shows: filtered, sorted and cut into pages on the server.

A keyed watermark (:class:`~stateful.Keyed`) is one document per partition, so a deployment can
hold thousands of rows. The stores are read in one query each, but a row is only built (its
document parsed, its lag computed, its id encoded) for what a filter or a sort needs and for
the page returned: with the default order (namespace, name, partition) and no filter, that is
``limit`` documents, whatever the number stored.

Example:
    >>> natural("p10") > natural("p9"), natural("B") == natural("b")
    (True, True)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any, Literal, get_args

from stateful._address import partition_of
from stateful._lag import is_stuck, lag_seconds, max_lag_setting
from stateful.backends.base import StateRecord
from stateful.cli._documents import Summary, summarize
from stateful.errors import StatefulError
from stateful.plugin._rows import Located, cursor_text, native_stores, row, row_timestamp, sql_store

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Listed",
    "Order",
    "SortKey",
    "list_watermarks",
    "natural",
    "select",
]

#: The columns the list can be sorted by (a row's fields).
SortKey = Literal[
    "namespace",
    "name",
    "partition",
    "store_label",
    "timestamp",
    "cursor",
    "seen",
    "version",
    "saved_at",
    "saved_by",
    "lag_seconds",
    "stuck",
]
Order = Literal["asc", "desc"]
#: Rows in one answer unless the caller asks for another number, and the most it may ask for.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000

_DIGITS = re.compile(r"(\d+)")
# Text that JSON writes as it is, whatever the writer's spacing (no quote, backslash, comma,
# colon, space, control or non-ASCII character): absent from a document's stored text, it is
# absent from its cursor.
_VERBATIM = re.compile(r"[!#-+\--9;-\[\]-~]+")


@functools.lru_cache(maxsize=1 << 16)  # a list repeats its namespaces, names and stores
def natural(text: str) -> tuple[tuple[int, str], ...]:
    """A sort key that orders ``text`` as the page does: case-insensitive, numbers by value.

    Example:
        >>> sorted(["p10", "P9", "p1"], key=natural)
        ['p1', 'P9', 'p10']
    """
    # re.split alternates text and digits, so equal positions always hold the same kind.
    return tuple(
        (int(part), "") if i % 2 else (0, part) for i, part in enumerate(_DIGITS.split(text.casefold()))
    )


@dataclass
class Listed:
    """One stored document of a store, and what filtering and sorting it needs, computed once."""

    located: Located
    record: StateRecord
    now: datetime
    max_lag: timedelta | None

    @cached_property
    def summary(self) -> Summary:
        return summarize(self.record.value)

    @cached_property
    def partition(self) -> str | None:
        return partition_of(self.record.key)

    @cached_property
    def timestamp(self) -> datetime | None:
        return row_timestamp(self.summary.timestamp)

    def light(self) -> list[str]:
        """What the filter matches without reading the document (the cursor is the only other)."""
        r, located = self.record, self.located
        texts = [r.namespace, r.name, f"{r.namespace}/{r.name}", r.key, located.kind, located.label]
        if located.asset is not None:
            texts.append(str(located.asset.name))
        if r.updated_by:
            texts.append(r.updated_by)
        return texts

    def matches(self, needle: str) -> bool:
        """Whether ``needle`` (case-folded) is in one of the fields the page's filter matches."""
        if any(needle in text.casefold() for text in self.light()):
            return True
        if _VERBATIM.fullmatch(needle) and needle not in self.record.value.casefold():
            return False  # not in the stored text, so not in its cursor: no need to parse it
        cursor = self.cursor()
        return cursor is not None and needle in cursor.casefold()

    def cursor(self) -> str | None:
        return cursor_text(self.summary.cursor)

    def sort_value(self, key: SortKey) -> Any:
        """The value ``key`` sorts by (``None``: missing, listed last in both orders)."""
        r = self.record
        if key in ("namespace", "name", "saved_by", "store_label"):
            text = {
                "namespace": r.namespace,
                "name": r.name,
                "saved_by": r.updated_by,
                "store_label": self.located.label,
            }[key]
            return None if text is None else natural(text)
        if key == "partition":
            shown = self.partition if self.partition is not None else _other_key(r.key)
            return None if shown is None else natural(shown)
        if key == "version":
            return r.version
        if key == "saved_at":
            return r.updated_at
        if key == "timestamp":
            return self.timestamp
        if key == "cursor":
            cursor = self.cursor()
            return None if cursor is None else natural(cursor)
        if key == "seen":
            return self.summary.seen or 0
        if key == "lag_seconds":
            return lag_seconds(self.timestamp, self.now)
        return int(is_stuck(self.timestamp or r.updated_at, self.now, self.max_lag))  # "stuck"

    @cached_property
    def tie(self) -> tuple[Any, ...]:
        """The order of rows a sort leaves equal: namespace, name, partition (key), store."""
        r = self.record
        return natural(r.namespace), natural(r.name), natural(r.key), natural(self.located.label)


def _other_key(key: str) -> str | None:
    """A document key other than the plain watermark's, as the Partition column shows it."""
    return None if key == "watermark" else f"key {key}"


def select(
    listed: Sequence[Listed],
    q: str | None,
    sort: SortKey = "namespace",
    order: Order = "asc",
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> tuple[list[Listed], int]:
    """The rows of ``listed`` that ``q`` keeps, sorted, from ``offset`` (at most ``limit``); how many it kept.

    Missing values (no timestamp, no cursor, no partition) stay last in both orders; rows that
    sort alike are ordered by namespace, name, partition and store.

    Raises:
        ValueError: ``sort`` is not a column (:data:`SortKey`).

    Example:
        >>> from datetime import datetime, timezone
        >>> now = datetime(2026, 1, 5, tzinfo=timezone.utc)
        >>> sql = Located("sql", "SQL store", store=None)
        >>> def listed(key: str, cursor: int) -> Listed:
        ...     value = f'{{"cursor": {cursor}, "timestamp": null, "seen": {{}}, "schema_version": 1}}'
        ...     return Listed(sql, StateRecord("s3", "landing", key, value, 1, now, None, None), now, None)
        >>> rows = [listed("watermark[p10]", 1), listed("watermark[p9]", 2), listed("watermark", 3)]
        >>> page, matched = select(rows, None, "partition", limit=2)
        >>> [e.partition for e in page], matched
        (['p9', 'p10'], 3)
        >>> [e.record.key for e in select(rows, "p1", "cursor", "desc")[0]]
        ['watermark[p10]']
    """
    if sort not in get_args(SortKey):
        raise ValueError(f"cannot sort by {sort!r}; sort by one of {', '.join(get_args(SortKey))}.")
    needle = (q or "").strip().casefold()
    found = [entry for entry in listed if entry.matches(needle)] if needle else list(listed)
    present = [(entry.sort_value(sort), entry) for entry in found]
    missing = [entry for value, entry in present if value is None]
    kept = [(value, entry) for value, entry in present if value is not None]
    kept.sort(key=lambda pair: pair[1].tie)
    kept.sort(key=lambda pair: pair[0], reverse=order == "desc")  # stable: ties keep their order
    missing.sort(key=lambda entry: entry.tie)
    ordered = [entry for _, entry in kept] + missing
    return ordered[offset : offset + limit], len(found)


def list_watermarks(
    may_read_asset: Callable[[int], bool],
    q: str | None = None,
    *,
    sort: SortKey = "namespace",
    order: Order = "asc",
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> dict[str, Any]:
    """Every watermark of the configured SQL store and of the native store of every readable asset.

    Each partition of a keyed watermark is a row of its own. ``q`` keeps the rows whose
    namespace, name, ``namespace/name``, partition (document key), store, asset, cursor or last
    saver contains it (case-insensitive); the answer holds ``limit`` rows from ``offset`` of
    them, in the order of ``sort`` and ``order``, with ``total`` (rows stored) and ``matched``
    (rows ``q`` keeps).
    """
    now = datetime.now(timezone.utc)
    max_lag = max_lag_setting()
    listed: list[Listed] = []
    stores: list[dict[str, Any]] = []
    try:
        sql = sql_store()
    except StatefulError as exc:
        stores.append({"kind": "sql", "label": "SQL store", "error": str(exc)})
    else:
        error = _collect(sql, lambda: sql.store.list(), listed, now, max_lag)
        stores.append({"kind": "sql", "label": sql.label, "error": error})
    for located in native_stores(may_read_asset) or []:
        problems: list[str] = []

        def documents(located: Located = located, problems: list[str] = problems) -> Sequence[StateRecord]:
            from stateful.plugin._native import list_asset

            return list_asset(located.asset, None, problems)

        error = _collect(located, documents, listed, now, max_lag)
        stores.append(
            {"kind": "native", "label": located.label, "error": error or "; ".join(problems) or None}
        )
    page, matched = select(listed, q, sort, order, limit, offset)
    return {
        "watermarks": [row(e.located, e.record, now, max_lag) for e in page],
        "stores": stores,
        "total": len(listed),
        "matched": matched,
        "offset": offset,
        "limit": limit,
    }


def _collect(
    located: Located,
    documents: Callable[[], Sequence[StateRecord]],
    listed: list[Listed],
    now: datetime,
    max_lag: timedelta | None,
) -> str | None:
    try:
        records = documents()
    except StatefulError as exc:
        return str(exc)
    listed.extend(Listed(located, r, now, max_lag) for r in records)
    return None
