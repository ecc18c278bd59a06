"""The SQL store's writes, as jobs of a write transaction: compare-and-set, history and parts.

A *job* is a function of a :class:`~sqlalchemy.engine.Connection` inside a write transaction;
the sync methods of :class:`~stateful.backends.sql.store.SqlBackend` run it in a transaction of
its own, the async ones hand it to the group committer (:mod:`~stateful.backends.sql.group`).

A save of a small state is one compare-and-set ``UPDATE`` and its history row (the ``DELETE``
of the versions that left the window and an ``INSERT``): the ``UPDATE`` also requires that the
stored row is not a manifest, and a document holds parts only while its row is one
(:meth:`~stateful.backends.sql.parts.Parts.whole_value`), so when it matches nothing is to be
done on the parts table. When it matches no row (the row is a manifest, or another writer won),
the write reads the parts held, writes the row with a plain compare-and-set and brings the parts
table up to date; a large state (a manifest) always takes that way.

Example:
    >>> from stateful.backends.sql.tables import Tables
    >>> writes = Writes(Tables("stateful_process_state", "SqlBackend(sqlite://)", keep=5))
    >>> callable(writes.write_job(Address("ns", "n", "k"), "{}", None, None, None))
    True
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from stateful._layout import Layout
from stateful.backends.base import Address, StateRecord, default_writer, version_conflict
from stateful.backends.sql.group import Job, savepoint
from stateful.backends.sql.parts import INLINE_MAX_CHARS, MARKER, encode_manifest
from stateful.backends.sql.tables import Tables
from stateful.errors import StateConflictError

__all__ = ["Writes"]

_PREFIX = '{"' + MARKER + '":'  # how every manifest starts (canonical JSON: its key sorts first)


class Writes:
    """The write and delete jobs of one store, with their statements built once.

    Built once, the statements cost SQLAlchemy no construction or cache-key work per write.

    Args:
        tables: the store's tables (their optional parts are known once the store is opened).
    """

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        t = tables.state
        pk = (
            t.c.namespace == sa.bindparam("w_namespace"),
            t.c.name == sa.bindparam("w_name"),
            t.c.key == sa.bindparam("w_key"),
        )
        self._update = sa.update(t).where(*pk, t.c.version == sa.bindparam("w_expected"))
        self._update = self._update.values(version=t.c.version + 1)
        # The same, only over a row that is not a manifest (so no part is held: nothing to do there).
        not_manifest = sa.func.substr(t.c.value, 1, len(_PREFIX)) != _PREFIX
        self._update_whole = self._update.where(not_manifest)
        self._insert = sa.insert(t)
        # Who wrote the version a lost compare-and-set found, for its error.
        self._current = sa.select(t.c.version, t.c.updated_at, t.c.updated_by, t.c.reason).where(*pk)
        self._current_no_reason = sa.select(t.c.version, t.c.updated_at, t.c.updated_by).where(*pk)
        self._delete = sa.delete(t).where(*pk)
        self._delete_expected = self._delete.where(t.c.version == sa.bindparam("w_expected"))

    def write_job(
        self,
        address: Address,
        content: str | Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> Job[int]:
        """The compare-and-set write of ``content`` (see :meth:`SqlBackend.write_job`).

        ``reason`` is stored with the version (``NULL`` for a save that gives none, so a trigger's
        save after an operator's edit does not inherit the edit's reason).
        """

        def job(conn: Connection) -> int:
            tables = self._tables
            parts = tables.no_parts is None
            keep = tables.kept_versions
            version = 1 if expected is None else expected + 1
            # Here, in the worker thread: gethostname() releases the interpreter lock, and taking
            # it back on the event loop's thread waits for the busy worker threads.
            columns: dict[str, Any] = {
                "updated_at": datetime.now(timezone.utc),
                "updated_by": default_writer() if updated_by is None else updated_by,
            }
            if tables.no_reason is None:
                columns["reason"] = reason
            layout = (
                content if isinstance(content, Layout) and parts and content.size > INLINE_MAX_CHARS else None
            )
            text = None if layout is not None else content.text() if isinstance(content, Layout) else content
            where = {"w_namespace": address.namespace, "w_name": address.name, "w_key": address.key}
            held: dict[str, int | None] | None = None
            if expected is None:
                columns["value"] = encode_manifest(layout) if layout is not None else text
                self._insert_first(conn, address, {**address._asdict(), "version": 1, **columns}, where)
                if layout is not None:
                    held = tables.parts.held(conn, address)
            else:
                params = {**where, "w_expected": expected, **columns}
                if text is not None:
                    columns["value"] = text
                    update = self._update_whole if parts else self._update
                    if conn.execute(update, {**params, "value": text}).rowcount == 1:
                        self._record(conn, address, version, columns, keep, reason)
                        return version  # the row was no manifest: no part held, none to hold
                if parts:
                    held = tables.parts.held(conn, address)
                if layout is not None:
                    columns["value"] = encode_manifest(layout)
                elif held is not None:
                    assert text is not None
                    columns["value"] = tables.parts.whole_value(text, held, version, keep)
                if conn.execute(self._update, {**params, "value": columns["value"]}).rowcount != 1:
                    raise self._conflict(conn, address, expected, where)
            self._record(conn, address, version, columns, keep, reason)
            if held is not None:
                tables.parts.store(conn, address, version, layout, held)
                tables.parts.collect(conn, address, version, keep)
            return version

        return job

    def _record(
        self,
        conn: Connection,
        address: Address,
        version: int,
        columns: dict[str, Any],
        keep: int,
        reason: str | None,
    ) -> None:
        if keep:
            kept = {k: v for k, v in columns.items() if k != "reason"}
            if self._tables.no_history_reason is None:
                kept["reason"] = reason
            self._tables.history.record(conn, address, version, kept, keep)

    def _conflict(
        self, conn: Connection, address: Address, expected: int | None, where: dict[str, str]
    ) -> StateConflictError:
        """The error of a lost compare-and-set, naming who wrote the version found, and why."""
        tables = self._tables
        stmt = self._current if tables.no_reason is None else self._current_no_reason
        row = conn.execute(stmt, where).first()
        if row is None:
            return version_conflict(tables.description, address, expected, None)
        found = StateRecord(
            *address, "", row.version, row.updated_at, row.updated_by, row._mapping.get("reason")
        )
        return version_conflict(tables.description, address, expected, found.version, found)

    def _insert_first(
        self, conn: Connection, address: Address, row: dict[str, Any], where: dict[str, str]
    ) -> None:
        """Insert version 1; a racing first write that inserted it already is a conflict."""
        try:
            with savepoint(conn, "stateful_insert"):  # PostgreSQL aborts the transaction otherwise
                conn.execute(self._insert, row)
        except IntegrityError:
            conflict = self._conflict(conn, address, None, where)  # the winner's
            if conflict.actual_version is None:
                raise  # not a duplicate key after all: reported as a StoreError
            raise conflict from None

    def delete_job(self, address: Address, expected: int | None) -> Job[bool]:
        """The (compare-and-set) delete of one document, with its history and parts."""

        def job(conn: Connection) -> bool:
            tables = self._tables
            where = {"w_namespace": address.namespace, "w_name": address.name, "w_key": address.key}
            if expected is None:
                deleted = conn.execute(self._delete, where).rowcount > 0
            else:
                deleted = conn.execute(self._delete_expected, {**where, "w_expected": expected}).rowcount > 0
            if deleted:
                if tables.purge:
                    tables.history.purge(conn, address)
                if tables.no_parts is None:
                    tables.parts.purge(conn, address)
                return True
            if expected is None:
                return False
            raise self._conflict(conn, address, expected, where)

        return job
