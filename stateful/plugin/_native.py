"""The native store of every asset, read and written in the API server through Airflow's database.

The plugin runs inside Airflow's API server, which owns the metadata database: it reads an
asset's whole state store there (the Execution API cannot list one) and reads and writes
documents through :class:`~stateful.backends.NativeBackend` over an accessor that calls
Airflow's own state store backend, as the REST API's ``/assets/{id}/state-store`` routes do.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from stateful.backends.base import StateRecord
from stateful.backends.native import NativeBackend
from stateful.backends.native.listing import documents_in

__all__ = ["DbNativeStore", "StoredAsset", "assets", "list_asset"]


@dataclass(frozen=True)
class StoredAsset:
    """An asset of the deployment: its id, name and URI."""

    id: int
    name: str
    uri: str

    @property
    def label(self) -> str:
        return f"asset {self.name!r}"


def assets() -> list[StoredAsset]:
    """Every asset in Airflow's metadata database, by name."""
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(AssetModel.id, AssetModel.name, AssetModel.uri)).all()
    return sorted((StoredAsset(int(r.id), r.name, r.uri) for r in rows), key=lambda a: (a.name, a.id))


def _entries(asset: StoredAsset) -> dict[str, Any]:
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetStateStoreModel.key, AssetStateStoreModel.value).where(
                AssetStateStoreModel.asset_id == asset.id
            )
        ).all()
    return {str(r.key): json.loads(r.value) for r in rows}


def _accessor(asset: StoredAsset) -> Any:
    """An ``AssetStateStoreAccessor`` over Airflow's state store backend (the REST API's writer kind)."""
    from airflow._shared.state import AssetScope, AssetStateStoreWriterKind
    from airflow.sdk.execution_time.context import AssetStateStoreAccessor
    from airflow.state.metastore import _get_db_backend

    scope = AssetScope(asset_id=asset.id)

    class DbAccessor(AssetStateStoreAccessor):
        def get(self, key: str, default: Any = None) -> Any:
            text = _get_db_backend().get(scope, key)
            return default if text is None else json.loads(text)

        def set(self, key: str, value: Any) -> None:
            _get_db_backend().set_asset_state_store(
                scope, key, json.dumps(value), kind=AssetStateStoreWriterKind.API
            )

        def delete(self, key: str) -> None:
            _get_db_backend().delete(scope, key)

        async def aget(self, key: str, default: Any = None) -> Any:
            return await asyncio.to_thread(self.get, key, default)

        async def aset(self, key: str, value: Any) -> None:
            await asyncio.to_thread(self.set, key, value)

        async def adelete(self, key: str) -> None:
            await asyncio.to_thread(self.delete, key)

    return DbAccessor(name=asset.name)


class DbNativeStore(NativeBackend):
    """The native store of one asset, in the API server's process; both store Protocols.

    Reading, writing and the history are :class:`NativeBackend`'s own; listing reads the asset's
    whole state store. A write keeps as many versions as the document it replaces says.
    """

    _inherit_history = True

    def __init__(self, asset: StoredAsset) -> None:
        super().__init__(_accessor(asset))
        self.asset = asset

    def _list(self, namespace: str | None) -> list[StateRecord]:
        return list_asset(self.asset, namespace, problems=[])

    async def _alist(self, namespace: str | None) -> list[StateRecord]:
        return await asyncio.to_thread(self._list, namespace)


def list_asset(asset: StoredAsset, namespace: str | None, problems: list[str]) -> list[StateRecord]:
    """The documents this package wrote into ``asset``'s state store (of ``namespace``)."""
    return documents_in(
        _entries(asset),
        asset.label,
        namespace,
        problems,
        lambda *address: DbNativeStore(asset).read(*address),
    )
