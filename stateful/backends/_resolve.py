"""Which store a ``@stateful`` trigger or sensor uses: one rule for both drivers.

The rule, applied when the watermark is first loaded (never at import), first match wins:

1. ``backend=`` given to ``@stateful``: that store. ``NativeBackend()`` is bound to the asset
   scope of the object (refused where there is none).
2. The Airflow option ``[stateful] backend`` (``AIRFLOW__STATEFUL__BACKEND``): ``native`` always
   uses the asset state store (refused where there is none), ``sql`` always the SQL store,
   ``auto`` (the default) applies rule 3.
3. ``auto``: the asset state store when the object has an asset scope, which exists only on
   Airflow >= 3.3: ``self.asset_state_store`` of a ``BaseEventTrigger`` run by an
   ``AssetWatcher``, or ``context["asset_state_store"]`` of a task or sensor with a concrete
   ``Asset`` inlet or outlet. Otherwise the SQL store: ``STATEFUL_DATABASE_URL``, else
   ``[stateful] database_url``, else SQLite at ``$AIRFLOW_HOME/stateful.db``.

The choice and its reason are logged at INFO on the ``stateful`` logger.

Switching stores never starts silently from nothing: when the store chosen by rules 1 (for
``NativeBackend()``) to 3 holds no state for a watermark, the other candidate (the SQL store,
or the asset state store where there is one) is read too, and if it holds the state a
:class:`~stateful.errors.StoreSwitchError` says how to move it. A store given as an instance
(``backend=SqlBackend(...)``) is used as it is, without that check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from stateful.backends.base import AsyncStateBackend, StateBackend, StateRecord
from stateful.backends.native import NativeBackend
from stateful.backends.sql import SqlBackend
from stateful.errors import StoreConfigError, StoreSwitchError

__all__ = [
    "BACKEND_CHOICES",
    "BackendSetting",
    "asset_scope",
    "configured_backend",
    "resolve_async_store",
    "resolve_sync_store",
]

_LOG = logging.getLogger("stateful")

BackendSetting = Literal["auto", "native", "sql"]
#: Accepted values of ``[stateful] backend``.
BACKEND_CHOICES: tuple[BackendSetting, ...] = ("auto", "native", "sql")
_OPTION = "[stateful] backend"
_GIVEN = "backend= given to @stateful"

AnyBackend = StateBackend | AsyncStateBackend


def configured_backend() -> BackendSetting:
    """Return ``[stateful] backend`` (``auto`` when unset), validated.

    Raises:
        StoreConfigError: a value other than ``auto``, ``native`` or ``sql``.

    Example:
        >>> configured_backend() in BACKEND_CHOICES
        True
    """
    from stateful._airflowconf import airflow_conf

    raw = airflow_conf().get("stateful", "backend", fallback="") or "auto"
    value = raw.strip().lower()
    if value not in BACKEND_CHOICES:
        raise StoreConfigError(
            f"{_OPTION} (AIRFLOW__STATEFUL__BACKEND) is {raw!r}; use one of {', '.join(BACKEND_CHOICES)} "
            f"(auto: the asset state store where there is one, else the SQL store)."
        )
    return cast(BackendSetting, value)


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
class _Choice:
    store: AnyBackend
    reason: str
    other: AnyBackend | None  # the other candidate, read when `store` holds nothing


def _default_sql() -> tuple[SqlBackend, str]:
    from stateful.backends.sql.default import choose_default_backend

    choice = choose_default_backend()
    return choice.backend, choice.reason


def _what(obj: object) -> str:
    return type(obj).__name__


def choose(backend: AnyBackend | None, obj: object, scope: object | None) -> _Choice:
    """Apply the rule (blocking: it reads Airflow's configuration)."""
    if isinstance(backend, NativeBackend) and not backend.bound:
        if scope is None:
            raise StoreConfigError(_no_scope(obj, "backend=NativeBackend() was given to @stateful"))
        sql, _ = _default_sql()
        return _Choice(backend.bind(scope), "backend=NativeBackend() given to @stateful", sql)
    if backend is not None:
        return _Choice(backend, _GIVEN, None)
    setting = configured_backend()
    if setting == "native":
        if scope is None:
            raise StoreConfigError(_no_scope(obj, f"{_OPTION} is native"))
        sql, _ = _default_sql()
        return _Choice(NativeBackend(scope), f"{_OPTION} is native", sql)
    if setting == "auto" and scope is not None:
        sql, _ = _default_sql()
        reason = f"{_OPTION} is auto and {_what(obj)} has an asset state store"
        return _Choice(NativeBackend(scope), reason, sql)
    sql, sql_reason = _default_sql()
    if setting == "sql":
        reason = f"{_OPTION} is sql; {sql_reason}"
    else:
        reason = f"{_OPTION} is auto and {_what(obj)} has no asset state store; {sql_reason}"
    return _Choice(sql, reason, None if scope is None else NativeBackend(scope))


def _no_scope(obj: object, because: str) -> str:
    return (
        f"{because}, but {_what(obj)} has no asset state store. Only a BaseEventTrigger run by an "
        f"AssetWatcher (self.asset_state_store), or a task or sensor with a concrete Asset inlet or "
        f"outlet (context['asset_state_store']), on Airflow >= 3.3 has one. Use {_OPTION} = auto or sql, "
        f"or pass backend=SqlBackend(...)."
    )


def resolve_sync_store(
    backend: AnyBackend | None, obj: object, context: Mapping[str, Any] | None = None
) -> tuple[StateBackend, str]:
    """Return the store a sensor's ``poke()`` (or any sync caller) uses, and why.

    Args:
        backend: what was given to ``@stateful(backend=...)``.
        obj: the operator (or task) the watermark belongs to.
        context: the task's Airflow context; its ``"asset_state_store"`` is the asset scope.

    Returns:
        The store (wrapped so that an empty read checks the other candidate store, see the
        module docstring) and the reason it was chosen.

    Raises:
        StoreConfigError: a bad ``[stateful] backend``, the native store asked for without an
            asset scope, or a given store without sync methods.

    Example:
        >>> from stateful.backends import MemoryBackend
        >>> store, reason = resolve_sync_store(MemoryBackend(), object(), {})
        >>> reason
        'backend= given to @stateful'
    """
    choice = choose(backend, obj, asset_scope(obj, context))
    if not isinstance(choice.store, StateBackend):
        raise StoreConfigError(
            f"{choice.store!r} ({choice.reason}) has no blocking methods (read/write/...), which a "
            f"sensor needs; use a store implementing StateBackend."
        )
    store: StateBackend = choice.store
    if choice.other is not None:
        store = _Guarded(choice.store, choice.other, choice.reason)
    _log_choice(obj, store.description, choice)
    return store, choice.reason


async def resolve_async_store(backend: AnyBackend | None, obj: object) -> tuple[AsyncStateBackend, str]:
    """Return the store a trigger's ``run()`` uses, and why; never blocks the event loop.

    Raises:
        StoreConfigError: see :func:`resolve_sync_store`; also a given store without async methods.

    Example:
        >>> import asyncio
        >>> from stateful.backends import MemoryBackend
        >>> store, reason = asyncio.run(resolve_async_store(MemoryBackend(), object()))
        >>> store.description
        'MemoryBackend'
    """
    if backend is not None and not isinstance(backend, NativeBackend):
        choice = _Choice(backend, _GIVEN, None)
    else:
        # Reading Airflow's configuration (and building a store) may touch files.
        choice = await asyncio.to_thread(choose, backend, obj, asset_scope(obj))
    if not isinstance(choice.store, AsyncStateBackend):
        raise StoreConfigError(
            f"{choice.store!r} ({choice.reason}) has no async methods (aread/awrite/...), which a "
            f"trigger needs so it never blocks the triggerer's event loop."
        )
    store: AsyncStateBackend = choice.store
    if choice.other is not None:
        store = _Guarded(choice.store, choice.other, choice.reason)
    _log_choice(obj, store.description, choice)
    return store, choice.reason


def _log_choice(obj: object, description: str, choice: _Choice) -> None:
    # A store given as an instance needs no explanation (DEBUG); a chosen one does (INFO).
    level = logging.DEBUG if choice.reason == _GIVEN else logging.INFO
    _LOG.log(level, "stateful: %s uses %s (%s)", _what(obj), description, choice.reason)


class _Guarded:
    """The chosen store, whose empty reads first make sure the other candidate is empty too."""

    def __init__(self, store: Any, other: Any, reason: str) -> None:
        self.inner = store
        self.other = other
        self.reason = reason

    @property
    def description(self) -> str:
        return str(self.inner.description)

    def __repr__(self) -> str:
        return f"{self.inner!r} (checked against {self.other.description})"

    def read(self, namespace: str, name: str, key: str) -> StateRecord | None:
        record: StateRecord | None = self.inner.read(namespace, name, key)
        if record is None and _may_hold_state(self.other):
            self._check(self.other.read(namespace, name, key), namespace, name, key)
        return record

    async def aread(self, namespace: str, name: str, key: str) -> StateRecord | None:
        record: StateRecord | None = await self.inner.aread(namespace, name, key)
        if record is None and await asyncio.to_thread(_may_hold_state, self.other):
            self._check(await self.other.aread(namespace, name, key), namespace, name, key)
        return record

    def write(self, *args: Any, **kwargs: Any) -> int:
        version: int = self.inner.write(*args, **kwargs)
        return version

    async def awrite(self, *args: Any, **kwargs: Any) -> int:
        version: int = await self.inner.awrite(*args, **kwargs)
        return version

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        existed: bool = self.inner.delete(*args, **kwargs)
        return existed

    async def adelete(self, *args: Any, **kwargs: Any) -> bool:
        existed: bool = await self.inner.adelete(*args, **kwargs)
        return existed

    def list(self, namespace: str | None = None) -> Sequence[StateRecord]:
        records: Sequence[StateRecord] = self.inner.list(namespace)
        return records

    async def alist(self, namespace: str | None = None) -> Sequence[StateRecord]:
        records: Sequence[StateRecord] = await self.inner.alist(namespace)
        return records

    def _check(self, found: StateRecord | None, namespace: str, name: str, key: str) -> None:
        if found is None:
            return
        chosen, other = self.inner.description, self.other.description
        if isinstance(self.other, SqlBackend):
            keep = (
                "set [stateful] backend = sql (AIRFLOW__STATEFUL__BACKEND=sql) or pass "
                "backend=SqlBackend(...)"
            )
        else:
            keep = "set [stateful] backend = native (or auto) so the asset state store is used"
        by = f" by {found.updated_by}" if found.updated_by else ""
        raise StoreSwitchError(
            f"state {namespace}/{name} (key {key!r}) is not in {chosen}, the store chosen now "
            f"({self.reason}), but {other} holds it (version {found.version}, written "
            f"{found.updated_at:%Y-%m-%d %H:%M:%S} UTC{by}). Nothing was started: an empty "
            f"watermark would emit everything again. Move it: `stateful export --namespace "
            f"{namespace}` from the old store, then `stateful import FILE` into the new one "
            f"(docs/stores.md, 'Switching stores'); or keep the old store: {keep}; or, to start "
            f"from nothing on purpose, delete it from {other} (`stateful delete {namespace} {name}`).",
            namespace=namespace,
            name=name,
            key=key,
            chosen=chosen,
            other=other,
        )


def _may_hold_state(store: Any) -> bool:
    """False for a SQLite file that does not exist: reading it would only create it."""
    if isinstance(store, SqlBackend):
        from stateful.backends.sql.engine import sqlite_path

        url = store._url
        path = sqlite_path(url) if url.get_backend_name() == "sqlite" else None
        if path is not None and not path.exists():
            return False
    return True
