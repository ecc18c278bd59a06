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

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "AsyncFromSync",
    "AsyncStateBackend",
    "StateBackend",
    "StateRecord",
    "SupportsHistory",
    "default_writer",
]

_T = TypeVar("_T")


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
        updated_by: who wrote it (by default ``host:pid``), or ``None`` if unknown.
    """

    namespace: str
    name: str
    key: str
    value: str
    version: int
    updated_at: datetime
    updated_by: str | None


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
    ) -> int:
        """Store ``value`` if the stored version is ``expected_version``; return the new version.

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


class AsyncFromSync:
    """Implements :class:`AsyncStateBackend` on top of a store's own sync methods.

    Each async method hands the matching sync call to :meth:`_call`: a store whose sync calls
    block (a database) overrides it to run them in a worker thread; a store whose calls only
    take a lock for a dict operation keeps the direct call, which is cheaper than a thread hop.
    One implementation serves both, so the sync and async semantics cannot drift apart.
    """

    async def _call(self, function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        return function(*args, **kwargs)

    async def aread(self: Any, namespace: str, name: str, key: str) -> StateRecord | None:
        """Async :meth:`StateBackend.read`."""
        result: StateRecord | None = await self._call(self.read, namespace, name, key)
        return result

    async def awrite(
        self: Any,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
    ) -> int:
        """Async :meth:`StateBackend.write`."""
        version: int = await self._call(
            self.write, namespace, name, key, value, expected_version=expected_version, updated_by=updated_by
        )
        return version

    async def adelete(
        self: Any, namespace: str, name: str, key: str, *, expected_version: int | None = None
    ) -> bool:
        """Async :meth:`StateBackend.delete`."""
        existed: bool = await self._call(self.delete, namespace, name, key, expected_version=expected_version)
        return existed

    async def alist(self: Any, namespace: str | None = None) -> Sequence[StateRecord]:
        """Async :meth:`StateBackend.list`."""
        records: Sequence[StateRecord] = await self._call(self.list, namespace)
        return records
