"""``@stateful``: inject a persisted, typed watermark into a trigger's ``run()``.

The decorator inspects the function once, at decoration time (misuse is a
:class:`~stateful.errors.StatefulUsageError` then, not at 3 a.m.), and wraps it in a thin
async-generator driver. Every decision (validate, snapshot, when to save, with which version)
lives in :mod:`stateful._core`; the driver only does the store I/O, off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar, cast, get_args

from stateful._core import (
    COMMIT_MODES,
    DEFAULT_KEY,
    CommitMode,
    Save,
    Scope,
    WatermarkSession,
    check_namespace,
    resolve_name,
)
from stateful.backends.base import AsyncStateBackend, StateBackend
from stateful.errors import StatefulUsageError
from stateful.types import Watermark

__all__ = ["StatefulSpec", "stateful"]

_LOG = logging.getLogger("stateful")

S = TypeVar("S")
W = TypeVar("W", bound=Watermark[Any])
E = TypeVar("E")
P = ParamSpec("P")

NameTemplate = str | Callable[[Any], str]


@dataclass(frozen=True)
class StatefulSpec:
    """What ``@stateful`` was given, kept on the wrapper as ``__stateful__`` for tools.

    Attributes:
        namespace: the namespace.
        name: the name template or callable.
        model: the watermark model class taken from the annotation.
        backend: the store given, or ``None`` for the default store.
        lookback: the boundary window of the watermark.
        commit: ``"after_event"`` or ``"before_event"``.
        max_untimed_keys: the cap on keys recorded without a timestamp (``None``: the default).
    """

    namespace: str
    name: NameTemplate
    model: type[Watermark[Any]]
    backend: AsyncStateBackend | StateBackend | None
    lookback: timedelta
    commit: CommitMode
    max_untimed_keys: int | None

    def resolve_name(self, obj: object) -> str:
        """Return the name for ``obj`` (a trigger instance)."""
        return resolve_name(self.name, obj, f"@stateful(namespace={self.namespace!r})")


def stateful(
    *,
    namespace: str,
    name: NameTemplate,
    backend: AsyncStateBackend | StateBackend | None = None,
    lookback: timedelta = timedelta(0),
    commit: CommitMode = "after_event",
    max_untimed_keys: int | None = None,
) -> Callable[
    [Callable[Concatenate[S, W, P], AsyncIterator[E]]], Callable[Concatenate[S, P], AsyncIterator[E]]
]:
    """Give a trigger's ``run()`` a watermark that is loaded before and saved after its events.

    The parameter after ``self`` receives the watermark; its annotation (``Watermark``,
    ``Watermark[int]`` or a subclass with your own fields) is the model the stored state is
    validated against. The parameter disappears from the decorated signature, so the triggerer
    (and mypy) call ``trigger.run()`` as usual.

    Args:
        namespace: groups related watermarks (``"s3"``, ``"postgres"``).
        name: a format template over the instance's attributes (``"{bucket}/{prefix}"``) or a
            callable taking the instance; together with ``namespace`` it addresses the state.
        backend: the store (an instance); ``None`` picks the default store at first load:
            ``STATEFUL_DATABASE_URL``, else ``[stateful] database_url``, else SQLite at
            ``$AIRFLOW_HOME/stateful.db``.
        lookback: how far behind the newest timestamp an item may still arrive and be new
            (see :meth:`Watermark.is_new`).
        commit: ``"after_event"`` (default, at-least-once) saves when the triggerer takes an
            event and resumes the generator; ``"before_event"`` (at-most-once) saves right before
            the event is handed over.
        max_untimed_keys: cap on keys recorded without a timestamp (default 10,000).

    Returns:
        A decorator for an ``async def run(self, watermark, ...)`` async generator.

    Raises:
        StatefulUsageError: at decoration time, when the function is not an async generator,
            has no watermark parameter, or its annotation is not a ``Watermark`` model.
        StateNameError: at decoration time for a bad namespace; at first load for a name
            template that cannot be resolved.

    Example:
        >>> from collections.abc import AsyncIterator
        >>> from stateful import Watermark, stateful
        >>> from stateful.backends import MemoryBackend
        >>> class Counter:
        ...     source = "numbers"
        ...     @stateful(namespace="demo", name="{source}", backend=MemoryBackend())
        ...     async def run(self, watermark: Watermark[int]) -> AsyncIterator[int]:
        ...         start = (watermark.cursor or 0) + 1
        ...         for n in range(start, start + 2):
        ...             watermark.advance(cursor=n)
        ...             yield n
        >>> async def collect() -> list[int]:
        ...     return [n async for n in Counter().run()] + [n async for n in Counter().run()]
        >>> import asyncio; asyncio.run(collect())
        [1, 2, 3, 4]
    """
    where = f"@stateful(namespace={namespace!r})"
    check_namespace(namespace, where)
    if not (isinstance(name, str) or callable(name)):
        raise StatefulUsageError(f"name of {where} must be a format string or a callable, not {name!r}.")
    if commit not in COMMIT_MODES:
        raise StatefulUsageError(f"commit of {where} must be one of {COMMIT_MODES}, not {commit!r}.")
    if not isinstance(lookback, timedelta) or lookback < timedelta(0):
        raise StatefulUsageError(f"lookback of {where} must be a timedelta >= 0, not {lookback!r}.")

    def decorate(
        fn: Callable[Concatenate[S, W, P], AsyncIterator[E]],
    ) -> Callable[Concatenate[S, P], AsyncIterator[E]]:
        qualname = f"{fn.__module__}.{getattr(fn, '__qualname__', fn)}"
        if not inspect.isasyncgenfunction(fn):
            raise StatefulUsageError(
                f"@stateful cannot decorate {qualname}: it is not an async generator function. "
                f"Decorate a trigger's `async def run(self, watermark: Watermark) -> "
                f"AsyncIterator[TriggerEvent]` that yields its events."
            )
        signature, parameter, model = _injected_parameter(fn, qualname)
        if backend is not None and not isinstance(backend, AsyncStateBackend):
            raise StatefulUsageError(
                f"backend {backend!r} given to @stateful on {qualname} has no async methods "
                f"(aread/awrite/...), which a trigger needs so it never blocks the triggerer's "
                f"event loop; use a store implementing AsyncStateBackend."
            )
        spec = StatefulSpec(namespace, name, model, backend, lookback, commit, max_untimed_keys)
        wrapper = _async_driver(cast("Callable[..., AsyncGenerator[Any, Any]]", fn), spec, qualname)
        functools.update_wrapper(wrapper, fn)
        # inspect.signature() follows __wrapped__ to the original; tools (and Airflow) must see
        # the signature without the injected parameter.
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[p for p in signature.parameters.values() if p is not parameter]
        )
        wrapper.__stateful__ = spec  # type: ignore[attr-defined]
        return cast("Callable[Concatenate[S, P], AsyncIterator[E]]", wrapper)

    return decorate


def _injected_parameter(
    fn: Callable[..., Any], qualname: str
) -> tuple[inspect.Signature, inspect.Parameter, type[Watermark[Any]]]:
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(params) < 2 or params[1].kind not in positional:
        raise StatefulUsageError(
            f"@stateful on {qualname} needs a watermark parameter right after self: "
            f"`async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]`."
        )
    parameter = params[1]
    model = _resolve_annotation(fn, parameter, qualname)
    return signature, parameter, model


def _resolve_annotation(
    fn: Callable[..., Any], parameter: inspect.Parameter, qualname: str
) -> type[Watermark[Any]]:
    annotation: Any = parameter.annotation
    if annotation is inspect.Parameter.empty:
        raise StatefulUsageError(
            f"parameter {parameter.name!r} of {qualname} has no annotation; annotate it with the "
            f"watermark model, e.g. `{parameter.name}: Watermark` or `{parameter.name}: Watermark[int]`."
        )
    if isinstance(annotation, str):
        # `from __future__ import annotations` leaves strings; only this one is resolved, so an
        # unrelated annotation that exists only under TYPE_CHECKING does not break decoration.
        namespace = dict(vars(sys.modules[fn.__module__])) if fn.__module__ in sys.modules else {}
        namespace.update(getattr(fn, "__globals__", {}))
        try:
            annotation = eval(annotation, namespace)
        except Exception as exc:
            raise StatefulUsageError(
                f"cannot resolve the annotation {parameter.annotation!r} of parameter "
                f"{parameter.name!r} of {qualname} ({exc!r}); define the watermark model at module "
                f"level, before the class that uses it."
            ) from exc
    # Annotated[Model, ...] carries the model as its first argument.
    if getattr(annotation, "__metadata__", None) is not None:
        annotation = get_args(annotation)[0]
    if not (isinstance(annotation, type) and issubclass(annotation, Watermark)):
        raise StatefulUsageError(
            f"parameter {parameter.name!r} of {qualname} is annotated {annotation!r}, which is not a "
            f"Watermark model; annotate it with Watermark, Watermark[int] or a subclass of Watermark."
        )
    return annotation


def _async_driver(
    fn: Callable[..., AsyncGenerator[Any, Any]], spec: StatefulSpec, qualname: str
) -> Callable[..., AsyncGenerator[Any, Any]]:
    async def wrapper(self: Any, /, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        # Everything happens on the first iteration: never at import or construction time.
        name = spec.resolve_name(self)
        store = await _async_store(spec)
        scope = Scope(spec.namespace, name, DEFAULT_KEY, store.description)
        session = WatermarkSession(
            spec.model,
            scope,
            commit=spec.commit,
            lookback=spec.lookback,
            max_untimed_keys=spec.max_untimed_keys,
        )
        record = await store.aread(scope.namespace, scope.name, scope.key)
        watermark = session.load(record)
        _log_loaded(session, qualname)

        inner = fn(self, watermark, *args, **kwargs)
        try:
            sent: Any = None
            while True:
                try:
                    event = await inner.asend(sent)
                except StopAsyncIteration:
                    break
                seq = session.emitted()
                await _save(store, session, session.before_yield(seq))
                # A close, an athrow or a cancellation at this yield leaves the loop here: the
                # event was handed over but not taken, so nothing more is saved for it.
                sent = yield event
                await _save(store, session, session.after_resume(seq))
            await _save(store, session, session.finish())
        except BaseException:
            session.abandon()
            raise
        finally:
            await inner.aclose()

    return wrapper


async def _async_store(spec: StatefulSpec) -> AsyncStateBackend:
    if spec.backend is not None:
        return cast(AsyncStateBackend, spec.backend)
    from stateful.backends._default import choose_default_backend

    # Reading Airflow's configuration may touch files: keep it off the event loop.
    choice = await asyncio.to_thread(choose_default_backend)
    _LOG.debug("stateful: using %s, chosen by %s", choice.backend.description, choice.reason)
    return choice.backend


async def _save(store: AsyncStateBackend, session: WatermarkSession[Any], save: Save | None) -> None:
    if save is None:
        return
    scope = save.scope
    version = await store.awrite(
        scope.namespace, scope.name, scope.key, save.value, expected_version=save.expected_version
    )
    session.saved(save, version)
    _LOG.debug("stateful: saved %s as version %d in %s (event %d)", scope, version, scope.store, save.seq)


def _log_loaded(session: WatermarkSession[Any], qualname: str) -> None:
    scope = session.scope
    if session.saved_version is None:
        _LOG.info(
            "stateful: %s for %s in %s: nothing stored yet, starting from an empty %s",
            scope,
            qualname,
            scope.store,
            session.model.__name__,
        )
    else:
        _LOG.info(
            "stateful: loaded %s for %s from %s (version %d): %s",
            scope,
            qualname,
            scope.store,
            session.saved_version,
            session.watermark.summary(),
        )
