"""The stored watermark document: its key, schema version and upgrades, canonical JSON, UTC times.

:class:`~stateful.types.Watermark` is the model; this module is how it is written down. The
JSON text is canonical (compact, sorted keys, no ASCII escaping), so two equal watermarks are
the same bytes: the drivers skip a save whose text equals what is stored. Times are written in
UTC with microseconds and a ``Z``, fixed width, so they are exact and sort as text.

Example:
    >>> from datetime import datetime, timezone
    >>> encode_state({"cursor": 3, "timestamp": format_utc(datetime(2024, 5, 1, tzinfo=timezone.utc))})
    '{"cursor":3,"schema_version":1,"timestamp":"2024-05-01T00:00:00.000000Z"}'
    >>> decode_state('{"cursor":3,"schema_version":1}')
    {'cursor': 3}
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from stateful._chunked_json import loads

__all__ = [
    "DEFAULT_KEY",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "canonical_json",
    "decode_state",
    "encode_state",
    "format_utc",
]

#: The document key ``@stateful`` stores its watermark under.
DEFAULT_KEY = "watermark"
#: Version of the document written by :func:`encode_state`.
SCHEMA_VERSION = 1
#: ``MIGRATIONS[n]`` turns a schema_version ``n`` document into a schema_version ``n + 1`` one,
#: so a later release can still load state saved by this one. Empty while only version 1 exists.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def canonical_json(value: Any, *, sort_keys: bool = True) -> str:
    """Compact JSON text of ``value``: no spaces, no ASCII escaping, no NaN or infinity.

    Args:
        value: a JSON value.
        sort_keys: sort object keys (the canonical form); ``False`` keeps their order, for text
            that must come back exactly as it was given.

    Raises:
        ValueError: ``value`` holds NaN or an infinity.
        TypeError: ``value`` is not JSON.

    Example:
        >>> canonical_json({"b": [1, 2], "a": "é"})
        '{"a":"é","b":[1,2]}'
    """
    return _ENCODERS[sort_keys].encode(value)


#: The encoders of :func:`canonical_json`, sorted and not, built once (``json.dumps`` with these
#: options builds one per call, a third of its cost on a small value; an encoder is stateless).
_ENCODERS = {
    sort: json.JSONEncoder(sort_keys=sort, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for sort in (True, False)
}


@functools.lru_cache(maxsize=1 << 16)
def format_utc(moment: datetime) -> str:
    """``moment`` in UTC, with microseconds and a ``Z``: ``2024-05-01T00:00:00.000000Z``.

    Cached because every save writes every ``seen`` timestamp again (most unchanged since the
    last save); equal aware datetimes are one instant whatever their zone, so one text fits.

    Example:
        >>> from datetime import timedelta
        >>> format_utc(datetime(2024, 5, 1, 2, tzinfo=timezone(timedelta(hours=2))))
        '2024-05-01T00:00:00.000000Z'
    """
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def encode_state(fields: dict[str, Any]) -> str:
    """The stored text of a watermark's JSON ``fields``, marked with :data:`SCHEMA_VERSION`."""
    return canonical_json({**fields, "schema_version": SCHEMA_VERSION})


def decode_state(text: str | bytes) -> dict[str, Any]:
    """The fields of a stored document, brought to :data:`SCHEMA_VERSION` (marker dropped).

    Strict: a repeated key, NaN or infinity, anything but an object, and a missing or newer
    schema version are refused.

    Raises:
        ValueError: the message says what is wrong with the text.
    """
    try:
        doc = loads(text)  # a large text in small steps: the event loop keeps the interpreter lock
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"watermark state is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"watermark state must be a JSON object, got {type(doc).__name__}")
    return _upgrade(doc)


def _upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    if "schema_version" not in doc:
        raise ValueError(
            "watermark state has no schema_version: it was not written by Watermark.to_state_json()"
        )
    version = doc.pop("schema_version")
    if type(version) is not int or version < 1:
        raise ValueError(f"watermark state has an invalid schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"watermark state has schema_version {version}, written by a newer airflow-stateful; "
            f"this release reads up to schema_version {SCHEMA_VERSION}. Upgrade airflow-stateful."
        )
    for step in range(version, SCHEMA_VERSION):
        doc = MIGRATIONS[step](doc)
    return doc
