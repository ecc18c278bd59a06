"""What the command line reports as an error, and with which exit status.

Exit statuses: 0 success; 1 failure (store, validation, a trigger that raised); 2 bad input
(an option, a JSON text, a timestamp); 3 a version conflict or an import refusing to overwrite
newer state; 4 nothing stored at that namespace/name; 130 and 143 a ``run`` stopped by Ctrl-C
or SIGTERM. The CLI page lists them too: https://airflow-stateful.github.io/airflow-stateful/cli/
"""

from __future__ import annotations

__all__ = ["CONFLICT", "FAILURE", "NOT_FOUND", "USAGE", "CliError", "NotFoundError", "UsageError"]

FAILURE = 1
USAGE = 2
CONFLICT = 3
NOT_FOUND = 4


class CliError(Exception):
    """An error the command line reports in one message (no traceback) with an exit status.

    Example:
        >>> CliError("no such thing", exit_code=NOT_FOUND).exit_code
        4
    """

    def __init__(self, message: str, *, exit_code: int = FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(CliError):
    """Bad input given on the command line or in a file (exit status 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=USAGE)


class NotFoundError(CliError):
    """Nothing is stored where the command looked (exit status 4)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=NOT_FOUND)
