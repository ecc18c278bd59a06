"""The SQL store's tables: the state table, its history and parts tables, a UTC timestamp type.

The state and history tables keep, with each version, who wrote it (``updated_by``) and why
(``reason``, given to ``stateful set --reason``); both are nullable.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = ["UtcDateTime", "history_table", "parts_table", "state_table"]


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database, including those without a zone type."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(timezone.utc)
        # SQLite and MySQL store no offset: keep naive UTC there, re-marked as UTC on read.
        return value if dialect.name in {"postgresql", "oracle", "mssql"} else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def state_table(table_name: str) -> sa.Table:
    """The state table: one row per ``(namespace, name, key)``."""
    return sa.Table(
        table_name,
        sa.MetaData(),
        # 255 characters keeps the three-column primary key within MySQL's index limit.
        sa.Column("namespace", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=True),
        # Added by the release that keeps reasons: a table made before it gains the column at
        # first use (see tables.py).
        sa.Column("reason", sa.Text, nullable=True),
    )


def history_table(table_name: str) -> sa.Table:
    """The history table of state table ``table_name``: one row per kept version."""
    return sa.Table(
        f"{table_name}_history",
        sa.MetaData(),
        sa.Column("namespace", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )


def parts_table(table_name: str) -> sa.Table:
    """The parts table of state table ``table_name``: the parts of large documents, by content id.

    ``dropped`` is ``NULL`` while the document's current manifest names the part, else the
    version whose write stopped naming it (see :mod:`stateful.backends.sql.parts`).
    """
    return sa.Table(
        f"{table_name}_parts",
        sa.MetaData(),
        sa.Column("namespace", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("part_id", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("dropped", sa.Integer, nullable=True),
    )
