"""The native store's history: the last N versions of a watermark, kept in the asset's state store.

AIP-103 keeps one value per key, so each earlier version is kept as a *history entry*: a copy of
the document that version was (a small document, or a manifest), under a key of its own,
:func:`entry_key` (``stateful/%part/<...>/h<version>``, beside the parts). The current document
names the entries it keeps, newest first, and how many versions its writer keeps::

    "history": {"keep": 10, "versions": [6, 5, 4, 3, 2, 1]}

A save of version 8 over version 7:

1. writes the entry of version 7 (a copy of the document it replaces, without its ``history``),
   then its new parts, then the manifest naming ``[7, 6, ...]``: the commit, as before;
2. keeps the parts that version 7 named and version 8 does not (entry 7 needs them), instead of
   deleting them at once;
3. deletes the entries that fell out of the window (beyond ``keep - 1``) and the parts only they
   needed: the parts a fallen entry names minus those of the oldest entry kept.

Step 3 is exact because a part is never renamed or rewritten: a part (``<version>.<n>``) is
named by the versions from the one that wrote it up to the last that kept it, an unbroken run,
so a part a fallen entry shares with any newer version is named by the oldest entry kept too.

A save therefore writes one value more than without history (the entry: as large as the
manifest, not as the watermark) and reads one or two more (the fallen entry and the oldest kept
one); a manifest's parts are never rewritten for history. What the history holds beyond the
current document is, per entry, the parts that version changed: a few values for a save of a
few keys, whatever the size of ``seen``.

Example:
    >>> entry_key("stateful/files/watermark/landing", 7)
    'stateful/%part/files/watermark/landing/h7'
    >>> carry_over(None, 1, keep=10).kept
    ()
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stateful.backends.base import StateRecord
from stateful.backends.native.document import NativeDocument
from stateful.backends.native.parts import PartMismatch, join_seen, part_key

__all__ = [
    "DEFAULT_HISTORY_VERSIONS",
    "ENV_VAR",
    "OPTION",
    "Carry",
    "PartialHistory",
    "carry_over",
    "check_history_versions",
    "entry_key",
    "entry_keys",
    "entry_of",
    "entry_parts",
    "fallen_keys",
    "history_field",
    "history_setting",
    "parse_entry",
    "read_entries",
    "to_read",
    "trim",
    "with_entries",
]

_log = logging.getLogger("stateful.backends.native")

#: How many versions of each watermark (the current one included) the native store keeps.
DEFAULT_HISTORY_VERSIONS = 10
ENV_VAR = "STATEFUL_NATIVE_HISTORY_VERSIONS"
OPTION = "native_history_versions"


def check_history_versions(value: object, where: str) -> int:
    """Return ``value`` if it is a whole number >= 0, else raise a StoreConfigError naming ``where``.

    Example:
        >>> check_history_versions("5", "STATEFUL_NATIVE_HISTORY_VERSIONS")
        5
    """
    from stateful.errors import StoreConfigError

    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreConfigError(
            f"{where} must be a whole number >= 0 (how many versions of each watermark the "
            f"Airflow-native store keeps, the current one included; 0 or 1 keep no history), got {value!r}."
        )
    return value


def history_setting() -> int:
    """How many versions to keep: ``STATEFUL_NATIVE_HISTORY_VERSIONS``, else the Airflow option.

    ``[stateful] native_history_versions``; 10 when neither is set.
    """
    from stateful._airflowconf import stateful_setting

    return stateful_setting(ENV_VAR, OPTION, check_history_versions, DEFAULT_HISTORY_VERSIONS)


def entry_key(k: str, version: int) -> str:
    """The state store key of the history entry of ``version`` of the document under key ``k``.

    A part key (``h<version>``: no part is named so), so that listings skip it, and deleting a
    document's parts (``stateful delete`` through the REST API) deletes its history too.
    """
    return part_key(k, f"h{version}")


def entry_parts(doc: NativeDocument | None) -> frozenset[str]:
    """The part suffixes a document (or an entry) names."""
    return frozenset() if doc is None or doc.seen is None else doc.seen.suffixes


@dataclass(frozen=True)
class Carry:
    """What a save does with one asset's history.

    Attributes:
        kept: the entries the new document names, newest first.
        entry: the entry to write before the manifest (key, JSON object), or ``None``.
        fallen: the entries that fell out of the window: deleted after the commit, with the parts
            only they need.
        keeper: the version of the oldest entry kept, to read for the parts it names, or
            ``None`` when they are ``keeper_parts`` (the document being replaced, or the new one).
        keeper_parts: the parts the oldest version kept names, when known without a read.
    """

    kept: tuple[int, ...]
    entry: tuple[str, dict[str, Any]] | None
    fallen: tuple[int, ...]
    keeper: int | None
    keeper_parts: frozenset[str]


def carry_over(
    doc: NativeDocument | None,
    version: int,
    *,
    keep: int,
    k: str = "",
    lineage: str | None = None,
) -> Carry:
    """The history a save of ``version`` keeps over ``doc``, what an asset holds.

    ``doc`` becomes an entry when the writer keeps history (``keep`` >= 2) and it is of the same
    lineage (``lineage``, or any when ``None``); a document of another lineage (deleted and
    created again) starts a new history, and its entries fall. When no entry is kept, the oldest
    version kept is the new document: ``keeper_parts`` is left for the planner to fill in.
    """
    if doc is None:
        return Carry((), None, (), None, frozenset())
    chain = (doc.version, *doc.history)
    if keep < 2 or (lineage is not None and doc.lineage != lineage) or doc.version >= version:
        return Carry((), None, doc.history, None, frozenset())
    kept, fallen = chain[: keep - 1], chain[keep - 1 :]
    entry = (entry_key(k, doc.version), doc.as_entry().to_json_value())
    keeper = None if kept[-1] == doc.version else kept[-1]
    return Carry(kept, entry, fallen, keeper, entry_parts(doc))


def history_field(kept: tuple[int, ...], keep: int) -> dict[str, Any]:
    """The ``history`` field of a document naming ``kept``, by a writer keeping ``keep``."""
    return {"keep": keep, "versions": list(kept)}


def fallen_keys(
    k: str, fallen: dict[int, NativeDocument | None], keeper_parts: frozenset[str] | None
) -> list[str]:
    """The keys to delete for the entries that fell (read as ``fallen``): their parts, then them.

    With ``keeper_parts`` unknown (the oldest entry kept could not be read), no part is deleted:
    a part left behind costs space, a part deleted too early would break an entry.
    """
    keys = []
    if keeper_parts is not None:
        gone: set[str] = set()
        for doc in fallen.values():
            gone |= entry_parts(doc)
        keys += sorted(part_key(k, s) for s in gone - keeper_parts)
    else:
        _log.warning(
            "stateful: the oldest history entry kept of %s could not be read; the parts of the "
            "entries that fell out of its history are left in place",
            k,
        )
    return keys + [entry_key(k, v) for v in fallen]


def to_read(k: str, carry: Carry) -> list[str]:
    """The keys a save reads after its commit to trim the history: the oldest entry kept, if its
    parts are not known, then the entries that fell (none when nothing fell)."""
    if not carry.fallen:
        return []
    keeper = [] if carry.keeper is None else [entry_key(k, carry.keeper)]
    return keeper + [entry_key(k, v) for v in carry.fallen]


def trim(k: str, carry: Carry, bodies: list[Any]) -> list[str]:
    """The keys to delete after a save, given the bodies of :func:`to_read`'s keys, as read."""
    if not carry.fallen:
        return []
    keeper_parts: frozenset[str] | None = carry.keeper_parts
    if carry.keeper is not None:
        keeper = parse_entry(bodies[0])
        keeper_parts = None if keeper is None else entry_parts(keeper)
        bodies = bodies[1:]
    fallen = {v: parse_entry(body) for v, body in zip(carry.fallen, bodies, strict=True)}
    return fallen_keys(k, fallen, keeper_parts)


