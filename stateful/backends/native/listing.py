"""Listing the watermarks of an asset's whole state store (what the Execution API cannot do).

Inside a trigger or task, the native store reaches keys it knows; an operator's tool (the
command line through the REST API, the Airflow UI plugin through the metadata database) reads
every entry of an asset's state store and needs the documents this package wrote there:
:func:`documents_in` picks them out and joins those kept in parts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stateful.backends.base import StateRecord
from stateful.backends.native.document import NativeDocument
from stateful.backends.native.index import is_index_key
from stateful.backends.native.parts import PartMismatch, is_part_key, join_seen, part_key
from stateful.errors import StatefulError

__all__ = ["STATEFUL_PREFIX", "documents_in"]

#: Every key this package writes into an asset's state store starts with it.
STATEFUL_PREFIX = "stateful/"


def documents_in(
    entries: Mapping[str, Any],
    label: str,
    namespace: str | None,
    problems: list[str],
    read_again: Callable[[str, str, str], StateRecord | None],
) -> list[StateRecord]:
    """The documents this package wrote among ``entries`` (key -> stored value), of ``namespace``.

    A document kept in parts is joined from the parts listed with it, or read again with
    ``read_again(namespace, name, key)`` if a concurrent save replaced them; the indexes of
    names (:mod:`stateful.backends.native.index`) are no documents and are skipped. What cannot be
    listed is named in ``problems`` (prefixed with ``label``, e.g. ``asset 'orders'``) and
    skipped, so that one broken watermark does not hide the others.

    Example:
        >>> documents_in({"other": 1}, "asset 'orders'", None, [], lambda *a: None)
        []
    """
    records = []
    for key, stored in entries.items():
        if not key.startswith(STATEFUL_PREFIX) or is_part_key(key) or is_index_key(key):
            continue
        try:
            doc = NativeDocument.from_json_value(stored)
        except ValueError as exc:
            problems.append(f"{label}, key {key!r} is not a document of airflow-stateful: {exc}")
            continue
        if namespace is not None and doc.namespace != namespace:
            continue
        if doc.seen is not None and doc.head is not None:
            try:
                doc = doc.joined(
                    join_seen(
                        doc.head, doc.seen, [entries.get(part_key(key, r.suffix)) for r in doc.seen.refs]
                    )
                )
            except PartMismatch:
                try:
                    record = read_again(*doc.address)
                except StatefulError as exc:  # parts missing, a regression, ...: say so, go on
                    problems.append(f"{label}: {exc}")
                    continue
                if record is not None:
                    records.append(record)
                continue
        records.append(
            StateRecord(
                doc.namespace,
                doc.name,
                doc.key,
                doc.value,
                doc.version,
                doc.updated_at,
                doc.updated_by,
                doc.reason,
            )
        )
    return sorted(records, key=lambda r: (r.namespace, r.name, r.key))
