"""``stateful list``, ``show`` and ``history``: read-only views of stored watermarks."""

from __future__ import annotations

import json
from typing import Any

import click

from stateful._address import partition_of, shown_address, suggest
from stateful._document import DEFAULT_KEY, format_utc
from stateful.backends.base import StateRecord
from stateful.backends.native import NativeBackend
from stateful.cli._common import (
    address,
    check_part,
    model_option,
    read_existing,
    store_options,
    stored_records,
)
from stateful.cli._documents import (
    AnyWatermark,
    Summary,
    load_model,
    model_for,
    model_name,
    record_json,
    short,
    summarize,
)
from stateful.cli._errors import CliError
from stateful.cli._output import Output
from stateful.cli._store import StoreOptions, choose_store
from stateful.types import Watermark

__all__ = ["history_command", "list_command", "show_command"]

_COLUMNS = ("TIMESTAMP", "CURSOR", "SEEN", "SIZE")
#: A reason longer than this is cut short in the history table (``--json`` has it whole).
_REASON_CHARS = 60


def _columns(summary: Summary) -> list[object]:
    if summary.doc is None:
        return ["INVALID", "-", "-", summary.size_bytes]
    return [summary.timestamp, short(summary.cursor, 24), summary.seen, summary.size_bytes]


def _validity(summary: Summary, key: str, model: type[Watermark[Any]]) -> str:
    if summary.problem is not None:
        return f"NO: {summary.problem}"
    return f"yes, as {model_name(model)}" if model_for(key, model) else "yes, as JSON (not a watermark key)"


def _label(record: StateRecord) -> str:
    if record.key == DEFAULT_KEY:
        return record.name
    partition = partition_of(record.key)
    return f"{record.name} [{record.key}]" if partition is None else f"{record.name} [partition {partition}]"


def _cut(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 3] + "..."


def _when(record: StateRecord) -> str:
    return format_utc(record.updated_at)[:19] + "Z"


@click.command("list")
@click.option("--namespace", "-n", metavar="NS", help="Only this namespace.", callback=check_part)
@model_option
@store_options
def list_command(namespace: str | None, model: str | None, where: StoreOptions, as_json: bool) -> None:
    """List stored watermarks: version, when and by whom, and a summary of each.

    \b
    Examples:
      stateful list
      stateful list --namespace files --json
    """
    out = Output(as_json)
    watermark_model = load_model(model)
    choice = choose_store(where)
    found = stored_records(out, choice, namespace)
    records = [r for _, r in found]
    assets = [a for a, _ in found]
    on_assets = choice.api is not None  # the native store: say which asset holds each
    summaries = [summarize(r.value, model_for(r.key, watermark_model)) for r in records]
    if as_json:
        entries = [record_json(r, s) for r, s in zip(records, summaries, strict=True)]
        if on_assets:
            entries = [{"asset": a, **e} for a, e in zip(assets, entries, strict=True)]
        out.json({"store": choice.description, "chosen_by": choice.reason, "watermarks": entries})
        _check_valid(records, summaries)
        return
    out.line(f"store: {choice.description} (chosen by: {choice.reason})")
    if not records:
        out.line(f"No watermarks are stored there yet.{choice.hint()}")
        return
    rows = [
        [r.namespace, _label(r), r.version, _when(r), r.updated_by, *_columns(s)]
        for r, s in zip(records, summaries, strict=True)
    ]
    headers = ["NAMESPACE", "NAME", "VERSION", "UPDATED_AT", "UPDATED_BY", *_COLUMNS]
    if on_assets:
        rows = [[a, *row] for a, row in zip(assets, rows, strict=True)]
        headers = ["ASSET", *headers]
    out.table(headers, rows)
    _check_valid(records, summaries)


