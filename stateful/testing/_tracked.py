"""The store a kit-driven trigger writes to: the chosen store, with its writes watched.

:class:`Tracked` lets :func:`stateful.testing.run_trigger` wait for the saves under way before it
stops a trigger, and simulate a crash: once :meth:`Tracked.crash` was called, every write fails
as if the process had died, so nothing after the crash point reaches the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from stateful.backends.base import AsyncStateBackend, StateRecord
from stateful.errors import StoreError

__all__ = ["Tracked"]


class Tracked:
    """``store`` seen through: counts the writes under way; after :meth:`crash`, writes fail.

    Example:
        >>> import asyncio
        >>> from stateful.backends import MemoryBackend
        >>> tracked = Tracked(MemoryBackend())
        >>> asyncio.run(tracked.awrite("ns", "n", "k", "{}", expected_version=None))
        1
        >>> tracked.writes
        1
    """

    def __init__(self, store: AsyncStateBackend) -> None:
        self._store = store
        self._writing = 0
        self._idle: asyncio.Event | None = None
        self.crashed = False
        #: Writes that completed.
        self.writes = 0

    @property
    def description(self) -> str:
        """The watched store's description."""
        return self._store.description

    def crash(self) -> None:
        """From now on every write fails: the simulated process is gone."""
        self.crashed = True

    async def settled(self) -> None:
        """Return once no write is under way."""
        while self._writing:
            assert self._idle is not None
            await self._idle.wait()

    async def aread(self, namespace: str, name: str, key: str) -> StateRecord | None:
        """Read from the watched store."""
        return await self._store.aread(namespace, name, key)

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
        """Write to the watched store, unless the simulated process crashed."""
        if self.crashed:
            raise StoreError(
                f"simulated crash (stateful.testing): the save of {namespace}/{name} (key {key!r}) in "
                f"{self.description} did not happen; a restart loads the last save before the crash."
            )
        if self._idle is None:
            self._idle = asyncio.Event()
        self._writing += 1
        self._idle.clear()
        try:
            version = await self._store.awrite(
                namespace,
                name,
                key,
                value,
                expected_version=expected_version,
                updated_by=updated_by,
                reason=reason,
            )
        finally:
            self._writing -= 1
            if not self._writing:
                self._idle.set()
        self.writes += 1
        return version

    async def adelete(
        self, namespace: str, name: str, key: str, *, expected_version: int | None = None
    ) -> bool:
        """Delete from the watched store."""
        return await self._store.adelete(namespace, name, key, expected_version=expected_version)

    async def alist(self, namespace: str | None = None) -> Sequence[StateRecord]:
        """List the watched store."""
        return await self._store.alist(namespace)

    @property
    def lists_names(self) -> bool:
        """Whether the watched store lists a name's documents (what a keyed watermark loads)."""
        return hasattr(self._store, "alist_name") and getattr(self._store, "lists_names", True)

    async def alist_name(self, namespace: str, name: str) -> Sequence[StateRecord]:
        """The documents of one name in the watched store (the partitions of a keyed watermark).

        A keyed watermark's saves go through :meth:`awrite`, one partition after the other, so
        each is watched (and fails after :meth:`crash`).
        """
        lister = getattr(self._store, "alist_name", None)
        if lister is None:
            raise StoreError(f"{self.description} cannot list the documents of {namespace}/{name}")
        records: Sequence[StateRecord] = await lister(namespace, name)
        return records
