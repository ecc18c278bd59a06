"""Stored watermark documents as the command line shows, checks, changes and compares them.

Without ``--model`` a document is checked against :class:`AnyWatermark`: the fields every
watermark has are validated strictly, and the fields of a user's subclass, and the model version
it records, are kept as they are. With ``--model`` the trigger's own model validates everything,
upgrading a state saved by an earlier model version as the trigger would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, JsonValue

from stateful._address import partition_of
from stateful._document import DEFAULT_KEY, MODEL_VERSION_KEY, format_utc
from stateful.backends.base import StateRecord
from stateful.cli._errors import UsageError
from stateful.cli._values import load_object
from stateful.types import Watermark

__all__ = [
    "AnyWatermark",
    "Summary",
    "changes",
    "edit_fields",
    "empty_state",
    "load_model",
    "model_for",
    "record_fields",
    "record_json",
    "summarize",
    "validate",
]

_BASE_FIELDS = ("timestamp", "cursor", "seen", "schema_version")
_SHOWN_KEYS = 5


class AnyWatermark(Watermark[JsonValue]):
    """Any watermark document: the common fields validated, a subclass's own fields kept.

    Whatever model version the document records is kept too (as one of those fields): without
    the model, there is nothing to upgrade it with, and nothing to compare it to.
    """

    model_config = ConfigDict(extra="allow")

    @classmethod
    def _upgrade_model(cls, doc: dict[str, Any]) -> tuple[dict[str, Any], int]:
        return doc, cls.model_version


def load_model(path: str | None) -> type[Watermark[Any]]:
    """The model named by ``--model``: a Watermark subclass, or a ``@stateful`` trigger's model."""
    if path is None:
        return AnyWatermark
    value = load_object(path, "--model")
    spec = getattr(getattr(value, "run", None), "__stateful__", None) or getattr(
        getattr(value, "poke", None), "__stateful__", None
    )
    if spec is not None:
        model: type[Watermark[Any]] = spec.model
        return model
    if isinstance(value, type) and issubclass(value, Watermark):
        return value
    raise UsageError(
        f"--model {path}: {value!r} is neither a Watermark model nor a class whose run() or poke() "
        f"is decorated with @stateful."
    )


def model_for(key: str, model: type[Watermark[Any]]) -> type[Watermark[Any]] | None:
    """``model`` for the decorator's document keys (a partition's too), ``None`` (JSON only) for others."""
    return model if key == DEFAULT_KEY or partition_of(key) is not None else None


def model_name(model: type[Watermark[Any]]) -> str:
    return "any Watermark" if model is AnyWatermark else f"{model.__module__}.{model.__qualname__}"


def validate(text: str, model: type[Watermark[Any]]) -> Watermark[Any]:
    """Load ``text`` with ``model``; a ValueError says what is wrong."""
    watermark = model.from_state_json(text)
    if model is AnyWatermark and isinstance(watermark.cursor, dict):
        raise ValueError("cursor is a JSON object, which is not ordered; a cursor must be totally ordered")
    return watermark


def empty_state(current: str, model: type[Watermark[Any]]) -> str:
    """The text ``stateful reset`` writes over ``current``: an empty watermark of ``model``.

    Without ``--model`` the stored model version is kept, so the trigger's model loads the
    empty state as its own (its defaults apply; no ``migrate()`` step runs on it).

    Example:
        >>> empty_state('{"cursor":4,"model_version":3,"schema_version":1,"seen":{}}', AnyWatermark)
        '{"cursor":null,"model_version":3,"schema_version":1,"seen":{},"timestamp":null}'
    """
    version = summarize(current).doc or {}
    if model is AnyWatermark and MODEL_VERSION_KEY in version:
        return AnyWatermark.model_validate({MODEL_VERSION_KEY: version[MODEL_VERSION_KEY]}).to_state_json()
    return model().to_state_json()


# Fields `--field`/`--drop-field` leave alone, and what changes each instead.
_OWN_OPTION = {
    "timestamp": "use --timestamp",
    "cursor": "use --cursor",
    "seen": "use --clear-seen",
    "schema_version": "the package writes it",
    MODEL_VERSION_KEY: "pass --model MODULE:CLASS: the model's version is written",
}


def edit_fields(doc: dict[str, Any], assignments: tuple[str, ...], drops: tuple[str, ...]) -> list[str]:
    """Apply ``--drop-field NAME`` and ``--field NAME=JSON`` to a stored document, in place.

    Returns the names of fields that were not stored before (for a note: without ``--model``
    nothing checks them against the model).

    Raises:
        UsageError: a field to drop that is not stored, a value that is not JSON, a name that is
            empty or one of the fields other options change.

    Example:
        >>> doc = {"cursor": 1, "legacy": True, "schema_version": 1}
        >>> edit_fields(doc, ('region="eu"', "batches=3"), ("legacy",))
        ['region', 'batches']
        >>> doc
        {'cursor': 1, 'schema_version': 1, 'region': 'eu', 'batches': 3}
    """
    for field in drops:
        _check_name(field, "--drop-field")
        if field not in doc:
            stored = ", ".join(sorted(k for k in doc if k not in _OWN_OPTION)) or "none"
            raise UsageError(
                f"--drop-field {field}: no field {field!r} is stored (its own fields: {stored})."
            )
        del doc[field]
    added = []
    for assignment in assignments:
        field, sep, text = assignment.partition("=")
        if not sep:
            raise UsageError(f"--field {assignment}: write it as NAME=JSON, e.g. --field 'region=\"eu\"'.")
        _check_name(field, "--field")
        try:
            value = json.loads(text)
        except ValueError:
            raise UsageError(
                f"--field {assignment}: {text!r} is not JSON. Quote a string as JSON, and the whole "
                f"option for the shell: --field '{field}=\"{text}\"'."
            ) from None
        if field not in doc:
            added.append(field)
        doc[field] = value
    return added


