"""How a large watermark is spread over several keys of an asset's state store (no I/O).

Airflow bounds each value of an asset's state store (``[state_store] max_value_storage_bytes``,
65535 by default). A watermark whose ``seen`` keys outgrow that is kept as a *manifest* under the
document's key and *parts* under derived keys:

* the manifest holds the address, version, lineage and writer as a small document does, the
  watermark without ``seen`` (``head``), and the list of parts with a digest of each;
* ``seen`` is partitioned by a stable hash of each key (CRC-32) into ``2**bits`` buckets, one part
  each, so a save rewrites only the buckets whose keys changed;
* a part's key names the version that wrote it (``<version>.<n>``): a save writes its new parts
  under new keys, then the manifest (the commit point), then deletes the parts no longer named.
  A part named by a manifest is never overwritten, so a reader that checks the digests never
  mixes two saves.

Example:
    >>> value = '{"cursor":null,"schema_version":1,"seen":{"a":null,"b":null},"timestamp":null}'
    >>> split = split_seen(value, limit=120, previous=None, version=3, unavailable=frozenset())
    >>> split is not None and split.seen.bits, len(split.new)
    (1, 2)
    >>> parts = {ref.suffix: split.new[ref.suffix] for ref in split.seen.refs}
    >>> join_seen(split.head, split.seen, [parts[r.suffix] for r in split.seen.refs]) == value
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stateful._document import canonical_json

__all__ = [
    "PART_FORMAT",
    "PartMismatch",
    "SeenParts",
    "Split",
    "is_part_key",
    "join_seen",
    "part_key",
    "split_seen",
]

#: Marks a part (the ``seen`` keys of one bucket); the manifest carries the layout version.
PART_FORMAT = "airflow-stateful/part"
_PART_PREFIX = "stateful/%part/"  # "%p" is no escape native_key writes: never a document's key
_MAX_KEY = 512
_MAX_BITS = 16
_ENVELOPE = len(json.dumps({"format": PART_FORMAT, "seen": {}}))


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
    """One bucket's part: the key suffix it is stored under and the digest of its content."""

    suffix: str
    digest: str

    def encode(self) -> str:
        return f"{self.suffix}:{self.digest}"


@dataclass(frozen=True)
class SeenParts:
    """Where a manifest's ``seen`` keys are: ``refs[i]`` holds bucket ``i`` of ``2**bits``.

    Attributes:
        at: the position of ``seen`` among the watermark's fields (the text keeps its order).
        bits: ``2**bits`` buckets.
        count: how many keys ``seen`` holds (for people reading the manifest).
        refs: the parts, by bucket.
    """

    at: int
    bits: int
    count: int
    refs: tuple[PartRef, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "bits": self.bits,
            "count": self.count,
            "parts": [r.encode() for r in self.refs],
        }

    @classmethod
    def from_json(cls, data: object) -> SeenParts:
        """Raises ValueError when ``data`` is not a valid ``seen`` entry of a manifest."""
        if not isinstance(data, dict):
            raise ValueError("its 'seen' is not an object")
        numbers = [data.get(f) for f in ("at", "bits", "count")]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise ValueError("its 'seen' has no valid 'at', 'bits' or 'count'")
        at, bits, count = (int(n) for n in numbers if isinstance(n, int))
        refs = data.get("parts")
        if bits > _MAX_BITS or not isinstance(refs, list) or len(refs) != 1 << bits:
            raise ValueError("its 'seen' does not name one part per bucket")
        parsed = []
        for ref in refs:
            suffix, _, digest = str(ref).rpartition(":")
            if not isinstance(ref, str) or not suffix or "/" in suffix or len(digest) != 32:
                raise ValueError(f"its 'seen' names an invalid part {ref!r}")
            parsed.append(PartRef(suffix, digest))
        return cls(at, bits, count, tuple(parsed))

    @property
    def suffixes(self) -> frozenset[str]:
        return frozenset(r.suffix for r in self.refs)


@dataclass(frozen=True)
class Split:
    """A watermark laid out as a manifest's ``head`` and ``seen``, and the parts to write.

    Attributes:
        head: the watermark's fields except ``seen``, in their order.
        seen: the parts, by bucket.
        new: the content of each part this save writes (by suffix); parts kept from the previous
            layout are not in it.
        bodies: every part's content (by suffix), for assets that lack a kept one.
        buckets: the ``seen`` keys of each bucket (what ``known`` is, at the next save).
    """

    head: dict[str, Any]
    seen: SeenParts
    new: dict[str, dict[str, Any]]
    bodies: dict[str, dict[str, Any]]
    buckets: tuple[dict[str, Any], ...]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _bucket_of(key: str, mask: int) -> int:
    return zlib.crc32(key.encode()) & mask


