"""The tables of one SQL store: the state table, and its history and parts tables when it may have them.

A store creates its tables at first use. The history table (:mod:`~stateful.backends.sql.history`)
and the parts table (:mod:`~stateful.backends.sql.parts`) are optional: a user who may read and
write a state table a DBA created, but may not create tables, still gets a working store, which
then keeps no history or writes every state whole (each logged once, with what to do).

The ``reason`` column of the state and history tables (why an operator made an edit, see
``stateful set --reason``) came after them: a table made by an earlier release gains it at
first use (``ALTER TABLE ... ADD COLUMN reason``); where it cannot be added, the store keeps
working without reasons (logged once, with the statement to run).

Example:
    >>> tables = Tables("stateful_process_state", "SqlBackend(sqlite://)", keep=5)
    >>> (tables.history.name, tables.parts.name, tables.keep)
    ('stateful_process_state_history', 'stateful_process_state_parts', 5)
    >>> tables.kept_versions  # nothing opened yet: history counts as on
    5
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stateful.backends.sql import history as _history
from stateful.backends.sql.engine import write_transaction
from stateful.backends.sql.parts import Parts
from stateful.backends.sql.redact import Redactor
from stateful.backends.sql.schema import state_table
from stateful.errors import StoreNotFoundError

__all__ = ["REASON", "Tables"]

#: The column that keeps why a version was written (``--reason``), added to older tables.
REASON = "reason"

_log = logging.getLogger(__name__)


class Tables:
    """The tables of one store, and which of the optional ones it uses (known once opened).

    Args:
        table_name: the state table.
        description: the store, for log lines and errors.
        keep: how many versions of each document the history keeps (``None``: the setting, read
            at :meth:`create`).
    """

    def __init__(self, table_name: str, description: str, keep: int | None) -> None:
        self.state = state_table(table_name)
        self.history = _history.History(table_name)
        self.parts = Parts(table_name, description)
        #: How many versions to keep (``None`` until the setting is read).
        self.keep = keep
        #: Why history is off, once known (``None``: it is on, or the store was not used yet).
        self.no_history: str | None = None
        #: Whether a delete also deletes the history (whenever the history table exists).
        self.purge = False
        #: Why large states are written whole, once known (``None``: parts are kept).
        self.no_parts: str | None = None
        #: Why the state table keeps no reasons, once known (``None``: it does).
        self.no_reason: str | None = None
        #: Why the history table keeps no reasons, once known (``None``: it does, or no history).
        self.no_history_reason: str | None = None
        #: The store, for errors.
        self.description = description
        #: Whether :meth:`create` created the state table: a new, empty store.
        self.created = False

    @property
    def kept_versions(self) -> int:
        """How many versions each write keeps in the history (0: it records none)."""
        return self.keep if self.no_history is None and self.keep else 0

    def state_columns(self) -> list[sa.Column[Any]]:
        """The columns of the state table to read (``reason`` only where the table has it)."""
        return [c for c in self.state.c if c.name != REASON or self.no_reason is None]

    def history_columns(self) -> list[sa.Column[Any]]:
        """The columns of the history table to read (``reason`` only where the table has it)."""
        return [c for c in self.history.table.c if c.name != REASON or self.no_history_reason is None]

    def create(self, engine: Engine, redactor: Redactor) -> None:
        """Create the missing tables; note which optional ones cannot be (a warning each)."""
        self.created = not sa.inspect(engine).has_table(self.state.name)
        _create(engine, self.state)
        self.no_reason = self._add_reason(engine, self.state, redactor)
        try:
            _create(engine, self.parts.table)
        except sa.exc.SQLAlchemyError as exc:
            # As for the history table: a user who may not create tables keeps whole texts.
            self.no_parts = f"table {self.parts.name!r} is missing and cannot be created"
            _log.warning(
                "stateful: %s writes every state whole: %s (%s). Create it to write only the parts of "
                "large states that changed.",
                self.description,
                self.no_parts,
                redactor.summary(exc),
            )
        else:
            self.no_parts = None
        if self.keep is None:
            self.keep = _history.history_setting()
        if self.keep == 0:
            self.no_history = "history_versions is 0"
            # Others may keep history here: a document deleted now must not inherit it later.
            self.purge = sa.inspect(engine).has_table(self.history.name)
            return
        try:
            _create(engine, self.history.table)
        except sa.exc.SQLAlchemyError as exc:
            # A state table made by a DBA, for a user who may not create tables: keep working.
            self.no_history = f"table {self.history.name!r} is missing and cannot be created"
            _log.warning(
                "stateful: %s keeps no history: %s (%s). Create it, or set history_versions=0.",
                self.description,
                self.no_history,
                redactor.summary(exc),
            )
        else:
            self.no_history, self.purge = None, True
            self.no_history_reason = self._add_reason(engine, self.history.table, redactor)

    def _add_reason(self, engine: Engine, table: sa.Table, redactor: Redactor) -> str | None:
        """Add the ``reason`` column to ``table`` if it lacks it; return why it cannot keep one, else None."""
        if _has_column(engine, table.name, REASON):
            return None
        preparer = engine.dialect.identifier_preparer
        column = table.c[REASON]
        ddl = (
            f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.format_column(column)} "
            f"{column.type.compile(dialect=engine.dialect)}"
        )
        try:
            with write_transaction(engine) as conn:
                conn.exec_driver_sql(ddl)
        except sa.exc.SQLAlchemyError as exc:
            if _has_column(engine, table.name, REASON):  # another process added it meanwhile
                return None
            why = f"table {table.name!r} has no column {REASON!r} and it cannot be added"
            _log.warning(
                "stateful: %s keeps no reasons for edits: %s (%s). Add it with: %s",
                self.description,
                why,
                redactor.summary(exc),
                ddl,
            )
            return why
        _log.info("stateful: %s added column %r to table %r", self.description, REASON, table.name)
        return None

    def open_existing(self, engine: Engine, where: str) -> None:
        """Use the tables there are, creating none; a missing state table is a StoreNotFoundError.

        ``where`` names the store for the error (the masked URL).
        """
        present = set(sa.inspect(engine).get_table_names())
        if self.state.name not in present:
            raise StoreNotFoundError(
                f"no store at {where}: the database has no table {self.state.name!r} (nothing was "
                f"created); a store gets its tables at its first write."
            )
        self.no_parts = None if self.parts.name in present else f"table {self.parts.name!r} is missing"
        if self.keep is None:
            self.keep = _history.history_setting()
        self.purge = self.history.name in present
        if self.keep == 0:
            self.no_history = "history_versions is 0"
        elif not self.purge:
            self.no_history = f"table {self.history.name!r} is missing"
        else:
            self.no_history = None
        # Read-only: the reason column is looked for, never added (a later write adds it).
        lacks = f"table {{}} has no column {REASON!r} (it is added at the store's first write)"
        has_reason = _has_column(engine, self.state.name, REASON)
        self.no_reason = None if has_reason else lacks.format(repr(self.state.name))
        if self.purge:
            has_reason = _has_column(engine, self.history.name, REASON)
            self.no_history_reason = None if has_reason else lacks.format(repr(self.history.name))


def _has_column(engine: Engine, table_name: str, column: str) -> bool:
    return any(c["name"] == column for c in sa.inspect(engine).get_columns(table_name))


def _create(engine: Engine, table: sa.Table) -> None:
    try:
        with write_transaction(engine) as conn:
            table.create(conn, checkfirst=True)
    except sa.exc.SQLAlchemyError:
        # Two processes starting at once both saw no table and both created it: the loser
        # fails (duplicate table or type). Fine if the table is there now.
        if not sa.inspect(engine).has_table(table.name):
            raise
