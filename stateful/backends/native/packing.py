"""Which ``seen`` keys go in which part of a manifest, save after save (no I/O).

A manifest's parts (:mod:`stateful.backends.native.parts`) hold ``seen`` in the order its keys
arrived, so that what a save changes falls in few parts, whatever the keys look like:

* keys with a timestamp and keys without one (bounded by ``max_untimed_keys``, evicted oldest
  first) are two *streams* of parts, so that the lookback's expiry of old timed keys empties
  whole parts instead of leaving untimed keys behind in each;
* the keys a save adds (or whose timestamp it moves) are appended to the last part of their
  stream, in ``(timestamp, key)`` order, and open a new part when that one is full: new files
  or S3 objects (the newest timestamps) land in the newest parts, however random their names;
* a key that left ``seen`` (expired, evicted) is taken out of its part; a part left empty is
  dropped, so expiry drops the oldest parts whole;
* a part a save changed that fell under a quarter of the limit is merged into its neighbour
  when the two fit in one value: the manifest does not fill up with sparse parts, and the save
  that made a part sparse pays for it (one more part written);
* the parts a save changed get new keys (``<version>.<n>``); the others keep theirs.

So a save of ``k`` changed keys writes the parts they fall in (with increasing timestamps: the
last part or two of a stream, and the first when the lookback drops keys), then the manifest:
bounded by ``k`` and the size limit, not by how many keys ``seen`` holds. A :class:`Packing` is
the writer's picture of the stored parts; the planner keeps it between saves, so that working
out the change costs O(change) too when it is handed a :class:`~stateful._layout.Layout`.

Example:
    >>> packing = Packing.fresh(200, {"b.csv": "2026-01-02T00:00:02Z", "a.csv": "2026-01-02T00:00:01Z"})
    >>> seen, new = packing.commit(version=1, at=1, unavailable=frozenset())
    >>> [sorted(body["seen"]) for body in new.values()]
    [['a.csv', 'b.csv']]
    >>> packing.change({"c.csv": "2026-01-02T00:00:03Z"}, removed=["a.csv"])
    >>> seen, new = packing.commit(version=2, at=1, unavailable=frozenset())
    >>> [r.suffix for r in seen.refs], [sorted(body["seen"]) for body in new.values()]
    (['2.0'], [['b.csv', 'c.csv']])
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii as _quoted
from typing import Any

from stateful._document import canonical_json
from stateful._layout import Layout
from stateful.backends.native.parts import ENVELOPE, PART_FORMAT, PartRef, SeenParts, compact, digest_of

__all__ = ["EntryTooLarge", "Packing", "pack_layout", "pack_text"]

#: A ``seen`` entry's text: its UTC timestamp, or ``None`` (untimed).
Entries = dict[str, Any]
_MISSING = object()


class EntryTooLarge(ValueError):
    """A single ``seen`` key does not fit in one value, even alone in a part."""


def entry_size(key: str, text: object) -> int:
    """What an entry adds to a part, as Airflow measures a value (``json.dumps``), at most.

    Example:
        >>> entry_size("a.csv", None) >= len(json.dumps({"a.csv": None})) - 2
        True
    """
    quoted = _quoted(text) if isinstance(text, str) else json.dumps(text)
    return len(_quoted(key)) + len(quoted) + 4  # ": " and ", "


def _timed(text: object) -> bool:
    return isinstance(text, str)


class _Part:
    """One part's keys, its size as stored, and its ref (``None``: changed, to be written)."""

    __slots__ = ("entries", "ref", "size")

    def __init__(self, entries: Entries | None = None, ref: PartRef | None = None) -> None:
        self.entries: Entries = {} if entries is None else entries
        self.size = ENVELOPE + sum(entry_size(k, t) for k, t in self.entries.items())
        self.ref = ref

    def add(self, key: str, text: object) -> None:
        self.entries[key] = text
        self.size += entry_size(key, text)
        self.ref = None

    def remove(self, key: str) -> None:
        self.size -= entry_size(key, self.entries.pop(key))
        self.ref = None

    def body(self) -> dict[str, Any]:
        return {"format": PART_FORMAT, "seen": self.entries}


