"""Retrying a load or a save while the store cannot be reached: capped exponential backoff.

A store raises :class:`~stateful.errors.StoreUnavailableError` when it cannot be reached now (a
PostgreSQL server restarting, a network error, a locked SQLite file, Airflow's API server down
for the native store). The drivers then try the same call again, up to ``attempts`` in all,
waiting ``delay`` seconds before the second, twice as long before each next one, never more than
``max_delay``. Every failed attempt is logged at WARNING on the ``stateful`` logger (attempt n/N,
the wait, the store with its password masked, the state, the error); once the attempts are spent
the last error is raised again, saying how long it was tried and what happens next. Anything else
(a lost compare-and-set, a value that does not validate, a broken table) is raised at once.

The waits are the caller's: the trigger driver passes :func:`asyncio.sleep` (the triggerer's
loop runs on while it waits), the sensor driver :func:`time.sleep` (a worker has no loop). The
policy itself does no I/O.

=================================================  =========  ===================================
Setting (environment / ``[stateful]`` option)      Default    Meaning
=================================================  =========  ===================================
``STATEFUL_STORE_RETRIES`` / ``store_retries``     8          attempts in all (1: no retry)
``STATEFUL_STORE_RETRY_DELAY`` /                   0.5        seconds before the 2nd attempt
``store_retry_delay``
``STATEFUL_STORE_RETRY_MAX_DELAY`` /               15         the longest wait between attempts
``store_retry_max_delay``
=================================================  =========  ===================================

With the defaults the waits are 0.5, 1, 2, 4, 8, 15 and 15 s: a store may be away about 45 s
before a load or save gives up.

Example:
    >>> policy = RetryPolicy(attempts=8, delay=0.5, max_delay=15.0)
    >>> [policy.wait(n) for n in range(1, 8)]
    [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    >>> policy.patience
    45.5
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from stateful._airflowconf import check_seconds, stateful_setting
from stateful.errors import StatefulUsageError, StoreUnavailableError

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_DELAY",
    "DEFAULT_MAX_DELAY",
    "RetryPolicy",
    "aretry",
    "retry",
    "retry_policy",
]

_LOG = logging.getLogger("stateful")
_T = TypeVar("_T")

#: Attempts in all at a load or save while the store cannot be reached.
DEFAULT_ATTEMPTS = 8
#: Seconds before the second attempt; each next wait doubles.
DEFAULT_DELAY = 0.5
#: The longest wait between two attempts, in seconds.
DEFAULT_MAX_DELAY = 15.0

ATTEMPTS_ENV = "STATEFUL_STORE_RETRIES"
DELAY_ENV = "STATEFUL_STORE_RETRY_DELAY"
MAX_DELAY_ENV = "STATEFUL_STORE_RETRY_MAX_DELAY"


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how far apart, a call is tried while the store cannot be reached.

    Attributes:
        attempts: attempts in all (``1``: no retry).
        delay: the wait before the second attempt, in seconds; each next wait doubles.
        max_delay: the longest wait, in seconds.
    """

    attempts: int = DEFAULT_ATTEMPTS
    delay: float = DEFAULT_DELAY
    max_delay: float = DEFAULT_MAX_DELAY

    def wait(self, failed: int) -> float:
        """The wait after the ``failed``-th failed attempt (1-based), in seconds."""
        return float(min(self.max_delay, self.delay * 2 ** (failed - 1)))

    @property
    def patience(self) -> float:
        """The sum of the waits: about how long the store may be away before a call gives up."""
        return sum(self.wait(n) for n in range(1, self.attempts))


def retry_policy() -> RetryPolicy:
    """The policy the settings give (environment variable, else ``[stateful]`` option, else default).

    Raises:
        StatefulUsageError: a setting that is not a whole number >= 1 (attempts) or a number of
            seconds >= 0 (the delays); the error names the setting.

    Example:
        >>> retry_policy() == RetryPolicy()  # nothing configured
        True
    """
    attempts = stateful_setting(ATTEMPTS_ENV, "store_retries", _check_attempts, DEFAULT_ATTEMPTS)
    delay = stateful_setting(DELAY_ENV, "store_retry_delay", _check_wait, DEFAULT_DELAY)
    max_delay = stateful_setting(MAX_DELAY_ENV, "store_retry_max_delay", _check_wait, DEFAULT_MAX_DELAY)
    return RetryPolicy(attempts, delay, max_delay)


def _check_attempts(value: object, where: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise StatefulUsageError(
            f"{where} must be a whole number >= 1 (how many times a load or save is tried while the "
            f"store cannot be reached; 1 tries once), got {value!r}."
        )
    return int(text)


def _check_wait(value: object, where: str) -> float:
    return check_seconds(value, where, "a wait between two attempts at a store that cannot be reached")


def retry(call: Callable[[], _T], what: str, *, policy: RetryPolicy | None = None) -> _T:
    """Call ``call()``; while it raises StoreUnavailableError, wait (blocking) and call it again.

    Args:
        call: the load or save.
        what: what is tried, for the log lines ("load files/landing for MySensor").
        policy: the policy; read from the settings at the first failure when not given.

    Raises:
        StoreUnavailableError: every attempt failed; the message says how long it was tried.
    """
    failed = 0
    while True:
        try:
            return call()
        except StoreUnavailableError as exc:
            failed += 1
            policy = policy or retry_policy()
            wait = _next_wait(exc, failed, policy, what)
        time.sleep(wait)


async def aretry(call: Callable[[], Awaitable[_T]], what: str, *, policy: RetryPolicy | None = None) -> _T:
    """:func:`retry` for the triggerer's loop: the waits are :func:`asyncio.sleep`, never blocking."""
    failed = 0
    while True:
        try:
            return await call()
        except StoreUnavailableError as exc:
            failed += 1
            policy = policy or retry_policy()
            wait = _next_wait(exc, failed, policy, what)
        await asyncio.sleep(wait)


def _next_wait(exc: StoreUnavailableError, failed: int, policy: RetryPolicy, what: str) -> float:
    """Log the failed attempt; return the wait before the next, or raise once none is left."""
    if failed >= policy.attempts:
        _LOG.error(
            "stateful: store unavailable: attempt %d/%d to %s failed: %s. Giving up after %.1f s of retries.",
            failed,
            policy.attempts,
            what,
            exc,
            policy.patience,
        )
        raise StoreUnavailableError(
            f"gave up trying to {what} after {policy.attempts} attempts over about {policy.patience:.1f} s "
            f"of waits: {exc} Nothing more was saved: a trigger stops here, Airflow starts it again and "
            f"it resumes from the stored watermark (the events since the last save repeat; none is "
            f"lost); a sensor's try fails and Airflow retries the task. If outages last longer, raise "
            f"[stateful] store_retries or store_retry_max_delay (STATEFUL_STORE_RETRIES, "
            f"STATEFUL_STORE_RETRY_MAX_DELAY)."
        ) from exc
    wait = policy.wait(failed)
    _LOG.warning(
        "stateful: store unavailable: attempt %d/%d to %s failed, retrying in %.1f s: %s",
        failed,
        policy.attempts,
        what,
        wait,
        exc,
    )
    return wait