def split_seen(
    value: str,
    limit: int,
    previous: SeenParts | None,
    version: int,
    unavailable: frozenset[str],
    known: Sequence[dict[str, Any]] = (),
) -> Split | None:
    """Lay ``value`` out in parts of at most ``limit`` characters each, or ``None`` if it cannot be.

    ``None`` when ``value`` is not a JSON object with a ``seen`` object that comes back byte for
    byte (keys in order, compact), or a bucket cannot fit even with ``2**16`` buckets. Buckets
    whose digest is unchanged since ``previous`` keep their part (unless its suffix is in
    ``unavailable``: some asset holds other content under it); the others get the suffix
    ``<version>.<n>``. ``known``, the content of ``previous``'s buckets when the caller has it,
    spares serialising the buckets that did not change (most of them, at each save).
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
        if keys != sorted(keys) or _compact(parsed) != value:
            return None
    except ValueError:  # NaN or infinity: not JSON that comes back
        return None
    head = {f: v for f, v in parsed.items() if f != "seen"}
    at = list(parsed).index("seen")
    room = limit - _ENVELOPE
    bits = _bits(len(value), room, previous)
    while bits <= _MAX_BITS:
        mask = (1 << bits) - 1
        buckets: list[dict[str, Any]] = [{} for _ in range(1 << bits)]
        for key in keys:
            buckets[_bucket_of(key, mask)][key] = seen[key]
        old = previous.refs if previous is not None and previous.bits == bits else ()
        same = [bool(old) and len(known) == len(buckets) and known[i] == b for i, b in enumerate(buckets)]
        texts = [None if unchanged else json.dumps(b) for unchanged, b in zip(same, buckets, strict=True)]
        if max((len(t) for t in texts if t is not None), default=0) <= room:
            break
        bits += 1
    else:
        return None
    refs: list[PartRef] = []
    new: dict[str, dict[str, Any]] = {}
    bodies: dict[str, dict[str, Any]] = {}
    for i, (bucket, text) in enumerate(zip(buckets, texts, strict=True)):
        digest = old[i].digest if text is None else _digest(text)
        body = {"format": PART_FORMAT, "seen": bucket}
        if old and old[i].digest == digest and old[i].suffix not in unavailable:
            refs.append(old[i])
        else:
            refs.append(PartRef(f"{version}.{len(new)}", digest))
            new[refs[-1].suffix] = body
        bodies[refs[-1].suffix] = body
    return Split(head, SeenParts(at, bits, len(keys), tuple(refs)), new, bodies, tuple(buckets))


def _bits(size: int, room: int, previous: SeenParts | None) -> int:
    """Buckets for ``size`` characters of ``seen``: about 4/5 full (fewer parts, fewer calls),
    kept while between 1/8 and 9/10 full so that a save rarely moves every key."""
    if room <= 0:
        return _MAX_BITS + 1
    if previous is not None and room / 8 <= size / (1 << previous.bits) <= room * 9 / 10:
        return previous.bits
    return max(0, math.ceil(math.log2(max(1.0, size / (room * 4 / 5)))))


def join_seen(head: dict[str, Any], seen: SeenParts, bodies: Sequence[object]) -> str:
    """The watermark's text from its manifest's ``head``, ``seen`` and the parts' content (by bucket).

    Raises:
        PartMismatch: a part is missing (``None``) or does not hold what the manifest names.
    """
    merged: list[tuple[str, Any]] = []
    for ref, body in zip(seen.refs, bodies, strict=True):
        bucket = body.get("seen") if isinstance(body, dict) and body.get("format") == PART_FORMAT else None
        if not isinstance(bucket, dict):
            raise PartMismatch(f"part {ref.suffix!r} is {'missing' if body is None else 'not a part'}")
        if _digest(json.dumps(bucket, sort_keys=True)) != ref.digest:
            raise PartMismatch(f"part {ref.suffix!r} does not hold the content its manifest names")
        merged += bucket.items()
    merged.sort(key=lambda item: item[0])
    fields = list(head.items())
    fields.insert(seen.at, ("seen", dict(merged)))
    return _compact(dict(fields))


_CHUNK = 2000  # seen entries serialised per call: other threads (the event loop) run in between


def _compact(value: dict[str, Any]) -> str:
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