class Packing:
    """The writer's picture of a manifest's parts: which part holds each ``seen`` key.

    Args:
        limit: the largest value (as Airflow measures it) a part may be.

    Attributes:
        seen: the manifest entry the parts were read as, or last committed as (``None``: not yet).
        runs: the layout runs last packed, by content id, each with its entries (``None``: the
            last save was given text); a layout whose runs it knows is packed in O(change).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._streams: tuple[list[_Part], list[_Part]] = ([], [])  # timed, untimed
        self._where: dict[str, _Part] = {}
        self.seen: SeenParts | None = None
        self.runs: dict[str, Entries] | None = None

    @classmethod
    def read(cls, limit: int, seen: SeenParts, bodies: Sequence[Any]) -> Packing:
        """The parts of ``seen`` as read (``bodies``, checked by :func:`~.parts.join_seen`)."""
        packing = cls(limit)
        split = len(seen.refs) - seen.untimed
        for i, (ref, body) in enumerate(zip(seen.refs, bodies, strict=True)):
            part = _Part(dict(body["seen"]), ref)
            packing._streams[0 if i < split else 1].append(part)
            packing._where.update(dict.fromkeys(part.entries, part))
        packing.seen = seen
        return packing

    @classmethod
    def fresh(cls, limit: int, entries: Entries) -> Packing:
        """``entries`` in new parts: timed keys by ``(timestamp, key)``, untimed keys by key.

        Untimed keys are sorted by key because that is the order a reloaded watermark evicts
        them in (the stored text does not carry their arrival).

        Raises:
            EntryTooLarge: a key does not fit in a part of its own.
        """
        packing = cls(limit)
        timed = sorted((t, k) for k, t in entries.items() if _timed(t))
        packing._append(0, [(k, t) for t, k in timed])
        packing._append(1, sorted((k, t) for k, t in entries.items() if not _timed(t)))
        return packing

    def __len__(self) -> int:
        return len(self._where)

    def difference(self, entries: Entries) -> tuple[Entries, list[str]]:
        """What changes this packing into ``entries``: the keys to add or update, those to remove."""
        where = self._where
        upserts = {
            k: t for k, t in entries.items() if (p := where.get(k)) is None or p.entries.get(k, _MISSING) != t
        }
        return upserts, [k for k in where if k not in entries]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def change(self, upserts: Entries, removed: Iterable[str]) -> None:
        """Add or update the keys of ``upserts`` (in their arrival order), take out ``removed``.

        Raises:
            EntryTooLarge: a key does not fit in a part of its own.
        """
        for key in removed:
            part = self._where.pop(key, None)
            if part is not None:
                part.remove(key)
        added: tuple[list[tuple[str, Any]], list[tuple[str, Any]]] = ([], [])
        for key, text in upserts.items():
            part = self._where.get(key)
            if part is not None:
                if part.entries.get(key, _MISSING) == text:
                    continue
                part.remove(key)  # a new timestamp: the key moves to the newest part
            added[0 if _timed(text) else 1].append((key, text))
        added[0].sort(key=lambda entry: (entry[1], entry[0]))
        added[1].sort()
        for stream, entries in enumerate(added):
            self._append(stream, entries)
            self._compact(stream)

    def commit(self, version: int, at: int, unavailable: frozenset[str]) -> tuple[SeenParts, dict[str, Any]]:
        """Name the parts, as the manifest of ``version`` lists them; the content of the new ones.

        A part changed since the last commit (or whose suffix is in ``unavailable``: some asset
        holds other content under it) gets the suffix ``<version>.<n>``; the others keep theirs.
        """
        new: dict[str, Any] = {}
        refs = []
        for part in (*self._streams[0], *self._streams[1]):
            if part.ref is None or part.ref.suffix in unavailable:
                part.ref = PartRef(f"{version}.{len(new)}", digest_of(part.entries))
                new[part.ref.suffix] = part.body()
            refs.append(part.ref)
        self.seen = SeenParts(at, len(self._where), tuple(refs), untimed=len(self._streams[1]))
        return self.seen, new

    def bodies(self) -> dict[str, Any]:
        """Every committed part's content, by suffix (for an asset that lacks a kept part)."""
        return {p.ref.suffix: p.body() for s in self._streams for p in s if p.ref is not None}

    def _append(self, stream: int, entries: Iterable[tuple[str, Any]]) -> None:
        parts = self._streams[stream]
        for key, text in entries:
            size = entry_size(key, text)
            if ENVELOPE + size > self.limit:
                raise EntryTooLarge(key)
            if not parts or parts[-1].size + size > self.limit:
                parts.append(_Part())
            parts[-1].add(key, text)
            self._where[key] = parts[-1]

    def _compact(self, stream: int) -> None:
        kept: list[_Part] = []
        for part in self._streams[stream]:
            if not part.entries:
                continue
            if kept:
                before = kept[-1]
                changed = part.ref is None or before.ref is None
                sparse = min(part.size, before.size) < self.limit // 4
                if changed and sparse and before.size + part.size - ENVELOPE <= self.limit:
                    for key, text in part.entries.items():
                        before.add(key, text)
                        self._where[key] = before
                    continue
            kept.append(part)
        self._streams[stream][:] = kept


