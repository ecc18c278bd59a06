"""Set and rewind from the page: the request bodies and the edits, on :mod:`stateful._edits`.

The semantics are ``stateful set`` and ``stateful rewind``'s (the same core): compare-and-set
against the version the operator saw, a required reason kept with the new version, and the
value validated as a watermark before anything is written. The writer recorded is
``Airflow UI set by <user>`` (or ``rewind to version N``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from stateful import _edits as edits
from stateful._document import MODEL_VERSION_KEY, canonical_json, format_utc
from stateful._lag import max_lag_setting
from stateful.backends.base import Address, StateRecord, version_conflict
from stateful.cli._documents import AnyWatermark, one_line, validate
from stateful.plugin._rows import Located, row

__all__ = ["RewindBody", "SetBody", "rewind", "set_fields"]

# Fields a set cannot change the way others are: what it says instead.
_NOT_SET = {
    "schema_version": "the package writes it",
    MODEL_VERSION_KEY: "the trigger's model writes it",
}


class RewindBody(BaseModel):
    """``POST .../rewind``: restore a kept version as a new one."""

    model_config = ConfigDict(extra="forbid")

    expected_version: int = Field(description="The version you looked at (compare-and-set).")
    to_version: int = Field(description="The kept version to restore (see the history).")
    reason: str = Field(description="Why, kept with the new version (one line, at most 500 characters).")


class SetBody(BaseModel):
    """``POST .../set``: change fields of the stored watermark."""

    model_config = ConfigDict(extra="forbid")

    expected_version: int = Field(description="The version you looked at (compare-and-set).")
    fields: dict[str, JsonValue] = Field(
        description='New values: "timestamp" (ISO 8601 with a time zone, or null), "cursor" (JSON), '
        '"seen" ({} clears it) and the fields of your model.'
    )
    reason: str = Field(description="Why, kept with the new version (one line, at most 500 characters).")
    drop_fields: list[str] = Field(
        default_factory=list, description="Stored fields your model no longer has, to remove."
    )


def _timestamp(value: Any) -> str | None:
    if value is None:
        return None
    moment = None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            moment = None
    if moment is None or moment.utcoffset() is None:
        raise edits.EditInputError(
            f"fields.timestamp: {value!r} is not an ISO 8601 date-time with a time zone (or null). Write "
            f"it like 2025-06-02T09:00:00Z or 2025-06-02T11:00:00+02:00."
        )
    return format_utc(moment.astimezone(timezone.utc))


def _changed(
    located: Located, record: StateRecord, new_value: str, action: str, user: str, reason: str
) -> dict[str, Any]:
    """Write ``new_value`` over ``record`` (compare-and-set); the new row."""
    where = (record.namespace, record.name, record.key)
    if new_value == record.value:
        written, version = False, record.version
    else:
        version = edits.write_edit(
            located.store,
            where,
            record.version,
            new_value,
            updated_by=f"Airflow UI {action} by {user}",
            reason=reason,
        )
        written = True
    stored = located.store.read(*where)
    now = datetime.now(timezone.utc)
    return {
        "row": row(located, stored or record, now, max_lag_setting()),
        "written": written,
        "version": version,
    }


def _reason(text: str) -> str:
    """The required reason, checked as the CLI checks ``--reason``."""
    checked = edits.check_reason(text, "reason")
    assert checked is not None  # only None for None
    return checked


def _current(record: StateRecord, expected: int) -> None:
    if record.version != expected:
        raise version_conflict(
            "the store", Address(record.namespace, record.name, record.key), expected, record.version
        )


def rewind(located: Located, record: StateRecord, body: RewindBody, user: str) -> dict[str, Any]:
    """Restore ``body.to_version`` of ``record`` as a new version.

    Raises:
        StateConflictError: ``record`` is not ``body.expected_version`` (or changed meanwhile).
        VersionNotKeptError: the history does not keep ``body.to_version``.
        EditInputError: no reason, or the kept version does not validate as a watermark.
    """
    reason = _reason(body.reason)
    _current(record, body.expected_version)
    versions = list(located.store.history(record.namespace, record.name, record.key)) or [record]
    found = edits.rewind_target(versions, body.to_version)
    try:
        validate(found.value, AnyWatermark)
    except ValueError as exc:
        raise edits.EditInputError(
            f"version {found.version} does not validate as a watermark: {one_line(exc)}."
        ) from None
    return _changed(located, record, found.value, f"rewind to version {found.version}", user, reason)


def set_fields(located: Located, record: StateRecord, body: SetBody, user: str) -> dict[str, Any]:
    """Set ``body.fields`` (and drop ``body.drop_fields``) of ``record``, validated as a watermark.

    Raises:
        StateConflictError: ``record`` is not ``body.expected_version`` (or changed meanwhile).
        EditInputError: no reason, nothing to set, a field that cannot be set, or a result that
            does not validate.
    """
    reason = _reason(body.reason)
    if not body.fields and not body.drop_fields:
        raise edits.EditInputError('nothing to set: give "fields" (e.g. {"cursor": 41}) or "drop_fields".')
    _current(record, body.expected_version)
    try:
        doc = json.loads(record.value)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise edits.EditInputError("the stored value is not a JSON object; `stateful reset` replaces it.")
    for field in body.drop_fields:
        if field not in doc or field in ("timestamp", "cursor", "seen", *_NOT_SET):
            raise edits.EditInputError(f"drop_fields: {field!r} is not a stored field of your model.")
        del doc[field]
    for field, value in body.fields.items():
        if field in _NOT_SET:
            raise edits.EditInputError(f"fields.{field} cannot be set: {_NOT_SET[field]}.")
        if field == "timestamp":
            doc["timestamp"] = _timestamp(value)
        elif field == "seen":
            if value != {}:
                raise edits.EditInputError(
                    "fields.seen can only be cleared: give {} (every key counts as new)."
                )
            doc["seen"] = {}
        elif field == "cursor":
            old = doc.get("cursor")
            if None not in (old, value) and edits.json_kind(old) != edits.json_kind(value):
                raise edits.EditInputError(
                    f"fields.cursor: the stored cursor is {edits.json_kind(old)} {json.dumps(old)}, the new "
                    f"one would be {edits.json_kind(value)}. Give it as the same JSON type."
                )
            doc["cursor"] = value
        else:
            doc[field] = value
    try:
        new_value = validate(canonical_json(doc), AnyWatermark).to_state_json()
    except ValueError as exc:
        raise edits.EditInputError(
            f"the new value does not validate as a watermark: {one_line(exc)}."
        ) from None
    return _changed(located, record, new_value, "set", user, reason)
