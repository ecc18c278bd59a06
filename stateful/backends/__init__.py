"""State stores: the store contract and the built-in stores.

``SqlBackend`` and ``NativeBackend`` are imported when first named (``from stateful.backends
import SqlBackend``), so importing this package, or ``stateful``, does not import SQLAlchemy.

Example:
    >>> from stateful.backends import MemoryBackend, StateBackend
    >>> isinstance(MemoryBackend(), StateBackend)
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stateful.backends.base import AsyncStateBackend, StateBackend, StateRecord
from stateful.backends.memory import MemoryBackend

if TYPE_CHECKING:
    from stateful.backends.native import NativeBackend
    from stateful.backends.sql import SqlBackend

__all__ = ["AsyncStateBackend", "MemoryBackend", "NativeBackend", "SqlBackend", "StateBackend", "StateRecord"]

_LAZY = {"NativeBackend": "stateful.backends.native", "SqlBackend": "stateful.backends.sql"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
