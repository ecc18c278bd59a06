"""The SQL store's history: the last N versions of every document, in a second table.

Every write records the version it creates in ``<table>_history`` (same transaction, so the
history never disagrees with the state), and drops the versions that fell out of the window.
An operator lists them with ``stateful history`` and restores one with ``stateful rewind``.

The history table is created next to the state table when it is missing, so a database
created by an earlier release gains history on first use; if it cannot be created (a user
without CREATE permission on a table a DBA created), the store keeps working without history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stateful.backends.base import StateRecord
from stateful.backends.sql.schema import history_table
from stateful.errors import StoreError

__all__ = [
    "DEFAULT_HISTORY_VERSIONS",
    "ENV_VAR",
    "History",
    "check_history_versions",
    "history_setting",
    "select_history",
    "versions",
]

#: How many versions of each document the SQL store keeps unless configured otherwise.
DEFAULT_HISTORY_VERSIONS = 100
ENV_VAR = "STATEFUL_HISTORY_VERSIONS"


def check_history_versions(value: object, where: str) -> int:
    """Return ``value`` if it is a whole number >= 0, else raise a StoreError naming ``where``."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreError(
            f"{where} must be a whole number >= 0 (how many versions of each watermark the SQL "
            f"store keeps; 0 keeps none), got {value!r}."
        )
    return value


def history_setting() -> int:
    """How many versions to keep: ``STATEFUL_HISTORY_VERSIONS``, else ``[stateful] history_versions``.

    Read at a store's first use, like the default store: every process writing one database
    (triggerers, workers, the CLI) should see the same setting, since each write prunes.
    """
    from stateful._airflowconf import stateful_setting

    return stateful_setting(ENV_VAR, "history_versions", check_history_versions, DEFAULT_HISTORY_VERSIONS)


def _pk(table: sa.Table, namespace: Any, name: Any, key: Any) -> tuple[sa.ColumnElement[bool], ...]:
    c = table.c
    return (c.namespace == namespace, c.name == name, c.key == key)


class History:
    """The history table of one state table, with its statements built once.

    Built once, the statements cost SQLAlchemy no construction or cache-key work per write;
    built per call they doubled the CPU time of a write on an in-memory SQLite database.
    """

    def __init__(self, table_name: str) -> None:
        self.table = history_table(table_name)
        t = self.table
        pk = _pk(t, sa.bindparam("h_namespace"), sa.bindparam("h_name"), sa.bindparam("h_key"))
        # One statement drops what fell out of the window and anything at or above the new
        # version: left over from before a delete made by a writer that knew nothing of history.
        self._prune = sa.delete(t).where(
            *pk, sa.or_(t.c.version <= sa.bindparam("h_floor"), t.c.version >= sa.bindparam("h_version"))
        )
        self._insert = sa.insert(t)
        self._purge = sa.delete(t).where(*pk)

    @property
    def name(self) -> str:
        return self.table.name

    def record(
        self,
        conn: Connection,
        address: tuple[str, str, str],
        version: int,
        columns: Mapping[str, Any],
        keep: int,
    ) -> None:
        """Record ``version`` of the document at ``address`` and keep only the newest ``keep``."""
        namespace, name, key = address
        where = {"h_namespace": namespace, "h_name": name, "h_key": key}
        conn.execute(self._prune, {**where, "h_floor": version - keep, "h_version": version})
        conn.execute(
            self._insert, {"namespace": namespace, "name": name, "key": key, "version": version, **columns}
        )

    def purge(self, conn: Connection, address: tuple[str, str, str]) -> None:
        """Forget the history of the document at ``address`` (it was deleted)."""
        namespace, name, key = address
        conn.execute(self._purge, {"h_namespace": namespace, "h_name": name, "h_key": key})


def select_history(
    columns: Sequence[sa.Column[Any]], address: tuple[str, str, str], limit: int | None, current: int
) -> sa.Select[Any]:
    """The kept versions of the document at ``address`` up to version ``current``, newest first.

    ``columns`` are the history table's columns to read (its ``reason`` only where it has one).
    """
    table = columns[0].table
    # Rows above the current version are left over from before a delete (see record()).
    stmt = (
        sa.select(*columns)
        .where(*_pk(table, *address), table.c.version <= current)
        .order_by(table.c.version.desc())
    )
    return stmt if limit is None else stmt.limit(limit)


def _written(record: StateRecord) -> tuple[str, object, str | None]:
    # Not the reason: a table may have gained its column after the other (see tables.py).
    return record.value, record.updated_at, record.updated_by


def versions(current: StateRecord, kept: list[StateRecord], limit: int | None) -> list[StateRecord]:
    """The versions to show: ``kept`` (newest first, up to ``current``) checked against ``current``."""
    if kept and kept[0].version == current.version and _written(kept[0]) != _written(current):
        # Left over from before a delete made by a writer that knows nothing of history (an
        # earlier release): these rows describe an earlier document at this address.
        kept = []
    if not kept or kept[0].version < current.version:
        # Written before the history table existed, or by a writer with history off.
        kept = [current, *kept][:limit]
    return kept
