"""``python -m stateful``: the ``stateful`` command line (see ``docs/cli.md``)."""

from stateful.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
