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
  store keeps every value within it: a watermark too large for one value is a manifest plus
  parts (:mod:`stateful.backends.native.parts`), and what cannot fit even so is refused before
  writing, with :class:`~stateful.errors.StateTooLargeError`.
* **No listing** through the Execution API: :meth:`NativeBackend.list` raises; list keys with
  ``GET /api/v2/assets/{asset_id}/state-store``. A keyed watermark's partitions are listed all
  the same (:meth:`NativeBackend.list_name`): a save that creates a partition first adds its key
  to the name's index (:mod:`stateful.backends.native.index`).
* **No history**: the store keeps the last ``history_versions`` versions of each watermark as
  entries beside its parts (:mod:`stateful.backends.native.history`); :meth:`NativeBackend.history`
  lists them, for ``stateful history`` and ``stateful rewind``.

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
import functools
from collections.abc import Iterable, Sequence
from typing import Any

from stateful._address import partition_of
from stateful._layout import Layout
from stateful.backends.base import Address, AddressedStore, StateRecord, Write
from stateful.backends.native.document import NativeDocument, native_key
from stateful.backends.native.history import (
    PartialHistory,
    check_history_versions,
    entry_keys,
    history_setting,
    read_entries,
    to_read,
    trim,
    with_entries,
)
from stateful.backends.native.index import index_chunks, index_key, index_part_key, plan_index
from stateful.backends.native.parts import PartMismatch, part_key
from stateful.backends.native.planner import Planner, WritePlan
from stateful.backends.native.scope import WatchedAsset, assets_of, configured_size_limit
from stateful.errors import StoreConfigError

__all__ = ["NativeBackend"]

_READS = 5  # a read whose parts a concurrent save replaced is tried again, up to this many times


