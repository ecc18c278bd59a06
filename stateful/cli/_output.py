"""Where the command line writes: results on stdout, everything else on stderr.

Human output by default; with ``--json`` stdout carries JSON only (one document, or JSON lines
for streams) and errors go to stderr as one JSON object. Progress bars and status lines appear
only on a terminal and never in ``--json`` mode, so pipes and files stay clean.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import IO, Any, Protocol

import click

from stateful._document import format_utc
from stateful.cli._errors import CliError

__all__ = ["Output", "Progress", "dumps", "logs_to_stderr"]

_log_level = logging.WARNING


def logs_to_stderr(level: int | None = None) -> None:
    """Send log records to stderr only (at ``level``; default: as set before).

    Called again after anything that may import Airflow, which points the root logger at
    stdout on import: log lines must never mix with results, above all with ``--json``.
    """
    global _log_level
    if level is not None:
        _log_level = level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_log_level)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def dumps(value: Any) -> str:
    """JSON text for ``--json`` output (datetimes as UTC ISO 8601 with a Z)."""
    return json.dumps(value, ensure_ascii=False, default=_default)


class Progress(Protocol):
    """Counts work done; shown as a bar on a terminal, nothing elsewhere."""

    def advance(self, steps: int = 1) -> None: ...


class _NoProgress:
    def advance(self, steps: int = 1) -> None:
        pass


class Output:
    """The streams of one command, in human or ``--json`` mode."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    # -- results ---------------------------------------------------------------------------------

    def line(self, text: str = "") -> None:
        """A line of human output (stdout)."""
        click.echo(text)

    def json(self, value: Any) -> None:
        """A JSON document or one JSON line (stdout), flushed at once so streams can be followed."""
        click.echo(dumps(value))
        sys.stdout.flush()

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> None:
        """Left-aligned columns, like ``kubectl get``."""
        cells = [[str(h) for h in headers], *[["-" if v is None else str(v) for v in row] for row in rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        for row in cells:
            self.line(indent + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())

    # -- stderr ----------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        """A remark for people (stderr); silent in ``--json`` mode."""
        if not self.as_json:
            click.echo(text, err=True)

    def error(self, error: CliError | Exception, exit_code: int) -> None:
        """Report an error on stderr: a message, or one JSON object in ``--json`` mode."""
        if self.as_json:
            click.echo(
                dumps({"error": str(error), "type": type(error).__name__, "exit_code": exit_code}), err=True
            )
        else:
            click.echo(f"Error: {error}", err=True)

    # -- interaction -----------------------------------------------------------------------------

    def confirm(self, question: str, *, yes: bool) -> None:
        """Ask before a change (on stderr); ``--yes`` answers for the user.

        Raises:
            CliError: the user said no, or nobody can answer (stdin is not a terminal).
        """
        if yes:
            return
        if not sys.stdin.isatty():
            raise CliError(
                f"{question} Nothing was changed: stdin is not a terminal, so nobody can confirm. "
                f"Pass --yes to confirm in advance."
            )
        if not click.confirm(question, default=False, err=True):
            raise CliError("Not confirmed; nothing was changed.")

    @contextlib.contextmanager
    def progress(self, total: int, description: str, *, data_on_stdout: bool) -> Iterator[Progress]:
        """A progress bar on stderr when it is a terminal (and stdout does not share it)."""
        if (
            self.as_json
            or total < 2
            or not _is_terminal(sys.stderr)
            or (data_on_stdout and _is_terminal(sys.stdout))
        ):
            yield _NoProgress()
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        with bar:
            task = bar.add_task(description, total=total)
            yield _RichProgress(bar, task)

    def status(self) -> Status:
        """A live status line on stdout when it is a terminal (``run`` waiting for events)."""
        if self.as_json or not _is_terminal(sys.stdout):
            return Status(None)
        from rich.console import Console

        return Status(Console(highlight=False, soft_wrap=True))


class _RichProgress:
    def __init__(self, bar: Any, task: Any) -> None:
        self._bar, self._task = bar, task

    def advance(self, steps: int = 1) -> None:
        self._bar.advance(self._task, steps)


class Status:
    """A status line kept at the bottom of a terminal while lines are printed above it."""

    def __init__(self, console: Any | None) -> None:
        self._console = console
        self._status: Any = None

    @property
    def live(self) -> bool:
        return self._console is not None

    def __enter__(self) -> Status:
        if self._console is not None:
            self._status = self._console.status("")
            self._status.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc_info)
            self._status = None

    def update(self, text: str) -> None:
        if self._status is not None:
            self._status.update(text)

    def line(self, text: str) -> None:
        """Print a line above the status line (or plainly when there is none)."""
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False)
        else:
            click.echo(text)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
