"""Which store a command uses: chosen in one place, the way ``@stateful`` chooses it.

``--database-url`` wins; then, for ``run``, the store the trigger's decorator names
(``backend=``); then the decorator's default rules (:func:`choose_default_backend`):
``STATEFUL_DATABASE_URL``, ``[stateful] database_url``, SQLite at ``$AIRFLOW_HOME/stateful.db``.
Every description shown masks the database password.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stateful.backends.base import AsyncStateBackend, StateBackend, SupportsHistory
from stateful.cli._errors import CliError
from stateful.cli._output import logs_to_stderr

if TYPE_CHECKING:
    from stateful.decorators import StatefulSpec

__all__ = ["StoreChoice", "choose_store", "choose_trigger_store", "writer"]


@dataclass(frozen=True)
class StoreChoice:
    """A store and why it was chosen (both shown to the user; no password)."""

    store: Any  # StateBackend and/or AsyncStateBackend
    reason: str

    @property
    def description(self) -> str:
        return str(self.store.description)

    def sync(self) -> StateBackend:
        """The store's blocking interface (every command but ``run`` uses it)."""
        if not isinstance(self.store, StateBackend):
            raise CliError(
                f"{self.description} has no blocking interface (read/write/...); the CLI needs one."
            )
        return self.store

    def history(self) -> SupportsHistory:
        """The store's history, or a clear error when it keeps none."""
        if not isinstance(self.store, SupportsHistory):
            raise CliError(
                f"{self.description} keeps no history of earlier versions; only the SQL store does "
                f"(see docs/cli.md)."
            )
        return self.store


def choose_store(database_url: str | None) -> StoreChoice:
    """The store for commands that address watermarks by namespace and name."""
    if database_url:
        return _sql(database_url)
    # Future stores (Airflow's own) add their resolution rule here, so every command follows it.
    from stateful.backends._default import choose_default_backend

    choice = choose_default_backend()
    logs_to_stderr()  # reading Airflow's configuration imported Airflow
    return StoreChoice(choice.backend, choice.reason)


def choose_trigger_store(spec: StatefulSpec, database_url: str | None) -> StoreChoice:
    """The store ``stateful run`` drives a trigger against."""
    if database_url:
        return _sql(database_url)
    if spec.backend is not None:
        if not isinstance(spec.backend, AsyncStateBackend):
            raise CliError(f"{spec.backend.description} has no async methods, which a trigger needs.")
        return StoreChoice(spec.backend, "the trigger's @stateful(backend=...)")
    return choose_store(None)


def _sql(url: str) -> StoreChoice:
    from stateful.backends.sql import SqlBackend

    return StoreChoice(SqlBackend(url), "--database-url")


def writer(action: str) -> str:
    """``updated_by`` for a change made with the CLI, e.g. ``stateful rewind by alice@ops-1``."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = "unknown"
    return f"stateful {action} by {user}@{socket.gethostname()}"
