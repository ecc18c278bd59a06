"""Which store a command uses: chosen in one place, the way ``@stateful`` chooses it.

First match wins:

1. ``--database-url``: that SQL store.
2. ``--airflow-url``: the Airflow-native store (an asset's state store, AIP-103) through
   Airflow's REST API; ``--asset`` names the asset (``list`` and ``export`` read every asset
   without it).
3. for ``run``, the store the trigger's decorator names (``backend=``);
4. the decorator's own rule (:func:`stateful.backends.choice.plan`) as it applies outside
   Airflow, where nothing has an asset state store: ``[stateful] backend`` first (``native``
   cannot be reached without rule 2: a clear error says so), then the SQL store:
   ``STATEFUL_DATABASE_URL``, else ``[stateful] database_url``, else SQLite at
   ``$AIRFLOW_HOME/stateful.db``. The same order as in Airflow: an option naming the native
   store is never overridden by a database URL in the environment.

Every description shown masks the database password.

How a command opens a SQL store depends on what it does (:data:`ACCESS`): the read-only
commands (``show``, ``list``, ``history``, ``export``) never create anything, and a store
that does not exist (no SQLite file, no state table) is "no store at ..." (exit 4); the edits
(``set``, ``reset``, ``rewind``, ``delete``) never create a SQLite file (``set --create``
excepted); ``run``, ``poke`` and ``import`` create the store as the trigger would, and say so
when they just did (a new, empty store). Every command names the store and the rule that chose
it: ``run``, ``poke``, ``list`` and ``show`` in their output, the others in a line on stderr
(not with ``--json``).
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from typing import Any, Literal

import click

from stateful._links import docs_url
from stateful._spec import StatefulSpec
from stateful.backends.base import AsyncStateBackend, StateBackend, SupportsHistory
from stateful.cli._errors import CliError, NotFoundError, UsageError
from stateful.cli._native import AirflowApi
from stateful.cli._output import logs_to_stderr
from stateful.errors import StoreConfigError, StoreNotFoundError

__all__ = [
    "ACCESS",
    "Access",
    "StoreChoice",
    "StoreOptions",
    "choose_store",
    "choose_trigger_store",
    "writer",
]

#: How a command uses its store: ``read`` creates nothing, ``edit`` changes an existing
#: watermark (never creates a SQLite file), ``write`` may start a new store.
Access = Literal["read", "edit", "write"]
ACCESS: dict[str, Access] = {
    "list": "read",
    "show": "read",
    "history": "read",
    "export": "read",
    "set": "edit",
    "reset": "edit",
    "rewind": "edit",
    "delete": "edit",
    "run": "write",
    "poke": "write",
    "import": "write",
}
# The commands whose output names the store and the rule (the others say it on stderr).
_NAME_THE_RULE = frozenset({"run", "poke", "list", "show"})
_EXPECTED = "If you expected state there, check --database-url and STATEFUL_DATABASE_URL."

NATIVE_HINT = (
    "On Airflow >= 3.3 the watermarks of asset watchers, and of tasks with an asset, are kept in "
    "the asset's state store: reach them with --airflow-url URL --asset NAME."
)


@dataclass(frozen=True)
class StoreOptions:
    """What the user said about the store (``--database-url``, ``--airflow-url``, ...)."""

    database_url: str | None = None
    airflow_url: str | None = None
    asset: str | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class StoreChoice:
    """A store and why it was chosen (both shown to the user; no password).

    ``store`` is ``None`` when the native store was asked for without ``--asset``: then
    ``api`` reaches every asset (``list`` and ``export`` only).
    """

    store: Any  # StateBackend and/or AsyncStateBackend
    reason: str
    api: AirflowApi | None = None
    default: bool = False  # chosen by the default rules (not named by the user)

    @property
    def description(self) -> str:
        if self.store is None:
            assert self.api is not None
            return f"the asset state stores of every asset via {self.api.shown}"
        return str(self.store.description)

    def sync(self) -> StateBackend:
        """The store's blocking interface (every command but ``run`` uses it)."""
        if self.store is None:
            raise UsageError("this command needs --asset NAME with --airflow-url: which asset's state store?")
        if not isinstance(self.store, StateBackend):
            raise CliError(
                f"{self.description} has no blocking interface (read/write/...); the CLI needs one."
            )
        return self.store

    def history(self) -> SupportsHistory:
        """The store's history, or a clear error when it keeps none."""
        if not isinstance(self.store, SupportsHistory):
            raise CliError(
                f"{self.description} keeps no history of earlier versions; the SQL store and the "
                f"Airflow-native store (--airflow-url URL --asset NAME) do "
                f"(see {docs_url('cli', 'history')})."
            )
        return self.store

    def hint(self) -> str:
        """What to try when a default store holds nothing: the native store may hold it."""
        return f" {NATIVE_HINT}" if self.default else ""


