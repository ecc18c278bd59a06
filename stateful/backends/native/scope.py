"""Which assets a native store writes to, and how large a document may be.

Kept apart from the store so the parts that depend on Airflow's internals (the layout of
``AssetStateStoreAccessors`` in Airflow 3.3) sit in one small place, imported lazily: this
module imports nothing from Airflow at import time, so ``stateful`` imports on Airflow 3.0-3.2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stateful.errors import StoreConfigError

__all__ = ["SIZE_SETTING", "WatchedAsset", "airflow_version", "assets_of", "configured_size_limit"]

#: The Airflow option that bounds a stored value.
SIZE_SETTING = "[state_store] max_value_storage_bytes"
_DEFAULT_LIMIT = 65535


def configured_size_limit() -> int:
    """The size limit to enforce, from Airflow's configuration (0: none).

    ``[state_store] max_value_storage_bytes`` (65535 by default; 0 disables it). When
    ``[workers] state_store_backend`` is set, Airflow moves values to that backend and stores
    only a reference, so no limit applies here.
    """
    from stateful._airflowconf import airflow_conf

    conf = airflow_conf()
    if conf.get("workers", "state_store_backend", fallback=""):
        return 0
    return int(conf.getint("state_store", "max_value_storage_bytes", fallback=_DEFAULT_LIMIT))


@dataclass(frozen=True)
class WatchedAsset:
    """One asset whose state store holds a copy of each document.

    Attributes:
        label: ``"asset 'orders'"`` (or ``"asset uri 's3://bucket/x'"``): unique in a deployment.
        accessor: Airflow's ``AssetStateStoreAccessor`` for it.
    """

    label: str
    accessor: Any


def airflow_version() -> str:
    """The installed Airflow version, for messages."""
    try:
        from airflow import __version__
    except ImportError:  # pragma: no cover - Airflow is a dependency
        return "(not installed)"
    return str(__version__)


def assets_of(scope: object) -> tuple[WatchedAsset, ...]:
    """Every asset an ``AssetStateStoreAccessors`` (or one accessor) gives access to, by label.

    Raises:
        StoreConfigError: Airflow older than 3.3, ``scope`` is not an asset state store, or its
            assets cannot be found (a future Airflow that keeps them differently).
    """
    try:
        from airflow.sdk.execution_time.context import AssetStateStoreAccessor, AssetStateStoreAccessors
    except ImportError:
        raise StoreConfigError(
            f"the Airflow-native store needs Airflow >= 3.3 (the asset state store of AIP-103); this "
            f"is Airflow {airflow_version()}. Use the SQL store (backend=None picks it here)."
        ) from None
    if isinstance(scope, AssetStateStoreAccessor):
        return (WatchedAsset(_label(scope), scope),)
    if not isinstance(scope, AssetStateStoreAccessors):
        raise StoreConfigError(
            f"NativeBackend needs an asset state store (trigger.asset_state_store or "
            f"context['asset_state_store']), not {scope!r}."
        )
    # Airflow 3.3 offers no public way to list the assets of AssetStateStoreAccessors (it is
    # not iterable, and its single-asset methods refuse several assets). The triggerer builds
    # it from every asset the trigger watches, keyed by name (by URI for an AssetUriRef).
    by_name, by_uri = getattr(scope, "_by_name", None), getattr(scope, "_by_uri", None)
    if not (isinstance(by_name, dict) and isinstance(by_uri, dict)) or not all(
        isinstance(a, AssetStateStoreAccessor) for a in (*by_name.values(), *by_uri.values())
    ):
        raise StoreConfigError(
            f"cannot find the assets of this {type(scope).__name__}: Airflow {airflow_version()} "
            f"keeps them differently from Airflow 3.3. Keep this state in the SQL store ([stateful] "
            f"backend = sql, or backend=SqlBackend(...)) and report the Airflow version to "
            f"airflow-stateful."
        )
    assets = [WatchedAsset(f"asset {n!r}", a) for n, a in sorted(by_name.items())]
    assets += [WatchedAsset(f"asset uri {u!r}", a) for u, a in sorted(by_uri.items())]
    if not assets:
        raise StoreConfigError(f"{scope!r} gives access to no asset; the Airflow-native store needs one.")
    return tuple(assets)


def _label(accessor: Any) -> str:
    name, uri = getattr(accessor, "_name", None), getattr(accessor, "_uri", None)
    return f"asset {name!r}" if name else f"asset uri {uri!r}" if uri else repr(accessor)
