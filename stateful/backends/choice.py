"""Which store holds a watermark: the one rule, as a pure function.

:func:`plan` decides from three facts, and does no I/O: what ``@stateful(backend=...)`` was
given, the Airflow option ``[stateful] backend``, and whether the object has an asset state
store (AIP-103, Airflow >= 3.3). First match wins:

====  ==========================================  ===============================  ===========
rule  when                                        store                            also read
====  ==========================================  ===============================  ===========
1     ``backend=`` a store instance               that store                       --
1     ``backend=NativeBackend()``                 the asset state store            SQL store
2     ``[stateful] backend = native``             the asset state store            SQL store
2     ``[stateful] backend = sql``                the SQL store                    asset store
3     ``auto`` and an asset state store           the asset state store            SQL store
3     ``auto`` and none                           the SQL store                    --
====  ==========================================  ===============================  ===========

"Also read": when the chosen store holds nothing for a watermark, the other candidate is read
once, at load; if it holds the watermark, the run stops with
:class:`~stateful.errors.StoreSwitchError` instead of starting from nothing. The native store
asked for (rule 1 or 2) where there is no asset state store is a
:class:`~stateful.errors.StoreConfigError`. The SQL store is ``STATEFUL_DATABASE_URL``, else
``[stateful] database_url``, else SQLite at ``$AIRFLOW_HOME/stateful.db``.

Before the rule, code declared with ``backend=None`` inside ``with use_store(store):``
(:func:`stateful.testing.use_store`, for tests) uses ``store``.

The drivers apply it in Airflow (:mod:`stateful.backends._resolve`); the command line applies
the same rule after its own flags (``--database-url``, ``--airflow-url``), with no asset state
store outside Airflow.

Example:
    >>> decided = plan("nothing", "auto", has_asset_store=True, what="NewFilesTrigger")
    >>> decided.store, decided.check
    ('native', 'sql')
    >>> decided.reason
    '[stateful] backend is auto and NewFilesTrigger has an asset state store'
    >>> plan("store", "native", has_asset_store=False, what="NewFilesTrigger").store
    'given'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stateful.errors import StoreConfigError

__all__ = ["BACKEND_CHOICES", "GIVEN", "OPTION", "BackendSetting", "Given", "Plan", "plan"]

BackendSetting = Literal["auto", "native", "sql"]
#: Accepted values of ``[stateful] backend``.
BACKEND_CHOICES: tuple[BackendSetting, ...] = ("auto", "native", "sql")
#: What ``@stateful(backend=...)`` was: nothing, a store instance, or ``NativeBackend()``
#: (the asset state store of whatever runs the decorated code).
Given = Literal["nothing", "store", "native"]

OPTION = "[stateful] backend"
GIVEN = "backend= given to @stateful"


@dataclass(frozen=True)
class Plan:
    """The rule's answer.

    Attributes:
        store: ``"given"`` (the instance passed to ``@stateful``), ``"native"`` (the asset state
            store) or ``"sql"`` (the default SQL store).
        reason: why, for the INFO line that names the store.
        check: the other candidate to read when the chosen store holds nothing, or ``None``.
    """

    store: Literal["given", "native", "sql"]
    reason: str
    check: Literal["native", "sql"] | None


def plan(given: Given, setting: BackendSetting, *, has_asset_store: bool, what: str) -> Plan:
    """Apply the rule (see the module docstring).

    Args:
        given: what ``@stateful(backend=...)`` was.
        setting: ``[stateful] backend``; not consulted when a store was given.
        has_asset_store: whether the object has an asset state store.
        what: the object, for messages (a class name).

    Raises:
        StoreConfigError: the asset state store is asked for where there is none.
    """
    if given == "store":
        return Plan("given", GIVEN, None)
    if given == "native":
        _require_asset_store(has_asset_store, what, "backend=NativeBackend() was given to @stateful")
        return Plan("native", "backend=NativeBackend() given to @stateful", "sql")
    if setting == "native":
        _require_asset_store(has_asset_store, what, f"{OPTION} is native")
        return Plan("native", f"{OPTION} is native", "sql")
    if setting == "sql":
        return Plan("sql", f"{OPTION} is sql", "native" if has_asset_store else None)
    if has_asset_store:
        return Plan("native", f"{OPTION} is auto and {what} has an asset state store", "sql")
    return Plan("sql", f"{OPTION} is auto and {what} has no asset state store", None)


def _require_asset_store(has_asset_store: bool, what: str, because: str) -> None:
    if not has_asset_store:
        raise StoreConfigError(
            f"{because}, but {what} has no asset state store. Only a BaseEventTrigger run by an "
            f"AssetWatcher (self.asset_state_store), or a task or sensor with a concrete Asset inlet or "
            f"outlet (context['asset_state_store']), on Airflow >= 3.3 has one. Use {OPTION} = auto or "
            f"sql, or pass backend=SqlBackend(...)."
        )
