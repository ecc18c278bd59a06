"""A store for the ``@stateful`` code that names none, inside a ``with`` block: :func:`use_store`.

A trigger or sensor declared with ``backend=None`` chooses its store at first load (see
:mod:`stateful.backends.choice`). Inside ``with use_store(store):`` that choice is ``store``
instead: how a test runs such code against a :class:`~stateful.backends.MemoryBackend` (or a
SQLite file) without touching Airflow's configuration. The store is held in a
:class:`~contextvars.ContextVar`: blocks nest, each asyncio task sees the store of the context it
was created in, and nothing is left behind when the block ends.

Public as :func:`stateful.testing.use_store`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TypeVar

from stateful.backends.base import AsyncStateBackend, StateBackend
from stateful.errors import StatefulUsageError

__all__ = ["SCOPED", "scoped_store", "use_store"]

#: The reason logged when the store came from :func:`use_store`.
SCOPED = "use_store() in effect and backend=None given to @stateful"

AnyStore = TypeVar("AnyStore", StateBackend, AsyncStateBackend, StateBackend | AsyncStateBackend)

_STORE: ContextVar[StateBackend | AsyncStateBackend | None] = ContextVar("stateful_store", default=None)


def scoped_store() -> StateBackend | AsyncStateBackend | None:
    """The store of the innermost :func:`use_store` block around this code, or ``None``.

    Example:
        >>> scoped_store() is None
        True
    """
    return _STORE.get()


@contextlib.contextmanager
def use_store(store: AnyStore) -> Iterator[AnyStore]:
    """Make ``@stateful`` code declared with ``backend=None`` use ``store`` inside the block.

    It applies where the store is chosen: at the first load of a trigger's ``run()`` (its first
    iteration) or of each ``poke()``. Start iterating a trigger inside the block (an asyncio task
    created inside it keeps the store after the block ends). Code given a store
    (``backend=SqlBackend(...)``, ``backend=NativeBackend()``) keeps its own.

    Args:
        store: any store: :class:`~stateful.backends.MemoryBackend`, a
            :class:`~stateful.backends.SqlBackend`, your own.

    Yields:
        ``store``.

    Raises:
        StatefulUsageError: ``store`` implements neither store Protocol.

    Example:
        >>> from stateful.backends import MemoryBackend
        >>> with use_store(MemoryBackend()) as store:
        ...     scoped_store() is store
        True
        >>> scoped_store() is None
        True
    """
    if not isinstance(store, (StateBackend, AsyncStateBackend)):
        raise StatefulUsageError(
            f"use_store() needs a state store (a StateBackend or AsyncStateBackend, e.g. MemoryBackend()), "
            f"not {store!r}."
        )
    token = _STORE.set(store)
    try:
        yield store
    finally:
        _STORE.reset(token)
