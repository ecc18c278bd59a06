"""Decoration-time checks, the decorated signature, and names built from templates."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import pytest
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import StatefulSpec, Watermark, stateful
from stateful.backends import MemoryBackend
from stateful.errors import StatefulUsageError, StateNameError


class FilesTrigger(BaseEventTrigger):
    def __init__(self, bucket: str, prefix: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.bucket = bucket
        self.prefix = prefix

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.test_decorator_usage.FilesTrigger", {"bucket": self.bucket, "prefix": self.prefix})

    @stateful(
        namespace="s3", name="{bucket}/{prefix}", backend=MemoryBackend(), lookback=timedelta(minutes=5)
    )
    async def run(self, watermark: Watermark, limit: int = 10) -> AsyncIterator[TriggerEvent]:
        """Docstring of the user's run()."""
        yield TriggerEvent({"limit": limit, "lookback": watermark.lookback.total_seconds()})


def test_the_wrapper_is_an_async_generator_without_the_injected_parameter() -> None:
    run = FilesTrigger.run
    assert inspect.isasyncgenfunction(run)
    assert list(inspect.signature(run).parameters) == ["self", "limit"]
    assert run.__name__ == "run" and run.__doc__ == "Docstring of the user's run()."
    assert inspect.isasyncgenfunction(run.__wrapped__)  # type: ignore[attr-defined]
    spec = run.__stateful__  # type: ignore[attr-defined]
    assert isinstance(spec, StatefulSpec)
    assert (spec.namespace, spec.model, spec.commit) == ("s3", Watermark, "after_event")


async def test_extra_parameters_and_the_lookback_reach_the_user_code() -> None:
    events = [e.payload async for e in FilesTrigger("b", "in/").run(limit=3)]
    assert events == [{"limit": 3, "lookback": 300.0}]


def _not_a_generator(self: Any, watermark: Watermark) -> None: ...


async def _a_coroutine(self: Any, watermark: Watermark) -> None: ...


async def _no_parameter(self: Any) -> AsyncIterator[int]:
    yield 1


async def _not_annotated(self: Any, watermark) -> AsyncIterator[int]:  # type: ignore[no-untyped-def]
    yield 1


async def _wrong_annotation(self: Any, watermark: dict[str, int]) -> AsyncIterator[int]:
    yield 1


async def _unresolvable(self: Any, watermark: NotDefinedAnywhere) -> AsyncIterator[int]:  # type: ignore[name-defined]  # noqa: F821
    yield 1


async def _keyword_only(self: Any, *, watermark: Watermark) -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("function", "fragment"),
    [
        (_not_a_generator, "not an async generator"),
        (_a_coroutine, "not an async generator"),
        (_no_parameter, "needs a watermark parameter"),
        (_keyword_only, "needs a watermark parameter"),
        (_not_annotated, "has no annotation"),
        (_wrong_annotation, "not a Watermark model"),
        (_unresolvable, "cannot resolve the annotation"),
    ],
)
def test_misuse_is_a_type_error_at_decoration_time(function: Any, fragment: str) -> None:
    with pytest.raises(StatefulUsageError, match=fragment) as info:
        stateful(namespace="ns", name="n")(function)
    assert isinstance(info.value, TypeError)
    assert function.__name__ in str(info.value)


async def _annotated(self: Any, watermark: Annotated[Watermark[int], "meta"]) -> AsyncIterator[int]:
    yield 1


def test_an_annotated_model_is_accepted() -> None:
    wrapped = stateful(namespace="ns", name="n")(_annotated)
    assert wrapped.__stateful__.model is Watermark[int]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"namespace": ""}, StateNameError, "namespace .* is empty"),
        ({"namespace": "x" * 256}, StateNameError, "over the limit of 255"),
        ({"commit": "sometimes"}, StatefulUsageError, "commit"),
        ({"lookback": timedelta(seconds=-1)}, StatefulUsageError, "lookback"),
        ({"lookback": 5}, StatefulUsageError, "lookback"),
        ({"max_untimed_keys": 0}, StatefulUsageError, "max_untimed_keys must be >= 1"),
        ({"max_untimed_keys": "many"}, StatefulUsageError, "max_untimed_keys must be an int"),
        ({"name": 42}, StatefulUsageError, "name"),
        ({"backend": object()}, StatefulUsageError, "has no async methods"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], error: type[Exception], fragment: str) -> None:
    arguments: dict[str, Any] = {"namespace": "ns", "name": "n", **kwargs}
    with pytest.raises(error, match=fragment):
        stateful(**arguments)(_annotated)


def _trigger_named(name: Any) -> FilesTrigger:
    class Named(FilesTrigger):
        @stateful(namespace="s3", name=name, backend=MemoryBackend())
        async def run(self, watermark: Watermark, limit: int = 10) -> AsyncIterator[TriggerEvent]:
            yield TriggerEvent(limit)

    return Named("landing", "in/")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("{bukcet}", "refers to 'bukcet', which Named does not have. Known attributes: bucket, prefix"),
        ("{}", "cannot be formatted"),
        ("{prefix:%Y}", "cannot be formatted"),
        ("{bucket}" * 40, "over the limit of 255"),
        (lambda self: "", "name of .* is empty"),
        (lambda self: 7, "returned int, not str"),
        (lambda self: self.missing, "raised AttributeError"),
        ("a\nb", "control character"),
    ],
)
async def test_unusable_names_fail_at_first_load_with_a_clear_error(name: Any, fragment: str) -> None:
    run = _trigger_named(name).run()
    with pytest.raises(StateNameError, match=fragment):
        await anext(run)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("{bucket}/{prefix}", "landing/in/"), (lambda self: self.bucket.upper(), "LANDING"), ("fixed", "fixed")],
)
async def test_names_are_built_from_the_instance(name: Any, expected: str) -> None:
    trigger = _trigger_named(name)
    store = type(trigger).run.__stateful__.backend  # type: ignore[attr-defined]
    assert [e.payload async for e in trigger.run(limit=1)] == [1]
    assert [r.name for r in store.list("s3")] == [expected]
