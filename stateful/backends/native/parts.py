"""How a large watermark is spread over several keys of an asset's state store (no I/O).

Airflow bounds each value of an asset's state store (``[state_store] max_value_storage_bytes``,
65535 by default). A watermark whose ``seen`` keys outgrow that is kept as a *manifest* under the
document's key and *parts* under derived keys:

* the manifest holds the address, version, lineage and writer as a small document does, the
  watermark without ``seen`` (``head``), and the list of parts with a digest of each;
* ``seen`` is cut into parts in the order its keys arrived (see
  :mod:`stateful.backends.native.packing`, which decides what goes where), so a save rewrites
  only the parts its changes fall in: the newest (new keys) and the oldest (expired keys);
* a part's key names the version that wrote it (``<version>.<n>``): a save writes its new parts
  under new keys, then the manifest (the commit point), then deletes the parts no longer named.
  A part named by a manifest is never overwritten, so a reader that checks the digests never
  mixes two saves.

This module reads a manifest and joins its parts back into the watermark's text, byte for byte
what was saved (the keys sorted, as the text holds them).

Example:
    >>> value = '{"cursor":null,"schema_version":1,"seen":{"a":null,"b":null},"timestamp":null}'
    >>> head = {"cursor": None, "schema_version": 1, "timestamp": None}
    >>> bodies = [{"format": PART_FORMAT, "seen": {"b": None}}, {"format": PART_FORMAT, "seen": {"a": None}}]
    >>> refs = tuple(PartRef(f"3.{i}", digest_of(b["seen"])) for i, b in enumerate(bodies))
    >>> join_seen(head, SeenParts(at=2, count=2, refs=refs, untimed=2), bodies) == value
    True
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stateful._document import canonical_json

__all__ = [
    "ENVELOPE",
    "PART_FORMAT",
    "PartMismatch",
    "PartRef",
    "SeenParts",
    "compact",
    "digest_of",
    "is_part_key",
    "join_seen",
    "part_key",
]

#: Marks a part (some of the ``seen`` keys); the manifest carries the layout version.
PART_FORMAT = "airflow-stateful/part"
_PART_PREFIX = "stateful/%part/"  # "%p" is no escape native_key writes: never a document's key
_MAX_KEY = 512
_MAX_BITS = 16
#: What a part adds around its keys, as Airflow measures a value.
ENVELOPE = len(json.dumps({"format": PART_FORMAT, "seen": {}}))


class PartMismatch(ValueError):
    """A part named by a manifest is missing or holds other content (a concurrent save's cleanup)."""


def part_key(k: str, suffix: str) -> str:
    """The state store key of part ``suffix`` of the document under key ``k``.

    Example:
        >>> part_key("stateful/files/watermark/landing/in/", "7.0")
        'stateful/%part/files/watermark/landing/in//7.0'
        >>> len(part_key("stateful/s3/watermark/" + "x" * 600, "7.0")) <= 512
        True
    """
    rest = k.removeprefix("stateful/")
    text = f"{_PART_PREFIX}{rest}/{suffix}"
    if len(text) <= _MAX_KEY:
        return text
    return f"{_PART_PREFIX}sha256/{hashlib.sha256(k.encode()).hexdigest()}/{suffix}"


def is_part_key(key: str, of: str | None = None) -> bool:
    """Whether ``key`` holds a part (not a document); with ``of``, a part of the document ``of``.

    Example:
        >>> k = "stateful/files/watermark/landing"
        >>> is_part_key(part_key(k, "7.0"), of=k), is_part_key(part_key(k + "/in", "7.0"), of=k)
        (True, False)
    """
    if of is None:
        return key.startswith(_PART_PREFIX)
    prefix = part_key(of, "")
    return key.startswith(prefix) and "/" not in key[len(prefix) :]


@dataclass(frozen=True)
class PartRef:
    """One part: the key suffix it is stored under and the digest of its content."""

    suffix: str
    digest: str

    def encode(self) -> str:
        return f"{self.suffix}:{self.digest}"


@dataclass(frozen=True)
class SeenParts:
    """Where a manifest's ``seen`` keys are.

    Attributes:
        at: the position of ``seen`` among the watermark's fields (the text keeps its order).
        count: how many keys ``seen`` holds (for people reading the manifest).
        refs: the parts: those of timed keys in the order they were written (oldest first), then
            the last ``untimed`` ones, which hold the keys recorded without a timestamp.
        untimed: how many of the last ``refs`` hold untimed keys.
        bits: ``None``, or, in a manifest of the previous layout (``airflow-stateful/2``, read
            and replaced at the next save), ``refs[i]`` holds the keys whose CRC-32 ends in ``i``
            (``2**bits`` buckets).
    """

    at: int
    count: int
    refs: tuple[PartRef, ...]
    untimed: int = 0
    bits: int | None = None

    def to_json(self) -> dict[str, Any]:
        parts = [r.encode() for r in self.refs]
        if self.bits is not None:
            return {"at": self.at, "bits": self.bits, "count": self.count, "parts": parts}
        return {"at": self.at, "count": self.count, "parts": parts, "untimed": self.untimed}

    @classmethod
    def from_json(cls, data: object, *, buckets: bool = False) -> SeenParts:
        """Raises ValueError when ``data`` is not a valid ``seen`` entry of a manifest.

        ``buckets``: a manifest of the previous layout (``bits`` instead of ``untimed``).
        """
        if not isinstance(data, dict):
            raise ValueError("its 'seen' is not an object")
        fields = ("at", "bits" if buckets else "untimed", "count")
        numbers = [data.get(f) for f in fields]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise ValueError(f"its 'seen' has no valid {', '.join(repr(f) for f in fields)}")
        at, extra, count = (int(n) for n in numbers if isinstance(n, int))
        refs = data.get("parts")
        if not isinstance(refs, list):
            raise ValueError("its 'seen' has no list of 'parts'")
        if buckets and (extra > _MAX_BITS or len(refs) != 1 << extra):
            raise ValueError("its 'seen' does not name one part per bucket")
        if not buckets and extra > len(refs):
            raise ValueError("its 'seen' counts more untimed parts than it names")
        parsed = []
        for ref in refs:
            suffix, _, digest = str(ref).rpartition(":")
            if not isinstance(ref, str) or not suffix or "/" in suffix or len(digest) != 32:
                raise ValueError(f"its 'seen' names an invalid part {ref!r}")
            parsed.append(PartRef(suffix, digest))
        if len({r.suffix for r in parsed}) != len(parsed):
            raise ValueError("its 'seen' names a part twice")
        if buckets:
            return cls(at, count, tuple(parsed), bits=extra)
        return cls(at, count, tuple(parsed), untimed=extra)

    @property
    def suffixes(self) -> frozenset[str]:
        return frozenset(r.suffix for r in self.refs)


def digest_of(entries: dict[str, Any]) -> str:
    """The digest a manifest names for a part holding ``entries`` (key order does not matter).

    Example:
        >>> digest_of({"a": None, "b": None}) == digest_of({"b": None, "a": None})
        True
    """
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:32]