def _split(parsed: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return {f: v for f, v in parsed.items() if f != "seen"}, list(parsed).index("seen")


def _update(packing: Packing | None, limit: int, entries: Entries) -> Packing:
    """``packing`` changed to hold exactly ``entries`` (O(len(entries))), or fresh parts for them."""
    if packing is None:
        return Packing.fresh(limit, entries)
    packing.change(*packing.difference(entries))
    return packing


def pack_text(packing: Packing | None, limit: int, value: str) -> tuple[dict[str, Any], int, Packing] | None:
    """``value`` (a watermark's text) as its head, the position of ``seen``, and its parts.

    ``None`` when ``value`` is not a JSON object with a ``seen`` object that comes back byte for
    byte (keys in order, compact). ``packing`` (the stored parts, changed in place) keeps every
    part whose keys did not change. O(len(value)).

    Raises:
        EntryTooLarge: a key does not fit in a part of its own.
    """
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("seen"), dict):
        return None
    seen: dict[str, Any] = parsed["seen"]
    keys = list(seen)
    try:
        if keys != sorted(keys) or compact(parsed) != value:
            return None
    except ValueError:  # NaN or infinity: not JSON that comes back
        return None
    head, at = _split(parsed)
    packing = _update(packing, limit, seen)
    packing.runs = None
    return head, at, packing


def pack_layout(
    packing: Packing | None, limit: int, layout: Layout
) -> tuple[dict[str, Any], int, Packing] | None:
    """:func:`pack_text` of ``layout.text()``, in O(change) when ``packing`` knows its runs.

    Only the runs ``packing`` has not packed yet are parsed; together with the runs no longer
    there, they are the change (the runs must be sorted and hold each key of the state once).
    Without ``packing`` (or its runs: the first save after a load), every run is parsed, once.

    Raises:
        EntryTooLarge: a key does not fit in a part of its own.
    """
    shell = layout.before + layout.after
    if not (layout.before.endswith('"seen":{') and layout.after.startswith("}")):
        return None
    try:
        parsed = json.loads(shell)
        if (
            not isinstance(parsed, dict)
            or parsed.get("seen") != {}
            or canonical_json(parsed, sort_keys=False) != shell
        ):
            return None
        runs = packing.runs if packing is not None else None
        changed = [(pid, _run(text)) for pid, text in layout.parts if runs is None or pid not in runs]
    except ValueError:
        return None
    if any(entries is None for _, entries in changed):
        return None
    fresh = {pid: entries for pid, entries in changed if entries is not None}
    if runs is None or packing is None:
        entries = {k: t for run in fresh.values() for k, t in run.items()}
        packing = _update(packing, limit, entries)
    else:  # unchanged runs hold the same keys: the change is between the runs gone and the new
        ids = {pid for pid, _ in layout.parts}
        old = [runs[pid] for pid in runs.keys() - ids]
        new: Entries = {}
        for run in fresh.values():
            new.update(run)
        before = {k: t for run in old for k, t in run.items()}
        upserts = {k: t for k, t in new.items() if before.get(k, _MISSING) != t}
        packing.change(upserts, before.keys() - new.keys())
    known = packing.runs or {}
    packing.runs = {pid: known[pid] if pid in known else fresh[pid] for pid, _ in layout.parts}
    order = [packing.runs[pid] for pid, _ in layout.parts]
    ordered = all(next(reversed(a)) < next(iter(b)) for a, b in itertools.pairwise(order))
    if not ordered or sum(map(len, order)) != len(packing):  # not the layout of one state
        return None
    return *_split(parsed), packing


def _run(text: str) -> dict[str, Any] | None:
    """A run's entries (sorted by key), or ``None`` when ``text`` is not such a run.

    The run's text is the watermark's own canonical text (a layout is cut from it), so it is
    only parsed here; the reader joins the parts back into the same text.
    """
    entries = json.loads("{" + text + "}")
    if not isinstance(entries, dict) or not entries:
        return None
    keys = list(entries)
    return entries if keys == sorted(keys) else None
