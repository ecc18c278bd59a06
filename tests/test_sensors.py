"""The sync driver on real ``BaseSensorOperator`` classes, called directly (no task runner).

What a sensor author's own unit test does: call ``poke()`` or ``execute()`` and then
:func:`stateful.sensors.commit`. The task-runner path (``dag.test()``) is in
``test_sensors_airflow.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue

from stateful import StatefulSpec, Watermark, stateful
from stateful.backends import MemoryBackend
from stateful.errors import StateConflictError, StatefulUsageError, StateValidationError
from stateful.sensors import commit
from tests.conftest import DualBackend

CONTEXT: Context = {}  # poke() of these sensors reads nothing from it


def make_sensor_class(store: DualBackend, **options: Any) -> type[BaseSensorOperator]:
    class CountingSensor(BaseSensorOperator):
        """Reports the numbers in ``self.available`` above its cursor."""

        def __init__(self, *, source: str, available: list[int], fail: bool = False, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.source = source
            self.available = available
            self.fail = fail

        @stateful(namespace="numbers", name="{source}", backend=store, **options)
        def poke(self, context: Context, watermark: Watermark[int]) -> bool | PokeReturnValue:
            new = [n for n in self.available if n > (watermark.cursor or 0)]
            if new:
                watermark.advance(cursor=max(new))
            if self.fail:
                raise RuntimeError("poke failed after advancing")
            return PokeReturnValue(is_done=bool(new), xcom_value=new)

    return CountingSensor


def cursor(store: DualBackend, name: str = "src") -> tuple[int | None, int | None]:
    record = store.read("numbers", name, "watermark")
    if record is None:
        return None, None
    return record.version, Watermark[int].from_state_json(record.value).cursor


def test_the_watermark_parameter_disappears_from_the_signature() -> None:
    sensor_class = make_sensor_class(MemoryBackend())
    assert list(inspect.signature(sensor_class.poke).parameters) == ["self", "context"]
    spec = sensor_class.poke.__stateful__  # type: ignore[attr-defined]
    assert isinstance(spec, StatefulSpec) and spec.form == "sensor"


def test_a_done_poke_saves_nothing_until_commit(backend: DualBackend) -> None:
    sensor = make_sensor_class(backend)(task_id="t", source="src", available=[1, 2])
    result = sensor.poke(CONTEXT)
    assert isinstance(result, PokeReturnValue) and result.xcom_value == [1, 2]
    assert cursor(backend) == (None, None)
    assert commit(sensor) == 1
    assert cursor(backend) == (1, 2)
    assert commit(sensor) == 0  # nothing is written twice


def test_every_poke_starts_from_the_store(backend: DualBackend) -> None:
    sensor = make_sensor_class(backend)(task_id="t", source="src", available=[1, 2])
    sensor.poke(CONTEXT)
    # Not committed: the next poke (another try) sees the same numbers again.
    result = sensor.poke(CONTEXT)
    assert isinstance(result, PokeReturnValue) and result.xcom_value == [1, 2]
    commit(sensor)
    sensor.available = [1, 2, 3]
    result = sensor.poke(CONTEXT)
    assert isinstance(result, PokeReturnValue) and result.xcom_value == [3]


def test_a_false_or_failing_poke_stages_nothing(backend: DualBackend) -> None:
    sensor_class = make_sensor_class(backend)
    idle = sensor_class(task_id="t", source="src", available=[])
    assert not idle.poke(CONTEXT)
    failing = sensor_class(task_id="u", source="src", available=[5], fail=True)
    with pytest.raises(RuntimeError, match="poke failed"):
        failing.poke(CONTEXT)
    assert commit(idle) == commit(failing) == 0
    assert cursor(backend) == (None, None)
    assert idle.on_success_callback == failing.on_success_callback == []


def test_execute_then_commit_in_a_unit_test(backend: DualBackend) -> None:
    sensor = make_sensor_class(backend)(task_id="t", source="src", available=[4], poke_interval=0.01)
    assert sensor.execute(CONTEXT) == [4]  # BaseSensorOperator.execute returns the XCom value
    assert commit(sensor) == 1
    assert cursor(backend) == (1, 4)


def test_the_success_callback_is_registered_on_this_try_only() -> None:
    def users_callback(context: Any) -> None: ...

    store = MemoryBackend()
    original = make_sensor_class(store)(
        task_id="t", source="src", available=[1], on_success_callback=users_callback
    )
    this_try = original.prepare_for_execution()  # what Airflow runs: a shallow copy per try
    this_try.poke(CONTEXT)
    this_try.poke(CONTEXT)
    callbacks = list(this_try.on_success_callback)
    assert callbacks[0] is users_callback and len(callbacks) == 2  # the user's first, ours once
    assert list(original.on_success_callback) == [users_callback]  # the DAG's task is untouched
    callbacks[1]({"task": this_try})  # what Airflow's task runner does after success
    assert cursor(store) == (1, 1)


def test_a_save_that_loses_a_race_raises_and_overwrites_nothing(backend: DualBackend) -> None:
    sensor = make_sensor_class(backend)(task_id="t", source="src", available=[1])
    sensor.poke(CONTEXT)
    other = Watermark[int]()
    other.advance(cursor=100)
    backend.write("numbers", "src", "watermark", other.to_state_json(), expected_version=None)
    with pytest.raises(StateConflictError):
        commit(sensor)
    assert cursor(backend) == (1, 100)
    assert commit(sensor) == 0  # the refused snapshot is dropped, not retried later


def test_a_failed_save_is_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryBackend()
    sensor = make_sensor_class(store)(task_id="t", source="src", available=[1])
    sensor.poke(CONTEXT)
    store.write("numbers", "src", "watermark", Watermark[int]().to_state_json(), expected_version=None)
    with pytest.raises(StateConflictError):
        commit(sensor)
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "FAILED to save numbers/src" in error.getMessage()
    assert "stateful show numbers src" in error.getMessage()


def test_before_event_saves_when_poke_reports_done(backend: DualBackend) -> None:
    sensor = make_sensor_class(backend, commit="before_event")(task_id="t", source="src", available=[3])
    sensor.poke(CONTEXT)
    assert cursor(backend) == (1, 3)
    assert commit(sensor) == 0 and sensor.on_success_callback == []


def test_never_saves_nothing() -> None:
    store = MemoryBackend()
    sensor = make_sensor_class(store, commit="never")(task_id="t", source="src", available=[3])
    assert sensor.poke(CONTEXT)
    assert commit(sensor) == 0 and store.list() == []


def test_a_corrupt_watermark_fails_the_poke_and_is_kept(backend: DualBackend) -> None:
    backend.write("numbers", "src", "watermark", '{"cursor": "not an int"}', expected_version=None)
    sensor = make_sensor_class(backend)(task_id="t", source="src", available=[1])
    with pytest.raises(StateValidationError, match="numbers/src"):
        sensor.poke(CONTEXT)
    stored = backend.read("numbers", "src", "watermark")
    assert stored is not None and stored.value == '{"cursor": "not an int"}'


@stateful(namespace="numbers", name="{task_id}", backend=MemoryBackend())
def taskflow_sensor(watermark: Watermark[int], limit: int = 3) -> bool:
    return limit > (watermark.cursor or 0)


def test_the_taskflow_form_keeps_its_other_parameters() -> None:
    assert list(inspect.signature(taskflow_sensor).parameters) == ["limit"]
    assert taskflow_sensor.__stateful__.form == "taskflow"  # type: ignore[attr-defined]


def test_the_taskflow_form_outside_a_task_says_how_to_run_it() -> None:
    with pytest.raises(StatefulUsageError, match=r"outside a running Airflow task.*dag\.test\(\)"):
        taskflow_sensor()


class AsyncOnlyStore:
    description = "AsyncOnlyStore"

    async def aread(self, namespace: str, name: str, key: str) -> None:
        return None

    async def awrite(self, *args: Any, **kwargs: Any) -> int:
        return 1

    async def adelete(self, *args: Any, **kwargs: Any) -> bool:
        return False

    async def alist(self, namespace: str | None = None) -> list[Any]:
        return []


def _poke_without_watermark(self: Any, context: Any) -> bool:
    return True


def _watermark_in_the_wrong_place(self: Any, watermark: Watermark, context: Any) -> bool:
    return True


async def _coroutine_poke(self: Any, context: Any, watermark: Watermark) -> bool:
    return True


@pytest.mark.parametrize(
    ("function", "fragment"),
    [
        (_poke_without_watermark, "no watermark parameter where one is expected"),
        (_watermark_in_the_wrong_place, "Swap the two parameters"),
        (_coroutine_poke, "coroutine function"),
    ],
)
def test_misshapen_sensors_fail_at_decoration_time(function: Callable[..., Any], fragment: str) -> None:
    with pytest.raises(StatefulUsageError, match=fragment):
        stateful(namespace="n", name="x")(function)


def test_a_sensor_needs_a_store_with_sync_methods() -> None:
    def poke(self: Any, context: Any, watermark: Watermark) -> bool:
        return True

    with pytest.raises(StatefulUsageError, match="no sync methods"):
        stateful(namespace="n", name="x", backend=AsyncOnlyStore())(poke)
