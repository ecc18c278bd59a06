"""Run a ``@stateful`` sensor's ``poke()`` outside Airflow: :func:`poke_sensor`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stateful._sensor_driver import commit
from stateful._spec import StatefulSpec
from stateful.errors import StatefulUsageError

__all__ = ["poke_sensor"]


def poke_sensor(sensor: Any, context: Mapping[str, Any] | None = None) -> Any:
    """Call ``sensor.poke(context)`` with its stored watermark; commit as a successful try would.

    In Airflow a done poke's watermark is saved once the task succeeded (after its XCom was
    pushed). Here it is saved as soon as ``poke()`` reports done; a poke that is not done saves
    nothing, and one that raises saves nothing either. The store is the one the sensor's
    ``@stateful`` chooses (``backend=``, else :func:`~stateful.testing.use_store`, else the
    configured one). For a ``@task.sensor`` function, run its DAG with ``dag.test()``.

    Args:
        sensor: an instance of a sensor class whose ``poke(self, context, watermark)`` is
            decorated with ``@stateful``.
        context: the task context to pass (default: ``{"task": sensor}``); put an
            ``"asset_state_store"`` in it to exercise the native store.

    Returns:
        What ``poke()`` returned (``True``/``False`` or a ``PokeReturnValue``).

    Raises:
        StatefulUsageError: ``poke()`` is not decorated with ``@stateful``.
        StateConflictError: another writer saved the watermark after the poke read it.

    Example:
        >>> from stateful import Watermark, stateful
        >>> from stateful.backends import MemoryBackend
        >>> class Batches:
        ...     @stateful(namespace="demo", name="batches", backend=MemoryBackend())
        ...     def poke(self, context: object, watermark: Watermark[int]) -> bool:
        ...         watermark.advance(cursor=(watermark.cursor or 0) + 1)
        ...         return True
        >>> sensor = Batches()
        >>> poke_sensor(sensor), poke_sensor(sensor)
        (True, True)
    """
    spec = getattr(getattr(type(sensor), "poke", None), "__stateful__", None)
    if not isinstance(spec, StatefulSpec) or spec.form != "sensor":
        raise StatefulUsageError(
            f"{type(sensor).__qualname__}.poke() is not decorated with @stateful; poke_sensor() runs "
            f"`@stateful(...) def poke(self, context, watermark: Watermark)` sensors (run a @task.sensor "
            f"function with dag.test())."
        )
    full = {"task": sensor, **(context or {})}
    result = sensor.poke(full)
    commit(sensor)  # nothing staged unless the poke reported done
    return result
