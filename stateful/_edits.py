"""Changing a stored watermark on purpose: one implementation behind ``stateful set``/``rewind``
and the Airflow UI plugin's set and rewind.

Every edit is compare-and-set against the version the operator looked at (a trigger or another
operator that saved in between makes it fail with :class:`~stateful.errors.StateConflictError`,
and nothing is written), records who made it (``updated_by``) and why (``reason``, one line), and
is kept in the store's history like any save, so it can itself be rewound. No I/O but the store's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from stateful._address import shown_address, suggest
from stateful._document import format_utc
from stateful.backends.base import StateBackend, StateRecord
from stateful.errors import StatefulError

__all__ = [
    "MAX_REASON_CHARS",
    "EditInputError",
    "VersionNotKeptError",
    "check_reason",
    "json_kind",
    "rewind_target",
    "write_edit",
]

#: The longest reason kept (a sentence or two, and a ticket number).
MAX_REASON_CHARS = 500


class EditInputError(StatefulError, ValueError):
    """An edit refused for what was asked (a reason, a field, a value); nothing was written."""


class VersionNotKeptError(StatefulError, LookupError):
    """The version (or moment) to rewind to is not in the watermark's kept history."""


def check_reason(reason: str | None, what: str = "--reason") -> str | None:
    """The reason as stored: one line of text, stripped, at most :data:`MAX_REASON_CHARS` long.

    ``what`` names it in the messages (the CLI's option, the API's field).

    Raises:
        EditInputError: it is empty, spans lines (or holds other control characters) or is too long.

    Example:
        >>> check_reason("  replay Monday's files, INC-4211 ")
        "replay Monday's files, INC-4211"
        >>> check_reason(None) is None
        True
    """
    if reason is None:
        return None
    text = reason.strip()
    if not text:
        raise EditInputError(f"{what} is empty: say why you make this change, or leave the option out.")
    if any(not c.isprintable() for c in text):
        raise EditInputError(
            f"{what} must be one line of text (no line breaks, tabs or other control characters): "
            "`stateful history` shows it on one line."
        )
    if len(text) > MAX_REASON_CHARS:
        raise EditInputError(
            f"{what} is {len(text)} characters long; at most {MAX_REASON_CHARS} are kept. Shorten it, "
            f"e.g. to a sentence and a ticket number."
        )
    return text


def json_kind(value: Any) -> str:
    """The JSON type of a value, as messages name it.

    Example:
        >>> json_kind(42), json_kind("42"), json_kind([4, 2])
        ('integer', 'string', 'list')
    """
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}.get(
        type(value), type(value).__name__
    )


def rewind_target(versions: Sequence[StateRecord], wanted: int | datetime) -> StateRecord:
    """The kept version to restore: version ``wanted``, or the one that was current at ``wanted``.

    ``versions`` is the store's history, newest first (not empty).

    Raises:
        VersionNotKeptError: no kept version matches; the message names the versions kept.
    """
    current, oldest = versions[0], versions[-1]
    where = shown_address(current.namespace, current.name, current.key)
    if isinstance(wanted, int):
        found = next((r for r in versions if r.version == wanted), None)
        missing = f"version {wanted} is not in the history of {where}"
    else:
        found = next((r for r in versions if r.updated_at <= wanted), None)
        missing = f"no kept version of {where} was current at {format_utc(wanted)}"
    if found is None:
        raise VersionNotKeptError(
            f"{missing}: it keeps versions {oldest.version} ({format_utc(oldest.updated_at)}) to "
            f"{current.version} ({format_utc(current.updated_at)}). "
            f"`{suggest('history', current.namespace, current.name, current.key)}` lists them."
        )
    return found


def write_edit(
    store: StateBackend,
    where: tuple[str, str, str],
    expected_version: int | None,
    new_value: str,
    *,
    updated_by: str,
    reason: str | None,
) -> int:
    """Write ``new_value`` at ``where`` (namespace, name, key) if it is still ``expected_version``.

    Returns:
        The version written.

    Raises:
        StateConflictError: the stored version is no longer ``expected_version``; nothing was written.
    """
    namespace, name, key = where
    return store.write(
        namespace,
        name,
        key,
        new_value,
        expected_version=expected_version,
        updated_by=updated_by,
        reason=reason,
    )
