"""The Airflow-native store for operators: an asset's state store through Airflow's REST API.

Inside Airflow, :class:`~stateful.backends.NativeBackend` reaches an asset's state store through
the Execution API. Outside it, the command line reaches the same rows through the public REST
API (``/api/v2/assets/{asset_id}/state-store``), with a :class:`NativeBackend` whose accessor
speaks REST: documents, keys and the emulated compare-and-set are exactly the native store's.

Authentication, as with any Airflow REST client: ``--token`` (a JWT from ``POST /auth/token``),
or ``--username``/``--password`` to get one, or nothing when the API needs no token (the simple
auth manager with all users admins).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from stateful.backends.base import Address, StateRecord
from stateful.backends.native import NativeBackend, native_key
from stateful.backends.native.listing import documents_in
from stateful.backends.native.parts import is_part_key
from stateful.errors import StoreConfigError, StoreError

__all__ = ["AirflowApi", "Asset", "RestNativeStore"]

_PAGE = 100


@dataclass(frozen=True)
class Asset:
    """An asset of the deployment, as the REST API lists it."""

    id: int
    name: str
    uri: str

    @property
    def label(self) -> str:
        return f"asset {self.name!r}"


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class AirflowApi:
    """A small client of Airflow's public REST API (``httpx``, which Airflow itself depends on)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.shown = _masked(self.url)
        self._token, self._username, self._password = token, username, password
        self._timeout = timeout
        self._client: Any = None

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(base_url=self.url, timeout=self._timeout)
            if self._token is None and self._username:
                self._token = self._login()
            if self._token:
                self._client.headers["Authorization"] = f"Bearer {self._token}"
        return self._client

    def _login(self) -> str:
        body = {"username": self._username, "password": self._password or ""}
        response = self._send("POST", "/auth/token", json=body, doing="get a token from")
        token = response.json().get("access_token") if response.status_code < 300 else None
        if not token:
            raise StoreError(
                f"Airflow at {self.shown} did not give a token for user {self._username!r} "
                f"(HTTP {response.status_code}). Check --username/--password, or pass --token."
            )
        return str(token)

    def _send(self, method: str, path: str, *, doing: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreError(
                f"cannot {doing} Airflow's REST API at {self.shown}: {type(exc).__name__}: {exc}. Check "
                f"--airflow-url (the API server's address, e.g. http://localhost:8080) and that it is up."
            ) from None

    def call(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """Send a request; return the decoded JSON (``None`` for 404 with ``missing_ok``, or no body)."""
        self._http()
        response = self._send(method, path, doing="reach", **kwargs)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code in (401, 403):
            raise StoreError(
                f"Airflow's REST API at {self.shown} refused {method} {path} (HTTP {response.status_code}): "
                f"give a token with --token (or STATEFUL_AIRFLOW_TOKEN), or --username and --password, for "
                f"a user who may read and write assets."
            )
        if response.status_code >= 400:
            detail = response.text.strip().replace("\n", " ")[:300]
            raise StoreError(
                f"Airflow's REST API at {self.shown}: {method} {path} failed (HTTP "
                f"{response.status_code}): {detail}"
            )
        return response.json() if response.content else None

    def pages(self, path: str, field: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated collection."""
        offset = 0
        while True:
            page = self.call("GET", path, params={**params, "limit": _PAGE, "offset": offset})
            items = page.get(field, [])
            yield from items
            offset += len(items)
            if not items or offset >= page.get("total_entries", 0):
                return

    def assets(self) -> list[Asset]:
        """Every asset of the deployment."""
        return [Asset(int(a["id"]), a["name"], a["uri"]) for a in self.pages("/api/v2/assets", "assets")]

    def asset(self, selector: str) -> Asset:
        """The asset named ``selector`` (or with that URI, or that id)."""
        if selector.isdigit():
            found = self.call("GET", f"/api/v2/assets/{selector}", missing_ok=True)
            if found is not None:
                return Asset(int(found["id"]), found["name"], found["uri"])
        matches = [a for a in self.assets() if selector in (a.name, a.uri)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise StoreConfigError(f"--asset {selector!r} matches several assets: {matches}; give its id.")
        raise StoreConfigError(
            f"no asset {selector!r} (name, URI or id) at {self.shown}. Its assets: "
            f"{', '.join(repr(a.name) for a in self.assets()[:20]) or 'none'}."
        )

    def entries(self, asset: Asset) -> list[dict[str, Any]]:
        """The state store entries of ``asset`` (key, value, updated_at, last_updated_by)."""
        return list(self.pages(f"/api/v2/assets/{asset.id}/state-store", "asset_state_store"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _path(asset: Asset, key: str) -> str:
    # Keys contain "/" (kept: the route takes a path); "." or ".." segments would be collapsed.
    segments = [quote(s, safe="") if s not in (".", "..") else s.replace(".", "%2E") for s in key.split("/")]
    return f"/api/v2/assets/{asset.id}/state-store/{'/'.join(segments)}"


def rest_accessor(api: AirflowApi, asset: Asset) -> Any:
    """An ``AssetStateStoreAccessor`` that reads and writes through the REST API (Airflow >= 3.3)."""
    try:
        from airflow.sdk.execution_time.context import AssetStateStoreAccessor
    except ImportError:
        from stateful.backends.native.scope import airflow_version

        raise StoreConfigError(
            f"the Airflow-native store needs Airflow >= 3.3 here too (this is Airflow {airflow_version()})."
        ) from None

    class RestAccessor(AssetStateStoreAccessor):
        def get(self, key: str, default: Any = None) -> Any:
            found = api.call("GET", _path(asset, key), missing_ok=True)
            return default if found is None else found["value"]

        def set(self, key: str, value: Any) -> None:
            api.call("PUT", _path(asset, key), json={"value": value})

        def delete(self, key: str) -> None:
            api.call("DELETE", _path(asset, key))

        async def aget(self, key: str, default: Any = None) -> Any:
            return await asyncio.to_thread(self.get, key, default)

        async def aset(self, key: str, value: Any) -> None:
            await asyncio.to_thread(self.set, key, value)

        async def adelete(self, key: str) -> None:
            await asyncio.to_thread(self.delete, key)

    return RestAccessor(name=asset.name)


class RestNativeStore(NativeBackend):
    """The native store of one asset, through the REST API; both store Protocols.

    Reading, writing, deleting and the history are :class:`NativeBackend`'s own (compare-and-set
    emulated with the version in the document); listing reads the asset's whole state store,
    which the Execution API cannot. A write keeps as many versions as the document it replaces
    says (what the trigger's or task's store keeps): an operator's edit never shortens it.
    """

    _inherit_history = True

    def __init__(self, api: AirflowApi, asset: Asset) -> None:
        super().__init__(rest_accessor(api, asset))
        self.api, self.asset = api, asset

    @property
    def description(self) -> str:
        """e.g. ``NativeBackend(asset 'orders') via http://localhost:8080``."""
        return f"{super().description} via {self.api.shown}"

    def _list(self, namespace: str | None) -> list[StateRecord]:
        return list_asset(self.api, self.asset, namespace, problems=[])

    def _delete(self, address: Address, expected: int | None) -> bool:
        # The REST API can list keys: also delete parts a killed save left, which no document names.
        deleted = super()._delete(address, expected)
        k = native_key(*address)
        accessor = self._assets[0].accessor
        for entry in self.api.entries(self.asset):
            if is_part_key(str(entry.get("key", "")), of=k):
                accessor.delete(str(entry["key"]))
        return deleted

    async def _adelete(self, address: Address, expected: int | None) -> bool:
        return await asyncio.to_thread(self._delete, address, expected)

    async def _alist(self, namespace: str | None) -> list[StateRecord]:
        return await asyncio.to_thread(self._list, namespace)


def list_asset(
    api: AirflowApi, asset: Asset, namespace: str | None, problems: list[str]
) -> list[StateRecord]:
    """The documents this package wrote into ``asset``'s state store (of ``namespace``).

    See :func:`stateful.backends.native.listing.documents_in`: entries under ``stateful/``
    that are neither documents nor parts, and documents whose parts cannot be read, are named
    in ``problems`` and skipped.
    """
    entries = {str(e.get("key", "")): e.get("value") for e in api.entries(asset)}
    return documents_in(
        entries, asset.label, namespace, problems, lambda *address: RestNativeStore(api, asset).read(*address)
    )
