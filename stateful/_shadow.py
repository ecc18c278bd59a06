"""A watermark's state as plain data, kept in step by deltas: what makes a save cost O(change).

The session (:mod:`stateful._core`) never serialises the live watermark per event. Instead:

* :class:`Tracker` drains the watermark's change journal when an event is emitted and turns it
  into a :class:`Delta`: the ``seen`` keys that changed (as the text they are stored with), the
  other fields (:meth:`Watermark._head`, O(your fields), as their canonical JSON text), and the
  state's digest after it.
* :class:`Unconfirmed` holds the deltas of events emitted and not yet confirmed (up to a batch
  of coalesced saves per trigger, thousands across the triggers of a triggerer) as strings and
  numbers in one deque: no object the garbage collector tracks per event. Tracked objects
  that pile up are what set the collector off (a young collection each 700 more of them alive,
  and each young collection promotes every coroutine, future and timer then in flight towards
  the oldest generation, whose growth sets off the full collections that pause the process).
* the digest (:func:`digest`) is a function of the state alone, maintained in O(change): a
  hash of the other fields combined with a *multiset hash* of the ``seen`` entries (the sum,
  modulo 2**256, of one SHA-256 per entry; adding an entry adds its hash, removing subtracts).
  Equal states have equal digests however they were reached, which is what idempotency keys
  and "skip the save when nothing changed" need.
* :class:`Shadow` is the confirmed state (``seen`` as ``key -> text``, the other fields); a
  confirmation applies deltas to it, and :meth:`Shadow.layout` cuts its canonical text (the
  very bytes :meth:`Watermark.to_state_json` writes for the same state) into the text around
  ``seen``'s entries and sorted runs of entries, each with a content id, re-encoding only the
  runs that changed (:class:`~stateful._layout.Layout`); :meth:`Shadow.render` joins it. A store
  that keeps parts writes only the new runs; the async driver runs both in a worker thread.

Example:
    >>> from stateful import Watermark
    >>> wm = Watermark()
    >>> shadow = Shadow.of(wm)
    >>> tracker = Tracker(shadow, wm)
    >>> wm.advance(key="a.csv")
    >>> delta = tracker.take(wm)
    >>> delta.seen, delta.gone
    ((('a.csv', None),), ())
    >>> shadow.apply(delta)
    >>> shadow.render() == wm.to_state_json()
    True
    >>> shadow.digest == Shadow.of(wm).digest  # a function of the state only
    True
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
from collections import deque
from typing import Any, NamedTuple

from stateful._document import SCHEMA_VERSION, canonical_json, format_utc
from stateful._layout import Layout, part_id
from stateful._seen import ABSENT, Entry, SeenLog, _Absent
from stateful.types import Watermark

__all__ = ["Delta", "Shadow", "Tracker", "Unconfirmed", "digest"]

#: How many ``seen`` entries a run holds (up to twice as many before it is split): each is
#: sorted and encoded in one call, which holds the interpreter lock, so a worker thread
#: rendering a large state lets the loop in between; a change re-encodes only its run.
RENDER_CHUNK = 512

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


class Delta(NamedTuple):
    """What changed between two snapshots: O(change) plus O(your fields).

    Attributes:
        seen: each key added or changed, with its new text (``None``: recorded without a
            timestamp).
        gone: each key that left ``seen``.
        head: the fields other than ``seen``, as canonical JSON text (an object).
        digest: the digest of the state after the change.
        grown: how many keys ``seen`` gained (negative: lost).
    """

    seen: tuple[tuple[str, SeenText], ...]
    gone: tuple[str, ...]
    head: str
    digest: str
    grown: int = 0


class Unconfirmed:
    """The deltas of emitted events awaiting confirmation, oldest first, held as atoms.

    One deque of strings, numbers and ``None``: each delta as its event's number, its head, its
    digest, how much ``seen`` grew, how many keys changed, then each key and its text. Pushing a
    delta allocates nothing the garbage collector tracks, where a tuple per delta would count as
    a new object until a collection.

    Example:
        >>> from stateful import Watermark
        >>> wm = Watermark()
        >>> shadow = Shadow.of(wm)
        >>> tracker, waiting = Tracker(shadow, wm), Unconfirmed()
        >>> wm.advance(key="a.csv")
        >>> waiting.push(1, tracker.take(wm))
        >>> wm.advance(key="b.csv")
        >>> waiting.push(2, tracker.take(wm))
        >>> waiting.apply_through(1, shadow), len(waiting), shadow.size
        (True, 1, 1)
    """

    __slots__ = ("_count", "_held")

    def __init__(self) -> None:
        self._held: deque[Any] = deque()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, seq: int, delta: Delta) -> None:
        """Keep ``delta``, the changes of event ``seq`` (newer than every delta held)."""
        held = self._held
        held.extend((seq, delta.head, delta.digest, delta.grown, len(delta.seen) + len(delta.gone)))
        for key, text in delta.seen:
            held.append(key)
            held.append(text)
        for key in delta.gone:
            held.append(key)
            held.append(ABSENT)
        self._count += 1

    def apply_through(self, seq: int, shadow: Shadow) -> bool:
        """Apply to ``shadow``, oldest first, and forget every delta up to event ``seq``.

        Returns whether there was any.
        """
        held, applied = self._held, False
        while held and held[0] <= seq:
            pop = held.popleft
            pop()  # the event's number
            head, digest, grown, changed = pop(), pop(), pop(), pop()
            changes = {pop(): pop() for _ in range(changed)}
            shadow.advance(changes, grown, head, digest)
            self._count -= 1
            applied = True
        return applied

    def clear(self) -> None:
        """Forget every delta held."""
        self._held.clear()
        self._count = 0


class Shadow:
    """A state as plain data: ``seen`` (``key -> text``), the other fields, and its digest.

    ``seen`` is kept for rendering as sorted runs, each with its text cached (:class:`_Runs`),
    built by the first render; a confirmation only records the changed keys (O(change)), and the
    next render re-encodes just the runs they fall in.
    """

    def __init__(self, seen: dict[str, SeenText], head: dict[str, Any]) -> None:
        #: The fields other than ``seen``, as canonical JSON text (an object).
        self.head_text = canonical_json(head)
        self.seen_sum = sum(_entry_hash(k, t) for k, t in seen.items()) % _MODULUS
        self.digest = digest(self.head_text, self.seen_sum)
        #: How many keys ``seen`` holds.
        self.size = len(seen)
        self._initial: dict[str, SeenText] | None = seen
        self._runs: _Runs | None = None
        self._changes: dict[str, SeenText | _Absent] = {}

    @classmethod
    def of(cls, watermark: Watermark[Any]) -> Shadow:
        """The state of ``watermark`` now (O(len(seen)): done once, when it is loaded)."""
        entries = watermark._seen_log().entries()
        return cls(
            {k: None if ts is None else format_utc(ts) for k, ts in entries.items()}, watermark._head()
        )

    def apply(self, delta: Delta) -> None:
        """Move to the state after ``delta`` (which must follow this state): O(change)."""
        changes: dict[str, SeenText | _Absent] = dict(delta.seen)
        changes.update(dict.fromkeys(delta.gone, ABSENT))
        self.advance(changes, delta.grown, delta.head, delta.digest)

    def advance(self, changes: dict[str, SeenText | _Absent], grown: int, head: str, digest: str) -> None:
        """Move to the state after a delta given by its parts (see :class:`Delta`): O(change)."""
        self._changes.update(changes)
        self.size += grown
        self.head_text = head
        self.digest = digest

    def render(self) -> str:
        """The canonical stored text of this state (as :meth:`Watermark.to_state_json` writes it).

        The join of :meth:`layout`: the text is copied once, however large ``seen`` is.
        Not to be called while :meth:`apply` may run.
        """
        return self.layout().text()

    def layout(self) -> Layout:
        """The canonical stored text of this state, in parts (see :class:`~stateful._layout.Layout`).

        O(changes since the last call) to bring the runs up to date (re-encoding and hashing the
        runs the changes fall in), plus O(runs) to list them; the first call sorts ``seen`` in
        runs (O(n log n)). Every step is a call over at most a run, so a worker thread running
        it lets the event loop's thread take the interpreter lock in between. Not to be called
        while :meth:`apply` may run.
        """
        if self._runs is None:
            self._runs = _Runs(self._initial or {})
            self._initial = None
        changes, self._changes = self._changes, {}
        self._runs.update(changes)
        doc: dict[str, Any] = {**json.loads(self.head_text), "schema_version": SCHEMA_VERSION}
        names = sorted([*doc, "seen"])
        at = names.index("seen")

        def fields(chosen: list[str]) -> list[str]:
            return [canonical_json(name) + ":" + canonical_json(doc[name]) for name in chosen]

        before = "{" + "".join(f + "," for f in fields(names[:at])) + '"seen":{'
        after = "}" + "".join("," + f for f in fields(names[at + 1 :])) + "}"
        return Layout(before, self._runs.parts(), after)


class _Run:
    __slots__ = ("id", "keys", "text", "values")

    def __init__(self, keys: list[str], values: dict[str, SeenText]) -> None:
        self.keys = keys  # sorted
        self.values = values
        self.text: str | None = None  # the rendered entries, without braces; None: stale
        self.id = ""  # the content id of ``text`` (see stateful._layout.part_id)

    def render(self) -> tuple[str, str]:
        """The run's ``(content id, text)``, re-encoded and re-hashed only when it changed."""
        if self.text is None:
            values = self.values
            self.text = canonical_json({k: values[k] for k in self.keys}, sort_keys=False)[1:-1]
            self.id = part_id(self.text)
        return self.id, self.text


