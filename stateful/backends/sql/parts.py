"""The SQL store's layout for large documents: a manifest in the state row, parts by content id.

A save handed a :class:`~stateful._layout.Layout` whose text is larger than
:data:`INLINE_MAX_CHARS` stores, in the state row's ``value``, a *manifest*: a small JSON object
under a marker key no watermark field can have (field names are identifiers), holding the text
before and after ``seen``'s entries and the ordered content ids of its parts::

    {"%stateful/parts":1,"after":"},\\"timestamp\\":...}","before":"{\\"cursor\\":null,...{","parts":["9f2c...","03ab..."]}

The parts live in ``<table>_parts``, one row per ``(namespace, name, key, part_id)``; a save
inserts only the parts whose id is not stored for that document yet (adding a key to a
10⁵-key ``seen`` inserts one part of about 64 KB, not 12.6 MB), in the same transaction as the
compare-and-set of the state row and its history row, so a reader never sees half a save and an
interrupted save leaves the previous version whole. History rows keep manifests (a few KB).

**Which parts are kept.** A part's ``dropped`` column is ``NULL`` while the current manifest
names it, else the version whose write stopped naming it (a part named again is revived). A
part dropped by version ``d`` was last named by version ``d - 1``; once that version has left
the history window (``d - 1 <= version - keep``, ``keep`` 0 without history) no kept manifest
names it and the write deletes it. A whole text written over a manifest (``stateful rewind``,
``stateful set``) drops every part the same way, so the history can still be read and rewound;
while parts are held, such a text is stored as a manifest without parts (its ``before`` is the
text), so that a document holds parts only while its row is a manifest and a save of a small
state over a row that is not one needs no statement on this table.

Reads join the manifest and its parts in one transaction (``REPEATABLE READ`` on PostgreSQL) and
check each part against its content id; readers always get the whole text.

Example:
    >>> from stateful._layout import Layout, part_id
    >>> layout = Layout('{"seen":{', ((part_id('"a":null'), '"a":null'),), "}}")
    >>> manifest = decode_manifest(encode_manifest(layout))
    >>> (manifest.before, manifest.after, manifest.ids == layout.ids)
    ('{"seen":{', '}}', True)
    >>> decode_manifest('{"seen":{}}') is None
    True
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stateful._document import canonical_json
from stateful._layout import Layout, join, part_id
from stateful.backends.base import Address, StateRecord
from stateful.backends.sql.schema import parts_table
from stateful.errors import StoreError

__all__ = ["INLINE_MAX_CHARS", "MARKER", "Manifest", "Parts", "decode_manifest", "encode_manifest"]

#: A layout up to this many characters is stored whole in the state row, as before parts.
INLINE_MAX_CHARS = 64 * 1024
#: The manifest's marker key: no watermark field can be called this.
MARKER = "%stateful/parts"
_PREFIX = canonical_json({MARKER: 1})[:-2]  # '{"%stateful/parts":' (sorted first)
# Ids per IN (...) list: well under every database's limit on bound parameters.
_CHUNK = 500


@dataclass(frozen=True)
class Manifest:
    """A stored document in parts: the text around ``seen``'s entries and their parts' ids."""

    before: str
    ids: list[str]
    after: str


def encode_manifest(layout: Layout) -> str:
    """The manifest of ``layout``, as the state row stores it."""
    return canonical_json({MARKER: 1, "after": layout.after, "before": layout.before, "parts": layout.ids})


def decode_manifest(value: str) -> Manifest | None:
    """The manifest ``value`` is, or ``None`` for a whole text."""
    if not value.startswith(_PREFIX):
        return None
    doc = json.loads(value)
    return Manifest(doc["before"], list(doc["parts"]), doc["after"])


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


class Parts:
    """The parts table of one state table, with its statements built once.

    Args:
        table_name: the state table's name.
        description: the store, for errors.
    """

    def __init__(self, table_name: str, description: str) -> None:
        self.table = parts_table(table_name)
        self._description = description
        t = self.table
        self._pk = (
            t.c.namespace == sa.bindparam("p_namespace"),
            t.c.name == sa.bindparam("p_name"),
            t.c.key == sa.bindparam("p_key"),
        )
        self._select_ids = sa.select(t.c.part_id, t.c.dropped).where(*self._pk)
        self._insert = sa.insert(t)
        self._collect = sa.delete(t).where(
            *self._pk, t.c.dropped.is_not(None), t.c.dropped <= sa.bindparam("p_upto")
        )
        self._purge = sa.delete(t).where(*self._pk)

    @property
    def name(self) -> str:
        return self.table.name

    def value(self, layout: Layout) -> str:
        """What the state row stores for ``layout``: its text when small, else its manifest."""
        return layout.text() if layout.size <= INLINE_MAX_CHARS else encode_manifest(layout)

    def held(self, conn: Connection, address: Address) -> dict[str, int | None]:
        """The parts held for the document: each id, and the version that dropped it (``None``: named)."""
        return {row.part_id: row.dropped for row in conn.execute(self._select_ids, _where(address))}

    @staticmethod
    def whole_value(text: str, held: Mapping[str, int | None], version: int, keep: int) -> str:
        """What the state row stores for ``text``, written whole as version ``version``.

        The text itself, unless parts are still held once this write has dropped the parts the
        previous version named and collected those no kept version names (``keep`` as in
        :meth:`collect`): then a manifest without parts, whose ``before`` is the text. So a
        document holds parts only while its row is a manifest, and a write that finds a row that
        is not a manifest, and writes none, needs no statement on the parts table.
        """
        upto = version - keep + 1
        if all((version if dropped is None else dropped) <= upto for dropped in held.values()):
            return text
        return encode_manifest(Layout(text, (), ""))

    def store(
        self,
        conn: Connection,
        address: Address,
        version: int,
        layout: Layout | None,
        held: Mapping[str, int | None],
    ) -> None:
        """Make the parts table agree with version ``version`` of the document (stored as ``layout``).

        ``layout`` is ``None`` (or small) when the version is stored whole; ``held`` is what
        :meth:`held` returned in this transaction. Inserts the parts not stored yet, marks the
        parts the previous version named and this one does not as dropped by ``version``, and
        revives the parts named again: O(parts of the document).
        """
        wanted = [] if layout is None or layout.size <= INLINE_MAX_CHARS else list(layout.parts)
        names = {pid for pid, _ in wanted}
        new = [{**_row(address), "part_id": pid, "value": text} for pid, text in wanted if pid not in held]
        if new:
            conn.execute(self._insert, new)
        self._mark(conn, address, [pid for pid, d in held.items() if d is None and pid not in names], version)
        self._mark(conn, address, [pid for pid in names if pid in held and held[pid] is not None], None)

    def collect(self, conn: Connection, address: Address, version: int, keep: int) -> None:
        """Delete the parts no kept manifest names, once version ``version`` is written.

        ``keep`` is how many versions the history keeps (0: none).
        """
        conn.execute(self._collect, {**_where(address), "p_upto": version - keep + 1})

    def purge(self, conn: Connection, address: Address) -> None:
        """Delete every part of the document (it was deleted)."""
        conn.execute(self._purge, _where(address))

    def expand(self, conn: Connection, records: Iterable[StateRecord]) -> list[StateRecord]:
        """``records`` with each manifest replaced by the whole text it stands for.

        Raises:
            StoreError: a part a manifest names is missing or does not match its id.
        """
        records = list(records)
        manifests = {id(r): decode_manifest(r.value) for r in records}
        by_address: dict[Address, set[str]] = {}
        for record in records:
            manifest = manifests[id(record)]
            if manifest is not None:
                address = Address(record.namespace, record.name, record.key)
                by_address.setdefault(address, set()).update(manifest.ids)
        texts = {address: self._fetch(conn, address, sorted(ids)) for address, ids in by_address.items()}
        out = []
        for record in records:
            manifest = manifests[id(record)]
            if manifest is None:
                out.append(record)
                continue
            found = texts[Address(record.namespace, record.name, record.key)]
            missing = [pid for pid in manifest.ids if pid not in found]
            if missing:
                raise StoreError(
                    f"{self._description}: version {record.version} of state {record.namespace}/"
                    f"{record.name} (key {record.key!r}) names {len(missing)} part(s) missing from "
                    f"table {self.name!r} (first: {missing[0]}). The table was edited or pruned by "
                    f"hand. Inspect it with `stateful history`; restore the watermark with "
                    f"`stateful rewind` to a readable version or `stateful import`."
                )
            value = join(manifest.before, (found[pid] for pid in manifest.ids), manifest.after)
            out.append(dataclasses.replace(record, value=value))
        return out

    def _fetch(self, conn: Connection, address: Address, ids: Sequence[str]) -> dict[str, str]:
        t = self.table
        found: dict[str, str] = {}
        for chunk in _chunks(ids):
            stmt = sa.select(t.c.part_id, t.c.value).where(*self._pk, t.c.part_id.in_(chunk))
            for row in conn.execute(stmt, _where(address)):
                if part_id(row.value) != row.part_id:
                    raise StoreError(
                        f"{self._description}: part {row.part_id} of state {address.namespace}/"
                        f"{address.name} (key {address.key!r}) in table {self.name!r} does not match "
                        f"its content id: it was edited by hand. Restore the watermark with "
                        f"`stateful rewind` or `stateful import`."
                    )
                found[row.part_id] = row.value
        return found

    def _mark(self, conn: Connection, address: Address, ids: Sequence[str], dropped: int | None) -> None:
        t = self.table
        for chunk in _chunks(ids):
            stmt = sa.update(t).where(*self._pk, t.c.part_id.in_(chunk)).values(dropped=dropped)
            conn.execute(stmt, _where(address))


def _where(address: Address) -> dict[str, Any]:
    return {"p_namespace": address.namespace, "p_name": address.name, "p_key": address.key}


def _row(address: Address) -> dict[str, Any]:
    return {"namespace": address.namespace, "name": address.name, "key": address.key}
