"""State stores: the store contract and the built-in stores.

Example:
    >>> from stateful.backends import MemoryBackend, StateBackend
    >>> isinstance(MemoryBackend(), StateBackend)
    True
"""

from stateful.backends.base import AsyncStateBackend, StateBackend, StateRecord
from stateful.backends.memory import MemoryBackend
from stateful.backends.native import NativeBackend
from stateful.backends.sql import SqlBackend

__all__ = ["AsyncStateBackend", "MemoryBackend", "NativeBackend", "SqlBackend", "StateBackend", "StateRecord"]