def choose_store(options: StoreOptions, access: Access | None = None) -> StoreChoice:
    """The store for commands that address watermarks by namespace and name.

    The command's own flags first (``--database-url``, then ``--airflow-url``); else the rule
    of :mod:`stateful.backends.choice`, as it applies outside Airflow, where nothing has an asset
    state store: ``[stateful] backend = native`` is refused with how to reach that store, and
    otherwise the default SQL store is used. A SQL store is opened at once, as ``access`` (by
    default the running command's, from :data:`ACCESS`) allows.

    Raises:
        NotFoundError: the store does not exist and ``access`` may not create it.
    """
    if access is None:
        access = _command_access()
    if options.database_url:
        return _opened(_sql(options.database_url, access), access)
    if options.airflow_url:
        return _announced(_native(options))
    if options.asset:
        raise UsageError("--asset needs --airflow-url (the Airflow API server whose asset it is).")
    from stateful.backends._resolve import configured_backend
    from stateful.backends.choice import plan
    from stateful.backends.sql.default import default_store, default_url

    setting = configured_backend()
    try:
        plan("nothing", setting, has_asset_store=False, what="a command run outside Airflow")
    except StoreConfigError:
        raise CliError(
            "[stateful] backend is native: the watermarks are in the state stores of Airflow's "
            "assets. Reach one with --airflow-url URL --asset NAME, or a SQL store with --database-url."
        ) from None
    url, reason = default_url()
    store = default_store(url, create=access != "read")
    return _opened(StoreChoice(store, reason, default=True), access)


def choose_trigger_store(spec: StatefulSpec, options: StoreOptions, what: str = "trigger") -> StoreChoice:
    """The store ``stateful run`` drives a trigger against, or ``stateful poke`` a sensor (rules 1 to 4)."""
    from stateful.backends.native import NativeBackend

    command = "stateful run" if what == "trigger" else "stateful poke"
    if options.database_url or options.airflow_url:
        choice = choose_store(options, "write")
        if choice.store is None:
            raise UsageError(
                f"{command} with --airflow-url needs --asset NAME: the asset the {what} watches."
            )
        return choice
    if isinstance(spec.backend, NativeBackend):
        raise UsageError(
            f"this {what} keeps its watermark in Airflow's asset state store (backend=NativeBackend()); "
            "outside Airflow, reach it with --airflow-url URL --asset NAME, or use --database-url."
        )
    if spec.backend is not None:
        needed = AsyncStateBackend if what == "trigger" else StateBackend
        if not isinstance(spec.backend, needed):
            kind = "async" if what == "trigger" else "blocking"
            raise CliError(f"{spec.backend.description} has no {kind} methods, which a {what} needs.")
        return _opened(StoreChoice(spec.backend, f"the {what}'s @stateful(backend=...)"), "write")
    return choose_store(options, "write")


def _command_access() -> Access:
    """The running command's access (``write`` outside a command); ``set --create`` writes."""
    context = click.get_current_context(silent=True)
    name = context.info_name if context is not None else None
    access = ACCESS.get(name or "", "write")
    if access == "edit" and context is not None and context.params.get("create"):
        return "write"
    return access


def _opened(choice: StoreChoice, access: Access) -> StoreChoice:
    """Open a SQL store now, as ``access`` allows; say when it is missing, or new."""
    from stateful.backends.sql import SqlBackend

    store = choice.store
    if not isinstance(store, SqlBackend):
        return _announced(choice)
    chosen = f"The store was chosen by: {choice.reason}. {_EXPECTED}{choice.hint()}"
    path = store.sqlite_file
    if access == "edit" and path is not None and not path.is_file():
        raise NotFoundError(
            f"no store at sqlite:///{path}: the SQLite file {path} does not exist (nothing was "
            f"created). {chosen}"
        )
    try:
        store.open()
    except StoreNotFoundError as exc:
        raise NotFoundError(f"{exc} {chosen}") from None
    logs_to_stderr()  # a store may import what resets the logging (Airflow's configuration)
    if store.created and not _as_json():
        click.echo(
            f"Note: created a new, empty store at {choice.description} (chosen by: {choice.reason}): "
            f"nothing was stored there before, so a watermark starts empty. {_EXPECTED}",
            err=True,
        )
    return _announced(choice)


def _announced(choice: StoreChoice) -> StoreChoice:
    """Name the store and its rule on stderr, for the commands whose output does not."""
    context = click.get_current_context(silent=True)
    if context is None or context.info_name in _NAME_THE_RULE or _as_json():
        return choice
    click.echo(f"store: {choice.description} (chosen by: {choice.reason})", err=True)
    return choice


def _as_json() -> bool:
    """Whether the running command writes JSON (``--json``): then stderr carries only errors."""
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.params.get("as_json"))


def _sql(url: str, access: Access) -> StoreChoice:
    from stateful.backends.sql import SqlBackend

    return StoreChoice(SqlBackend(url, create=access != "read"), "--database-url")


def _native(options: StoreOptions) -> StoreChoice:
    from stateful.cli._native import RestNativeStore

    assert options.airflow_url is not None
    api = AirflowApi(
        options.airflow_url, token=options.token, username=options.username, password=options.password
    )
    if options.asset is None:
        return StoreChoice(None, "--airflow-url", api=api)
    store = RestNativeStore(api, api.asset(options.asset))
    logs_to_stderr()  # the native store imported Airflow
    return StoreChoice(store, "--airflow-url and --asset", api=api)


def writer(action: str) -> str:
    """``updated_by`` for a change made with the CLI, e.g. ``stateful rewind by alice@ops-1``."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = "unknown"
    return f"stateful {action} by {user}@{socket.gethostname()}"
