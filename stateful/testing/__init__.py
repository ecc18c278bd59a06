"""Test your own ``@stateful`` triggers and sensors: drive, restart, crash, poke, pick the store.

``run_trigger`` drives a trigger as Airflow's triggerer does (each event it returns was taken
and saved); ``restart`` builds a new instance from ``serialize()``; ``crash=`` stops at a commit
point as a dead process would; ``poke_sensor`` runs a sensor's ``poke()`` and commits as a
successful try; ``use_store`` hands a store to code declared with ``backend=None``. The pytest
plugin (loaded by installing the package) adds the ``stateful_store`` fixture. See
https://airflow-stateful.github.io/airflow-stateful/testing/.

Example:
    >>> import asyncio
    >>> from collections.abc import AsyncIterator
    >>> from stateful import Watermark, stateful
    >>> from stateful.backends import MemoryBackend
    >>> from stateful.testing import run_trigger, use_store
    >>> class Numbers:
    ...     @stateful(namespace="demo", name="numbers")
    ...     async def run(self, watermark: Watermark[int]) -> AsyncIterator[int]:
    ...         for n in range((watermark.cursor or 0) + 1, 4):
    ...             watermark.advance(cursor=n)
    ...             yield n
    >>> with use_store(MemoryBackend()):
    ...     asyncio.run(run_trigger(Numbers())).events
    [1, 2, 3]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stateful.backends._scoped import use_store
    from stateful.testing._run import TriggerRun, restart, run_trigger
    from stateful.testing._sensor import poke_sensor
    from stateful.testing._steps import Crash, StopReason

__all__ = ["Crash", "StopReason", "TriggerRun", "poke_sensor", "restart", "run_trigger", "use_store"]

# Imported when first named: pytest imports this package (for its plugin) at every start.
_LAZY = {
    "Crash": "stateful.testing._steps",
    "StopReason": "stateful.testing._steps",
    "TriggerRun": "stateful.testing._run",
    "poke_sensor": "stateful.testing._sensor",
    "restart": "stateful.testing._run",
    "run_trigger": "stateful.testing._run",
    "use_store": "stateful.backends._scoped",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
