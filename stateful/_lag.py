"""How far behind a watermark is, and when it counts as stuck: one rule for metrics, logs and the UI.

No I/O. The lag of a watermark is ``now`` minus its ``timestamp``; a watermark without a
timestamp has no lag (``None``). A watermark is *stuck* when it has not moved for longer than
``max_lag`` while its trigger runs; ``max_lag`` is the decorator's argument, else
``STATEFUL_MAX_LAG`` (seconds), else ``[stateful] max_lag``, else off.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from stateful._airflowconf import check_seconds, stateful_setting

__all__ = ["MAX_LAG_ENV", "check_max_lag", "is_stuck", "lag_seconds", "max_lag_setting"]

MAX_LAG_ENV = "STATEFUL_MAX_LAG"


def lag_seconds(timestamp: datetime | None, now: datetime) -> float | None:
    """Seconds from ``timestamp`` to ``now`` (never below 0), or ``None`` without a timestamp.

    A naive ``timestamp`` is read as UTC, as the stored document writes it.

    Example:
        >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> lag_seconds(t, t + timedelta(minutes=2))
        120.0
        >>> lag_seconds(None, t) is None
        True
    """
    if timestamp is None:
        return None
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=timezone.utc)
    return max(0.0, (now - timestamp).total_seconds())


def is_stuck(last_moved: datetime, now: datetime, max_lag: timedelta | None) -> bool:
    """Whether a watermark that last moved at ``last_moved`` is stuck at ``now`` (``max_lag=None``: never).

    Example:
        >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> is_stuck(t, t + timedelta(hours=2), timedelta(hours=1))
        True
        >>> is_stuck(t, t + timedelta(hours=2), None)
        False
    """
    return max_lag is not None and now - last_moved > max_lag


def check_max_lag(value: object, where: str) -> timedelta:
    """Return ``value`` as a duration > 0, else raise naming ``where``.

    Example:
        >>> check_max_lag("90", "STATEFUL_MAX_LAG")
        datetime.timedelta(seconds=90)
    """
    meaning = "how long a watermark may stay still while its trigger runs before it is reported stuck"
    seconds = check_seconds(value, where, meaning, above_zero=True)
    return timedelta(seconds=seconds)


def max_lag_setting(max_lag: timedelta | None = None) -> timedelta | None:
    """``max_lag`` if given, else ``STATEFUL_MAX_LAG``, else ``[stateful] max_lag``, else ``None`` (off).

    Example:
        >>> max_lag_setting(timedelta(minutes=5))
        datetime.timedelta(seconds=300)
    """
    if max_lag is not None:
        return max_lag
    return stateful_setting(MAX_LAG_ENV, "max_lag", check_max_lag, None)