def join_seen(head: dict[str, Any], seen: SeenParts, bodies: Sequence[object]) -> str:
    """The watermark's text from its manifest's ``head``, ``seen`` and the parts' content (in order).

    The parts may hold their keys in any order and grouping: they are merged and sorted by key,
    which is how the watermark's text holds them.

    Raises:
        PartMismatch: a part is missing (``None``) or does not hold what the manifest names.
    """
    merged: list[tuple[str, Any]] = []
    for ref, body in zip(seen.refs, bodies, strict=True):
        bucket = body.get("seen") if isinstance(body, dict) and body.get("format") == PART_FORMAT else None
        if not isinstance(bucket, dict):
            raise PartMismatch(f"part {ref.suffix!r} is {'missing' if body is None else 'not a part'}")
        if digest_of(bucket) != ref.digest:
            raise PartMismatch(f"part {ref.suffix!r} does not hold the content its manifest names")
        merged += bucket.items()
    merged.sort(key=lambda item: item[0])
    fields = list(head.items())
    fields.insert(seen.at, ("seen", dict(merged)))
    return compact(dict(fields))


_CHUNK = 2000  # seen entries serialised per call: other threads (the event loop) run in between


def compact(value: dict[str, Any]) -> str:
    """``canonical_json(value, sort_keys=False)``, ``seen`` serialised a chunk at a time.

    One ``json.dumps`` of 10 MB holds the interpreter lock for its whole run, so the event loop
    would stall while a worker thread serialises a large watermark; chunks let it run between.
    """
    seen = value.get("seen")
    if not isinstance(seen, dict) or len(seen) <= _CHUNK:
        return canonical_json(value, sort_keys=False)
    items = list(seen.items())
    chunks = [
        canonical_json(dict(items[i : i + _CHUNK]), sort_keys=False)[1:-1]
        for i in range(0, len(items), _CHUNK)
    ]
    marker = f"seen-{uuid.uuid4().hex}"
    shell = canonical_json({f: (marker if f == "seen" else v) for f, v in value.items()}, sort_keys=False)
    marker = canonical_json(marker)
    if shell.count(marker) != 1:  # the head holds that text too (never, in practice)
        return canonical_json(value, sort_keys=False)
    return shell.replace(marker, "{" + ",".join(chunks) + "}")
