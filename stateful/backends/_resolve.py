"""Which store a ``@stateful`` trigger or sensor uses in Airflow: the rule of
:mod:`stateful.backends.choice`, applied to the object being run.

Applied when the watermark is first loaded (never at import). The choice and its reason are
logged at INFO on the ``stateful`` logger (DEBUG for a store given as an instance).

Switching stores never starts silently from nothing: :func:`load` / :func:`aload` read the
chosen store, and when it holds nothing for the watermark they read the other candidate once;
if that one holds it, :class:`~stateful.errors.StoreSwitchError` says how to move it. A store
given as an instance (``backend=SqlBackend(...)``) is used as it is, without that check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from stateful._address import command, display_address
from stateful._links import docs_url
from stateful.backends._scoped import SCOPED, scoped_store
from stateful.backends.base import AsyncStateBackend, StateBackend, StateRecord
from stateful.backends.choice import BACKEND_CHOICES, GIVEN, OPTION, BackendSetting, Given, plan
from stateful.backends.native import NativeBackend
from stateful.backends.sql import SqlBackend
from stateful.errors import StoreConfigError, StoreSwitchError

__all__ = [
    "Choice",
    "aload",
    "asset_scope",
    "choose",
    "configured_backend",
    "load",
    "resolve_async_store",
    "resolve_sync_store",
]

_LOG = logging.getLogger("stateful")

AnyBackend = StateBackend | AsyncStateBackend
S = TypeVar("S", StateBackend, AsyncStateBackend, AnyBackend)


def configured_backend() -> BackendSetting:
    """Return ``[stateful] backend`` (``auto`` when unset), validated.

    Raises:
        StoreConfigError: a value other than ``auto``, ``native`` or ``sql``.

    Example:
        >>> configured_backend() in BACKEND_CHOICES
        True
    """
    from stateful._airflowconf import stateful_option

    raw = stateful_option("backend") or "auto"
    value = raw.strip().lower()
    if value not in BACKEND_CHOICES:
        raise StoreConfigError(
            f"{OPTION} (AIRFLOW__STATEFUL__BACKEND) is {raw!r}; use one of {', '.join(BACKEND_CHOICES)} "
            f"(auto: the asset state store where there is one, else the SQL store)."
        )
    return value


def asset_scope(obj: object, context: Mapping[str, Any] | None = None) -> object | None:
    """The asset state store ``obj`` may use, or ``None``.

    ``context["asset_state_store"]`` for a task or sensor (present when it has a concrete
    ``Asset`` inlet or outlet, on Airflow >= 3.3); else ``obj.asset_state_store``, which the
    triggerer sets on a ``BaseEventTrigger`` run by an ``AssetWatcher`` (``None`` otherwise).
    """
    if context is not None:
        scope: object | None
        try:
            scope = context["asset_state_store"]
        except (KeyError, TypeError):
            scope = None
        if scope is not None:
            return scope
    injected: object | None = getattr(obj, "asset_state_store", None)
    return injected


@dataclass(frozen=True)
class Choice(Generic[S]):
    """The store a run uses, why, and the other candidate to read when it holds nothing.

    Attributes:
        store: the store the run reads and writes.
        reason: why it was chosen (the rule's words).
        other: the other candidate store, read once by :func:`load` / :func:`aload` when
            ``store`` holds nothing for the watermark; ``None`` when there is none.
    """

    store: S
    reason: str
    other: AnyBackend | None = None


def _default_sql() -> tuple[SqlBackend, str]:
    from stateful.backends.sql.default import choose_default_backend

    choice = choose_default_backend()
    return choice.backend, choice.reason


def choose(backend: AnyBackend | None, obj: object, scope: object | None) -> Choice[AnyBackend]:
    """Apply the rule to ``obj`` (blocking: it reads Airflow's configuration unless a store was given).

    Before the rule: with ``backend=None`` inside :func:`~stateful.backends._scoped.use_store`,
    that block's store.
    """
    scoped = scoped_store() if backend is None else None
    if scoped is not None:
        return Choice(scoped, SCOPED)
    given: Given = (
        "nothing"
        if backend is None
        else "native"
        if isinstance(backend, NativeBackend) and not backend.bound
        else "store"
    )
    setting: BackendSetting = configured_backend() if given == "nothing" else "auto"
    decided = plan(given, setting, has_asset_store=scope is not None, what=type(obj).__name__)
    if decided.store == "given":
        assert backend is not None
        return Choice(backend, decided.reason)
    native: NativeBackend | None = None
    if scope is not None:
        native = backend.bind(scope) if isinstance(backend, NativeBackend) else NativeBackend(scope)
    if decided.store == "native":
        assert native is not None
        sql, _ = _default_sql()
        return Choice(native, decided.reason, sql)
    sql, sql_reason = _default_sql()
    return Choice(sql, f"{decided.reason}; {sql_reason}", native)


def resolve_sync_store(
    backend: AnyBackend | None, obj: object, context: Mapping[str, Any] | None = None
) -> Choice[StateBackend]:
    """Return the store a sensor's ``poke()`` (or any sync caller) uses, why, and the other candidate.

    Args:
        backend: what was given to ``@stateful(backend=...)``.
        obj: the operator (or task) the watermark belongs to.
        context: the task's Airflow context; its ``"asset_state_store"`` is the asset scope.

    Raises:
        StoreConfigError: a bad ``[stateful] backend``, the native store asked for without an
            asset scope, or a given store without sync methods.

    Example:
        >>> from stateful.backends import MemoryBackend
        >>> resolve_sync_store(MemoryBackend(), object(), {}).reason
        'backend= given to @stateful'
    """
    choice = choose(backend, obj, asset_scope(obj, context))
    if not isinstance(choice.store, StateBackend):
        raise StoreConfigError(
            f"{choice.store!r} ({choice.reason}) has no blocking methods (read/write/...), which a "
            f"sensor needs; use a store implementing StateBackend."
        )
    _log_choice(obj, choice)
    return Choice(choice.store, choice.reason, choice.other)


async def resolve_async_store(backend: AnyBackend | None, obj: object) -> Choice[AsyncStateBackend]:
    """Return the store a trigger's ``run()`` uses, why, and the other candidate; never blocks the loop.

    Raises:
        StoreConfigError: see :func:`resolve_sync_store`; also a given store without async methods.

    Example:
        >>> import asyncio
        >>> from stateful.backends import MemoryBackend
        >>> asyncio.run(resolve_async_store(MemoryBackend(), object())).store.description
        'MemoryBackend'
    """
    scoped = scoped_store() if backend is None else None
    if scoped is not None:
        choice: Choice[AnyBackend] = Choice(scoped, SCOPED)
    elif backend is not None and not isinstance(backend, NativeBackend):
        choice = Choice(backend, GIVEN)
    else:
        # Reading Airflow's configuration (and building a store) may touch files.
        choice = await asyncio.to_thread(choose, backend, obj, asset_scope(obj))
    if not isinstance(choice.store, AsyncStateBackend):
        raise StoreConfigError(
            f"{choice.store!r} ({choice.reason}) has no async methods (aread/awrite/...), which a "
            f"trigger needs so it never blocks the triggerer's event loop."
        )
    _log_choice(obj, choice)
    return Choice(choice.store, choice.reason, choice.other)


def load(choice: Choice[StateBackend], namespace: str, name: str, key: str) -> StateRecord | None:
    """Read the watermark from the chosen store; if it holds none, make sure the other holds none.

    Raises:
        StoreSwitchError: the other candidate holds the watermark (see the module docstring).
    """
    record = choice.store.read(namespace, name, key)
    other = choice.other
    if record is None and other is not None and _may_hold_state(other):
        _check(choice, cast(StateBackend, other).read(namespace, name, key), namespace, name, key)
    return record


async def aload(choice: Choice[AsyncStateBackend], namespace: str, name: str, key: str) -> StateRecord | None:
    """:func:`load` for a trigger: the reads are the store's async ones."""
    record = await choice.store.aread(namespace, name, key)
    other = choice.other
    if record is None and other is not None and await asyncio.to_thread(_may_hold_state, other):
        found = await cast(AsyncStateBackend, other).aread(namespace, name, key)
        _check(choice, found, namespace, name, key)
    return record


def _log_choice(obj: object, choice: Choice[Any]) -> None:
    # A store given as an instance needs no explanation (DEBUG); a chosen one does (INFO).
    level = logging.DEBUG if choice.reason in (GIVEN, SCOPED) else logging.INFO
    _LOG.log(level, "stateful: %s uses %s (%s)", type(obj).__name__, choice.store.description, choice.reason)


def _check(choice: Choice[Any], found: StateRecord | None, namespace: str, name: str, key: str) -> None:
    if found is None:
        return
    assert choice.other is not None
    chosen, other = choice.store.description, choice.other.description
    if isinstance(choice.other, SqlBackend):
        keep = "set [stateful] backend = sql (AIRFLOW__STATEFUL__BACKEND=sql) or pass backend=SqlBackend(...)"
    else:
        keep = "set [stateful] backend = native (or auto) so the asset state store is used"
    by = f" by {found.updated_by}" if found.updated_by else ""
    raise StoreSwitchError(
        f"state {display_address(namespace, name, key)} is not in {chosen}, the store chosen now "
        f"({choice.reason}), but {other} holds it (version {found.version}, written "
        f"{found.updated_at:%Y-%m-%d %H:%M:%S} UTC{by}). Nothing was started: an empty "
        f"watermark would emit everything again. Move it: "
        f"`{command('stateful', 'export', '--namespace', namespace)}` from the old store, then "
        f"`stateful import FILE` into the new one ({docs_url('stores', 'switching-stores')}); or "
        f"keep the old store: {keep}; or, to start from nothing on purpose, delete it from {other} "
        f"(`{command('stateful', 'delete', namespace, name)}`).",
        namespace=namespace,
        name=name,
        key=key,
        chosen=chosen,
        other=other,
    )


def _may_hold_state(store: Any) -> bool:
    """False for a SQLite file that does not exist: reading it would only create it."""
    if isinstance(store, SqlBackend):
        path = store.sqlite_file
        if path is not None and not path.exists():
            return False
    return True