def _check_name(field: str, option: str) -> None:
    if not field:
        raise UsageError(f"{option}: the field name is empty.")
    if field in _OWN_OPTION:
        raise UsageError(f"{option} {field}: {field} is not changed this way; {_OWN_OPTION[field]}.")


@dataclass(frozen=True)
class Summary:
    """What ``list`` and ``show`` say about one stored document."""

    doc: dict[str, Any] | None
    problem: str | None
    size_bytes: int

    @property
    def timestamp(self) -> str | None:
        return None if self.doc is None else self.doc.get("timestamp")

    @property
    def cursor(self) -> Any:
        return None if self.doc is None else self.doc.get("cursor")

    @property
    def seen(self) -> int | None:
        seen = None if self.doc is None else self.doc.get("seen")
        return len(seen) if isinstance(seen, dict) else None

    @property
    def fields(self) -> dict[str, Any]:
        """The fields of a user's subclass (and the model version, when the document records one)."""
        doc = self.doc or {}
        return {k: v for k, v in doc.items() if k not in _BASE_FIELDS}

    def line(self) -> str:
        """One line: ``timestamp=..., cursor=..., seen=3 keys`` (or the problem)."""
        if self.doc is None:
            return f"INVALID: {self.problem}"
        seen = self.seen
        keys = f"{seen} key{'' if seen == 1 else 's'}"
        text = f"timestamp={self.timestamp or 'null'}, cursor={short(self.cursor)}, seen={keys}"
        text += "".join(f", {k}={short(v)}" for k, v in self.fields.items())
        return text if self.problem is None else f"{text} (INVALID: {self.problem})"

    def as_json(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "cursor": self.cursor,
            "seen_keys": self.seen,
            "fields": self.fields,
            "size_bytes": self.size_bytes,
            "valid": self.problem is None,
            "problem": self.problem,
        }


def summarize(text: str, model: type[Watermark[Any]] | None = AnyWatermark) -> Summary:
    """Summarize a stored document, whatever state it is in (a corrupt one must still show).

    ``model=None`` checks only that it is a JSON object: a document under a key other than the
    decorator's ``"watermark"`` is not a watermark.
    """
    size = len(text.encode())
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return Summary(None, f"not JSON ({exc})", size)
    if not isinstance(doc, dict):
        return Summary(None, f"a JSON {type(doc).__name__}, not an object", size)
    if model is None:
        return Summary(doc, None, size)
    try:
        validate(text, model)
    except ValueError as exc:
        return Summary(doc, f"does not validate as {model_name(model)}: {one_line(exc)}", size)
    return Summary(doc, None, size)


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short(value: Any, limit: int = 60) -> str:
    """A JSON value in at most ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def record_fields(record: StateRecord) -> dict[str, Any]:
    """Where a record is and which version, for JSON output and export lines."""
    return {
        "namespace": record.namespace,
        "name": record.name,
        "key": record.key,
        "version": record.version,
        "updated_at": format_utc(record.updated_at),
        "updated_by": record.updated_by,
        "reason": record.reason,
    }


def record_json(record: StateRecord, summary: Summary) -> dict[str, Any]:
    """A stored record for ``--json`` output."""
    return {**record_fields(record), **summary.as_json()}


def changes(before: str | None, after: str) -> dict[str, dict[str, Any]]:
    """What differs between two documents, field by field; ``seen`` as keys added and removed.

    Example:
        >>> old = '{"cursor":1,"schema_version":1,"seen":{"a":null},"timestamp":null}'
        >>> new = '{"cursor":2,"schema_version":1,"seen":{"b":null},"timestamp":null}'
        >>> changes(old, new)["cursor"]
        {'before': 1, 'after': 2}
        >>> changes(old, new)["seen"]
        {'before': 1, 'after': 1, 'added': ['b'], 'removed': ['a']}
    """
    old = _as_doc(before)
    new = _as_doc(after)
    result: dict[str, dict[str, Any]] = {}
    for field in sorted(old.keys() | new.keys(), key=_field_order):
        a, b = old.get(field), new.get(field)
        if field == "seen":
            a_keys = set(a) if isinstance(a, Mapping) else set()
            b_keys = set(b) if isinstance(b, Mapping) else set()
            if a != b:
                result[field] = {
                    "before": len(a_keys),
                    "after": len(b_keys),
                    "added": sorted(b_keys - a_keys),
                    "removed": sorted(a_keys - b_keys),
                }
        elif a != b:
            result[field] = {"before": a, "after": b}
    return result


def change_lines(diff: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``changes()`` for people, one line per changed field."""
    if not diff:
        return ["(no change)"]
    lines = []
    for field, change in diff.items():
        if field == "seen":
            parts = [f"{change['before']} -> {change['after']} keys"]
            for verb in ("added", "removed"):
                keys = change[verb]
                if keys:
                    shown = ", ".join(keys[:_SHOWN_KEYS]) + (", ..." if len(keys) > _SHOWN_KEYS else "")
                    parts.append(f"{len(keys)} {verb}: {shown}")
            lines.append(f"{field:<10} " + "; ".join(parts))
        else:
            lines.append(f"{field:<10} {short(change['before'])} -> {short(change['after'])}")
    return lines


def _as_doc(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {"(value)": text}
    return doc if isinstance(doc, dict) else {"(value)": doc}


def _field_order(field: str) -> tuple[int, str]:
    return (_BASE_FIELDS.index(field) if field in _BASE_FIELDS else len(_BASE_FIELDS), field)
