"""The ``stateful`` command group and its entry point: errors become messages and exit statuses."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

import click

from stateful.__about__ import __version__
from stateful._links import docs_url
from stateful.cli._errors import CONFLICT, FAILURE, NOT_FOUND, CliError
from stateful.cli._output import Output, logs_to_stderr
from stateful.errors import MissingDependencyError, StateConflictError, StatefulError, StoreNotFoundError

__all__ = ["COMMANDS", "cli", "main"]

#: Each command: the module and function that define it, and its summary (the first paragraph of
#: its help, which `stateful --help` lists). A command's module is imported only when the command
#: runs or shows its help, so `stateful --help` imports none of them (nor what they need:
#: pydantic, SQLAlchemy, Airflow). tests/cli/test_fast.py checks the summaries against the commands.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "stateful.cli._run",
        "run_command",
        "Run a @stateful trigger here, outside Airflow, printing each event and each save.",
    ),
    "poke": (
        "stateful.cli._poke",
        "poke_command",
        "Run one poke() of a @stateful sensor here, printing its result and the watermark it would save.",
    ),
    "list": (
        "stateful.cli._inspect",
        "list_command",
        "List stored watermarks: version, when and by whom, and a summary of each.",
    ),
    "show": (
        "stateful.cli._inspect",
        "show_command",
        "Show one watermark: where it is stored, its version, who wrote it, and what it holds.",
    ),
    "set": (
        "stateful.cli._edit",
        "set_command",
        "Set a watermark's timestamp, cursor or fields (backwards too), validated and compare-and-set.",
    ),
    "reset": (
        "stateful.cli._edit",
        "reset_command",
        "Reset a watermark to empty: every item counts as new again. Kept in history (rewindable).",
    ),
    "delete": (
        "stateful.cli._edit",
        "delete_command",
        "Delete a watermark and its history, for good (`stateful reset` keeps the history).",
    ),
    "history": (
        "stateful.cli._inspect",
        "history_command",
        "List the kept versions of a watermark, newest first (see the footer for how many are kept).",
    ),
    "rewind": (
        "stateful.cli._edit",
        "rewind_command",
        "Restore an earlier version of a watermark from its history, after showing the difference.",
    ),
    "export": (
        "stateful.cli._transfer",
        "export_command",
        "Write every watermark (of a namespace) as JSON lines, for `stateful import`.",
    ),
    "import": (
        "stateful.cli._transfer",
        "import_command",
        "Import watermarks written by `stateful export` (FILE, or - for stdin) into a store.",
    ),
}


class _LazyGroup(click.Group):
    """A group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # What click.Group.format_commands writes, from the summaries: no command is imported.
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, _short(COMMANDS[name][2], limit)) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


# \b keeps the link on one line (click would break it at a hyphen).
_HELP = f"""Run @stateful triggers and poke sensors locally; inspect, fix, rewind and move their watermarks.

The store is the one @stateful uses (STATEFUL_DATABASE_URL, else [stateful] database_url,
else SQLite at $AIRFLOW_HOME/stateful.db), or --database-url, or an asset's state store
through Airflow's REST API (--airflow-url, --asset). Every change is compare-and-set
and asks for confirmation unless --yes. Exit status: 0 ok, 1 failure, 2 bad input,
3 version conflict, 4 not found, 130/143 run stopped by Ctrl-C/SIGTERM.

\b
Documentation: {docs_url("cli")}
"""


@click.group(
    cls=_LazyGroup,
    help=_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
# stateful.cli.main answers a lone --version itself, with the same line (tests/cli/test_version.py).
@click.version_option(__version__, prog_name="stateful")
@click.option("-v", "--verbose", count=True, help="Log more to stderr (-v: INFO, -vv: DEBUG).")
def cli(verbose: int) -> None:
    """The ``stateful`` command group; its ``--help`` is ``_HELP``."""
    logs_to_stderr({0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG))


def _short(summary: str, limit: int) -> str:
    """``summary`` cut to ``limit`` characters as click cuts a command's help for the listing."""
    return click.Command(None, help=summary).get_short_help_str(limit)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = Output(as_json="--json" in args[: args.index("--")] if "--" in args else "--json" in args)
    try:
        result = cli.main(args=args, prog_name="stateful", standalone_mode=False)
    except click.exceptions.Abort:
        out.error(CliError("aborted; nothing was changed."), 130)
        return 130
    except click.ClickException as exc:
        if out.as_json:
            out.error(exc, exc.exit_code)
        else:
            exc.show()
        return exc.exit_code
    except CliError as exc:
        out.error(exc, exc.exit_code)
        return exc.exit_code
    except StateConflictError as exc:
        out.error(exc, CONFLICT)
        return CONFLICT
    except StoreNotFoundError as exc:  # a store opened to read only does not exist
        out.error(exc, NOT_FOUND)
        return NOT_FOUND
    except MissingDependencyError as exc:
        out.error(exc, FAILURE)
        return FAILURE
    except StatefulError as exc:
        out.error(exc, FAILURE)
        return FAILURE
    except KeyboardInterrupt:
        out.error(CliError("interrupted; nothing more was changed."), 130)
        return 130
    except BrokenPipeError:
        # `stateful export | head`: the reader left; not an error worth a traceback.
        sys.stderr.close()
        return FAILURE
    return result if isinstance(result, int) else 0
