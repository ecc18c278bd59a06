"""A sensor that reports new rows of a SQLite table, once each, across runs and retries.

The watermark's cursor is the largest row id reported so far. ``poke()`` reads rows with a
larger id; when it finds some it advances the cursor and returns them as the task's XCom. The
cursor is saved only once the task has succeeded, after Airflow pushed the XCom, so a try that
fails after ``poke()`` found rows (a failing XCom push, a worker that dies) leaves the cursor
where it was, and the retry reports the same rows again.

Why ``id > cursor`` is safe here: SQLite runs one write transaction at a time, so row ids
become visible in id order. On PostgreSQL concurrent transactions can commit out of id order
and ``id > cursor`` can skip a row; use a lookback there.

With ``deferrable=True`` the sensor hands the waiting over to :class:`NewRowsTrigger` in the
triggerer. Both are decorated with the same namespace and name, so they read one watermark; the
trigger only *waits* (``commit="never"``), and when it fires the resumed sensor pokes once more
and stages the save for the task's success. One watermark, one save point, whichever path ran.

Usage::

    rows = NewRowsSensor(task_id="new_orders", database="/data/shop.db", table="orders")

    @task.sensor(poke_interval=30, mode="reschedule")
    @stateful(namespace="sqlite", name="{task_id}")
    def new_order_ids(watermark: Watermark[int]) -> PokeReturnValue:
        return poke_new_rows("/data/shop.db", "orders", watermark)
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.triggers.base import BaseTrigger, TriggerEvent

from stateful import Watermark, stateful

__all__ = ["NewRowsSensor", "NewRowsTrigger", "fetch_rows_after", "poke_new_rows"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def fetch_rows_after(database: str, table: str, after: int, limit: int) -> list[tuple[int, Any]]:
    """Return up to ``limit`` ``(id, payload)`` rows of ``table`` with ``id > after``, in id order."""
    if not _IDENTIFIER.match(table):
        # A table name cannot be a bound parameter: accept plain identifiers only.
        raise ValueError(f"table name {table!r} is not a plain SQL identifier (letters, digits, _).")
    # mode=ro: a sensor only reads; it must never create an empty database by mistake.
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        cursor = connection.execute(
            f"SELECT id, payload FROM {table} WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [(int(row[0]), row[1]) for row in cursor.fetchall()]


def poke_new_rows(database: str, table: str, watermark: Watermark[int], limit: int = 1000) -> PokeReturnValue:
    """One poke: the ids of rows added since the watermark, and the watermark moved past them.

    Example:
        >>> import sqlite3, tempfile, os
        >>> db = os.path.join(tempfile.mkdtemp(), "shop.db")
        >>> with sqlite3.connect(db) as c:
        ...     _ = c.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, payload TEXT)")
        ...     _ = c.executemany("INSERT INTO orders (payload) VALUES (?)", [("a",), ("b",)])
        >>> wm = Watermark[int]()
        >>> poke_new_rows(db, "orders", wm).xcom_value
        [1, 2]
        >>> wm.cursor, poke_new_rows(db, "orders", wm).is_done
        (2, False)
    """
    rows = fetch_rows_after(database, table, watermark.cursor or 0, limit)
    if not rows:
        return PokeReturnValue(is_done=False)
    watermark.advance(cursor=rows[-1][0])
    return PokeReturnValue(is_done=True, xcom_value=[row_id for row_id, _ in rows])


class NewRowsTrigger(BaseTrigger):
    """Fires once rows with an id above the sensor's watermark exist; saves nothing itself.

    It shares the sensor's watermark (same namespace and name) and only reads it: the resumed
    sensor reads the rows and saves the watermark when its task succeeds.
    """

    def __init__(self, database: str, table: str, poll_interval: float = 30.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.database = database
        self.table = table
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"database": self.database, "table": self.table, "poll_interval": self.poll_interval},
        )

    @stateful(namespace="sqlite", name="{table}", commit="never")
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        after = watermark.cursor or 0
        while True:
            # sqlite3 blocks: read in a thread so the triggerer's event loop never waits on it.
            rows = await asyncio.to_thread(fetch_rows_after, self.database, self.table, after, 1)
            if rows:
                yield TriggerEvent({"after": after})
                return
            await asyncio.sleep(self.poll_interval)


class NewRowsSensor(BaseSensorOperator):
    """Waits for rows with an id above the last one it reported; returns their ids as XCom.

    Args:
        database: path of the SQLite database file.
        table: the table; it needs an ``INTEGER PRIMARY KEY`` column ``id`` and a ``payload``.
        limit: the most rows reported by one run; the rest are reported by the next run.
        deferrable: wait in the triggerer (:class:`NewRowsTrigger`) instead of a worker slot.
        **kwargs: passed to ``BaseSensorOperator`` (``mode``, ``poke_interval``, ``timeout``...).
    """

    template_fields = ("database", "table")

    def __init__(
        self, *, database: str, table: str, limit: int = 1000, deferrable: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.database = database
        self.table = table
        self.limit = limit
        self.deferrable = deferrable

    @stateful(namespace="sqlite", name="{table}")
    def poke(self, context: Context, watermark: Watermark[int]) -> bool | PokeReturnValue:
        return poke_new_rows(self.database, self.table, watermark, self.limit)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        return self.execute_complete(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Poke once; defer to the trigger while nothing is new. The poke stages the save."""
        result = self.poke(context)
        if result:
            return result.xcom_value if isinstance(result, PokeReturnValue) else None
        self.defer(
            trigger=NewRowsTrigger(self.database, self.table, poll_interval=self.poke_interval),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )
