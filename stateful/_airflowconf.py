"""Airflow's configuration on every supported Airflow (3.0 to 3.3), and this package's options in it.

The task SDK has its own ``airflow.sdk.configuration`` from Airflow 3.1 on; Airflow 3.0's task
SDK reads the configuration of airflow-core (``airflow.configuration``), which every Airflow 3.0
component has. Imported lazily by the callers: Airflow's configuration takes seconds to import.

:func:`stateful_option` reads one ``[stateful]`` option. In a process that has loaded Airflow's
configuration (a triggerer, a worker, a DAG file) it asks that configuration. Elsewhere (the
``stateful`` command line) it reads the option where Airflow would find it, without importing
Airflow: the environment variable ``AIRFLOW__STATEFUL__<OPTION>``, else the option in the
configuration file (``$AIRFLOW_CONFIG``, else ``$AIRFLOW_HOME/airflow.cfg``), each with
environment variables and ``~`` expanded as Airflow expands them. ``[stateful]`` options have no
default in Airflow and are not "sensitive" (Airflow reads no ``_cmd``/``_secret`` variant for
them), so those two places are all there is; in the cases this reading does not cover (Airflow's
unit-test mode, a configuration file that does not parse) it asks Airflow.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from stateful.errors import StatefulUsageError

__all__ = ["airflow_conf", "check_seconds", "stateful_option", "stateful_setting"]

_T = TypeVar("_T")
SECTION = "stateful"
# Modules whose presence means Airflow's configuration is loaded (and cheap to ask).
_LOADED = ("airflow.sdk.configuration", "airflow.configuration")


def airflow_conf() -> Any:
    """Return Airflow's configuration (``conf.get(section, key, fallback=...)`` and friends)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.0
        from airflow.configuration import conf
    return conf


def stateful_option(option: str) -> str | None:
    """``[stateful] option`` as Airflow's configuration has it, or ``None`` when it is not set.

    Imports Airflow only when the process has loaded its configuration already, or in the
    cases the module docstring lists.

    Example:
        >>> os.environ["AIRFLOW__STATEFUL__EXAMPLE"] = "~/x"
        >>> stateful_option("example") == os.path.expanduser("~/x")
        True
        >>> del os.environ["AIRFLOW__STATEFUL__EXAMPLE"]
    """
    if any(name in sys.modules for name in _LOADED) or _unit_test_mode():
        return _from_airflow(option)
    env = f"AIRFLOW__{SECTION.upper()}__{option.upper()}"
    if env in os.environ:
        return _expand(os.environ[env])
    parser = configparser.ConfigParser()  # Airflow's parser is one (with its interpolation)
    path = _config_file()
    try:
        parser.read(path, encoding="utf-8")
        if not parser.has_option(SECTION, option):
            return None
        return _expand(parser.get(SECTION, option))
    except (configparser.Error, OSError, UnicodeDecodeError):
        return _from_airflow(option)  # Airflow's own answer (or its own error)


def stateful_setting(env: str, option: str, check: Callable[[object, str], _T], default: _T) -> _T:
    """A setting of this package: the environment variable, else ``[stateful] option``, else ``default``.

    The first one set (not empty) is passed to ``check(text, where)``, which returns the value or
    raises an error naming ``where`` (the variable or the option). Airflow's configuration is
    read as :func:`stateful_option` reads it, and only when the variable is not set.

    Example:
        >>> os.environ["STATEFUL_EXAMPLE_SETTING"] = "7"
        >>> stateful_setting("STATEFUL_EXAMPLE_SETTING", "example", lambda text, where: int(str(text)), 1)
        7
        >>> del os.environ["STATEFUL_EXAMPLE_SETTING"]
    """
    text = os.environ.get(env)
    if text:
        return check(text, f"environment variable {env}")
    text = stateful_option(option)
    if text:
        return check(text, f"Airflow configuration [stateful] {option}")
    return default


def check_seconds(value: object, where: str, meaning: str, *, above_zero: bool = False) -> float:
    """Return a duration setting in seconds: ``value`` is a ``timedelta`` or a number as text.

    The one check of every duration this package reads (an argument, a variable, an option):
    finite and ``>= 0`` (``> 0`` with ``above_zero``), else :class:`StatefulUsageError` naming
    ``where`` and saying what the setting is (``meaning``).

    Example:
        >>> check_seconds("1.5", "STATEFUL_EXAMPLE", "an example")
        1.5
        >>> check_seconds(timedelta(minutes=1), "delay of @stateful", "an example", above_zero=True)
        60.0
        >>> check_seconds("-1", "STATEFUL_EXAMPLE", "an example")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stateful.errors.StatefulUsageError: STATEFUL_EXAMPLE must be a duration >= 0 ..., got '-1'.
    """
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            seconds = None
    valid = seconds is not None and (seconds > 0 if above_zero else seconds >= 0) and seconds != float("inf")
    if seconds is None or not valid:
        raise StatefulUsageError(
            f"{where} must be a duration {'>' if above_zero else '>='} 0 (a timedelta; seconds in the "
            f"configuration), {meaning}, got {value!r}."
        )
    return seconds


def _from_airflow(option: str) -> str | None:
    value: str | None = airflow_conf().get(SECTION, option, fallback=None)
    return value


def _unit_test_mode() -> bool:
    # Airflow then reads its unit-test configuration instead of the file: let it.
    return os.environ.get("AIRFLOW__CORE__UNIT_TEST_MODE", "").strip().lower() in {"t", "true", "1"}


def _config_file() -> str:
    """The file Airflow reads its configuration from (it need not exist)."""
    given = os.environ.get("AIRFLOW_CONFIG")
    if given is not None:
        return _expand(given)
    return os.path.join(_expand(os.environ.get("AIRFLOW_HOME", "~/airflow")), "airflow.cfg")


def _expand(text: str) -> str:
    """Environment variables and ``~``, expanded until nothing changes (Airflow's ``expand_env_var``)."""
    while True:
        expanded = os.path.expanduser(os.path.expandvars(text))
        if expanded == text:
            return expanded
        text = expanded
