"""How the Airflow-native store lays a watermark out in an asset's state store.

Each state document is one JSON object under one key of the asset's state store (AIP-103), plus,
for a watermark too large for one value, the parts its manifest names (see ``parts``). The
key is derived from ``(namespace, name, key)`` by :func:`native_key`; the object carries the
address again, the version, a lineage id and the value, so it can be read (and checked) on its
own, for example through Airflow's REST API ``/api/v2/assets/{asset_id}/state-store``::

    {"format": "airflow-stateful/1", "namespace": "files", "name": "landing",
     "key": "watermark", "version": 7, "lineage": "5f0c...", "updated_at": "2026-01-02T03:04:05.000006Z",
     "updated_by": "triggerer-1:4242", "value": {"cursor": null, "schema_version": 1, ...}}

``value`` holds the watermark as JSON (readable in the REST API); a value that would not come
back byte for byte from JSON (a store is given text, and must return that exact text) is kept
as a string under ``text`` instead. A watermark too large for one value is a *manifest* instead:
``head`` (the watermark without ``seen``) and ``seen`` (where its parts are, see
:mod:`stateful.backends.native.parts`). ``lineage`` is drawn when a document is created and kept
by every later write: a lower version of the same lineage is a regression, while a document that
was deleted and created again starts a new lineage at version 1.

Layouts: ``airflow-stateful/2`` is a document in one value (``value`` or ``text``) or a manifest
whose parts hold ``seen`` by CRC-32 bucket; ``airflow-stateful/3`` is a manifest whose parts hold
``seen`` in arrival order. ``airflow-stateful/1`` (one key, before manifests) and bucket manifests
are read as they are and replaced at the next save (a document in one value is still written as
``airflow-stateful/2``, so the release before this one reads it).

History (see :mod:`stateful.backends.native.history`): a document may carry
``"history": {"keep": 10, "versions": [6, 5, 4]}``, the earlier versions kept as entries under
keys of their own, newest first, and ``"reason"``, why an operator wrote it. Both are optional,
so documents of the layouts above (and of the release before) read as documents with no history;
that release reads these documents too (it ignores both fields).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, cast

from stateful._document import DEFAULT_KEY as WATERMARK_KEY
from stateful._document import canonical_json, format_utc
from stateful.backends.native.parts import SeenParts

__all__ = [
    "FORMAT",
    "FORMATS",
    "MANIFEST_FORMAT",
    "MAX_KEY_LENGTH",
    "WATERMARK_KEY",
    "NativeDocument",
    "native_key",
    "parse_native_key",
    "stored_size",
]

#: Marks a document written by this package in one value, and its layout version.
FORMAT = "airflow-stateful/2"
#: Marks a manifest whose parts hold ``seen`` in arrival order (see ``packing``).
MANIFEST_FORMAT = "airflow-stateful/3"
#: The layouts this release reads: 1 (one key, before manifests) and 2's manifests (parts by
#: CRC-32 bucket) are replaced by the current ones at the next save.
FORMATS = ("airflow-stateful/1", FORMAT, MANIFEST_FORMAT)
#: ``asset_state_store.key`` is a VARCHAR(512) in Airflow's metadata database.
MAX_KEY_LENGTH = 512
_PREFIX = "stateful/"
_ESCAPED = re.compile(r"%(25|2F)")


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def _unescape(part: str) -> str:
    return _ESCAPED.sub(lambda m: "%" if m.group(1) == "25" else "/", part)


def native_key(namespace: str, name: str, key: str = WATERMARK_KEY) -> str:
    """Return the asset state store key that holds ``(namespace, name, key)``.

    The layout is ``stateful/<namespace>/<key>/<name>``: ``%`` and ``/`` are escaped as ``%25``
    and ``%2F`` in the namespace and the key, while the name (last) is kept as it is, so
    ``"bucket/prefix/"`` stays readable. A result over 512 characters (the column's size)
    becomes ``stateful/sha256/<hex digest of the three parts>``; the document itself still
    names its namespace, name and key.

    Example:
        >>> native_key("files", "landing/in/")
        'stateful/files/watermark/landing/in/'
        >>> native_key("a/b", "c", key="k")
        'stateful/a%2Fb/k/c'
        >>> native_key("s3", "x" * 600).startswith("stateful/sha256/")
        True
    """
    text = f"{_PREFIX}{_escape(namespace)}/{_escape(key)}/{name}"
    if len(text) <= MAX_KEY_LENGTH:
        return text
    digest = hashlib.sha256(json.dumps([namespace, name, key]).encode()).hexdigest()
    return f"{_PREFIX}sha256/{digest}"


def parse_native_key(text: str) -> tuple[str, str, str] | None:
    """Return ``(namespace, name, key)`` for a key made by :func:`native_key`, else ``None``.

    ``None`` also for the hashed form of very long addresses: read the document to learn them.

    Example:
        >>> parse_native_key("stateful/files/watermark/landing/in/")
        ('files', 'landing/in/', 'watermark')
        >>> parse_native_key("orders-watermark") is None
        True
    """
    if not text.startswith(_PREFIX):
        return None
    parts = text[len(_PREFIX) :].split("/", 2)
    if len(parts) != 3:
        return None
    namespace, key, name = parts
    return _unescape(namespace), name, _unescape(key)


def _embed(value: str) -> tuple[str, Any]:
    """``("value", parsed)`` for compact JSON that comes back byte for byte, else ``("text", value)``."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return "text", value
    if canonical_json(parsed, sort_keys=False) == value:
        return "value", parsed
    return "text", value


@dataclass(frozen=True)
class NativeDocument:
    """One state document as stored in an asset's state store.

    Attributes:
        namespace: the namespace given to ``@stateful``.
        name: the resolved name.
        key: the document key (``"watermark"`` for ``@stateful``).
        version: 1 when created, then +1 per write.
        lineage: drawn at creation, kept by every update.
        updated_at: when it was written (UTC).
        updated_by: the writer (``host:pid`` by default).
        value: the state as JSON text, exactly as given to the store (``""`` in a manifest read
            from the store until its parts are joined: see ``seen``).
        head: in a manifest, the state without ``seen``.
        seen: in a manifest, where the parts holding ``seen`` are.
        history: the versions kept as history entries, newest first (see ``history``).
        keep: how many versions its writer keeps, this one included (``None``: no history).
        reason: why it was written (an operator's ``--reason``), or ``None``.

    Example:
        >>> doc = NativeDocument.create("files", "landing", "watermark", '{"cursor":3}', updated_by="me")
        >>> stored = doc.to_json_value()
        >>> (stored["version"], stored["value"])
        (1, {'cursor': 3})
        >>> NativeDocument.from_json_value(stored) == doc
        True
        >>> doc.successor('{"cursor":4}', updated_by="me").version
        2
    """

    namespace: str
    name: str
    key: str
    version: int
    lineage: str
    updated_at: datetime
    updated_by: str | None
    value: str
    head: dict[str, Any] | None = None
    seen: SeenParts | None = None
    history: tuple[int, ...] = ()
    keep: int | None = None
    reason: str | None = None

    @classmethod
    def create(
        cls,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        updated_by: str | None,
        version: int = 1,
        reason: str | None = None,
    ) -> NativeDocument:
        """A new document (a new lineage) holding ``value``."""
        now = datetime.now(timezone.utc)
        return cls(namespace, name, key, version, uuid.uuid4().hex, now, updated_by, value, reason=reason)

    def successor(
        self, value: str, *, updated_by: str | None, version: int | None = None, reason: str | None = None
    ) -> NativeDocument:
        """The next document of this lineage: ``version`` (default: this one's + 1) holding ``value``.

        It carries no history yet (the planner gives it the history it keeps).
        """
        return NativeDocument(
            self.namespace,
            self.name,
            self.key,
            self.version + 1 if version is None else version,
            self.lineage,
            datetime.now(timezone.utc),
            updated_by,
            value,
            reason=reason,
        )

    def with_history(self, versions: tuple[int, ...], keep: int | None) -> NativeDocument:
        """This document naming ``versions`` as its history entries, kept by a writer keeping ``keep``."""
        return replace(self, history=versions, keep=keep)

    def as_entry(self) -> NativeDocument:
        """This document as a history entry stores it: without a history of its own."""
        return replace(self, history=(), keep=None)

    def in_parts(self, head: dict[str, Any], seen: SeenParts) -> NativeDocument:
        """This document as a manifest: ``head`` here, ``seen`` in the parts named."""
        return replace(self, head=head, seen=seen)

    def joined(self, value: str) -> NativeDocument:
        """This manifest with its parts joined back into ``value``."""
        return replace(self, value=value)

    @property
    def address(self) -> tuple[str, str, str]:
        """``(namespace, name, key)``."""
        return (self.namespace, self.name, self.key)

    def to_json_value(self) -> dict[str, Any]:
        """The JSON object to store (what ``asset_state_store.set(key, ...)`` is given)."""
        body: dict[str, Any]
        fmt = FORMAT
        if self.seen is not None:
            body = {"head": self.head, "seen": self.seen.to_json()}
            fmt = FORMAT if self.seen.bits is not None else MANIFEST_FORMAT
        else:
            field, embedded = _embed(self.value)
            body = {field: embedded}
        return {
            "format": fmt,
            "namespace": self.namespace,
            "name": self.name,
            "key": self.key,
            "version": self.version,
            "lineage": self.lineage,
            "updated_at": format_utc(self.updated_at),
            "updated_by": self.updated_by,
            # Only when given: a document without one is what earlier releases wrote and read.
            **({} if self.reason is None else {"reason": self.reason}),
            **body,
            **({} if self.keep is None else {"history": {"keep": self.keep, "versions": list(self.history)}}),
        }

    @classmethod
    def from_json_value(cls, data: object) -> NativeDocument:
        """Parse a stored object strictly.

        Raises:
            ValueError: not a document of this package, of a newer layout, or malformed; the
                message says which.
        """
        if not isinstance(data, dict) or not isinstance(data.get("format"), str):
            raise ValueError(
                f"it is not a document written by airflow-stateful (no 'format' field): {_preview(data)}"
            )
        fmt = data["format"]
        if fmt not in FORMATS:
            if fmt.startswith("airflow-stateful/"):
                raise ValueError(
                    f"it has layout {fmt!r}, newer than {MANIFEST_FORMAT!r}: upgrade airflow-stateful"
                )
            raise ValueError(f"it has an unknown format {fmt!r}: {_preview(data)}")
        texts = {f: data.get(f) for f in ("namespace", "name", "key", "lineage", "updated_at")}
        bad = [f for f, v in texts.items() if not isinstance(v, str)]
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            bad.append("version")
        updated_by, reason = data.get("updated_by"), data.get("reason")
        if updated_by is not None and not isinstance(updated_by, str):
            bad.append("updated_by")
        if reason is not None and not isinstance(reason, str):
            bad.append("reason")
        history, keep = _history(data.get("history"), version)
        if keep == 0:
            bad.append("history")
        has_value, has_text = "value" in data, "text" in data
        in_parts = fmt == MANIFEST_FORMAT or (fmt == FORMAT and ("seen" in data or "head" in data))
        if has_value + has_text + in_parts != 1 or (has_text and not isinstance(data["text"], str)):
            bad.append("value/text")
        seen = None
        if in_parts:
            try:
                seen = SeenParts.from_json(data.get("seen"), buckets=fmt == FORMAT)
            except ValueError as exc:
                bad.append(f"seen ({exc})")
            if not isinstance(data.get("head"), dict) or "seen" in data["head"]:
                bad.append("head")
        if bad:
            raise ValueError(
                f"its field(s) {', '.join(bad)} are missing or of the wrong type: {_preview(data)}"
            )
        try:
            updated_at = datetime.fromisoformat(str(texts["updated_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"its updated_at {texts['updated_at']!r} is not an ISO timestamp") from None
        if updated_at.tzinfo is None:
            raise ValueError(f"its updated_at {texts['updated_at']!r} has no time zone")
        if in_parts:
            value = ""
        else:
            value = data["text"] if has_text else canonical_json(data["value"], sort_keys=False)
        return cls(
            str(texts["namespace"]),
            str(texts["name"]),
            str(texts["key"]),
            cast(int, version),
            str(texts["lineage"]),
            updated_at.astimezone(timezone.utc),
            updated_by,
            value,
            data["head"] if in_parts else None,
            seen,
            history,
            keep,
            reason,
        )


def _history(data: object, version: object) -> tuple[tuple[int, ...], int | None]:
    """``(versions, keep)`` of a ``history`` field; ``keep`` 0 when it is malformed, ``None`` if absent."""
    if data is None:
        return (), None
    if not isinstance(data, dict) or not isinstance(version, int):
        return (), 0
    keep, versions = data.get("keep"), data.get("versions")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1 or not isinstance(versions, list):
        return (), 0
    previous = version
    for v in versions:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < previous:
            return (), 0  # newest first, each older than the one before
        previous = v
    return tuple(versions), keep


def stored_size(document: dict[str, Any]) -> int:
    """The size Airflow measures against ``[state_store] max_value_storage_bytes``.

    Airflow compares ``len(json.dumps(value))`` (ASCII-escaped) with the limit, which is also
    the text its metadata database stores, so the same measure is used here.
    """
    return len(json.dumps(document))


def _preview(data: object) -> str:
    text = repr(data)
    return text if len(text) <= 120 else text[:117] + "..."
