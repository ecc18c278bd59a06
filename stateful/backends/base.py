"""The state store contract: a small sync Protocol and its async twin.

A store keeps JSON text documents addressed by ``(namespace, name, key)``, each with an integer
version that starts at 1 and grows by one on every write. Writes are compare-and-set: the writer
says which version it read (``None`` when it read nothing) and the store refuses the write with
:class:`~stateful.errors.StateConflictError` when that is no longer the stored version.

Stores are passed to ``@stateful(backend=...)`` as instances. A store used by triggers must
implement :class:`AsyncStateBackend` (the triggerer's event loop must never block); a store used
by sensors implements :class:`StateBackend`. The built-in stores implement both.

Example:
    >>> from stateful.backends import MemoryBackend
    >>> store = MemoryBackend()
    >>> store.write("files", "landing", "watermark", "{}", expected_version=None)
    1
    >>> store.read("files", "landing", "watermark").version
    1
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from stateful._layout import Layout
from stateful.errors import StateConflictError

__all__ = [
    "Address",
    "AddressedStore",
    "AsyncStateBackend",
    "StateBackend",
    "StateRecord",
    "SupportsHistory",
    "SupportsLayout",
    "SupportsWriteMany",
    "Write",
    "SupportsVersion",
    "default_writer",
    "version_conflict",
]

_T = TypeVar("_T")

#: Up to this many characters a layout is joined on the calling thread (microseconds); a larger
#: one is joined in a worker thread by the async write of a store that keeps no parts.
INLINE_JOIN_CHARS = 64 * 1024


@dataclass(frozen=True)
class StateRecord:
    """One stored state document.

    Attributes:
        namespace: the namespace given to ``@stateful``.
        name: the resolved name.
        key: the document key (the decorator stores its watermark under ``"watermark"``).
        value: the JSON text.
        version: 1 for the first write, then +1 per write.
        updated_at: when it was last written (timezone-aware, UTC).
        updated_by: who wrote it (by default ``host:pid``; a CLI edit records the command, the
            user and the host, e.g. ``stateful set by alice@ops-1``), or ``None`` if unknown.
        reason: why it was written, as the writer said (``stateful set --reason ...``), or
            ``None``: saves of triggers and sensors give none, and a store that cannot keep one
            reads ``None``.
    """

    namespace: str
    name: str
    key: str
    value: str
    version: int
    updated_at: datetime
    updated_by: str | None
    reason: str | None = None


def default_writer() -> str:
    """Return the default ``updated_by`` for writes from this process: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@runtime_checkable
