"""A real ``airflow api-server`` with the plugin loaded (by its entry point), and users who sign in.

``plugin_server`` (one per test session) runs Airflow's simple auth manager with two users, an
admin and a viewer (may read, may not edit), and a SQL store of its own (``STATEFUL_DATABASE_URL``
in the server's environment). Tests seed watermarks with :meth:`PluginServer.sql_watermark` (the
SQL store, as a trigger saves) and :meth:`PluginServer.native_watermark` (a new asset's native
store, written through Airflow's REST API as the command line does), and call the API with
:meth:`PluginServer.client` (a bearer token) or sign in on the page (``page_url``).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from stateful._address import partition_key
from stateful.backends import SqlBackend
from stateful.backends.base import Address, Write
from stateful.backends.native import NativeBackend
from stateful.types import Watermark
from tests._airflow import add_asset
from tests._api_server import api_server_process

WM = "watermark"


@dataclass(frozen=True)
class User:
    """A user of the simple auth manager: ``username``, ``password`` and role."""

    username: str
    password: str
    role: str


ADMIN = User("admin", "admin-secret", "admin")
VIEWER = User("viewer", "viewer-secret", "viewer")


@dataclass
class PluginServer:
    """The api-server: its base URL, its users, and ways to make watermarks it shows.

    Attributes:
        url: the API server's base URL (``http://127.0.0.1:PORT``).
        page_url: the page (``{url}/stateful/``); Airflow's UI shows it under Browse > Watermarks.
        api_url: the plugin's API (``{url}/stateful/api``).
        admin: a user who may read and edit assets (and so watermarks).
        viewer: a user who may read them only.
        sql_url: the server's SQL store (``STATEFUL_DATABASE_URL``).
    """

    url: str
    sql_url: str
    admin: User = ADMIN
    viewer: User = VIEWER
    _stores: list[SqlBackend] = field(default_factory=list)

    @property
    def page_url(self) -> str:
        return f"{self.url}/stateful/"

    @property
    def api_url(self) -> str:
        return f"{self.url}/stateful/api"

    def token(self, user: User) -> str:
        """A JWT for ``user`` from ``POST /auth/token`` (what the UI's login sets as cookie ``_token``)."""
        response = httpx.post(
            f"{self.url}/auth/token", json={"username": user.username, "password": user.password}, timeout=30
        )
        assert response.status_code < 300, response.text
        token: str = response.json()["access_token"]
        return token

    def client(self, user: User | None) -> httpx.Client:
        """A client of the API server as ``user`` (bearer token), or signed out (``None``)."""
        headers = {} if user is None else {"Authorization": f"Bearer {self.token(user)}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def _store(self) -> SqlBackend:
        if not self._stores:
            self._stores.append(SqlBackend(self.sql_url, history_versions=100))
        return self._stores[0]

    def sql_watermark(
        self, namespace: str, name: str, *values: Watermark[Any], reason: str | None = None
    ) -> int:
        """Save ``values`` as successive versions in the server's SQL store; the last version."""
        store = self._store()
        record = store.read(namespace, name, WM)
        version = None if record is None else record.version
        for value in values:
            version = store.write(
                namespace, name, WM, value.to_state_json(), expected_version=version, reason=reason
            )
        assert version is not None
        return version

    def sql_partitions(
        self, namespace: str, name: str, partitions: Mapping[str, Sequence[Watermark[Any]]]
    ) -> None:
        """Save a keyed watermark's partitions in the server's SQL store, as its trigger saves them.

        Each save is one ``write_many`` (what a keyed trigger's save is): the first holds every
        partition's first value, the next their second values, and so on.
        """
        store = self._store()
        versions: dict[str, int | None] = {p: None for p in partitions}
        for i in range(max(map(len, partitions.values()), default=0)):
            changed = [(p, values[i]) for p, values in partitions.items() if i < len(values)]
            written = store.write_many(
                [
                    Write(Address(namespace, name, partition_key(p)), value.to_state_json(), versions[p])
                    for p, value in changed
                ]
            )
            versions.update(zip((p for p, _ in changed), written, strict=True))

    def native_watermark(self, namespace: str, name: str, *values: Watermark[Any]) -> str:
        """A new asset (as the dag-processor registers one) whose native store holds ``values``.

        Written through Airflow's REST API as the admin, as ``stateful set --airflow-url`` writes;
        returns the asset's name.
        """
        with self.native_asset() as (asset_name, _, store):
            version = None
            for value in values:
                version = store.write(namespace, name, WM, value.to_state_json(), expected_version=version)
        return asset_name

    @contextlib.contextmanager
    def native_asset(self, max_value_bytes: int | None = None) -> Iterator[tuple[str, int, NativeBackend]]:
        """A new asset and its native store, reached through Airflow's REST API as the admin.

        The store is :class:`~stateful.backends.native.NativeBackend`'s own code (its compare-and-set,
        the index of a keyed watermark's partitions, its history), as ``stateful set --airflow-url``
        uses it; yields the asset's name, its id and the store. ``max_value_bytes`` makes values
        smaller than Airflow's limit (a document, or an index, continues in parts sooner).
        """
        from stateful.cli._native import AirflowApi, Asset, RestNativeStore, rest_accessor

        asset_name = f"plugin-{uuid.uuid4().hex[:10]}"
        asset_id = add_asset(asset_name)
        api = AirflowApi(self.url, username=self.admin.username, password=self.admin.password)
        asset = Asset(asset_id, asset_name, f"test://{asset_name}")
        store = (
            RestNativeStore(api, asset)
            if max_value_bytes is None
            else NativeBackend(rest_accessor(api, asset), max_value_bytes=max_value_bytes)
        )
        try:
            yield asset_name, asset_id, store
        finally:
            api.close()

    def close(self) -> None:
        for store in self._stores:
            store.dispose()


@pytest.fixture(scope="session")
def plugin_server(
    airflow_metadata_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PluginServer]:
    """``airflow api-server`` with the plugin, an admin and a viewer; see :class:`PluginServer`."""
    work = tmp_path_factory.mktemp("plugin-server")
    passwords = work / "passwords.json"
    passwords.write_text(json.dumps({u.username: u.password for u in (ADMIN, VIEWER)}))
    sql_url = f"sqlite:///{work / 'stateful.db'}"
    SqlBackend(sql_url).open()  # the store exists, empty, as a triggerer's first save leaves it
    with api_server_process(
        airflow_metadata_db,
        work / "api-server.log",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{u.username}:{u.role}" for u in (ADMIN, VIEWER)),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        STATEFUL_DATABASE_URL=sql_url,
        STATEFUL_HISTORY_VERSIONS="100",
    ) as url:
        server = PluginServer(url, sql_url)
        yield server
        server.close()


__all__ = ["ADMIN", "VIEWER", "WM", "PluginServer", "User", "plugin_server"]
