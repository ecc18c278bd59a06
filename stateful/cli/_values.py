"""Reading what users type: timestamps, cursors, JSON objects and ``MODULE:CLASS`` paths."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
from datetime import datetime, timezone
from typing import Any

from stateful.cli._errors import USAGE, UsageError, user_code_failed

__all__ = [
    "load_decorated",
    "load_object",
    "parse_cursor",
    "parse_json_object",
    "parse_timestamp",
    "parse_version_or_time",
]

_ZULU = re.compile(r"[zZ]$")


def parse_timestamp(text: str, option: str) -> datetime:
    """Parse an ISO 8601 date-time with a time zone; return it in UTC.

    Example:
        >>> parse_timestamp("2025-06-02T09:00:00+02:00", "--timestamp").isoformat()
        '2025-06-02T07:00:00+00:00'
        >>> parse_timestamp("2025-06-02 09:00Z", "--timestamp").isoformat()
        '2025-06-02T09:00:00+00:00'
    """
    try:
        # Python 3.10's fromisoformat() does not know the "Z" suffix.
        value = datetime.fromisoformat(_ZULU.sub("+00:00", text.strip()))
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not an ISO 8601 date-time. Write it like 2025-06-02T09:00:00Z "
            f"or 2025-06-02T11:00:00+02:00."
        ) from None
    if value.utcoffset() is None:
        raise UsageError(
            f"{option}: {text!r} has no time zone, so it could mean different instants on different "
            f"machines. Add one: {value.isoformat()}Z for UTC, or an offset such as +02:00."
        )
    return value.astimezone(timezone.utc)


def parse_version_or_time(text: str, option: str) -> int | datetime:
    """A version number (``12``) or an ISO 8601 date-time with a time zone.

    Example:
        >>> parse_version_or_time("12", "--to")
        12
    """
    if text.strip().isdigit():
        return int(text)
    try:
        return parse_timestamp(text, option)
    except UsageError:
        raise UsageError(
            f"{option}: {text!r} is neither a version number (see `stateful history`) nor an ISO 8601 "
            f"date-time with a time zone such as 2025-06-02T09:00:00Z."
        ) from None


def parse_cursor(text: str) -> Any:
    """A cursor given on the command line: JSON if it parses (``42``, ``"42"``, ``[1, 2]``), else text.

    Example:
        >>> parse_cursor("42"), parse_cursor('"42"'), parse_cursor("orders-17")
        (42, '42', 'orders-17')
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_json_object(text: str, option: str) -> dict[str, Any]:
    """Parse a JSON object, e.g. ``--kwargs '{"directory": "/data"}'``.

    Example:
        >>> parse_json_object('{"a": 1}', "--kwargs")
        {'a': 1}
    """
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"{option} is not valid JSON ({exc}): {text!r}. Quote it for your shell, e.g. "
            f"""{option} '{{"directory": "/data/landing"}}'."""
        ) from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object ({{...}}), not {type(value).__name__}: {text!r}.")
    return value


def load_object(path: str, option: str) -> Any:
    """Import ``package.module:Name`` (the working directory is importable, as with ``python -m``)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(
            f"{option}: expected MODULE:NAME such as examples.local_files:NewFilesTrigger, got {path!r}."
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise UsageError(
                f"{option}: cannot import module {module_name!r}: {exc}. Run from the directory that "
                f"contains it, or add that directory to PYTHONPATH."
            ) from None
        # The module exists but one of its own imports is missing: say which, and where.
        raise user_code_failed(
            f"importing {module_name!r} ({option})", exc, "Install the missing package, or fix the import."
        ) from exc
    except Exception as exc:  # the module's own code failed at import time
        raise user_code_failed(f"importing {module_name!r} ({option})", exc, "Fix the module.") from exc
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise UsageError(f"{option}: module {module_name!r} has no attribute {attribute!r}.") from None
    return value


def load_decorated(
    path: str, kwargs: dict[str, Any], *, method: str, form: str, usage: str
) -> tuple[Any, Any, Any]:
    """The class at ``path`` built from ``kwargs``, once its ``method`` is checked to be ``@stateful``.

    Args:
        path: ``module:Class``.
        kwargs: the constructor's arguments (``--kwargs``).
        method: ``run`` (a trigger) or ``poke`` (a sensor).
        form: the decorated form expected, ``trigger`` or ``sensor``.
        usage: what the command drives, said when ``method`` is not decorated.

    Returns:
        The instance, the decorator's spec and the undecorated method.

    Raises:
        UsageError: ``path`` is not a class, its ``method`` is not decorated for ``form``, or the
            class refuses ``kwargs``.
    """
    cls = load_object(path, "MODULE:CLASS")
    if not inspect.isclass(cls):
        raise UsageError(f"{path} is not a class but {type(cls).__name__}; give the {form} class.")
    decorated = getattr(cls, method, None)
    spec = getattr(decorated, "__stateful__", None)
    original = getattr(decorated, "__wrapped__", None)
    if spec is None or original is None or spec.form != form:
        raise UsageError(f"{path}.{method}() is not decorated with @stateful; {usage}")
    try:
        instance = cls(**kwargs)
    except TypeError as exc:
        raise UsageError(
            f"cannot create {path} from --kwargs {kwargs}: {exc}. Its parameters: {inspect.signature(cls)}."
        ) from None
    except Exception as exc:  # the constructor's own code refused these arguments
        raise user_code_failed(
            f"creating {path} from --kwargs {kwargs}",
            exc,
            "Check the constructor's arguments.",
            exit_code=USAGE,
        ) from exc
    return instance, spec, original