def parse_entry(data: Any) -> NativeDocument | None:
    """A history entry as read (``None``: missing, or not an entry)."""
    if data is None:
        return None
    try:
        return NativeDocument.from_json_value(data)
    except ValueError:
        return None


def entry_of(doc: NativeDocument, version: int, data: Any) -> NativeDocument:
    """The entry of ``version`` named by ``doc``, from the value read under its key.

    Raises:
        PartMismatch: it is missing or is not that version of ``doc``'s lineage (a concurrent
            save dropped it from the history, or it was changed by hand): read again.
    """
    entry = parse_entry(data)
    if entry is None:
        state = "missing" if data is None else "invalid"
        raise PartMismatch(f"the history entry of version {version} is {state}")
    if (entry.address, entry.lineage, entry.version) != (doc.address, doc.lineage, version):
        raise PartMismatch(f"the history entry of version {version} holds another document")
    return entry


class PartialHistory(PartMismatch):
    """An entry could not be read; ``records`` holds the newer ones that could."""

    def __init__(self, message: str, records: list[StateRecord]) -> None:
        super().__init__(message)
        self.records = records


def read_entries(
    k: str, doc: NativeDocument, versions: Sequence[int], fetch: Callable[[str], Any]
) -> list[StateRecord]:
    """The records of the entries ``versions`` of ``doc`` (under key ``k``), read with ``fetch``.

    Raises:
        PartialHistory: an entry, or one of its parts, is missing or changed.
    """
    records: list[StateRecord] = []
    for version in versions:
        try:
            entry = entry_of(doc, version, fetch(entry_key(k, version)))
            if entry.seen is not None and entry.head is not None:
                bodies = [fetch(part_key(k, r.suffix)) for r in entry.seen.refs]
                entry = entry.joined(join_seen(entry.head, entry.seen, bodies))
        except PartMismatch as exc:
            raise PartialHistory(f"version {version}: {exc}", records) from None
        records.append(
            StateRecord(
                *entry.address, entry.value, entry.version, entry.updated_at, entry.updated_by, entry.reason
            )
        )
    return records


def entry_keys(k: str, doc: NativeDocument | None) -> list[str]:
    """The keys of the history entries ``doc`` names."""
    return [] if doc is None else [entry_key(k, v) for v in doc.history]


def with_entries(k: str, parts: Sequence[str], entries: Sequence[tuple[str, Any]]) -> list[str]:
    """What deleting a document deletes after it and its ``parts``: its entries (as read) and their parts."""
    keys: dict[str, None] = {}
    for key, data in entries:
        for suffix in sorted(entry_parts(parse_entry(data))):
            keys.setdefault(part_key(k, suffix))
        if data is not None:
            keys.setdefault(key)
    return [key for key in keys if key not in parts]
