"""Airflow's configuration object on every supported Airflow (3.0 to 3.3).

The task SDK has its own ``airflow.sdk.configuration`` from Airflow 3.1 on; Airflow 3.0's task
SDK reads the configuration of airflow-core (``airflow.configuration``), which every Airflow 3.0
component has. Imported lazily by the callers: reading Airflow's configuration is slow to import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["airflow_conf"]


def airflow_conf() -> Any:
    """Return Airflow's configuration (``conf.get(section, key, fallback=...)`` and friends)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.0
        from airflow.configuration import conf
    return conf
