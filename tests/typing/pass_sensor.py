"""Must pass mypy --strict: both sensor forms keep signatures mypy understands."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue, task

from stateful import Watermark, stateful


class Cursor(Watermark[int]):
    batches: int = 0


class NewRowsSensor(BaseSensorOperator):
    def __init__(self, *, table: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table

    @stateful(namespace="postgres", name="{table}")
    def poke(self, context: Context, watermark: Cursor) -> bool | PokeReturnValue:
        watermark.advance(cursor=(watermark.cursor or 0) + 1)
        watermark.batches += 1
        return PokeReturnValue(is_done=True, xcom_value=[watermark.cursor])


def poke_twice(sensor: NewRowsSensor, context: Context) -> bool:
    # The injected parameter is gone: Airflow's self.poke(context) type-checks.
    first: bool | PokeReturnValue = sensor.poke(context)
    return bool(first)


@stateful(namespace="files", name="{task_id}")
def landing(watermark: Watermark[str], prefix: str = "in/") -> PokeReturnValue:
    watermark.advance(cursor=prefix)
    return PokeReturnValue(is_done=True, xcom_value=prefix)


# The TaskFlow form keeps its own parameters, and stacks under @task.sensor.
result: PokeReturnValue = landing(prefix="out/")
wait_for_files = task.sensor(poke_interval=30, mode="reschedule")(landing)


@task.sensor(poke_interval=30, mode="reschedule")
@stateful(namespace="files", name="{task_id}")
def stacked(watermark: Watermark[str]) -> PokeReturnValue:
    return PokeReturnValue(is_done=watermark.cursor is not None)
