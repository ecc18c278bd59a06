"""The ``stateful`` command line: run triggers locally; inspect, fix, rewind and move watermarks.

Installed as the ``stateful`` console script (also ``python -m stateful``); see ``docs/cli.md``.

Example:
    >>> from stateful.cli import main
    >>> main(["--version"])  # doctest: +ELLIPSIS
    stateful, version ...
    0
"""

from stateful.cli._app import cli, main

__all__ = ["cli", "main"]