class _Runs:
    """``seen`` as consecutive sorted runs of about :data:`RENDER_CHUNK` keys.

    ``firsts[i]`` is at most the smallest key of run ``i`` and above every key of run ``i - 1``,
    so :func:`bisect.bisect_right` finds the run a key belongs in.
    """

    def __init__(self, seen: dict[str, SeenText]) -> None:
        keys = list(seen)
        ordered = [sorted(keys[i : i + RENDER_CHUNK]) for i in range(0, len(keys), RENDER_CHUNK)]
        merged = ordered[0] if len(ordered) == 1 else list(heapq.merge(*ordered))
        self.runs = [
            _Run(chunk, {k: seen[k] for k in chunk})
            for chunk in (merged[i : i + RENDER_CHUNK] for i in range(0, len(merged), RENDER_CHUNK))
        ] or [_Run([], {})]
        self.firsts = [run.keys[0] if run.keys else "" for run in self.runs]

    def update(self, changes: dict[str, SeenText | _Absent]) -> None:
        for key, text in changes.items():
            index = max(0, bisect.bisect_right(self.firsts, key) - 1)
            run = self.runs[index]
            if isinstance(text, _Absent):
                if key in run.values:
                    del run.values[key]
                    del run.keys[bisect.bisect_left(run.keys, key)]
                    run.text = None
                continue
            if key not in run.values:
                bisect.insort(run.keys, key)
                if key < self.firsts[index]:
                    self.firsts[index] = key
            run.values[key] = text
            run.text = None
            if len(run.keys) > 2 * RENDER_CHUNK:
                self._split(index)

    def _split(self, index: int) -> None:
        run = self.runs[index]
        half = len(run.keys) // 2
        upper = run.keys[half:]
        self.runs.insert(index + 1, _Run(upper, {k: run.values.pop(k) for k in upper}))
        self.firsts.insert(index + 1, upper[0])
        del run.keys[half:]
        run.text = None

    def parts(self) -> tuple[tuple[str, str], ...]:
        """Each non-empty run's ``(content id, text)``, in order."""
        return tuple(part for part in (run.render() for run in self.runs) if part[1])


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
        seen: list[tuple[str, SeenText]] = []
        gone: list[str] = []
        total, grown = self._seen_sum, 0
        for key, (old, new) in log.drain().items():
            old_text, new_text = _entry_text(old), _entry_text(new)
            if not isinstance(old_text, _Absent):
                total -= _entry_hash(key, old_text)
                grown -= 1
            if isinstance(new_text, _Absent):
                gone.append(key)
            else:
                total += _entry_hash(key, new_text)
                grown += 1
                seen.append((key, new_text))
        self._seen_sum = total % _MODULUS
        head = canonical_json(watermark._head())
        return Delta(tuple(seen), tuple(gone), head, digest(head, self._seen_sum), grown)
