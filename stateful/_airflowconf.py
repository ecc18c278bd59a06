"""Airflow's configuration object on every supported Airflow (3.0 to 3.3).

The task SDK has its own ``airflow.sdk.configuration`` from Airflow 3.1 on; Airflow 3.0's task
SDK reads the configuration of airflow-core (``airflow.configuration``), which every Airflow 3.0
component has. Imported lazily by the callers: reading Airflow's configuration is slow to import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["airflow_conf", "stateful_setting"]

_T = TypeVar("_T")


def airflow_conf() -> Any:
    """Return Airflow's configuration (``conf.get(section, key, fallback=...)`` and friends)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.0
        from airflow.configuration import conf
    return conf


def stateful_setting(env: str, option: str, check: Callable[[object, str], _T], default: _T) -> _T:
    """A setting of this package: the environment variable, else ``[stateful] option``, else ``default``.

    The first one set (not empty) is passed to ``check(text, where)``, which returns the value or
    raises an error naming ``where`` (the variable or the option). Airflow's configuration is only
    read when the variable is not set.

    Example:
        >>> os.environ["STATEFUL_EXAMPLE_SETTING"] = "7"
        >>> stateful_setting("STATEFUL_EXAMPLE_SETTING", "example", lambda text, where: int(str(text)), 1)
        7
        >>> del os.environ["STATEFUL_EXAMPLE_SETTING"]
    """
    text = os.environ.get(env)
    if text:
        return check(text, f"environment variable {env}")
    text = airflow_conf().get("stateful", option, fallback=None)
    if text:
        return check(text, f"Airflow configuration [stateful] {option}")
    return default
