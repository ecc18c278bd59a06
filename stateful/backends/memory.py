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

import threading
from datetime import datetime, timezone

from stateful.backends.base import Address, AddressedStore, StateRecord, default_writer, version_conflict

__all__ = ["MemoryBackend"]


class MemoryBackend(AddressedStore):
    """Keeps state in a dict of this process; implements both store Protocols.

    Nothing survives the process, and two processes never see each other's state: use it in
    tests (including tests of your own triggers and sensors), never in a deployment. It is
    thread-safe, and its async methods never block (they only hold a lock around dict
    operations), so it is safe on the triggerer's event loop.

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

    @property
    def description(self) -> str:
        """``"MemoryBackend"``."""
        return "MemoryBackend"

    def __repr__(self) -> str:
        return "MemoryBackend()"

    def _read(self, address: Address) -> StateRecord | None:
        with self._lock:
            return self._records.get(address)

    def _write(self, address: Address, value: str, expected: int | None, updated_by: str | None) -> int:
        writer = default_writer() if updated_by is None else updated_by
        with self._lock:
            current = self._records.get(address)
            self._check(address, expected, current)
            version = 1 if current is None else current.version + 1
            self._records[address] = StateRecord(
                *address, value, version, updated_at=datetime.now(timezone.utc), updated_by=writer
            )
            return version

    def _delete(self, address: Address, expected: int | None) -> bool:
        with self._lock:
            current = self._records.get(address)
            if expected is not None:
                self._check(address, expected, current)
            return self._records.pop(address, None) is not None

    def _list(self, namespace: str | None) -> list[StateRecord]:
        with self._lock:
            return [r for r in self._records.values() if namespace is None or r.namespace == namespace]

    def _check(self, address: Address, expected: int | None, current: StateRecord | None) -> None:
        actual = None if current is None else current.version
        if actual != expected:
            raise version_conflict(self.description, address, expected, actual)
