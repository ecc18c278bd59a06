"""Typed, persisted watermarks for Apache Airflow triggers and sensors.

The public names are imported when first used (PEP 562), so that ``import stateful`` alone, which
``stateful --version`` does, costs nothing; type checkers see them as plain re-exports.

Example:
    >>> from stateful import Watermark, stateful
    >>> Watermark[int]().cursor is None
    True
    >>> import stateful
    >>> stateful.__version__ == stateful.__about__.__version__
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stateful.__about__ import __version__

if TYPE_CHECKING:
    from stateful._keyed import Keyed
    from stateful._spec import StatefulSpec
    from stateful.decorators import StatefulDecorator, stateful
    from stateful.sensors import commit
    from stateful.shared import shared_source
    from stateful.types import Watermark

__all__ = [
    "Keyed",
    "StatefulDecorator",
    "StatefulSpec",
    "Watermark",
    "__version__",
    "commit",
    "shared_source",
    "stateful",
]

# Each public name and the module it comes from.
_HOMES = {
    "Keyed": "stateful._keyed",
    "StatefulDecorator": "stateful.decorators",
    "StatefulSpec": "stateful._spec",
    "Watermark": "stateful.types",
    "commit": "stateful.sensors",
    "shared_source": "stateful.shared",
    "stateful": "stateful.decorators",
}

if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all __getattr__

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'stateful' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # looked up once
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_HOMES})
