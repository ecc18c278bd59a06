"""Typed, persisted watermarks for Apache Airflow triggers and sensors.

The names below are imported when first used, so importing a sub-package (the pytest plugin
``stateful.testing.plugin``, which pytest loads at start-up) costs nothing more.

Example:
    >>> from stateful import Watermark, stateful
    >>> Watermark[int]().cursor is None
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stateful._spec import StatefulSpec
    from stateful.decorators import StatefulDecorator, stateful
    from stateful.sensors import commit
    from stateful.types import Watermark

__all__ = ["StatefulDecorator", "StatefulSpec", "Watermark", "commit", "stateful"]

_LAZY = {
    "StatefulDecorator": "stateful.decorators",
    "StatefulSpec": "stateful._spec",
    "Watermark": "stateful.types",
    "commit": "stateful.sensors",
    "stateful": "stateful.decorators",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later lookups find it without this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
