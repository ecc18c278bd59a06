"""The stored watermark document: its key, schema and model versions, canonical JSON, UTC times.

:class:`~stateful.types.Watermark` is the model; this module is how it is written down. The
JSON text is canonical (compact, sorted keys, no ASCII escaping), so two equal watermarks are
the same bytes: the drivers skip a save whose text equals what is stored. Times are written in
UTC with microseconds and a ``Z``, fixed width, so they are exact and sort as text.

Two versions are recorded. ``schema_version`` is this package's layout of the document (its
upgrades are :data:`MIGRATIONS`). ``model_version`` is the user's model's
(:attr:`Watermark.model_version <stateful.types.Watermark.model_version>`, upgraded by its
``migrate()``): written only when it is not 1, so a model that never changed writes the same
bytes as before model versions existed, and a document without it is model version 1.

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
    "MODEL_VERSION_KEY",
    "SCHEMA_VERSION",
    "NewerModelVersion",
    "canonical_json",
    "decode_state",
    "encode_state",
    "format_utc",
    "model_version_of",
    "stored_model_version",
    "upgrade_model",
]

#: The document key ``@stateful`` stores its watermark under.
DEFAULT_KEY = "watermark"
#: Version of the document written by :func:`encode_state`.
SCHEMA_VERSION = 1
#: ``MIGRATIONS[n]`` turns a schema_version ``n`` document into a schema_version ``n + 1`` one,
#: so a later release can still load state saved by this one. Empty while only version 1 exists.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
#: The document field recording the model version (absent: model version 1).
MODEL_VERSION_KEY = "model_version"


class NewerModelVersion(ValueError):
    """A stored document was written by a newer version of the model than the one loading it.

    The load path turns it into :class:`~stateful.errors.StateModelVersionError`, which names
    the address and the store.

    Attributes:
        stored: the model version the document records.
        code: the model version of the class loading it.
    """

    def __init__(self, model: str, stored: int, code: int) -> None:
        self.stored = stored
        self.code = code
        super().__init__(
            f"the state was written by model version {stored} of {model}, newer than this code's "
            f"model version {code}"
        )


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


def stored_model_version(doc: dict[str, Any]) -> int:
    """The model version a decoded document records (1 when it records none).

    Raises:
        ValueError: the recorded version is not an integer of at least 1.

    Example:
        >>> stored_model_version({"cursor": 3}), stored_model_version({"model_version": 4})
        (1, 4)
    """
    version = doc.get(MODEL_VERSION_KEY, 1)
    if type(version) is not int or version < 1:
        raise ValueError(f"watermark state has an invalid {MODEL_VERSION_KEY} {version!r}")
    return version


def upgrade_model(
    doc: dict[str, Any], target: int, migrate: Callable[[int, dict[str, Any]], object], model: str
) -> tuple[dict[str, Any], int]:
    """``doc`` (decoded, without ``seen``) brought to model version ``target`` by ``migrate``.

    Returns the upgraded fields, without the version marker, and the version ``doc`` was at.

    Raises:
        NewerModelVersion: ``doc`` records a newer model version than ``target``.
        ValueError: an invalid recorded version, or a ``migrate`` step that raised or returned
            something else than a dict (the message names the step).

    Example:
        >>> def migrate(version, data):
        ...     return {**data, "region": "eu"} if version == 1 else data
        >>> upgrade_model({"cursor": 3}, 2, migrate, "Orders")
        ({'cursor': 3, 'region': 'eu'}, 1)
    """
    stored = stored_model_version(doc)
    doc.pop(MODEL_VERSION_KEY, None)
    if stored > target:
        raise NewerModelVersion(model, stored, target)
    name = model.rpartition(".")[2]
    for step in range(stored, target):
        where = f"{name}.migrate({step}, data), upgrading model version {step} to {step + 1},"
        try:
            upgraded = migrate(step, doc)
        except Exception as exc:  # the user's code: whatever it raises, the step is named
            raise ValueError(f"{where} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(upgraded, dict):
            raise ValueError(f"{where} returned a {type(upgraded).__name__}, not a dict of the fields")
        doc = upgraded
    return doc, stored


def model_version_of(text: str | bytes) -> int | None:
    """The model version a stored text records; ``None`` if the text is not a watermark document.

    Example:
        >>> model_version_of('{"model_version":2,"schema_version":1}'), model_version_of("[]")
        (2, None)
    """
    try:
        return stored_model_version(decode_state(text))
    except ValueError:
        return None


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
