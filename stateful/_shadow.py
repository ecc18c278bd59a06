"""A watermark's state as plain data, kept in step by deltas: what makes a save cost O(change).

The session (:mod:`stateful._core`) never serialises the live watermark per event. Instead:

* :class:`Tracker` drains the watermark's change journal when an event is emitted and turns it
  into a :class:`Delta`: the ``seen`` keys that changed (as the text they are stored with), the
  other fields (:meth:`Watermark._head`, O(your fields)), and the state's digest after it.
* the digest (:func:`digest`) is a function of the state alone, maintained in O(change): a
  hash of the other fields combined with a *multiset hash* of the ``seen`` entries (the sum,
  modulo 2**256, of one SHA-256 per entry; adding an entry adds its hash, removing subtracts).
  Equal states have equal digests however they were reached, which is what idempotency keys
  and "skip the save when nothing changed" need.
* :class:`Shadow` is the confirmed state (``seen`` as ``key -> text``, the other fields); a
  confirmation applies deltas to it, and :meth:`Shadow.render` writes its canonical text, the
  very bytes :meth:`Watermark.to_state_json` writes for the same state. Rendering is O(state):
  the async driver runs it in a worker thread, in chunks, so the event loop keeps its turn.

Example:
    >>> from stateful import Watermark
    >>> wm = Watermark()
    >>> shadow = Shadow.of(wm)
    >>> tracker = Tracker(shadow, wm)
    >>> wm.advance(key="a.csv")
    >>> delta = tracker.take(wm)
    >>> delta.seen
    {'a.csv': None}
    >>> shadow.apply(delta)
    >>> shadow.render() == wm.to_state_json()
    True
    >>> shadow.digest == Shadow.of(wm).digest  # a function of the state only
    True
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from typing import Any

from stateful._document import SCHEMA_VERSION, canonical_json, format_utc
from stateful._seen import ABSENT, Entry, SeenLog, _Absent
from stateful.types import Watermark

__all__ = ["Delta", "Shadow", "Tracker", "digest"]

#: How many ``seen`` entries are sorted or encoded in one call while rendering: each call holds
#: the interpreter lock, so a worker thread rendering a large state lets the loop in between.
RENDER_CHUNK = 2048

_MODULUS = 1 << 256

#: The text a ``seen`` entry is stored with: its UTC timestamp, or ``None``.
SeenText = str | None


def _entry_text(value: Entry) -> SeenText | _Absent:
    if value is ABSENT or value is None:
        return value
    return format_utc(value)


def _entry_hash(key: str, text: SeenText) -> int:
    h = hashlib.sha256(key.encode())
    # NUL separates key and text (keys are JSON strings, the text a fixed-width time).
    h.update(b"\x00-" if text is None else b"\x00" + text.encode())
    return int.from_bytes(h.digest(), "big")


def digest(head_text: str, seen_sum: int) -> str:
    """The digest of a state: its other fields' canonical JSON and its ``seen`` multiset hash.

    Example:
        >>> digest('{"cursor":1}', 0) == digest('{"cursor":1}', 0) != digest('{"cursor":2}', 0)
        True
    """
    h = hashlib.sha256(head_text.encode())
    h.update(b"\x00" + seen_sum.to_bytes(32, "big"))
    return h.hexdigest()


@dataclass(frozen=True)
class Delta:
    """What changed between two snapshots: O(change) plus O(your fields).

    Attributes:
        seen: each changed key's new text (``None``: recorded without a timestamp), or ``ABSENT``
            for a key that left ``seen``.
        head: the fields other than ``seen``, as JSON values.
        digest: the digest of the state after the change.
    """

    seen: dict[str, SeenText | _Absent]
    head: dict[str, Any]
    digest: str


class Shadow:
    """A state as plain data: ``seen`` as ``key -> text``, the other fields, and its digest."""

    def __init__(self, seen: dict[str, SeenText], head: dict[str, Any]) -> None:
        self.seen = seen
        self.head = head
        self.head_text = canonical_json(head)
        self.seen_sum = sum(_entry_hash(k, t) for k, t in seen.items()) % _MODULUS
        self.digest = digest(self.head_text, self.seen_sum)

    @classmethod
    def of(cls, watermark: Watermark[Any]) -> Shadow:
        """The state of ``watermark`` now (O(len(seen)): done once, when it is loaded)."""
        entries = watermark._seen_log().entries()
        return cls(
            {k: None if ts is None else format_utc(ts) for k, ts in entries.items()}, watermark._head()
        )

    def apply(self, delta: Delta) -> None:
        """Move to the state after ``delta`` (which must follow this state)."""
        for key, text in delta.seen.items():
            if text is ABSENT:
                self.seen.pop(key, None)
            else:
                self.seen[key] = text
        self.head = delta.head
        self.digest = delta.digest

    def render(self) -> str:
        """The canonical stored text of this state (as :meth:`Watermark.to_state_json` writes it).

        Sorting and encoding ``seen`` go chunk by chunk (:data:`RENDER_CHUNK` entries), so a
        worker thread rendering it lets the event loop's thread take the interpreter lock
        between chunks.
        """
        doc: dict[str, Any] = {**self.head, "schema_version": SCHEMA_VERSION}
        parts = []
        for name in sorted([*doc, "seen"]):
            value = self._render_seen() if name == "seen" else canonical_json(doc[name])
            parts.append(f"{canonical_json(name)}:{value}")
        return "{" + ",".join(parts) + "}"

    def _render_seen(self) -> str:
        keys = list(self.seen)
        runs = [sorted(keys[i : i + RENDER_CHUNK]) for i in range(0, len(keys), RENDER_CHUNK)]
        ordered = runs[0] if len(runs) == 1 else list(heapq.merge(*runs))
        seen = self.seen
        chunks = [
            canonical_json({k: seen[k] for k in ordered[i : i + RENDER_CHUNK]}, sort_keys=False)[1:-1]
            for i in range(0, len(ordered), RENDER_CHUNK)
        ]
        return "{" + ",".join(chunks) + "}"


class Tracker:
    """The live watermark's digest, kept in step with its journal (see :meth:`take`).

    Args:
        start: the state the watermark was loaded with.
        watermark: the watermark; its change journal is turned on now.
    """

    def __init__(self, start: Shadow, watermark: Watermark[Any]) -> None:
        self._seen_sum = start.seen_sum
        watermark._seen_log().journal()

    def take(self, watermark: Watermark[Any]) -> Delta:
        """The changes since the last call (or the start): O(change) plus O(your fields)."""
        log: SeenLog = watermark._seen_log()
        seen: dict[str, SeenText | _Absent] = {}
        total = self._seen_sum
        for key, (old, new) in log.drain().items():
            old_text, new_text = _entry_text(old), _entry_text(new)
            if not isinstance(old_text, _Absent):
                total -= _entry_hash(key, old_text)
            if not isinstance(new_text, _Absent):
                total += _entry_hash(key, new_text)
            seen[key] = new_text
        self._seen_sum = total % _MODULUS
        head = watermark._head()
        return Delta(seen, head, digest(canonical_json(head), self._seen_sum))
