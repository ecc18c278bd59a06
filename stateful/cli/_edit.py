"""``stateful set``, ``reset``, ``rewind`` and ``delete``: changing a watermark, safely.

Every change reads the stored version, shows what would change, asks (unless ``--yes``), and
writes with compare-and-set against the version it read: if a trigger or another operator
saved in between, the change is refused (exit status 3) and nothing is overwritten.

Every write records who made it (``updated_by``: the command, the user and the host, e.g.
``stateful set by alice@ops-1``) and, with ``--reason``, why; both are kept with the version and
shown by ``stateful show`` and ``stateful history``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from stateful import _edits as edits
from stateful._address import shown_address, suggest
from stateful._document import MODEL_VERSION_KEY, canonical_json, format_utc
from stateful.backends.base import StateRecord
from stateful.cli._common import address, model_option, read_existing, store_options, yes_option
from stateful.cli._documents import (
    AnyWatermark,
    change_lines,
    changes,
    edit_fields,
    empty_state,
    load_model,
    model_name,
    one_line,
    summarize,
    validate,
)
from stateful.cli._errors import CONFLICT, FAILURE, CliError, NotFoundError, UsageError
from stateful.cli._output import Output
from stateful.cli._store import StoreChoice, StoreOptions, choose_store, writer
from stateful.cli._values import parse_cursor, parse_timestamp, parse_version_or_time
from stateful.errors import StateConflictError
from stateful.types import Watermark

__all__ = [
    "MAX_REASON_CHARS",
    "check_reason",
    "delete_command",
    "reason_option",
    "reset_command",
    "rewind_command",
    "set_command",
]

F = TypeVar("F", bound=Callable[..., Any])
_NONE = {"none", "null"}

MAX_REASON_CHARS = edits.MAX_REASON_CHARS


def dry_run_option(f: F) -> F:
    return click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")(f)


def check_reason(reason: str | None) -> str | None:
    """``--reason`` as stored: one line of text, stripped, at most :data:`MAX_REASON_CHARS` long.

    The rule is :func:`stateful._edits.check_reason`'s (the Airflow UI plugin's too).

    Raises:
        UsageError: it is empty, spans lines (or holds other control characters) or is too long.

    Example:
        >>> check_reason("  replay Monday's files, INC-4211 ")
        "replay Monday's files, INC-4211"
        >>> check_reason(None) is None
        True
    """
    try:
        return edits.check_reason(reason)
    except edits.EditInputError as exc:
        raise UsageError(str(exc)) from None


def reason_option(f: F) -> F:
    """``--reason TEXT``: why, stored with the version this command writes (optional)."""
    return click.option(
        "--reason",
        metavar="TEXT",
        help="Why you make this change, kept with the version it writes and shown by `stateful history` "
        "and `stateful show` (one line, at most 500 characters).",
    )(f)


def _conflict(exc: StateConflictError, what: str) -> CliError:
    found = "nothing stored" if exc.actual_version is None else f"version {exc.actual_version}"
    read = "nothing stored" if exc.expected_version is None else f"version {exc.expected_version}"
    shown = shown_address(exc.namespace, exc.name, exc.key)
    return CliError(
        f"{shown} changed while {what}: it was {read} when read, it is "
        f"{found} now (a trigger or another operator saved it). Nothing was written. Look again "
        f"(`{suggest('show', exc.namespace, exc.name, exc.key)}`) and re-run the command if it still "
        f"applies; stop or pause the trigger first if it keeps advancing.",
        exit_code=CONFLICT,
    )


def _change(
    out: Output,
    choice: StoreChoice,
    where: tuple[str, str, str],
    current: StateRecord | None,
    new_value: str,
    *,
    action: str,
    yes: bool,
    dry_run: bool,
    reason: str | None,
    notes: tuple[str, ...] = (),
) -> None:
    """Show the change, ask, and write it with compare-and-set against ``current``."""
    namespace, name, key = where
    diff = changes(None if current is None else current.value, new_value)
    before = None if current is None else current.version
    after = (before or 0) + 1
    result: dict[str, Any] = {
        "action": action,
        "namespace": namespace,
        "name": name,
        "key": key,
        "store": choice.description,
        "previous_version": before,
        "version": None,
        "dry_run": dry_run,
        "changes": diff,
        "updated_by": writer(action),
        "reason": reason,
    }
    if not out.as_json:
        state = "nothing stored yet" if current is None else f"version {before}"
        out.line(f"{action}: {shown_address(namespace, name, key)} in {choice.description} ({state})")
        for line in change_lines(diff):
            out.line(f"  {line}")
        if reason is not None:
            out.line(f"  reason: {reason}")
        for note in notes:
            out.line(f"  note: {note}")
    if not diff or dry_run:
        out.note("Nothing to change; nothing was written." if not diff else "Dry run: nothing was written.")
        if out.as_json:
            out.json(result)
        return
    out.confirm(f"Write version {after} of {shown_address(namespace, name, key)}?", yes=yes)
    try:
        version = edits.write_edit(
            choice.sync(), where, before, new_value, updated_by=result["updated_by"], reason=reason
        )
    except StateConflictError as exc:
        raise _conflict(exc, "you were deciding") from None
    if out.as_json:
        out.json({**result, "version": version})
    else:
        out.line(f"Wrote version {version}. Check it with `{suggest('show', namespace, name, key)}`.")


def _refused_set(
    exc: ValueError,
    changed: set[str],
    current: StateRecord | None,
    watermark_model: type[Watermark[Any]],
    where: tuple[str, str, str],
) -> CliError:
    """Why ``set`` refused: the input (exit 2), or the stored value in what ``set`` leaves as it is (1).

    The input is to blame when the stored value validates, or when a field given on the command
    line is among those that do not; otherwise the stored value was already invalid, and the
    input was fine.
    """
    problem = f"{model_name(watermark_model)}: {one_line(exc)}"
    locations = (
        {str(e["loc"][0]) for e in exc.errors() if e["loc"]} if isinstance(exc, ValidationError) else set()
    )
    stored_valid = True
    if current is not None:
        try:
            validate(current.value, watermark_model)
        except ValueError:
            stored_valid = False
    if stored_valid or locations & changed:
        return UsageError(f"the new value does not validate as {problem}")
    namespace, name, key = where
    return CliError(
        f"the stored value of {shown_address(namespace, name, key)} does not validate as {problem}, in "
        f"what this command leaves as it is (your input was fine). The stored value does not validate "
        f"either; nothing was written. Inspect it (`{suggest('show', namespace, name, key)}`), "
        f"then fix the fields named with --field NAME=JSON and --drop-field NAME, fix the model, or "
        f"reset it on purpose (`{suggest('reset', namespace, name, key)}`).",
        exit_code=FAILURE,
    )


@click.command("set")
@address
@click.option("--timestamp", metavar="ISO|none", help="New timestamp: ISO 8601 with a time zone, or 'none'.")
@click.option(
    "--cursor", metavar="VALUE", help='New cursor: JSON (42, "42", [1, 2], null) or else taken as text.'
)
@click.option("--clear-seen", is_flag=True, help="Forget the keys seen at the boundary.")
@click.option(
    "--field",
    "assignments",
    multiple=True,
    metavar="NAME=JSON",
    help="Set a field of your model to a JSON value (repeatable): --field 'region=\"eu\"'.",
)
@click.option(
    "--drop-field",
    "drops",
    multiple=True,
    metavar="NAME",
    help="Remove a stored field your model no longer has (repeatable).",
)
@click.option("--create", is_flag=True, help="Create the watermark if nothing is stored yet.")
@reason_option
@model_option
@yes_option
@dry_run_option
@store_options
def set_command(
    namespace: str,
    name: str,
    key: str,
    timestamp: str | None,
    cursor: str | None,
    clear_seen: bool,
    assignments: tuple[str, ...],
    drops: tuple[str, ...],
    create: bool,
    reason: str | None,
    model: str | None,
    yes: bool,
    dry_run: bool,
    where: StoreOptions,
    as_json: bool,
) -> None:
    """Set a watermark's timestamp, cursor or fields (backwards too), validated and compare-and-set.

    Works on a stored value that no longer validates against your model (the fields changed):
    --field and --drop-field repair it, --model MODULE:CLASS checks the result as the trigger
    will load it. Stop or pause the trigger first: while it runs it keeps its own copy, and its
    next save fails with a version conflict (it then restarts from what you set).

    \b
    Examples:
      stateful set files '/data/landing/*.csv' --timestamp 2025-06-02T09:00:00Z
      stateful set orders db.public.orders --cursor 41870 --model dags.orders:OrdersTrigger
      stateful set orders db.public.orders --drop-field legacy --field 'region="eu"'
    """
    if timestamp is None and cursor is None and not clear_seen and not assignments and not drops:
        raise UsageError(
            "nothing to set: give --timestamp, --cursor, --field, --drop-field and/or --clear-seen."
        )
    reason = check_reason(reason)
    out = Output(as_json)
    watermark_model = load_model(model)
    new_timestamp: datetime | None = None
    if timestamp is not None and timestamp.strip().lower() not in _NONE:
        new_timestamp = parse_timestamp(timestamp, "--timestamp")
    choice = choose_store(where)
    current = choice.sync().read(namespace, name, key)
    if current is None and not create:
        try:
            read_existing(choice, namespace, name, key)
        except NotFoundError as exc:
            raise NotFoundError(f"{exc} To create it, pass --create.") from None
    try:
        doc = json.loads(watermark_model().to_state_json() if current is None else current.value)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise CliError(
            f"the stored value of {shown_address(namespace, name, key)} is not a JSON object; "
            f"`{suggest('reset', namespace, name, key)}` replaces it."
        )
    if timestamp is not None:
        doc["timestamp"] = None if new_timestamp is None else format_utc(new_timestamp)
    if cursor is not None:
        value = parse_cursor(cursor)
        old = doc.get("cursor")
        if (
            watermark_model is AnyWatermark
            and None not in (old, value)
            and edits.json_kind(old) != edits.json_kind(value)
        ):
            raise UsageError(
                f"--cursor {cursor}: the stored cursor is {edits.json_kind(old)} {json.dumps(old)}, the new "
                f"one would be {edits.json_kind(value)}. Write it as the same JSON type, or pass --model "
                f"MODULE:CLASS to validate against the trigger's model."
            )
        doc["cursor"] = value
    if clear_seen:
        doc["seen"] = {}
    added = edit_fields(doc, assignments, drops)
    notes: tuple[str, ...] = ()
    if added and watermark_model is AnyWatermark:
        notes = (
            f"new field(s) {', '.join(added)}: without --model MODULE:CLASS nothing checks them against "
            f"your model",
        )
    try:
        new_value = validate(canonical_json(doc), watermark_model).to_state_json()
    except ValueError as exc:
        changed = {f for f, given in (("timestamp", timestamp), ("cursor", cursor)) if given is not None}
        changed |= {assignment.partition("=")[0].strip() for assignment in assignments}
        raise _refused_set(exc, changed, current, watermark_model, (namespace, name, key)) from None
    _change(
        out,
        choice,
        (namespace, name, key),
        current,
        new_value,
        action="set",
        yes=yes,
        dry_run=dry_run,
        notes=notes,
        reason=reason,
    )


@click.command("reset")
@address
@reason_option
@model_option
@yes_option
@dry_run_option
@store_options
def reset_command(
    namespace: str,
    name: str,
    key: str,
    reason: str | None,
    model: str | None,
    yes: bool,
    dry_run: bool,
    where: StoreOptions,
    as_json: bool,
) -> None:
    """Reset a watermark to empty: every item counts as new again. Kept in history (rewindable).

    \b
    Example:
      stateful reset files /data/landing/*.csv --reason "reprocess everything after INC-4211"
    """
    reason = check_reason(reason)
    out = Output(as_json)
    watermark_model = load_model(model)
    choice = choose_store(where)
    current = read_existing(choice, namespace, name, key)
    notes: tuple[str, ...] = ()
    fields = summarize(current.value).fields
    dropped = sorted(set(fields) - {MODEL_VERSION_KEY}) if watermark_model is AnyWatermark else []
    if dropped:
        notes = (
            f"the fields {', '.join(dropped)} are dropped: the model's defaults apply when the trigger "
            f"loads it (pass --model MODULE:CLASS to write them)",
        )
    empty = empty_state(current.value, watermark_model)
    _change(
        out,
        choice,
        (namespace, name, key),
        current,
        empty,
        action="reset",
        yes=yes,
        dry_run=dry_run,
        reason=reason,
        notes=notes,
    )


@click.command("rewind")
@address
@click.option(
    "--to",
    "target",
    required=True,
    metavar="VERSION|ISO-TIME",
    help="A version from `stateful history`, or a date-time: the version that was current then.",
)
@reason_option
@model_option
@yes_option
@dry_run_option
@store_options
def rewind_command(
    namespace: str,
    name: str,
    key: str,
    target: str,
    reason: str | None,
    model: str | None,
    yes: bool,
    dry_run: bool,
    where: StoreOptions,
    as_json: bool,
) -> None:
    """Restore an earlier version of a watermark from its history, after showing the difference.

    The restored value is written as a new version (the history keeps the one it replaces), so
    a rewind can itself be undone.

    \b
    Examples:
      stateful rewind files /data/landing/*.csv --to 41 --dry-run
      stateful rewind files /data/landing/*.csv --to 2025-06-02T09:00:00Z --reason "bad deploy"
    """
    reason = check_reason(reason)
    out = Output(as_json)
    watermark_model = load_model(model)
    wanted = parse_version_or_time(target, "--to")
    choice = choose_store(where)
    versions = choice.history().history(namespace, name, key)
    if not versions:
        read_existing(choice, namespace, name, key)  # raises NotFoundError with hints
    try:
        found = edits.rewind_target(versions, wanted)
    except edits.VersionNotKeptError as exc:
        raise NotFoundError(str(exc)) from None
    current = versions[0]
    try:
        validate(found.value, watermark_model)
    except ValueError as exc:
        raise CliError(
            f"version {found.version} of {shown_address(namespace, name, key)} does not validate as "
            f"{model_name(watermark_model)}: {one_line(exc)}. Nothing was written."
        ) from None
    by = found.updated_by or "unknown"
    why = "" if found.reason is None else f" (reason: {found.reason})"
    note = f"restores version {found.version}, written {format_utc(found.updated_at)} by {by}{why}"
    _change(
        out,
        choice,
        (namespace, name, key),
        current,
        found.value,
        action=f"rewind to version {found.version}",
        yes=yes,
        dry_run=dry_run,
        reason=reason,
        notes=(note,),
    )


@click.command("delete")
@address
@yes_option
@store_options
def delete_command(
    namespace: str, name: str, key: str, yes: bool, where: StoreOptions, as_json: bool
) -> None:
    """Delete a watermark and its history, for good (`stateful reset` keeps the history).

    It takes no --reason: nothing is left to keep one with (reset keeps one in the history).

    \b
    Example:
      stateful delete files '/data/old-landing/*.csv'
    """
    out = Output(as_json)
    choice = choose_store(where)
    current = read_existing(choice, namespace, name, key)
    if not as_json:
        shown = shown_address(namespace, name, key)
        out.line(f"delete: {shown} in {choice.description} (version {current.version})")
        out.line(f"  {summarize(current.value).line()}")
    out.confirm(
        f"Delete {shown_address(namespace, name, key)} and its history? This cannot be undone; a trigger "
        f"that uses it starts from nothing.",
        yes=yes,
    )
    try:
        choice.sync().delete(namespace, name, key, expected_version=current.version)
    except StateConflictError as exc:
        raise _conflict(exc, "you were deciding") from None
    if out.as_json:
        out.json(
            {
                "action": "delete",
                "namespace": namespace,
                "name": name,
                "key": key,
                "store": choice.description,
                "previous_version": current.version,
            }
        )
    else:
        out.line(f"Deleted {shown_address(namespace, name, key)} (it was version {current.version}).")