class NativeBackend(AddressedStore):
    """Keeps state in Airflow's asset state store; implements both store Protocols.

    Give ``@stateful(backend=NativeBackend())`` to insist on it: it is bound, at each run, to the
    asset scope of the trigger (``self.asset_state_store``) or of the task (``context
    ["asset_state_store"]``), and a trigger or task without one is refused. With ``backend=None``
    the store is chosen by the rule in ``stateful.backends._resolve`` (see
    https://airflow-stateful.github.io/airflow-stateful/stores/#which-store-is-used).

    Args:
        scope: ``trigger.asset_state_store`` or ``context["asset_state_store"]`` (an
            ``AssetStateStoreAccessors`` or a single ``AssetStateStoreAccessor``), or ``None``
            for an unbound store that ``@stateful`` binds.
        max_value_bytes: the largest value written under one key (0: no limit, one key per
            document); larger watermarks are split into parts; by default
            ``[state_store] max_value_storage_bytes`` (see :func:`configured_size_limit`).
        history_versions: how many versions of each watermark to keep, the current one
            included (0 or 1: no history); by default ``STATEFUL_NATIVE_HISTORY_VERSIONS``, else
            ``[stateful] native_history_versions``, else 10.

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

    #: Whether a save keeps as many versions as the document it replaces says (the command
    #: line's stores: an operator's edit never shortens the history the trigger's store keeps).
    _inherit_history = False

    #: A name's partitions are listed from its index (the Execution API cannot list keys).
    lists_names = True

    def __init__(
        self,
        scope: object | None = None,
        *,
        max_value_bytes: int | None = None,
        history_versions: int | None = None,
    ) -> None:
        self._max_value_bytes = max_value_bytes
        self._history_versions = history_versions
        self._assets: tuple[WatchedAsset, ...] = () if scope is None else assets_of(scope)
        keep: int | None = None
        if scope is None:
            self._limit = 0
        else:
            self._limit = configured_size_limit() if max_value_bytes is None else max_value_bytes
            if not self._inherit_history:
                where = f"{self.__class__.__name__}(history_versions=...)"
                keep = (
                    history_setting()
                    if history_versions is None
                    else check_history_versions(history_versions, where)
                )
        labels = ", ".join(a.label.removeprefix("asset ") for a in self._assets)
        plural = "s" if len(self._assets) > 1 else ""
        self._description = (
            f"NativeBackend(asset{plural} {labels})" if scope is not None else "NativeBackend(unbound)"
        )
        self._plan = Planner([a.label for a in self._assets], self._description, self._limit, keep)
        self._last_kept: int | None = None

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
        """The size limit enforced on each value written (0: none)."""
        return self._limit

    @property
    def history_versions(self) -> int:
        """How many versions of each watermark a save keeps, the current one included.

        For a store that keeps what the document says (the command line's), what the document
        last read by :meth:`history` says.
        """
        if self._plan.keep is not None:
            return self._plan.keep
        return self._last_kept if self._last_kept is not None else self._plan.kept_by(None)

    def bind(self, scope: object) -> NativeBackend:
        """A store for ``scope`` with this store's settings (this one is left unchanged)."""
        return NativeBackend(
            scope, max_value_bytes=self._max_value_bytes, history_versions=self._history_versions
        )

    def __repr__(self) -> str:
        return self._description

    # ---- sync hooks (tasks and sensors); the public methods are AddressedStore's ------------

    def _read(self, address: Address) -> StateRecord | None:
        k, assets = native_key(*address), self._require()
        for attempt in range(1, _READS + 1):
            plan = self._plan.on_read(address, k, [self._get(a, address, k) for a in assets])
            asset = assets[plan.index]
            try:
                return self._plan.finish_read(address, plan, [self._fetch(asset, p) for p in plan.keys])
            except PartMismatch as exc:  # a concurrent save replaced the parts: read it again
                if attempt == _READS:
                    raise self._plan.torn(address, k, attempt, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(
        self, address: Address, value: str, expected: int | None, updated_by: str | None, reason: str | None
    ) -> int:
        self._index([address] if expected is None else [])
        return self._save(address, value, expected, updated_by, reason)

    def _write_many(
        self, writes: Sequence[Write], updated_by: str | None, reason: str | None
    ) -> builtins.list[int]:
        # One compare-and-set after the other (no transactions), the new partitions indexed first.
        self._index([w.address for w in writes if w.expected_version is None])
        return [self._save(w.address, w.value, w.expected_version, updated_by, reason) for w in writes]

    def _list_name(self, namespace: str, name: str) -> Iterable[StateRecord]:
        """The partitions the name's index lists, each read (an entry without a document: skipped)."""
        found = (self._read(Address(namespace, name, key)) for key in self._indexed(namespace, name))
        return [record for record in found if record is not None]

    def _write_layout(
        self,
        address: Address,
        layout: Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        """A save handed in parts: packed from the runs that changed, not from the whole text."""
        self._index([address] if expected is None else [])
        return self._save(address, layout, expected, updated_by, reason)

    def _save(
        self,
        address: Address,
        value: str | Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        k, assets = native_key(*address), self._require()
        docs = [self._get(a, address, k) for a in assets]
        plan = self._plan.plan_write(address, k, value, expected, updated_by, docs, reason)
        failures: builtins.list[BaseException | None] = []
        for asset, parts, manifest in zip(assets, plan.parts, plan.manifests, strict=True):
            try:
                for key, body in (*parts, (k, manifest)):  # the manifest last: the commit
                    asset.accessor.set(key, body)
                failures.append(None)
            except Exception as exc:
                failures.append(exc)
        version = self._plan.after_write(address, k, plan, failures)
        for i, asset in enumerate(assets):
            self._clean(i, asset, k, plan)
        return version

    def _delete(self, address: Address, expected: int | None) -> bool:
        k, assets = native_key(*address), self._require()
        docs = [self._get(a, address, k) for a in assets]
        targets = self._plan.plan_delete(address, k, expected, docs)
        for i, parts in targets:
            entries = [(key, self._fetch(assets[i], key)) for key in entry_keys(k, docs[i])]
            for key in (k, *parts, *with_entries(k, parts, entries)):  # the document first
                try:
                    assets[i].accessor.delete(key)
                except Exception as exc:
                    raise self._plan.io_error("deleting", assets[i].label, key, exc) from exc
        return bool(targets)

    def _list(self, namespace: str | None) -> Iterable[StateRecord]:
        """Not available: the Execution API cannot list an asset's keys (the error says how to)."""
        raise self._plan.no_list()

    def history(
        self, namespace: str, name: str, key: str, *, limit: int | None = None
    ) -> builtins.list[StateRecord]:
        """The kept versions of a document, newest first, the current one included (``[]``: none).

        Read from the asset a read takes (the oldest document, see above). Each entry is checked
        against the document naming it; one that a concurrent save dropped makes the whole
        history read again. An entry that stays unreadable (its parts deleted by hand, or by a
        save of a release that kept no history) ends the list there, with a warning.

        Example:
            >>> NativeBackend().history("files", "landing", "watermark")
            Traceback (most recent call last):
            ...
            stateful.errors.StoreConfigError: NativeBackend() is not bound to an asset state store...
        """
        address, assets = Address(namespace, name, key), self._require()
        k = native_key(*address)
        for attempt in range(1, _READS + 1):
            plan = self._plan.on_read(address, k, [self._get(a, address, k) for a in assets])
            asset, doc = assets[plan.index], plan.doc
            try:
                current = self._plan.finish_read(address, plan, [self._fetch(asset, p) for p in plan.keys])
            except PartMismatch as exc:
                if attempt == _READS:
                    raise self._plan.torn(address, k, attempt, exc) from None
                continue
            if current is None or doc is None:
                return []
            self._last_kept = self._plan.kept_by(doc)
            records = [current]
            try:
                entries = doc.history[: None if limit is None else max(0, limit - 1)]
                records += read_entries(k, doc, entries, functools.partial(self._fetch, asset))
            except PartialHistory as exc:
                if attempt < _READS:
                    continue
                self._plan.history_cut(address, k, exc)
                records += exc.records
            return records
        raise AssertionError("unreachable")  # pragma: no cover

    def _clean(self, i: int, asset: WatchedAsset, k: str, plan: WritePlan) -> None:
        """After a save: delete the parts it made unused, and those a killed save left behind."""
        stale = builtins.list(plan.stale[i])
        try:
            if plan.probe is not None:
                version, n = plan.probe
                while asset.accessor.get(part_key(k, f"{version}.{n}")) is not None:
                    stale.append(part_key(k, f"{version}.{n}"))
                    n += 1
            carry = plan.carries[i]
            stale += trim(k, carry, [asset.accessor.get(key) for key in to_read(k, carry)])
            stale = builtins.list(dict.fromkeys(stale))
            while stale:
                asset.accessor.delete(stale[-1])
                stale.pop()
        except Exception:  # the save is done; what is left is named by no manifest
            self._plan.left_behind(k, i, stale)

    # ---- async hooks (triggers): never block the event loop ---------------------------------

    async def _aread(self, address: Address) -> StateRecord | None:
        k, assets = native_key(*address), self._require()
        for attempt in range(1, _READS + 1):
            plan = self._plan.on_read(address, k, await self._aget_all(assets, address, k))
            asset = assets[plan.index]
            bodies = [await self._afetch(asset, p) for p in plan.keys]
            try:
                if not bodies:
                    return self._plan.finish_read(address, plan, bodies)
                # Joining ~10 MB of parts is CPU work: off the event loop.
                return await asyncio.to_thread(self._plan.finish_read, address, plan, bodies)
            except PartMismatch as exc:
                if attempt == _READS:
                    raise self._plan.torn(address, k, attempt, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _awrite(
        self, address: Address, value: str, expected: int | None, updated_by: str | None, reason: str | None
    ) -> int:
        await self._aindex([address] if expected is None else [])
        return await self._asave(address, value, expected, updated_by, reason)

    async def _awrite_many(
        self, writes: Sequence[Write], updated_by: str | None, reason: str | None
    ) -> builtins.list[int]:
        await self._aindex([w.address for w in writes if w.expected_version is None])
        return [await self._asave(w.address, w.value, w.expected_version, updated_by, reason) for w in writes]

    async def _alist_name(self, namespace: str, name: str) -> Iterable[StateRecord]:
        found = [
            await self._aread(Address(namespace, name, key)) for key in await self._aindexed(namespace, name)
        ]
        return [record for record in found if record is not None]

    async def _awrite_layout(
        self,
        address: Address,
        layout: Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        await self._aindex([address] if expected is None else [])
        return await self._asave(address, layout, expected, updated_by, reason)

    async def _asave(
        self,
        address: Address,
        value: str | Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        k, assets = native_key(*address), self._require()
        docs = await self._aget_all(assets, address, k)
        size = value.size if isinstance(value, Layout) else len(value)
        if self._limit > 0 and size > self._limit // 2:  # it may need splitting: CPU work
            plan = await asyncio.to_thread(
                self._plan.plan_write, address, k, value, expected, updated_by, docs, reason
            )
        else:
            plan = self._plan.plan_write(address, k, value, expected, updated_by, docs, reason)

        async def save(asset: WatchedAsset, parts: Sequence[tuple[str, Any]], manifest: Any) -> None:
            for key, body in (*parts, (k, manifest)):  # the manifest last: the commit
                await asset.accessor.aset(key, body)

        results = await asyncio.gather(
            *(save(*job) for job in zip(assets, plan.parts, plan.manifests, strict=True)),
            return_exceptions=True,
        )
        failures = [r if isinstance(r, BaseException) else None for r in results]
        version = self._plan.after_write(address, k, plan, failures)
        await asyncio.gather(*(self._aclean(i, a, k, plan) for i, a in enumerate(assets)))
        return version

    async def _adelete(self, address: Address, expected: int | None) -> bool:
        k, assets = native_key(*address), self._require()
        docs = await self._aget_all(assets, address, k)
        targets = self._plan.plan_delete(address, k, expected, docs)
        for i, parts in targets:
            entries = [(key, await self._afetch(assets[i], key)) for key in entry_keys(k, docs[i])]
            for key in (k, *parts, *with_entries(k, parts, entries)):  # the document first
                try:
                    await assets[i].accessor.adelete(key)
                except Exception as exc:
                    raise self._plan.io_error("deleting", assets[i].label, key, exc) from exc
        return bool(targets)

    async def _alist(self, namespace: str | None) -> Iterable[StateRecord]:
        raise self._plan.no_list()

    async def _aclean(self, i: int, asset: WatchedAsset, k: str, plan: WritePlan) -> None:
        stale = builtins.list(plan.stale[i])
        try:
            if plan.probe is not None:
                version, n = plan.probe
                while await asset.accessor.aget(part_key(k, f"{version}.{n}")) is not None:
                    stale.append(part_key(k, f"{version}.{n}"))
                    n += 1
            carry = plan.carries[i]
            stale += trim(k, carry, [await asset.accessor.aget(key) for key in to_read(k, carry)])
            stale = builtins.list(dict.fromkeys(stale))
            while stale:
                await asset.accessor.adelete(stale[-1])
                stale.pop()
        except Exception:
            self._plan.left_behind(k, i, stale)

    # ---- the index of a name's partitions (stateful.backends.native.index) ---------------------

    def _index(self, addresses: Sequence[Address]) -> None:
        """Add the partitions among ``addresses`` to their names' indexes, in every asset."""
        for (namespace, name), keys in _new_partitions(addresses).items():
            for asset in self._require():
                chunks = self._index_chunks(asset, namespace, name)
                for key, value in plan_index(
                    chunks, keys, namespace, name, limit=self._limit, store=self._description
                ):
                    try:
                        asset.accessor.set(key, value)
                    except Exception as exc:
                        raise self._plan.io_error("writing", asset.label, key, exc) from exc

    def _index_chunks(
        self, asset: WatchedAsset, namespace: str, name: str
    ) -> builtins.list[builtins.list[str]]:
        head = index_key(namespace, name)
        keys, parts = index_chunks(self._fetch(asset, head), f"key {head!r} of {asset.label}")
        chunks = [keys]
        for n in range(1, parts + 1):
            k = index_part_key(namespace, name, n)
            chunks.append(index_chunks(self._fetch(asset, k), f"key {k!r} of {asset.label}")[0])
        return chunks

    def _indexed(self, namespace: str, name: str) -> builtins.list[str]:
        """The keys the indexes of every watched asset list for ``namespace``/``name``, sorted."""
        chunks = [c for a in self._require() for c in self._index_chunks(a, namespace, name)]
        return sorted({key for chunk in chunks for key in chunk})

    async def _aindex(self, addresses: Sequence[Address]) -> None:
        for (namespace, name), keys in _new_partitions(addresses).items():
            for asset in self._require():
                chunks = await self._aindex_chunks(asset, namespace, name)
                for key, value in plan_index(
                    chunks, keys, namespace, name, limit=self._limit, store=self._description
                ):
                    try:
                        await asset.accessor.aset(key, value)
                    except Exception as exc:
                        raise self._plan.io_error("writing", asset.label, key, exc) from exc

    async def _aindex_chunks(
        self, asset: WatchedAsset, namespace: str, name: str
    ) -> builtins.list[builtins.list[str]]:
        head = index_key(namespace, name)
        keys, parts = index_chunks(await self._afetch(asset, head), f"key {head!r} of {asset.label}")
        chunks = [keys]
        for n in range(1, parts + 1):
            k = index_part_key(namespace, name, n)
            chunks.append(index_chunks(await self._afetch(asset, k), f"key {k!r} of {asset.label}")[0])
        return chunks

    async def _aindexed(self, namespace: str, name: str) -> builtins.list[str]:
        chunks = [c for a in self._require() for c in await self._aindex_chunks(a, namespace, name)]
        return sorted({key for chunk in chunks for key in chunk})

    # ---- I/O ----------------------------------------------------------------------------------

    def _require(self) -> tuple[WatchedAsset, ...]:
        if not self._assets:
            raise StoreConfigError(
                "NativeBackend() is not bound to an asset state store: give it to "
                "@stateful(backend=NativeBackend()), which binds it to the trigger's or task's asset "
                "scope, or build it with NativeBackend(context['asset_state_store'])."
            )
        return self._assets

    def _get(self, asset: WatchedAsset, address: Address, k: str) -> NativeDocument | None:
        try:
            data = asset.accessor.get(k)
        except Exception as exc:
            raise self._plan.io_error("reading", asset.label, k, exc) from exc
        return self._plan.parse(asset.label, address, k, data)

    async def _aget(self, asset: WatchedAsset, address: Address, k: str) -> NativeDocument | None:
        try:
            data: Any = await asset.accessor.aget(k)
        except Exception as exc:
            raise self._plan.io_error("reading", asset.label, k, exc) from exc
        return self._plan.parse(asset.label, address, k, data)

    def _fetch(self, asset: WatchedAsset, key: str) -> Any:
        try:
            return asset.accessor.get(key)
        except Exception as exc:
            raise self._plan.io_error("reading", asset.label, key, exc) from exc

    async def _afetch(self, asset: WatchedAsset, key: str) -> Any:
        try:
            return await asset.accessor.aget(key)
        except Exception as exc:
            raise self._plan.io_error("reading", asset.label, key, exc) from exc

    async def _aget_all(
        self, assets: Sequence[WatchedAsset], address: Address, k: str
    ) -> builtins.list[NativeDocument | None]:
        # Concurrently (one round trip of latency for any number of assets); every result is
        # collected before an error is raised, so no task is left behind unobserved.
        results = await asyncio.gather(*(self._aget(a, address, k) for a in assets), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if not isinstance(r, BaseException)]


def _new_partitions(addresses: Iterable[Address]) -> dict[tuple[str, str], builtins.list[str]]:
    """The partition keys among ``addresses``, by namespace and name (a plain watermark: none)."""
    found: dict[tuple[str, str], builtins.list[str]] = {}
    for address in addresses:
        if partition_of(address.key) is not None:
            found.setdefault((address.namespace, address.name), []).append(address.key)
    return found
