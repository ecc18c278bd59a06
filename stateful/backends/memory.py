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
from collections.abc import Sequence
from datetime import datetime, timezone

from stateful.backends.base import AsyncFromSync, StateRecord, default_writer
from stateful.errors import StateConflictError

__all__ = ["MemoryBackend"]

_Address = tuple[str, str, str]


class MemoryBackend(AsyncFromSync):
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
        self._records: dict[_Address, StateRecord] = {}

    @property
    def description(self) -> str:
        """``"MemoryBackend"``."""
        return "MemoryBackend"

    def __repr__(self) -> str:
        return "MemoryBackend()"

    def read(self, namespace: str, name: str, key: str) -> StateRecord | None:
        """Return the stored document, or ``None``. See :class:`~stateful.backends.StateBackend`."""
        with self._lock:
            return self._records.get((namespace, name, key))

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
        """Compare-and-set ``value``; return the new version. See :class:`~stateful.backends.StateBackend`.

        Raises:
            StateConflictError: the stored version is not ``expected_version``.
        """
        address = (namespace, name, key)
        writer = default_writer() if updated_by is None else updated_by
        with self._lock:
            current = self._records.get(address)
            self._check(address, expected_version, current)
            version = 1 if current is None else current.version + 1
            self._records[address] = StateRecord(
                namespace=namespace,
                name=name,
                key=key,
                value=value,
                version=version,
                updated_at=datetime.now(timezone.utc),
                updated_by=writer,
            )
            return version

    def delete(self, namespace: str, name: str, key: str, *, expected_version: int | None = None) -> bool:
        """Delete the document; return whether one existed. See :class:`~stateful.backends.StateBackend`.

        Raises:
            StateConflictError: ``expected_version`` was given and is not the stored version.
        """
        address = (namespace, name, key)
        with self._lock:
            current = self._records.get(address)
            if expected_version is not None:
                self._check(address, expected_version, current)
            return self._records.pop(address, None) is not None

    def list(self, namespace: str | None = None) -> Sequence[StateRecord]:
        """Return the stored documents (of ``namespace``), ordered by namespace, name, key."""
        with self._lock:
            records = [r for r in self._records.values() if namespace is None or r.namespace == namespace]
        return sorted(records, key=lambda r: (r.namespace, r.name, r.key))

    def _check(self, address: _Address, expected_version: int | None, current: StateRecord | None) -> None:
        actual_version = None if current is None else current.version
        if actual_version != expected_version:
            namespace, name, key = address
            raise StateConflictError(
                namespace=namespace,
                name=name,
                key=key,
                expected_version=expected_version,
                actual_version=actual_version,
                backend=self.description,
            )
