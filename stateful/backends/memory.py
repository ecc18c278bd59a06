"""A process-local state store, for tests and experiments.

Example:
    >>> from stateful.backends import MemoryBackend
    >>> store = MemoryBackend()
    >>> store.write("files", "landing", "watermark", '{"seen": 3}', expected_version=None)
    1
    >>> store.write("files", "landing", "watermark", '{"seen": 4}', expected_version=1)
    2
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Sequence
from datetime import datetime, timezone

from stateful._layout import Layout
from stateful.backends.base import (
    INLINE_JOIN_CHARS,
    Address,
    AddressedStore,
    StateRecord,
    Write,
    default_writer,
    version_conflict,
)

__all__ = ["MemoryBackend"]


class MemoryBackend(AddressedStore):
    """Keeps state in a dict of this process; implements both store Protocols.

    Nothing survives the process, and two processes never see each other's state: use it in
    tests (including tests of your own triggers and sensors), never in a deployment. It is
    thread-safe, and its async methods never block (they only hold a lock around dict
    operations), so it is safe on the triggerer's event loop. A state handed over in parts
    (:meth:`write_layout`) is kept in its parts, which are immutable, and joined when it is
    first read: a save costs the same whatever the size of the state.

    Example:
        >>> store = MemoryBackend()
        >>> store.read("files", "landing", "watermark") is None
        True
        >>> store.write("files", "landing", "watermark", "{}", expected_version=None)
        1
        >>> [r.name for r in store.list("files")]
        ['landing']
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[Address, StateRecord] = {}
        # The parts of the states last written in parts (their records' values are empty).
        self._layouts: dict[Address, Layout] = {}

    @property
    def description(self) -> str:
        """``"MemoryBackend"``."""
        return "MemoryBackend"

    def __repr__(self) -> str:
        return "MemoryBackend()"

    def _read(self, address: Address) -> StateRecord | None:
        return self._whole(address)

    def _write(
        self, address: Address, value: str, expected: int | None, updated_by: str | None, reason: str | None
    ) -> int:
        return self._put(address, value, None, expected, updated_by, reason)

    def _write_layout(
        self,
        address: Address,
        layout: Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        return self._put(address, "", layout, expected, updated_by, reason)

    async def _awrite_layout(
        self,
        address: Address,
        layout: Layout,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        return self._write_layout(address, layout, expected, updated_by, reason)  # a dict operation

    def _put(
        self,
        address: Address,
        value: str,
        layout: Layout | None,
        expected: int | None,
        updated_by: str | None,
        reason: str | None,
    ) -> int:
        writer = default_writer() if updated_by is None else updated_by
        with self._lock:
            current = self._records.get(address)
            self._check(address, expected, current)
            version = 1 if current is None else current.version + 1
            self._records[address] = StateRecord(
                *address,
                value,
                version,
                updated_at=datetime.now(timezone.utc),
                updated_by=writer,
                reason=reason,
            )
            if layout is None:
                self._layouts.pop(address, None)
            else:
                self._layouts[address] = layout
            return version

    def _write_many(self, writes: Sequence[Write], updated_by: str | None, reason: str | None) -> list[int]:
        # Every version is checked before anything is written: all the writes, or none.
        writer = default_writer() if updated_by is None else updated_by
        now = datetime.now(timezone.utc)
        with self._lock:
            for address, _, expected in writes:
                self._check(address, expected, self._records.get(address))
            versions = []
            for address, value, expected in writes:
                version = 1 if expected is None else expected + 1
                self._records[address] = StateRecord(
                    *address, value, version, updated_at=now, updated_by=writer, reason=reason
                )
                self._layouts.pop(address, None)
                versions.append(version)
            return versions

    async def _awrite_many(
        self, writes: Sequence[Write], updated_by: str | None, reason: str | None
    ) -> list[int]:
        return self._write_many(writes, updated_by, reason)  # dict operations under the lock

    async def _aread(self, address: Address) -> StateRecord | None:
        with self._lock:
            layout = self._layouts.get(address)
        if layout is not None and layout.size > INLINE_JOIN_CHARS:
            return await asyncio.to_thread(self._whole, address)  # joining is O(state)
        return self._whole(address)

    async def aversion(self, namespace: str, name: str, key: str) -> int | None:
        """The stored version of the document, or ``None`` (a dict lookup; see ``SupportsVersion``).

        Example:
            >>> import asyncio
            >>> store = MemoryBackend()
            >>> _ = store.write("files", "landing", "watermark", "{}", expected_version=None)
            >>> asyncio.run(store.aversion("files", "landing", "watermark"))
            1
        """
        with self._lock:
            record = self._records.get(Address(namespace, name, key))
        return None if record is None else record.version

    def _whole(self, address: Address) -> StateRecord | None:
        # A state kept in parts is joined at its first read, outside the lock, and kept joined.
        with self._lock:
            record, layout = self._records.get(address), self._layouts.get(address)
        if record is None or layout is None:
            return record
        whole = dataclasses.replace(record, value=layout.text())
        with self._lock:
            if self._layouts.get(address) is layout:  # not written meanwhile
                del self._layouts[address]
                self._records[address] = whole
        return whole

    def _delete(self, address: Address, expected: int | None) -> bool:
        with self._lock:
            current = self._records.get(address)
            if expected is not None:
                self._check(address, expected, current)
            self._layouts.pop(address, None)
            return self._records.pop(address, None) is not None

    def _list(self, namespace: str | None) -> list[StateRecord]:
        with self._lock:
            addresses = [a for a in self._records if namespace is None or a.namespace == namespace]
        return [record for record in map(self._whole, addresses) if record is not None]

    def _check(self, address: Address, expected: int | None, current: StateRecord | None) -> None:
        actual = None if current is None else current.version
        if actual != expected:
            raise version_conflict(self.description, address, expected, actual, current)
