"""The Airflow-native store: state in an asset's state store (AIP-103, Airflow >= 3.3).

A ``BaseEventTrigger`` that runs under an ``AssetWatcher`` is given ``self.asset_state_store``
by the triggerer, and a task or sensor with a concrete ``Asset`` inlet or outlet finds
``context["asset_state_store"]``. Both reach Airflow's metadata database through the Execution
API, so state kept there needs no database of its own and is shared by every triggerer and
worker. :class:`NativeBackend` keeps each state document as one JSON object under the key
:func:`native_key` in that store (the layout is described in :class:`NativeDocument`).

What AIP-103 does not give, and what this store does about it:

* **No compare-and-set** (a write is a plain upsert). The version lives inside the document and
  every write first reads the document again: a version other than the one the writer loaded
  raises :class:`~stateful.errors.StateConflictError`, an older one of the same lineage
  :class:`~stateful.errors.StateRegressionError`; a read that finds an older version than this
  process already saw raises the latter too. Two writers that both pass that check in the same
  instant (between the read and the write, a few milliseconds) still overwrite each other: the
  last one wins. Keep one trigger or task per watermark.
* **Several assets per trigger**: Airflow runs identical watchers of several assets as one
  trigger. Every watched asset gets the document; a read takes the oldest one (a missing
  document first, then the lowest version), because a repeated event beats a skipped one.
* **Sizes**: Airflow only warns about values over ``[state_store] max_value_storage_bytes``
  (65535 by default) and stores them anyway (its REST API then refuses to write them back). This
  store refuses them before writing, with :class:`~stateful.errors.StateTooLargeError`.
* **No listing** through the Execution API: :meth:`NativeBackend.list` raises; list keys with
  ``GET /api/v2/assets/{asset_id}/state-store``.

Example:
    >>> from stateful.backends.native import NativeBackend, native_key
    >>> native_key("files", "landing")
    'stateful/files/watermark/landing'
    >>> NativeBackend().description      # not bound yet: @stateful binds it to the asset scope
    'NativeBackend(unbound)'
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Sequence
from typing import Any

from stateful.backends._nativedoc import (
    FORMAT,
    MAX_KEY_LENGTH,
    WATERMARK_KEY,
    NativeDocument,
    native_key,
    parse_native_key,
    stored_size,
)
from stateful.backends._nativeledger import Ledger, Where, ident, oldest
from stateful.backends._nativescope import SIZE_SETTING, WatchedAsset, assets_of, configured_size_limit
from stateful.backends.base import StateRecord, default_writer
from stateful.errors import (
    StatefulError,
    StateTooLargeError,
    StateValidationError,
    StoreConfigError,
    StoreError,
)

__all__ = [
    "FORMAT",
    "MAX_KEY_LENGTH",
    "SIZE_SETTING",
    "WATERMARK_KEY",
    "NativeBackend",
    "NativeDocument",
    "configured_size_limit",
    "native_key",
    "parse_native_key",
]

_log = logging.getLogger(__name__)


class NativeBackend:
    """Keeps state in Airflow's asset state store; implements both store Protocols.

    Give ``@stateful(backend=NativeBackend())`` to insist on it: it is bound, at each run, to the
    asset scope of the trigger (``self.asset_state_store``) or of the task (``context
    ["asset_state_store"]``), and a trigger or task without one is refused. With ``backend=None``
    the store is chosen by the rule in :mod:`stateful.backends._resolve` (see docs/stores.md).

    Args:
        scope: ``trigger.asset_state_store`` or ``context["asset_state_store"]`` (an
            ``AssetStateStoreAccessors`` or a single ``AssetStateStoreAccessor``), or ``None``
            for an unbound store that ``@stateful`` binds.
        max_value_bytes: refuse documents over this size (0: no limit); by default
            ``[state_store] max_value_storage_bytes`` (see :func:`configured_size_limit`).

    Raises:
        StoreConfigError: ``scope`` is not an asset state store, or Airflow is older than 3.3.

    Example:
        >>> store = NativeBackend()
        >>> store.bound
        False
        >>> store.read("files", "landing", "watermark")
        Traceback (most recent call last):
        ...
        stateful.errors.StoreConfigError: NativeBackend() is not bound to an asset state store...
    """

    def __init__(self, scope: object | None = None, *, max_value_bytes: int | None = None) -> None:
        self._max_value_bytes = max_value_bytes
        self._assets: tuple[WatchedAsset, ...] = () if scope is None else assets_of(scope)
        if scope is None:
            self._limit = 0
        else:
            self._limit = configured_size_limit() if max_value_bytes is None else max_value_bytes
        self._ledger = Ledger([a.label for a in self._assets])
        labels = ", ".join(a.label.removeprefix("asset ") for a in self._assets)
        plural = "s" if len(self._assets) > 1 else ""
        self._description = (
            f"NativeBackend(asset{plural} {labels})" if scope is not None else "NativeBackend(unbound)"
        )

    @property
    def description(self) -> str:
        """e.g. ``NativeBackend(asset 'orders')``."""
        return self._description

    @property
    def bound(self) -> bool:
        """Whether the store is bound to an asset scope."""
        return bool(self._assets)

    @property
    def assets(self) -> tuple[str, ...]:
        """Labels of the assets whose state store holds the documents (``"asset 'orders'"``)."""
        return tuple(a.label for a in self._assets)

    @property
    def max_value_bytes(self) -> int:
        """The size limit enforced on each document (0: none)."""
        return self._limit

    def bind(self, scope: object) -> NativeBackend:
        """A store for ``scope`` with this store's settings (this one is left unchanged)."""
        return NativeBackend(scope, max_value_bytes=self._max_value_bytes)

    def __repr__(self) -> str:
        return self._description

    # ---- sync API (tasks and sensors) ---------------------------------------------------

    def read(self, namespace: str, name: str, key: str) -> StateRecord | None:
        """Return the oldest document of the watched assets, or ``None`` (see the module docs)."""
        k = native_key(namespace, name, key)
        docs = [self._get(a, namespace, name, key, k) for a in self._require()]
        return self._on_read(namespace, name, key, k, docs)

    def write(
        self,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
    ) -> int:
        """Check the stored versions, then write ``value`` to every asset; return the new version."""
        k = native_key(namespace, name, key)
        assets = self._require()
        docs = [self._get(a, namespace, name, key, k) for a in assets]
        new, stored = self._plan_write(namespace, name, key, k, value, expected_version, updated_by, docs)
        failures: builtins.list[BaseException | None] = []
        for asset in assets:
            try:
                asset.accessor.set(k, stored)
                failures.append(None)
            except Exception as exc:
                failures.append(exc)
        return self._after_write(namespace, name, key, k, new, failures)

    def delete(self, namespace: str, name: str, key: str, *, expected_version: int | None = None) -> bool:
        """Delete the document from every asset; return whether one existed."""
        k = native_key(namespace, name, key)
        assets = self._require()
        docs = [self._get(a, namespace, name, key, k) for a in assets]
        targets = self._plan_delete(namespace, name, key, k, expected_version, docs)
        for asset in targets:
            try:
                asset.accessor.delete(k)
            except Exception as exc:
                raise self._io_error("deleting", asset, k, exc) from exc
        return bool(targets)

    def list(self, namespace: str | None = None) -> Sequence[StateRecord]:
        """Not available: the Execution API cannot list an asset's keys.

        Raises:
            StoreError: always; the message says how to list them through the REST API.
        """
        raise self._no_list()

    # ---- async API (triggers) -------------------------------------------------------------

    async def aread(self, namespace: str, name: str, key: str) -> StateRecord | None:
        """Async :meth:`read`: never blocks the event loop."""
        k = native_key(namespace, name, key)
        docs = await self._aget_all(self._require(), namespace, name, key, k)
        return self._on_read(namespace, name, key, k, docs)

    async def awrite(
        self,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
    ) -> int:
        """Async :meth:`write`: never blocks the event loop."""
        k = native_key(namespace, name, key)
        assets = self._require()
        docs = await self._aget_all(assets, namespace, name, key, k)
        new, stored = self._plan_write(namespace, name, key, k, value, expected_version, updated_by, docs)
        results = await asyncio.gather(*(a.accessor.aset(k, stored) for a in assets), return_exceptions=True)
        failures = [r if isinstance(r, BaseException) else None for r in results]
        return self._after_write(namespace, name, key, k, new, failures)

    async def adelete(
        self, namespace: str, name: str, key: str, *, expected_version: int | None = None
    ) -> bool:
        """Async :meth:`delete`: never blocks the event loop."""
        k = native_key(namespace, name, key)
        assets = self._require()
        docs = await self._aget_all(assets, namespace, name, key, k)
        targets = self._plan_delete(namespace, name, key, k, expected_version, docs)
        for asset in targets:
            try:
                await asset.accessor.adelete(k)
            except Exception as exc:
                raise self._io_error("deleting", asset, k, exc) from exc
        return bool(targets)

    async def alist(self, namespace: str | None = None) -> Sequence[StateRecord]:
        """Not available (see :meth:`list`)."""
        raise self._no_list()

    # ---- I/O wrappers -----------------------------------------------------------------------

    def _require(self) -> tuple[WatchedAsset, ...]:
        if not self._assets:
            raise StoreConfigError(
                "NativeBackend() is not bound to an asset state store: give it to "
                "@stateful(backend=NativeBackend()), which binds it to the trigger's or task's asset "
                "scope, or build it with NativeBackend(context['asset_state_store'])."
            )
        return self._assets

    def _get(self, asset: WatchedAsset, namespace: str, name: str, key: str, k: str) -> NativeDocument | None:
        try:
            data = asset.accessor.get(k)
        except Exception as exc:
            raise self._io_error("reading", asset, k, exc) from exc
        return self._parse(asset, namespace, name, key, k, data)

    async def _aget(
        self, asset: WatchedAsset, namespace: str, name: str, key: str, k: str
    ) -> NativeDocument | None:
        try:
            data = await asset.accessor.aget(k)
        except Exception as exc:
            raise self._io_error("reading", asset, k, exc) from exc
        return self._parse(asset, namespace, name, key, k, data)

    async def _aget_all(
        self, assets: Sequence[WatchedAsset], namespace: str, name: str, key: str, k: str
    ) -> builtins.list[NativeDocument | None]:
        # Concurrently (one round trip of latency for any number of assets); every result is
        # collected before an error is raised, so no task is left behind unobserved.
        results = await asyncio.gather(
            *(self._aget(a, namespace, name, key, k) for a in assets), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if not isinstance(r, BaseException)]

    def _parse(
        self, asset: WatchedAsset, namespace: str, name: str, key: str, k: str, data: Any
    ) -> NativeDocument | None:
        if data is None:
            return None
        try:
            doc = NativeDocument.from_json_value(data)
            if doc.address != (namespace, name, key):
                raise ValueError(
                    f"it holds {doc.namespace}/{doc.name} (key {doc.key!r}) instead: two addresses "
                    f"map to one key, or the document was copied there by hand"
                )
        except ValueError as exc:
            raise StateValidationError(
                namespace=namespace,
                name=name,
                key=key,
                backend=self._description,
                model=f"a {FORMAT} document",
                detail=f"{asset.label}, state store key {k!r}: {exc}",
            ) from exc
        return doc

    def _io_error(self, doing: str, asset: WatchedAsset, k: str, exc: BaseException) -> StatefulError:
        if isinstance(exc, StatefulError):
            return exc
        return StoreError(
            f"{doing} key {k!r} in the asset state store of {asset.label} failed ({self._description}): "
            f"{exc!r}. Check that the asset is still active in a DAG and that the Airflow API server "
            f"is reachable; nothing else was changed by this call."
        )

    def _no_list(self) -> StoreError:
        return StoreError(
            f"{self._description} cannot list its documents: Airflow's Execution API offers no listing "
            f"of an asset's state store. List them with the REST API (GET /api/v2/assets/{{asset_id}}/"
            f"state-store; keys start with 'stateful/') or `stateful list`."
        )

    # ---- decisions (no I/O) ---------------------------------------------------------------------

    def _where(self, namespace: str, name: str, key: str) -> Where:
        return Where(namespace, name, key, self._description)

    def _on_read(
        self, namespace: str, name: str, key: str, k: str, docs: Sequence[NativeDocument | None]
    ) -> StateRecord | None:
        self._ledger.check_history(self._where(namespace, name, key), k, docs)
        chosen = docs[oldest(docs)]
        self._ledger.remember(k, docs, None if chosen is None else chosen.version)
        if len({ident(d) for d in docs}) > 1:
            held = ", ".join(
                f"{a.label}: {'nothing' if d is None else f'version {d.version}'}"
                for a, d in zip(self._assets, docs, strict=True)
            )
            _log.warning(
                "stateful: the assets of %s/%s hold different states (%s); using the oldest, so "
                "events the others already saw may be emitted again (a repeat beats a skip)",
                namespace,
                name,
                held,
            )
        if chosen is None:
            return None
        return StateRecord(
            namespace, name, key, chosen.value, chosen.version, chosen.updated_at, chosen.updated_by
        )

    def _plan_write(
        self,
        namespace: str,
        name: str,
        key: str,
        k: str,
        value: str,
        expected: int | None,
        updated_by: str | None,
        docs: Sequence[NativeDocument | None],
    ) -> tuple[NativeDocument, dict[str, Any]]:
        where = self._where(namespace, name, key)
        self._ledger.check_history(where, k, docs)
        self._ledger.check_expected(where, k, expected, docs)
        present = [d for d in docs if d is not None]
        version = max((d.version for d in present), default=0) + 1
        writer = updated_by or default_writer()
        base = next((d for d in present if d.version == expected), None)
        if base is None:
            new = NativeDocument.create(namespace, name, key, value, updated_by=writer, version=version)
        else:
            new = base.successor(value, updated_by=writer, version=version)
        stored = new.to_json_value()
        size = stored_size(stored)
        if self._limit > 0 and size > self._limit:
            raise StateTooLargeError(
                namespace=namespace,
                name=name,
                key=key,
                size=size,
                limit=self._limit,
                backend=self._description,
                setting=SIZE_SETTING,
            )
        return new, stored

    def _after_write(
        self,
        namespace: str,
        name: str,
        key: str,
        k: str,
        new: NativeDocument,
        failures: Sequence[BaseException | None],
    ) -> int:
        failed = [(a, e) for a, e in zip(self._assets, failures, strict=True) if e is not None]
        if not failed:
            self._ledger.remember(k, [new] * len(self._assets), new.version)
            return new.version
        self._ledger.forget(k)  # what each asset holds is unknown now
        if len(self._assets) == 1:
            raise self._io_error("writing", failed[0][0], k, failed[0][1]) from failed[0][1]
        written = [a.label for a, e in zip(self._assets, failures, strict=True) if e is None]
        raise StoreError(
            f"writing {namespace}/{name} (key {key!r}, version {new.version}) to {self._description} "
            f"failed for {', '.join(f'{a.label} ({e!r})' for a, e in failed)}; written to "
            f"{', '.join(written) or 'none'}. The next read takes the oldest document, so events "
            f"since the last complete save are emitted again, none are skipped."
        ) from failed[0][1]

    def _plan_delete(
        self,
        namespace: str,
        name: str,
        key: str,
        k: str,
        expected: int | None,
        docs: Sequence[NativeDocument | None],
    ) -> tuple[WatchedAsset, ...]:
        where = self._where(namespace, name, key)
        self._ledger.check_history(where, k, docs)
        if expected is not None:
            self._ledger.check_expected(where, k, expected, docs)
        self._ledger.forget(k)
        return tuple(a for a, d in zip(self._assets, docs, strict=True) if d is not None)
