"""New rows of a PostgreSQL table: a trigger (asset watcher) and a sensor, safe against
transactions that commit out of id order.

Two ways to tell a row is new, chosen by the columns given:

* **by id** (``id_column="id"``, the default): an incrementing integer (``serial``, ``identity``);
  reports every row once.
* **by updated_at** (``updated_at_column="updated_at"``): a ``timestamptz`` the writer sets on
  insert and update (``DEFAULT now()`` plus an update trigger); reports every row once per
  version, keyed ``f"{id}@{updated_at}"``.

The trap: ids and ``now()`` are taken when a transaction *writes*, rows become visible when it
*commits*. T1 takes id 41, T2 takes id 42 and commits first; a poll in between sees 42 and a
naive ``id > 42`` never reads 41. So neither mode trusts the highest value reported: each poll
re-reads a **lookback** window below it and skips what the watermark's ``seen`` keys say was
already reported.

* by updated_at: the window is ``[newest updated_at reported - lookback, ...]``, as for S3
  objects and files.
* by id: ids carry no time, so each reported id is stamped with the database server's clock when
  it was first read. The cursor is a *settled floor*: the highest id that was read more than
  ``lookback`` ago. Polls read ``id > floor``; an id below the newest one read is still read
  until that newest one has been known for ``lookback``.

Guarantee: a row whose transaction commits within ``lookback`` of taking its id (or of the
``updated_at`` it wrote) is reported once, whatever the order of commits; a slower one is
missed (docs/examples/postgres.md). Why not a horizon from ``pg_snapshot_xmin``: it only
protects rows whose transaction id is known, and a row's id is taken before its transaction
gets one (ORM id pools: long before); it is exact only with an ``xid8`` column added to the
table, which this example does not require.

Example:
    An asset fed by new orders; its triggerer must reach the database::

        from airflow.sdk import Asset, AssetWatcher

        from examples.postgres import NewRowsTrigger

        orders = Asset(
            "orders",
            watchers=[AssetWatcher(name="orders", trigger=NewRowsTrigger(table="orders", conn_id="shop"))],
        )
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseSensorOperator, Context, PokeReturnValue
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, stateful
from stateful.errors import MissingDependencyError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = [
    "LOOKBACK",
    "MAX_CLOCK_SKEW",
    "PAGE_ROWS",
    "NewRowsSensor",
    "NewRowsTrigger",
    "Row",
    "RowSource",
    "fetch_new_rows",
    "take_new_rows",
]

# How long a transaction may hold an id (or an updated_at) before committing and still be
# reported. The price is state: `seen` keeps one key per row reported in the last LOOKBACK.
LOOKBACK = timedelta(minutes=10)
# Rows stamped further ahead of the database server's clock than this (an application clock
# running fast) wait until they no longer are: reporting one would push the window past rows
# stamped correctly. By updated_at only.
MAX_CLOCK_SKEW = timedelta(minutes=1)
# Rows read per query. Every poll re-reads the rows reported within the lookback (the seen keys
# skip them), so pages are large; only keys are read, never the rows' data.
PAGE_ROWS = 5000


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # the scheduler can parse DAGs without it; workers need it
        raise MissingDependencyError(
            f"examples.postgres needs psycopg ({exc}); install it: pip install 'airflow-stateful[postgres]'"
        ) from exc
    return psycopg


@dataclass(frozen=True)
class Row:
    """A row reported: its id, and its ``updated_at`` when watching by updated_at."""

    id: int
    updated_at: datetime | None = None

    @property
    def key(self) -> str:
        """The watermark key: ``"42"``, or ``"42@2025-06-02T09:00:00+00:00"`` (UTC) for a version."""
        return str(self.id) if self.updated_at is None else f"{self.id}@{self.updated_at.isoformat()}"

    def to_json(self) -> dict[str, Any]:
        """The row as it appears in event payloads and XComs."""
        if self.updated_at is None:
            return {"id": self.id}
        return {"id": self.id, "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class RowSource:
    """Which table and columns to watch, and how a page of them is read.

    Example:
        >>> RowSource("public.orders", conn_id="shop").name
        'shop/public.orders/id'
    """

    table: str
    conn_id: str | None = None
    conninfo: str | None = None
    id_column: str = "id"
    updated_at_column: str | None = None

    def __post_init__(self) -> None:
        if (self.conn_id is None) == (self.conninfo is None):
            raise ValueError(
                f"watching {self.table!r}: give exactly one of conn_id= (an Airflow connection) or "
                f"conninfo= (a libpq connection string)."
            )
        if not self.table or self.table.count(".") > 1:
            raise ValueError(f"table {self.table!r} must be 'name' or 'schema.name'.")

    @property
    def name(self) -> str:
        """Where the rows come from, as a watermark name: ``conn/table/column`` (no password)."""
        column = self.updated_at_column or self.id_column
        if self.conn_id is not None:
            return f"{self.conn_id}/{self.table}/{column}"
        params = _psycopg().conninfo.conninfo_to_dict(self.conninfo)
        where = f"{params.get('host', 'local')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
        return f"{where}/{self.table}/{column}"

    def page(self, watermark: Watermark[int], after: Row | None, size: int) -> tuple[sql.Composed, list[Any]]:
        """The query for the page of rows after ``after`` (first page: the watermark's window)."""
        from psycopg import sql

        names = {
            "id": sql.Identifier(self.id_column),
            "table": sql.Identifier(*self.table.split(".")),
            "u": sql.Identifier(self.updated_at_column or self.id_column),
        }
        if self.updated_at_column is None:
            start = after.id if after is not None else watermark.cursor
            where = sql.SQL("" if start is None else "WHERE {id} > %s").format(**names)
            text = "SELECT {id}, NULL, statement_timestamp() FROM {table} {where} ORDER BY {id} LIMIT %s"
            params: list[Any] = [] if start is None else [start]
        else:
            # Both bounds are closed, like Watermark.is_new's window; the seen keys skip repeats.
            conditions, params = ["{u} <= statement_timestamp() + %s"], [MAX_CLOCK_SKEW]
            if after is not None:
                conditions.append("({u}, {id}) > (%s, %s)")
                params += [after.updated_at, after.id]
            elif watermark.timestamp is not None:
                conditions.append("{u} >= %s")
                params.append(watermark.timestamp - watermark.lookback)
            where = sql.SQL("WHERE " + " AND ".join(conditions)).format(**names)
            text = "SELECT {id}, {u}, statement_timestamp() FROM {table} {where} ORDER BY {u}, {id} LIMIT %s"
        return sql.SQL(text).format(where=where, **names), [*params, size]

    def parse(self, records: Sequence[tuple[Any, ...]]) -> tuple[list[Row], datetime | None]:
        """Turn fetched records into rows, with the server's clock when they were read."""
        rows = []
        for row_id, updated_at, _ in records:
            if isinstance(row_id, bool) or not isinstance(row_id, int):
                raise TypeError(
                    f"{self.table}.{self.id_column} holds {type(row_id).__name__} values; watching by id "
                    f"needs an incrementing integer column (serial, bigserial, identity)."
                )
            if updated_at is not None and (not isinstance(updated_at, datetime) or updated_at.tzinfo is None):
                raise TypeError(
                    f"{self.table}.{self.updated_at_column} is not a timestamptz (got {updated_at!r}); a "
                    f"timestamp without time zone is ambiguous: ALTER it to timestamptz."
                )
            # In UTC: the key must not depend on the session's TimeZone setting.
            rows.append(Row(row_id, None if updated_at is None else updated_at.astimezone(timezone.utc)))
        return rows, records[0][2] if records else None


def take_new_rows(
    watermark: Watermark[int], rows: Sequence[Row], now: datetime, limit: int | None = None
) -> list[Row]:
    """Return the rows of a page not reported yet (at most ``limit``); advance the watermark past them.

    Example:
        >>> wm = Watermark[int]()
        >>> now = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
        >>> [r.id for r in take_new_rows(wm, [Row(1), Row(2)], now)]
        [1, 2]
        >>> take_new_rows(wm, [Row(1), Row(2)], now + timedelta(seconds=1))
        []
    """
    new = [row for row in rows if watermark.is_new(row.key, row.updated_at)][:limit]
    by_id = bool(new) and new[0].updated_at is None
    # When an earlier call already advanced to this very `now` (the same page), it settled
    # and pruned everything there was: skip the scan of `seen`.
    floor = _settled_floor(watermark, now) if by_id and watermark.timestamp != now else None
    for row in new:
        if row.updated_at is not None:
            watermark.advance(timestamp=row.updated_at, key=row.key)
        else:
            # Stamped with the time it was read; its key is pruned once older than the lookback,
            # in the same advance() that raises the floor past it.
            watermark.advance(timestamp=now, key=row.key, cursor=floor)
    return new


def _settled_floor(watermark: Watermark[int], now: datetime) -> int | None:
    """The highest id read more than ``lookback`` before ``now``: every id below it has settled.

    advance() prunes the keys stamped below ``max(timestamp, now) - lookback``; exactly those
    count here, so no key leaves ``seen`` while the floor is still below it.
    """
    reference = now if watermark.timestamp is None else max(watermark.timestamp, now)
    settled = reference - watermark.lookback
    stamps = ((key, watermark.seen_at(key)) for key in watermark.seen)
    return max((int(key) for key, at in stamps if at is not None and at < settled), default=None)


def fetch_new_rows(
    connection: psycopg.Connection[Any],
    source: RowSource,
    watermark: Watermark[int],
    limit: int,
    page_rows: int = PAGE_ROWS,
) -> list[Row]:
    """Read up to ``limit`` new rows (blocking), page by page; advance the watermark past them."""
    taken: list[Row] = []
    after: Row | None = None
    while len(taken) < limit:
        page, now = source.parse(connection.execute(*source.page(watermark, after, page_rows)).fetchall())
        if now is None:
            break
        taken += take_new_rows(watermark, page, now, limit - len(taken))
        if len(page) < page_rows:
            break
        after = page[-1]
    return taken


def _conninfo(source: RowSource, connection: Any) -> str:
    """libpq connection string for ``source``; ``connection`` is the Airflow connection, if any."""
    if connection is None:
        assert source.conninfo is not None
        return source.conninfo
    pg = _psycopg()
    known = {option.keyword.decode() for option in pg.pq.Conninfo.get_defaults()}
    params = {
        "host": connection.host,
        "port": connection.port,
        "user": connection.login,
        "password": connection.password,
        "dbname": connection.schema,
        # Extras libpq understands (sslmode, connect_timeout...); the others are for other clients.
        **{k: v for k, v in connection.extra_dejson.items() if k in known},
    }
    conninfo: str = pg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v not in (None, "")})
    return conninfo


