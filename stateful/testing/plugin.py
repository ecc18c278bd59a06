"""The pytest plugin of :mod:`stateful.testing`, registered by the ``pytest11`` entry point.

Installing airflow-stateful is enough: pytest loads this module at start-up. It imports only
pytest; Airflow and the stores are imported when a fixture is first used, so a test session
that does not use them starts as fast as before.

Fixtures:
    stateful_store: a fresh :class:`~stateful.backends.MemoryBackend`, used by every
        ``@stateful`` trigger or sensor declared with ``backend=None`` during the test (as in
        ``with use_store(MemoryBackend()):``).

Example:
    A test in your project, with no import of the plugin::

        async def test_no_repeat_after_restart(stateful_store):
            trigger = NewFilesTrigger(directory=str(tmp_path))
            first = await run_trigger(trigger, max_events=3)
            again = await run_trigger(restart(trigger), idle_timeout=0.5)
            assert again.events == []
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["stateful_store"]


@pytest.fixture
def stateful_store() -> Iterator[Any]:
    """A fresh ``MemoryBackend`` that ``@stateful`` code declared with ``backend=None`` uses in this test.

    Yields:
        The :class:`~stateful.backends.MemoryBackend` (read it with ``.read(namespace, name,
        "watermark")`` or look at ``run_trigger(...).watermark``).
    """
    from stateful.backends import MemoryBackend
    from stateful.backends._scoped import use_store

    with use_store(MemoryBackend()) as store:
        yield store
