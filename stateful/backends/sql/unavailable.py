"""Telling a database that cannot be reached now from one that refuses for good.

A SQL store turns every failure of its database into a :class:`~stateful.errors.StoreError`;
:func:`unreachable` says which of them are a
:class:`~stateful.errors.StoreUnavailableError`, the kind the drivers retry with backoff:

* the connection failed or was lost: refused, reset, timed out, closed by a server that is
  shutting down or restarting (PostgreSQL SQLSTATE classes ``08`` and ``57P``), too many
  connections (class ``53``), a serialization failure or deadlock (class ``40``), or a
  connection SQLAlchemy invalidated;
* SQLite: the file is locked by another process past the busy timeout (``database is locked``);
* the pool had no connection to give in time, or an ``OSError`` such as a network error.

Wrong credentials (SQLSTATE class ``28``), a missing table, bad SQL, a full disk or a SQLite
file that cannot be opened (a missing directory, no permission) are not: retrying them only
delays the message that says what to fix.

Example:
    >>> import sqlite3
    >>> unreachable(sqlite3.OperationalError("database is locked"))
    True
    >>> unreachable(sqlite3.OperationalError("no such table: stateful_state"))
    False
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

__all__ = ["unreachable"]

# PostgreSQL SQLSTATE classes (and codes) of a server that cannot serve now but may soon.
_TRANSIENT_SQLSTATE = ("08", "57P", "53", "40")
# SQLite errors of a file that another connection holds locked.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked")
_PG = frozenset({"psycopg", "psycopg2"})
_SQLITE = frozenset({"sqlite3"})
# What a server that is up says when it refuses a connection for good.
_REFUSED = ("authentication failed", "does not exist", "no pg_hba.conf entry", "permission denied")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it wraps) means the database cannot be reached now."""
    for error in _chain(exc):
        verdict = _classify(error)
        if verdict is not None:
            return verdict
    return False


def _classify(error: BaseException) -> bool | None:
    """``True``/``False`` when ``error`` settles it, ``None`` to look at what it wraps."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if _is_driver_error(error, "OperationalError", _SQLITE):
        text = str(error).lower()
        return any(text.startswith(transient) for transient in _SQLITE_TRANSIENT)
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if _is_driver_error(error, "OperationalError", _PG) or _is_driver_error(error, "InterfaceError", _PG):
        # psycopg / psycopg2: a failed or lost connection has no SQLSTATE, or class 08 / 57P;
        # a refused login or a missing database (no SQLSTATE either at connect time) is for good.
        if any(fixed in str(error).lower() for fixed in _REFUSED):
            return False
        return not sqlstate or str(sqlstate).startswith(_TRANSIENT_SQLSTATE)
    if sqlstate and str(sqlstate).startswith(_TRANSIENT_SQLSTATE):
        return True
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, OSError) and not isinstance(error, PermissionError):
        return True
    return None


def _is_driver_error(error: BaseException, name: str, drivers: frozenset[str]) -> bool:
    """Whether ``error`` is the ``name`` error of one of ``drivers`` (top-level modules): by its
    classes' names, so that no driver is imported to ask."""
    return any(
        cls.__name__ == name and cls.__module__.split(".")[0] in drivers for cls in type(error).__mro__
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps: a DBAPIError's ``orig``, a batch's ``error``, causes, contexts."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(
            [
                getattr(current, "orig", None),
                getattr(current, "error", None),
                current.__cause__,
                current.__context__,
            ]
        )