class NewRowsTrigger(BaseEventTrigger):
    """Fire for new rows of a table (by id), or new row versions (by updated_at), across restarts.

    Each event carries ``{"table": str, "rows": [{"id": int, ...}]}`` with up to ``batch_size``
    rows, in id (or updated_at) order. Delivery is at-least-once: the watermark is saved once the
    triggerer took the event. The watermark lives in the default store under namespace
    ``"postgres"`` and the name :attr:`source` (``conn/table/column``).

    Args:
        table: the table, ``"orders"`` or ``"schema.orders"``.
        conn_id: an Airflow connection to the database (preferred: no secret in the trigger).
        conninfo: or a libpq connection string.
        id_column: the incrementing integer column, unique per row.
        updated_at_column: watch new row versions by this ``timestamptz`` column instead.
        lookback: how late a row may commit and still be reported (see the module docstring).
        poll_interval: seconds between two polls.
        batch_size: the most rows per event.

    Attributes:
        polls: poll cycles completed by this instance (for monitoring and tests).
        page_rows: rows read per query (:data:`PAGE_ROWS`).
    """

    page_rows = PAGE_ROWS

    def __init__(
        self,
        table: str,
        conn_id: str | None = None,
        conninfo: str | None = None,
        id_column: str = "id",
        updated_at_column: str | None = None,
        lookback: timedelta = LOOKBACK,
        poll_interval: float = 5.0,
        batch_size: int = 100,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
        self.rows = RowSource(table, conn_id, conninfo, id_column, updated_at_column)
        self.lookback = lookback
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.polls = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return (
            "examples.postgres.NewRowsTrigger",
            {
                "table": self.rows.table,
                "conn_id": self.rows.conn_id,
                "conninfo": self.rows.conninfo,
                "id_column": self.rows.id_column,
                "updated_at_column": self.rows.updated_at_column,
                "lookback": self.lookback,
                "poll_interval": self.poll_interval,
                "batch_size": self.batch_size,
            },
        )

    @property
    def source(self) -> str:
        """The watermark's name: ``conn/table/column``."""
        return self.rows.name

    @stateful(namespace="postgres", name="{source}", lookback=LOOKBACK)
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        """Poll forever; yield one event per page of new rows.

        Args:
            watermark: injected by ``@stateful``; callers use ``trigger.run()``.

        Yields:
            ``TriggerEvent({"table", "rows"})``.
        """
        watermark.configure(lookback=self.lookback)
        pg = _psycopg()
        connection: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                try:
                    if connection is None:
                        airflow_connection = None
                        if self.rows.conn_id is not None:
                            airflow_connection = await BaseHook.aget_connection(self.rows.conn_id)
                        conninfo = _conninfo(self.rows, airflow_connection)
                        connection = await pg.AsyncConnection.connect(conninfo, autocommit=True)
                    after: Row | None = None
                    while True:
                        cursor = await connection.execute(*self.rows.page(watermark, after, self.page_rows))
                        page, now = self.rows.parse(await cursor.fetchall())
                        if now is None:
                            break
                        fresh = [row for row in page if watermark.is_new(row.key, row.updated_at)]
                        for start in range(0, len(fresh), self.batch_size):
                            # Advanced one event at a time: an event not taken leaves the rows
                            # of the next ones unrecorded.
                            new = take_new_rows(watermark, fresh[start : start + self.batch_size], now)
                            yield TriggerEvent({"table": self.rows.table, "rows": [r.to_json() for r in new]})
                        if len(page) < self.page_rows:
                            break
                        after = page[-1]
                except pg.OperationalError as exc:
                    # The server restarted or the network dropped: nothing was advanced for rows
                    # not yet yielded. Reconnect on the next poll.
                    self.log.warning("%s: %s; reconnecting in %ss", self.source, exc, self.poll_interval)
                    if connection is not None:
                        await connection.close()
                    connection = None
                self.polls += 1
                await asyncio.sleep(self.poll_interval)
        finally:
            if connection is not None:
                await connection.close()


class NewRowsSensor(BaseSensorOperator):
    """Wait for rows not reported by this task before; return them (``[{"id": ...}]``) as XCom.

    The watermark is saved once the task succeeded, so a failed try is retried with the same
    rows. Its name is ``{dag_id}.{task_id}/{source}``: each sensor task keeps its own position.

    Args:
        table: the table, ``"orders"`` or ``"schema.orders"`` (templated).
        conn_id: an Airflow connection to the database.
        conninfo: or a libpq connection string.
        id_column: the incrementing integer column, unique per row.
        updated_at_column: report new row versions by this ``timestamptz`` column instead.
        lookback: how late a row may commit and still be reported.
        limit: the most rows one run reports; the rest are reported by the next run.
        **kwargs: passed to ``BaseSensorOperator`` (``mode``, ``poke_interval``, ``timeout``...).

    Attributes:
        page_rows: rows read per query (:data:`PAGE_ROWS`).
    """

    template_fields = ("table",)
    page_rows = PAGE_ROWS

    def __init__(
        self,
        *,
        table: str,
        conn_id: str | None = None,
        conninfo: str | None = None,
        id_column: str = "id",
        updated_at_column: str | None = None,
        lookback: timedelta = LOOKBACK,
        limit: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.conn_id = conn_id
        self.conninfo = conninfo
        self.id_column = id_column
        self.updated_at_column = updated_at_column
        self.lookback = lookback
        self.limit = limit
        RowSource(table, conn_id, conninfo, id_column, updated_at_column)  # refuse bad arguments now

    @property
    def rows(self) -> RowSource:
        """What is watched (built when used: ``table`` is rendered by then)."""
        return RowSource(self.table, self.conn_id, self.conninfo, self.id_column, self.updated_at_column)

    @property
    def source(self) -> str:
        """``conn/table/column``, part of the watermark's name."""
        return self.rows.name

    @stateful(namespace="postgres", name="{dag_id}.{task_id}/{source}", lookback=LOOKBACK)
    def poke(self, context: Context, watermark: Watermark[int]) -> bool | PokeReturnValue:
        watermark.configure(lookback=self.lookback)
        source = self.rows
        airflow_connection = None if source.conn_id is None else BaseHook.get_connection(source.conn_id)
        with _psycopg().connect(_conninfo(source, airflow_connection), autocommit=True) as connection:
            rows = fetch_new_rows(connection, source, watermark, self.limit, self.page_rows)
        if not rows:
            return PokeReturnValue(is_done=False)
        self.log.info("%d new row(s) in %s: ids %s..%s", len(rows), source.table, rows[0].id, rows[-1].id)
        return PokeReturnValue(is_done=True, xcom_value=[row.to_json() for row in rows])
