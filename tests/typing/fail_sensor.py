"""Must FAIL mypy --strict: every line whose comment starts with "E:" is an error mypy must report."""

from __future__ import annotations

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue

from stateful import Watermark, stateful


class NewRowsSensor(BaseSensorOperator):
    @stateful(namespace="postgres", name="rows")
    def poke(self, context: Context, watermark: Watermark[int]) -> bool | PokeReturnValue:
        watermark.advance(cursor="not-an-int")  # E: the cursor is typed int
        return True


def misuse(sensor: NewRowsSensor, context: Context) -> str:
    sensor.poke(context, Watermark[int]())  # E: the watermark is injected, not passed
    return sensor.poke(context)  # E: poke() still returns bool | PokeReturnValue


@stateful(namespace="files", name="{task_id}")
def landing(watermark: Watermark[str], prefix: str = "in/") -> bool:
    return True


landing(Watermark[str]())  # E: the TaskFlow function's watermark is injected too
landing(prefix=1)  # E: its own parameters keep their types


@stateful(namespace="files", name="landing")  # E: no watermark where a sensor has one
def no_watermark(self: object, context: Context) -> bool:
    return True
