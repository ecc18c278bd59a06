"""``stateful export`` and ``import``: move watermarks between stores as JSON lines.

One line per watermark::

    {"kind": "stateful.watermark/v1", "namespace": "files", "name": "...", "key": "watermark",
     "version": 7, "updated_at": "2025-06-02T09:05:20.123456Z", "updated_by": "host:812",
     "value": {...the stored document...}}

Import validates every line before it writes anything, is idempotent (a watermark already
holding the same value is left alone), and refuses to overwrite a watermark written after the
exported one unless ``--force``: versions restart in each store, so "newer" is judged by when
each was last written.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import click

from stateful._address import command, display_address
from stateful._document import DEFAULT_KEY, canonical_json, format_utc
from stateful.backends.base import StateBackend, StateRecord
from stateful.cli._common import (
    check_part,
    location_options,
    model_option,
    store_options,
    stored_records,
    yes_option,
)
from stateful.cli._documents import load_model, model_for, model_name, one_line, record_fields, validate
from stateful.cli._edit import check_reason, reason_option
from stateful.cli._errors import CONFLICT, CliError, UsageError
from stateful.cli._output import Output
from stateful.cli._store import StoreChoice, StoreOptions, choose_store, writer
from stateful.cli._values import parse_timestamp
from stateful.errors import StateConflictError

__all__ = ["KIND", "export_command", "import_command"]

KIND = "stateful.watermark/v1"
_FIELDS = ("namespace", "name", "key")

Action = Literal["create", "update", "overwrite", "unchanged", "refuse"]


@click.command("export")
@click.option("--namespace", "-n", metavar="NS", help="Only this namespace.", callback=check_part)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of stdout.",
)
@location_options
def export_command(namespace: str | None, output: Path | None, where: StoreOptions) -> None:
    """Write every watermark (of a namespace) as JSON lines, for `stateful import`.

    \b
    Examples:
      stateful export > watermarks.jsonl
      stateful export --namespace files --output files.jsonl
    """
    out = Output(as_json=False)
    if output is not None:
        _check_output(output)
    choice = choose_store(where)
    lines: list[str] = []
    skipped: list[str] = []
    for asset, record in stored_records(out, choice, namespace):
        try:
            value = json.loads(record.value)
        except ValueError as exc:
            skipped.append(f"{display_address(record.namespace, record.name, record.key)}: not JSON ({exc})")
            continue
        lines.append(json.dumps(_line(record, value, asset), ensure_ascii=False))
    stream: IO[str]
    with out.progress(len(lines), "exporting", data_on_stdout=output is None) as progress:
        try:
            stream = sys.stdout if output is None else output.open("w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"--output {str(output)!r}: cannot write it ({exc.strerror}). Nothing was exported."
            ) from None
        try:
            for line in lines:
                stream.write(line + "\n")
                progress.advance()
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise  # `stateful export | head`: the reader left
            raise CliError(
                f"writing {str(output or 'stdout')!r} failed ({exc.strerror}); it is incomplete."
            ) from None
        finally:
            if output is not None:
                stream.close()
    target = "stdout" if output is None else str(output)
    out.note(
        f"Exported {len(lines)} watermark{'s' * (len(lines) != 1)} from {choice.description} to {target}."
    )
    if skipped:
        raise CliError(
            f"{len(skipped)} stored value(s) are not JSON and were not exported: " + "; ".join(skipped)
        )


def _check_output(output: Path) -> None:
    """Refuse an ``--output`` whose directory does not exist, before reading the store.

    The directory is not created: a mistyped path would otherwise leave a file where nobody
    looks for it.
    """
    parent = output.parent
    if not parent.is_dir():
        raise UsageError(
            f"--output {str(output)!r}: the directory {str(parent)!r} does not exist; nothing was "
            f"exported. Create it first (`{command('mkdir', '-p', str(parent))}`) or fix the path."
        )


def _line(record: StateRecord, value: Any, asset: str | None) -> dict[str, Any]:
    return {
        "kind": KIND,
        **({} if asset is None else {"asset": asset}),
        **record_fields(record),
        "value": value,
    }


@dataclass(frozen=True)
class _Entry:
    line: int
    namespace: str
    name: str
    key: str
    value: str
    updated_at: datetime
    asset: str | None  # the asset it was exported from (the native store)

    @property
    def label(self) -> str:
        return display_address(self.namespace, self.name) + (
            "" if self.key == DEFAULT_KEY else f" [{self.key}]"
        )


@dataclass
class _Step:
    entry: _Entry
    action: Action
    target: StateRecord | None
    store: StateBackend


def _read_entries(stream: IO[str], source: str, model: Any) -> list[_Entry]:
    entries: list[_Entry] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        where = f"{source}, line {number}"
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{where} is not valid JSON ({exc}). Nothing was imported.") from None
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise UsageError(
                f'{where} is not a watermark written by `stateful export` (no "kind": "{KIND}"). '
                f"Nothing was imported."
            )
        missing = [f for f in (*_FIELDS, "updated_at", "value") if f not in doc]
        bad = [f for f in _FIELDS if f in doc and (not isinstance(doc[f], str) or not doc[f])]
        if missing or bad:
            raise UsageError(
                f"{where}: {'missing ' + ', '.join(missing) if missing else 'invalid ' + ', '.join(bad)}. "
                f"Nothing was imported."
            )
        address = (doc["namespace"], doc["name"], doc["key"])
        if address in seen:
            raise UsageError(
                f"{where} repeats {address[0]}/{address[1]} of line {seen[address]}. Nothing was imported."
            )
        seen[address] = number
        try:
            updated_at = parse_timestamp(str(doc["updated_at"]), "updated_at")
        except UsageError as exc:
            raise UsageError(f"{where}: {exc} Nothing was imported.") from None
        value = canonical_json(doc["value"])
        try:
            if model_for(address[2], model) is not None:  # other keys hold JSON documents, not watermarks
                validate(value, model)
        except ValueError as exc:
            raise UsageError(
                f"{where}: the watermark {address[0]}/{address[1]} does not validate as {model_name(model)}: "
                f"{one_line(exc)}. Nothing was imported."
            ) from None
        asset = doc.get("asset")
        entries.append(_Entry(number, *address, value, updated_at, asset if isinstance(asset, str) else None))
    return entries


def _stores(choice: StoreChoice, entries: list[_Entry]) -> list[StateBackend]:
    """The store of each entry: the chosen one, or on the native store without --asset, the asset
    each was exported from."""
    if choice.store is not None:
        return [choice.sync()] * len(entries)
    from stateful.cli._native import RestNativeStore

    assert choice.api is not None
    api = choice.api
    missing = [e.line for e in entries if e.asset is None]
    if missing:
        raise UsageError(
            f"lines {', '.join(map(str, missing[:10]))} name no asset (they were not exported from the "
            f"native store): give --asset NAME, the asset whose state store receives them."
        )
    by_asset: dict[str, StateBackend] = {}
    for name in sorted({e.asset for e in entries if e.asset is not None}):
        by_asset[name] = RestNativeStore(api, api.asset(name))
    return [by_asset[e.asset] for e in entries if e.asset is not None]


def _plan(entry: _Entry, target: StateRecord | None, force: bool) -> Action:
    if target is None:
        return "create"
    if target.value == entry.value:
        return "unchanged"
    if target.updated_at > entry.updated_at:
        return "overwrite" if force else "refuse"
    return "update"


@click.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--force", is_flag=True, help="Also overwrite watermarks written after the exported ones.")
@click.option("--dry-run", is_flag=True, help="Show what would be imported; write nothing.")
@reason_option
@model_option
@yes_option
@store_options
def import_command(
    file: IO[str],
    force: bool,
    dry_run: bool,
    reason: str | None,
    model: str | None,
    yes: bool,
    where: StoreOptions,
    as_json: bool,
) -> None:
    """Import watermarks written by `stateful export` (FILE, or - for stdin) into a store.

    Every line is validated before anything is written. A watermark already holding the same
    value is left alone, so importing twice changes nothing. A watermark in the target that was
    written after the exported one is not overwritten unless --force (exit status 3, nothing
    written). Changing existing watermarks asks for confirmation unless --yes.

    \b
    Examples:
      stateful export --database-url sqlite:////opt/airflow/stateful.db > all.jsonl
      STATEFUL_DATABASE_URL=postgresql+psycopg://... stateful import all.jsonl
    """
    reason = check_reason(reason)
    out = Output(as_json)
    watermark_model = load_model(model)
    source = "stdin" if file.name == "<stdin>" else file.name
    entries = _read_entries(file, source, watermark_model)
    choice = choose_store(where)
    steps = [
        _Step(e, "create", None, store) for e, store in zip(entries, _stores(choice, entries), strict=True)
    ]
    with out.progress(len(steps), "reading the target", data_on_stdout=False) as progress:
        for step in steps:
            step.target = step.store.read(step.entry.namespace, step.entry.name, step.entry.key)
            step.action = _plan(step.entry, step.target, force)
            progress.advance()
    counts = {
        a: sum(1 for s in steps if s.action == a)
        for a in ("create", "update", "overwrite", "unchanged", "refuse")
    }
    if not as_json:
        out.line(f"import {source} into {choice.description}: {len(steps)} watermarks")
        for step in steps:
            if step.action != "unchanged":
                out.line(f"  {step.action:<9} {step.entry.label}{_why(step)}")
        out.line("  " + ", ".join(f"{n} {a}" for a, n in counts.items() if n) if steps else "  (empty file)")
    refused = [s for s in steps if s.action == "refuse"]
    written: list[dict[str, Any]] = []
    if refused:
        _report(out, steps, written, dry_run)
        raise CliError(
            f"{len(refused)} watermark(s) in the target were written after the exported ones "
            f"({', '.join(s.entry.label for s in refused[:5])}); nothing was imported. Import a newer "
            f"export, or pass --force to overwrite them.",
            exit_code=CONFLICT,
        )
    todo = [s for s in steps if s.action not in ("unchanged", "refuse")]
    if dry_run or not todo:
        out.note("Dry run: nothing was written." if dry_run and todo else "Nothing to import.")
        _report(out, steps, written, dry_run)
        return
    if any(s.target is not None for s in todo):
        out.confirm(f"Change {sum(1 for s in todo if s.target is not None)} existing watermark(s)?", yes=yes)
    conflicts: list[str] = []
    with out.progress(len(todo), "importing", data_on_stdout=False) as progress:
        for step in todo:
            e = step.entry
            expected = None if step.target is None else step.target.version
            try:
                version = step.store.write(
                    e.namespace,
                    e.name,
                    e.key,
                    e.value,
                    expected_version=expected,
                    updated_by=writer("import"),
                    reason=reason,
                )
            except StateConflictError as exc:
                conflicts.append(f"{e.label} (now version {exc.actual_version})")
            else:
                written.append(
                    {
                        "namespace": e.namespace,
                        "name": e.name,
                        "key": e.key,
                        "action": step.action,
                        "version": version,
                    }
                )
            progress.advance()
    _report(out, steps, written, dry_run)
    if conflicts:
        raise CliError(
            f"{len(conflicts)} watermark(s) changed in the target while importing and were not overwritten: "
            f"{', '.join(conflicts)}. The others were imported; run the import again to re-check them.",
            exit_code=CONFLICT,
        )
    if not as_json:
        out.line(f"Imported {len(written)} watermark(s).")


def _why(step: _Step) -> str:
    if step.target is None:
        return ""
    return (
        f" (target version {step.target.version} written {format_utc(step.target.updated_at)}, "
        f"exported one written {format_utc(step.entry.updated_at)})"
    )


def _report(out: Output, steps: list[_Step], written: list[dict[str, Any]], dry_run: bool) -> None:
    if out.as_json:
        out.json(
            {
                "dry_run": dry_run,
                "plan": [
                    {
                        "namespace": s.entry.namespace,
                        "name": s.entry.name,
                        "key": s.entry.key,
                        "action": s.action,
                        "target_version": None if s.target is None else s.target.version,
                    }
                    for s in steps
                ],
                "written": written,
            }
        )
