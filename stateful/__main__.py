"""``python -m stateful``: the ``stateful`` command line (see https://airflow-stateful.github.io/airflow-stateful/cli/)."""

from stateful.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
