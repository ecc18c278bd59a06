"""The ``stateful`` command group and its entry point: errors become messages and exit statuses."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from stateful.__about__ import __version__
from stateful._links import docs_url
from stateful.cli._edit import delete_command, reset_command, rewind_command, set_command
from stateful.cli._errors import CONFLICT, FAILURE, CliError
from stateful.cli._inspect import history_command, list_command, show_command
from stateful.cli._output import Output, logs_to_stderr
from stateful.cli._poke import poke_command
from stateful.cli._run import run_command
from stateful.cli._transfer import export_command, import_command
from stateful.errors import MissingDependencyError, StateConflictError, StatefulError

__all__ = ["cli", "main"]


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


@click.group(help=_HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
# stateful.cli.main answers a lone --version itself, with the same line (tests/cli/test_version.py).
@click.version_option(__version__, prog_name="stateful")
@click.option("-v", "--verbose", count=True, help="Log more to stderr (-v: INFO, -vv: DEBUG).")
def cli(verbose: int) -> None:
    """The ``stateful`` command group; its ``--help`` is ``_HELP``."""
    logs_to_stderr({0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG))


for _command in (
    run_command,
    poke_command,
    list_command,
    show_command,
    set_command,
    reset_command,
    delete_command,
    history_command,
    rewind_command,
    export_command,
    import_command,
):
    cli.add_command(_command)


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
