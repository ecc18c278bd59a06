"""What the command line reports as an error, and with which exit status.

Exit statuses: 0 success; 1 failure (store, validation, a trigger that raised); 2 bad input
(an option, a JSON text, a timestamp); 3 a version conflict or an import refusing to overwrite
newer state; 4 nothing stored at that namespace/name; 130 and 143 a ``run`` stopped by Ctrl-C
or SIGTERM. The CLI page lists them too: https://airflow-stateful.github.io/airflow-stateful/cli/
"""

from __future__ import annotations

import logging
import traceback

__all__ = [
    "CONFLICT",
    "FAILURE",
    "NOT_FOUND",
    "USAGE",
    "CliError",
    "NotFoundError",
    "UsageError",
    "raised",
    "user_code_failed",
]

_LOG = logging.getLogger("stateful.cli")

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


def raised(exc: BaseException) -> str:
    """``Type: message (file:line, in function)``: an exception in one line, where it was raised.

    Example:
        >>> try:
        ...     int("x")
        ... except ValueError as exc:
        ...     print(raised(exc).split(" (")[0])
        ValueError: invalid literal for int() with base 10: 'x'
    """
    text = " ".join(str(exc).split()) or "(no message)"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno}, in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {text}{where}"


def user_code_failed(what: str, exc: BaseException, outcome: str, *, exit_code: int = FAILURE) -> CliError:
    """The error for an exception raised by the user's own code (a trigger, a sensor, a module).

    The message is one line; the traceback goes to the log at DEBUG (``stateful -vv``).

    Example:
        >>> error = user_code_failed("the trigger x:T", ValueError("boom"), "Nothing was saved.")
        >>> str(error)
        'the trigger x:T raised ValueError: boom. Nothing was saved. Run with -vv for the traceback.'
    """
    _LOG.debug("%s raised", what, exc_info=exc)
    return CliError(
        f"{what} raised {raised(exc)}. {outcome} Run with -vv for the traceback.", exit_code=exit_code
    )