class StateBackend(Protocol):
    """Blocking state store: for sensors, the CLI and tests. Never call it from async code."""

    @property
    def description(self) -> str:
        """Human-readable description of the store for logs and errors (password masked)."""
        ...

    def read(self, namespace: str, name: str, key: str) -> StateRecord | None:
        """Return the stored document, or ``None`` when nothing is stored."""
        ...

    def write(
        self,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Store ``value`` if the stored version is ``expected_version``; return the new version.

        ``updated_by`` says who writes (``host:pid`` when ``None``), ``reason`` why (kept with
        the version, and in its history, where the store keeps one).

        Raises:
            StateConflictError: the stored version is not ``expected_version`` (``None`` means
                "nothing stored"). Nothing was written.
        """
        ...

    def delete(self, namespace: str, name: str, key: str, *, expected_version: int | None = None) -> bool:
        """Delete the document; return whether one existed.

        With ``expected_version`` the delete is compare-and-set and raises
        :class:`~stateful.errors.StateConflictError` on a mismatch.
        """
        ...

    def list(self, namespace: str | None = None) -> Sequence[StateRecord]:
        """Return every stored document (of ``namespace``), ordered by namespace, name, key."""
        ...


@runtime_checkable
class AsyncStateBackend(Protocol):
    """Non-blocking twin of :class:`StateBackend`, used on the triggerer's event loop."""

    @property
    def description(self) -> str:
        """Human-readable description of the store for logs and errors (password masked)."""
        ...

    async def aread(self, namespace: str, name: str, key: str) -> StateRecord | None:
        """Async :meth:`StateBackend.read`."""
        ...

    async def awrite(
        self,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Async :meth:`StateBackend.write`."""
        ...

    async def adelete(
        self, namespace: str, name: str, key: str, *, expected_version: int | None = None
    ) -> bool:
        """Async :meth:`StateBackend.delete`."""
        ...

    async def alist(self, namespace: str | None = None) -> Sequence[StateRecord]:
        """Async :meth:`StateBackend.list`."""
        ...


@runtime_checkable
class SupportsHistory(Protocol):
    """A store that keeps earlier versions of each document (``SqlBackend`` does)."""

    def history(
        self, namespace: str, name: str, key: str, *, limit: int | None = None
    ) -> Sequence[StateRecord]:
        """Return the kept versions of a document, newest first, the current one included."""
        ...


@runtime_checkable
class SupportsLayout(Protocol):
    """A store that can be handed a state in parts (:class:`~stateful._layout.Layout`).

    The built-in stores are (:class:`AddressedStore`): the SQL store writes only the parts it
    does not hold yet, the memory store keeps the parts without joining them. What a store
    reads back is always the whole text, as if :meth:`StateBackend.write` had been given
    ``layout.text()``. A store without it is written the joined text.
    """

    def write_layout(
        self,
        namespace: str,
        name: str,
        key: str,
        layout: Layout,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """:meth:`StateBackend.write` of ``layout.text()``, written as the store sees fit."""
        ...

    async def awrite_layout(
        self,
        namespace: str,
        name: str,
        key: str,
        layout: Layout,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Async :meth:`write_layout`."""
        ...


@runtime_checkable
class SupportsWriteMany(Protocol):
    """A store that writes several documents with one compare-and-set, and lists one name's documents.

    Keyed watermarks (:class:`~stateful.Keyed`) keep one document per partition and save the
    partitions an event changed together. The built-in stores are (:class:`AddressedStore`):
    the SQL store writes them in one transaction and the memory store under one lock, so either
    every document is written or none; the Airflow-native store, which has no transactions,
    writes them one after the other, each still compare-and-set.
    """

    def write_many(
        self, writes: Sequence[Write], *, updated_by: str | None = None, reason: str | None = None
    ) -> builtins.list[int]:
        """Compare-and-set every write; return their new versions, in order."""
        ...

    async def awrite_many(
        self, writes: Sequence[Write], *, updated_by: str | None = None, reason: str | None = None
    ) -> builtins.list[int]:
        """Async :meth:`write_many`."""
        ...

    def list_name(self, namespace: str, name: str) -> Sequence[StateRecord]:
        """Every document stored under ``namespace``/``name`` (all its keys), ordered by key."""
        ...

    async def alist_name(self, namespace: str, name: str) -> Sequence[StateRecord]:
        """Async :meth:`list_name`."""
        ...


@runtime_checkable
class SupportsVersion(Protocol):
    """A store that reads a document's version alone, cheaply (the SQL and memory stores do).

    A decorated trigger reads it before the first event after a pause, and every few seconds
    while events keep coming (fencing before emitting, see :mod:`stateful._fence`): one indexed
    lookup, not the whole state. A store without it is fenced by its compare-and-set saves only.
    """

    async def aversion(self, namespace: str, name: str, key: str) -> int | None:
        """The stored version of the document, or ``None`` when nothing is stored."""
        ...


class Address(NamedTuple):
    """Where a document lives in a store.

    Attributes:
        namespace: the namespace given to ``@stateful``.
        name: the resolved name.
        key: the document key.
    """

    namespace: str
    name: str
    key: str


class Write(NamedTuple):
    """One document of a :meth:`SupportsWriteMany.write_many`.

    Attributes:
        address: where to write.
        value: the JSON text.
        expected_version: the version read (``None``: nothing was stored).
    """

    address: Address
    value: str
    expected_version: int | None


def version_conflict(
    store: str,
    address: Address,
    expected: int | None,
    actual: int | None,
    current: StateRecord | None = None,
) -> StateConflictError:
    """The error of a compare-and-set that found ``actual`` where ``expected`` was named.

    ``current``, the record the store holds (or its version, writer, time and reason), lets the
    error say who wrote it and why: an operator's edit is named as such.

    Example:
        >>> error = version_conflict("MemoryBackend", Address("files", "landing", "watermark"), 3, 4)
        >>> (error.expected_version, error.actual_version, error.backend)
        (3, 4, 'MemoryBackend')
    """
    return StateConflictError(
        namespace=address.namespace,
        name=address.name,
        key=address.key,
        expected_version=expected,
        actual_version=actual,
        backend=store,
        actual_by=None if current is None else current.updated_by,
        actual_at=None if current is None else current.updated_at,
        actual_reason=None if current is None else current.reason,
    )


class AddressedStore(abc.ABC):
    """Implements both store Protocols once, over hooks that take an :class:`Address`.

    A store implements ``_read``, ``_write``, ``_delete`` and ``_list`` (blocking), and either
    keeps the default async hooks, which hand the blocking ones to :meth:`_call`, or implements
    ``_aread``, ``_awrite``, ``_adelete`` and ``_alist`` itself. :meth:`_call` calls directly: a
    store whose calls only take a lock for a dict operation keeps that (cheaper than a thread
    hop); a store whose calls block (a database) overrides it to run them in a worker thread.
    One set of public methods serves every store, so their signatures and the sync and async
    semantics cannot drift apart. Subclasses also provide ``description``.
    """

    # -- the sync Protocol ---------------------------------------------------------------------

    def read(self, namespace: str, name: str, key: str) -> StateRecord | None:
        """Return the stored document, or ``None``. See :class:`StateBackend`."""
        return self._read(Address(namespace, name, key))

    def write(
        self,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Compare-and-set ``value``; return the new version. See :class:`StateBackend`.

        Raises:
            StateConflictError: the stored version is not ``expected_version``.
            StoreError: the store failed.
        """
        return self._write(Address(namespace, name, key), value, expected_version, updated_by, reason)

    def write_layout(
        self,
        namespace: str,
        name: str,
        key: str,
        layout: Layout,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Compare-and-set the text ``layout`` stands for; return the new version.

        Reads return ``layout.text()``. See :class:`SupportsLayout`.

        Raises:
            StateConflictError: the stored version is not ``expected_version``.
            StoreError: the store failed.
        """
        return self._write_layout(Address(namespace, name, key), layout, expected_version, updated_by, reason)

    def delete(self, namespace: str, name: str, key: str, *, expected_version: int | None = None) -> bool:
        """Delete the document; return whether one existed. See :class:`StateBackend`.

        Raises:
            StateConflictError: ``expected_version`` was given and is not the stored version.
            StoreError: the store failed.
        """
        return self._delete(Address(namespace, name, key), expected_version)

    def list(self, namespace: str | None = None) -> Sequence[StateRecord]:
        """Return the stored documents (of ``namespace``), ordered by namespace, name, key."""
        return sorted(self._list(namespace), key=lambda r: (r.namespace, r.name, r.key))

    def write_many(
        self, writes: Sequence[Write], *, updated_by: str | None = None, reason: str | None = None
    ) -> builtins.list[int]:
        """Compare-and-set several documents; return their new versions. See :class:`SupportsWriteMany`.

        Raises:
            StateConflictError: a stored version is not the expected one (in a store with
                transactions nothing was written then).
            StoreError: the store failed.
        """
        return self._write_many(writes, updated_by, reason)

    def list_name(self, namespace: str, name: str) -> Sequence[StateRecord]:
        """Every document of ``namespace``/``name``, ordered by key. See :class:`SupportsWriteMany`."""
        return sorted(self._list_name(namespace, name), key=lambda r: r.key)

    # -- the async Protocol --------------------------------------------------------------------

    async def aread(self, namespace: str, name: str, key: str) -> StateRecord | None:
        """Async :meth:`read`."""
        return await self._aread(Address(namespace, name, key))

    async def awrite(
        self,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Async :meth:`write`."""
        return await self._awrite(Address(namespace, name, key), value, expected_version, updated_by, reason)

    async def awrite_layout(
        self,
        namespace: str,
        name: str,
        key: str,
        layout: Layout,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Async :meth:`write_layout`."""
        return await self._awrite_layout(
            Address(namespace, name, key), layout, expected_version, updated_by, reason
        )

    async def adelete(
        self, namespace: str, name: str, key: str, *, expected_version: int | None = None
    ) -> bool:
        """Async :meth:`delete`."""
        return await self._adelete(Address(namespace, name, key), expected_version)

    async def alist(self, namespace: str | None = None) -> Sequence[StateRecord]:
        """Async :meth:`list`."""
        return sorted(await self._alist(namespace), key=lambda r: (r.namespace, r.name, r.key))

    async def awrite_many(
        self, writes: Sequence[Write], *, updated_by: str | None = None, reason: str | None = None
    ) -> builtins.list[int]:
        """Async :meth:`write_many`."""
        return await self._awrite_many(writes, updated_by, reason)

    async def alist_name(self, namespace: str, name: str) -> Sequence[StateRecord]:
        """Async :meth:`list_name`."""
        return sorted(await self._alist_name(namespace, name), key=lambda r: r.key)

    # -- hooks ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def _read(self, address: Address) -> StateRecord | None: ...

    @abc.abstractmethod
    def _write(
        self, address: Address, value: str, expected: int | None, updated_by: str | None, reason: str | None
    ) -> int: ...

    def _write_layout(
        self,
        address: Address,
        layout: Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        # A store that keeps no parts writes the joined text (in _call's thread, if it has one).
        return self._write(address, layout.text(), expected, updated_by, reason)

    @abc.abstractmethod
    def _delete(self, address: Address, expected: int | None) -> bool: ...

    @abc.abstractmethod
    def _list(self, namespace: str | None) -> Iterable[StateRecord]: ...

    def _write_many(
        self, writes: Sequence[Write], updated_by: str | None, reason: str | None
    ) -> builtins.list[int]:
        # A store without transactions: one compare-and-set after the other (see SupportsWriteMany).
        return [self._write(w.address, w.value, w.expected_version, updated_by, reason) for w in writes]

    def _list_name(self, namespace: str, name: str) -> Iterable[StateRecord]:
        return [record for record in self._list(namespace) if record.name == name]

    async def _awrite_many(
        self, writes: Sequence[Write], updated_by: str | None, reason: str | None
    ) -> builtins.list[int]:
        return [
            await self._awrite(w.address, w.value, w.expected_version, updated_by, reason) for w in writes
        ]

    async def _alist_name(self, namespace: str, name: str) -> Iterable[StateRecord]:
        return await self._call(self._list_name, namespace, name)

    async def _aread(self, address: Address) -> StateRecord | None:
        return await self._call(self._read, address)

    async def _awrite(
        self, address: Address, value: str, expected: int | None, updated_by: str | None, reason: str | None
    ) -> int:
        return await self._call(self._write, address, value, expected, updated_by, reason)

    async def _awrite_layout(
        self,
        address: Address,
        layout: Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        # Joining is O(state): a large text is joined in a worker thread, off the event loop.
        text = layout.text() if layout.size <= INLINE_JOIN_CHARS else await asyncio.to_thread(layout.text)
        return await self._awrite(address, text, expected, updated_by, reason)

    async def _adelete(self, address: Address, expected: int | None) -> bool:
        return await self._call(self._delete, address, expected)

    async def _alist(self, namespace: str | None) -> Iterable[StateRecord]:
        return await self._call(self._list, namespace)

    async def _call(self, function: Callable[..., _T], /, *args: Any) -> _T:
        return function(*args)
