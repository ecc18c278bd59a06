"""The ``stateful`` command line: run triggers locally; inspect, fix, rewind and move watermarks.

Installed as the ``stateful`` console script (also ``python -m stateful``); see
https://airflow-stateful.github.io/airflow-stateful/cli/. ``stateful --version`` answers
without importing the commands (nor pydantic, SQLAlchemy or Airflow).

Example:
    >>> from stateful.cli import main
    >>> main(["--version"])  # doctest: +ELLIPSIS
    stateful, version ...
    0
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stateful.__about__ import __version__

if TYPE_CHECKING:
    from stateful.cli._app import cli

__all__ = ["VERSION_LINE", "cli", "main"]

#: What ``stateful --version`` prints (click's ``version_option`` prints the same).
VERSION_LINE = f"stateful, version {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (the console script exits with it).

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 success, 1 failure, 2 bad input, 3 version conflict, 4 not found.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        print(VERSION_LINE)
        return 0
    from stateful.cli._app import main as run

    return run(args)


if not TYPE_CHECKING:  # type checkers see the import above

    def __getattr__(name: str) -> object:
        if name != "cli":
            raise AttributeError(f"module 'stateful.cli' has no attribute {name!r}")
        from stateful.cli._app import cli

        return cli
