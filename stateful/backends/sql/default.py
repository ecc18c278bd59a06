"""The SQL store used when ``@stateful`` is given none: chosen at call time, one per URL.

Rules, first match wins:

1. the environment variable ``STATEFUL_DATABASE_URL``;
2. the Airflow configuration option ``[stateful] database_url`` (so also the environment
   variable ``AIRFLOW__STATEFUL__DATABASE_URL``);
3. SQLite at ``$AIRFLOW_HOME/stateful.db`` (``~/airflow/stateful.db`` if ``AIRFLOW_HOME`` is unset).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from stateful._airflowconf import stateful_option
from stateful.backends.sql.store import SqlBackend

__all__ = [
    "ENV_VAR",
    "DefaultChoice",
    "choose_default_backend",
    "default_backend",
    "default_store",
    "default_url",
    "dispose_default_stores",
]

ENV_VAR = "STATEFUL_DATABASE_URL"

_lock = threading.Lock()
# One store per URL, so every trigger in a triggerer shares one engine and connection pool
# (and one per URL opened to read only, by the CLI: SqlBackend(url, create=False)).
_backends: dict[tuple[str, bool], SqlBackend] = {}


@dataclass(frozen=True)
class DefaultChoice:
    """The default store and the rule that chose it.

    Attributes:
        backend: the store (shared by every caller that resolves to the same URL).
        reason: which rule chose it, for a log line; never shows the password.
    """

    backend: SqlBackend
    reason: str


def choose_default_backend() -> DefaultChoice:
    """Apply the rules now (not at import) and return the store with the reason."""
    url, reason = default_url()
    return DefaultChoice(default_store(url), reason)


def default_url() -> tuple[str, str]:
    """Apply the rules now and return the default store's URL and the rule that chose it.

    Example:
        >>> url, reason = default_url()
        >>> reason.split()[0] in {"environment", "Airflow", "default"}
        True
    """
    url = os.environ.get(ENV_VAR)
    if url:
        return url, f"environment variable {ENV_VAR}"
    # Read without importing Airflow where its configuration is not loaded yet (the CLI).
    url = stateful_option("database_url")
    if url:
        return url, "Airflow configuration [stateful] database_url"
    home = Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser().absolute()
    path = home / "stateful.db"
    return (
        f"sqlite:///{path}",
        f"default SQLite file {path} (set {ENV_VAR} or [stateful] database_url to use another store)",
    )


def default_backend() -> SqlBackend:
    """Return the default store (see the module docstring for the rules)."""
    return choose_default_backend().backend


def default_store(url: str, *, create: bool = True) -> SqlBackend:
    """The process's store for ``url`` (see :class:`SqlBackend` for ``create``), made at first use."""
    with _lock:
        backend = _backends.get((url, create))
        if backend is None:
            backend = _backends[(url, create)] = SqlBackend(url, create=create)
        return backend


def dispose_default_stores() -> None:
    """Close every default store of this process and forget it; the next use opens a new one.

    The default stores are kept per URL for the life of the process, with their connections.
    Call this to release them: in your own tests that point ``STATEFUL_DATABASE_URL`` at a
    temporary file, or in a long-lived process that is done with them.

    Example:
        >>> dispose_default_stores()
    """
    with _lock:
        backends = list(_backends.values())
        _backends.clear()
    for backend in backends:
        backend.dispose()