@click.command("show")
@address
@model_option
@click.option("--value", "raw", is_flag=True, help="Print only the stored JSON document (indented).")
@store_options
def show_command(
    namespace: str, name: str, key: str, model: str | None, raw: bool, where: StoreOptions, as_json: bool
) -> None:
    """Show one watermark: where it is stored, its version, who wrote it, and what it holds.

    \b
    Examples:
      stateful show files /data/landing/*.csv
      stateful show files /data/landing/*.csv --value
    """
    out = Output(as_json)
    watermark_model = load_model(model)
    choice = choose_store(where)
    record = read_existing(choice, namespace, name, key)
    summary = summarize(record.value, model_for(key, watermark_model))
    if raw and not as_json:
        out.line(
            json.dumps(summary.doc, indent=2, ensure_ascii=False) if summary.doc is not None else record.value
        )
        return
    if as_json:
        value: object = summary.doc if summary.doc is not None else record.value
        out.json({"store": choice.description, **record_json(record, summary), "value": value})
        _check_valid([record], [summary])
        return
    rows: list[tuple[str, object]] = [
        ("store", f"{choice.description} (chosen by: {choice.reason})"),
        ("key", record.key),
        ("version", record.version),
        ("updated_at", format_utc(record.updated_at)),
        ("updated_by", record.updated_by),
        ("reason", record.reason),
    ]
    if summary.doc is not None:
        seen = summary.seen
        rows += [
            ("timestamp", summary.timestamp),
            ("cursor", short(summary.cursor, 200)),
            ("seen", f"{seen} key{'' if seen == 1 else 's'}"),
            *[(field, short(value, 200)) for field, value in summary.fields.items()],
        ]
    rows += [
        ("size", f"{summary.size_bytes} bytes"),
        ("valid", _validity(summary, key, watermark_model)),
    ]
    out.line(shown_address(namespace, name, key))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.line(f"  {label:<{width}}  {'-' if value is None else value}")
    _check_valid([record], [summary])


def _check_valid(records: list[StateRecord], summaries: list[Summary]) -> None:
    """Exit status 1 once everything was printed, when a stored value listed does not validate."""
    invalid = [(r, s) for r, s in zip(records, summaries, strict=True) if s.problem is not None]
    if not invalid:
        return
    record, summary = invalid[0]
    namespace, name, key = record.namespace, record.name, record.key
    shown = shown_address(namespace, name, key)
    what = (
        f"the stored value of {shown} does not validate"
        if len(records) == 1
        else f"{len(invalid)} of the {len(records)} watermarks listed do not validate, e.g. {shown}"
    )
    raise CliError(
        f"{what}: {summary.problem}. Fix it with stateful set, go back to a good version with "
        f"stateful rewind --to VERSION (the versions: `{suggest('history', namespace, name, key)}`), "
        f"or start over with `{suggest('reset', namespace, name, key)}`."
    )


@click.command("history")
@address
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the newest N versions.")
@store_options
def history_command(
    namespace: str, name: str, key: str, limit: int | None, where: StoreOptions, as_json: bool
) -> None:
    """List the kept versions of a watermark, newest first (see the footer for how many are kept).

    The SQL store keeps the last 100 versions, the Airflow-native store (an asset's state store,
    with --airflow-url and --asset) the last 10; both are settings.

    Each line says when the version was written, by whom (host:pid of a triggerer or worker,
    or the CLI command, user and host) and why (the --reason of an edit), and what it held.
    `stateful rewind` restores one.

    \b
    Example:
      stateful history files '/data/landing/*.csv' --limit 10
    """
    out = Output(as_json)
    choice = choose_store(where)
    history = choice.history()
    versions = history.history(namespace, name, key, limit=limit)
    if not versions:
        read_existing(choice, namespace, name, key)  # raises NotFoundError with hints
    current = versions[0].version
    summaries = [summarize(r.value, model_for(key, AnyWatermark)) for r in versions]
    kept = getattr(history, "history_versions", None)
    if as_json:
        out.json(
            {
                "namespace": namespace,
                "name": name,
                "key": key,
                "store": choice.description,
                "history_versions": kept,
                "versions": [
                    {**record_json(r, s), "current": r.version == current}
                    for r, s in zip(versions, summaries, strict=True)
                ],
            }
        )
        return
    shown = shown_address(namespace, name, key)
    out.line(f"History of {shown} in {choice.description}, newest first (* = current):")
    rows = [
        [
            ("* " if r.version == current else "  ") + str(r.version),
            _when(r),
            r.updated_by,
            *_columns(s),
            _cut(r.reason, _REASON_CHARS),
        ]
        for r, s in zip(versions, summaries, strict=True)
    ]
    # The reason last: free text, with spaces, after the columns a script may split on.
    out.table(["  VERSION", "UPDATED_AT", "UPDATED_BY", *_COLUMNS, "REASON"], rows)
    if isinstance(history, NativeBackend):
        out.line(_native_footer(kept or 0))
    elif kept:
        out.line(f"(the store keeps the last {kept} versions of each watermark)")


def _native_footer(kept: int) -> str:
    """What the native store keeps: each save keeps as many versions as its writer is set to."""
    setting = "[stateful] native_history_versions (STATEFUL_NATIVE_HISTORY_VERSIONS) where it runs"
    if kept <= 1:
        return f"(no earlier version is kept: the trigger or task that writes it keeps none, {setting})"
    return (
        f"(its writer keeps the last {kept} versions of this watermark in the asset's state store: {setting})"
    )
