"""``@stateful``: inject a persisted, typed watermark into a trigger's ``run()`` or a sensor's ``poke()``.

The decorator inspects the function once, at decoration time (misuse is a
:class:`~stateful.errors.StatefulUsageError` then, not at 3 a.m.), recognises one of three forms
and wraps it in a thin driver:

=================================================  ============================  ===============
form                                               watermark parameter           driver
=================================================  ============================  ===============
``async def run(self, watermark, ...)`` (trigger)  after ``self``                async generator
``def poke(self, context, watermark, ...)``        after ``context``             sync
``def f(watermark, ...)`` (``@task.sensor``)       first                         sync
=================================================  ============================  ===============

Every decision (validate, snapshot, when to save, with which version) lives in
:mod:`stateful._core`; the async driver (:mod:`stateful._trigger_driver`) does the store I/O off
the event loop, the sync driver (:mod:`stateful._sensor_driver`) does it in the worker. What
``@stateful`` was given travels to them as a :class:`~stateful._spec.StatefulSpec`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast, get_args, get_origin, overload

from stateful._ack import install_ack_mode
from stateful._keyed import Keyed
from stateful._lag import check_max_lag
from stateful._saver import check_save_batch, check_save_delay, check_save_interval
from stateful._sensor_driver import sync_driver
from stateful._spec import COMMIT_MODES, CommitMode, Form, NameTemplate, StatefulSpec, check_namespace
from stateful._trigger_driver import async_driver
from stateful.backends.base import AsyncStateBackend, StateBackend
from stateful.errors import StatefulUsageError
from stateful.types import Watermark

__all__ = ["StatefulDecorator", "TriggerRun", "stateful"]

_LOG = logging.getLogger("stateful")

S = TypeVar("S")
C = TypeVar("C")
# A watermark model, or a Keyed of one: one watermark per partition key.
W = TypeVar("W", bound="Watermark[Any] | Keyed[Any]")
E = TypeVar("E")
R = TypeVar("R")
P = ParamSpec("P")


class StatefulDecorator(Protocol):
    """What ``stateful(...)`` returns: the injected watermark parameter disappears from the type.

    The overloads are tried in order: a trigger's async-generator ``run(self, watermark)``, a
    TaskFlow function whose first parameter is the watermark, a ``poke(self, context, watermark)``.
    """

    # An async generator whose first parameter is a watermark would match both 1 and 2; at
    # runtime it is a trigger (overload 1), which mypy also picks first.
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[Concatenate[S, W, P], AsyncIterator[E]], /
    ) -> Callable[Concatenate[S, P], AsyncIterator[E]]: ...

    @overload
    def __call__(self, fn: Callable[Concatenate[W, P], R], /) -> Callable[P, R]: ...

    @overload
    def __call__(self, fn: Callable[Concatenate[S, C, W, P], R], /) -> Callable[Concatenate[S, C, P], R]: ...


def stateful(
    *,
    namespace: str,
    name: NameTemplate,
    backend: AsyncStateBackend | StateBackend | None = None,
    lookback: timedelta = timedelta(0),
    commit: CommitMode = "after_event",
    max_untimed_keys: int | None = None,
    ack: bool = True,
    idempotency_key: bool = True,
    save_batch: int | None = None,
    save_delay: timedelta | None = None,
    save_interval: timedelta | None = None,
    max_lag: timedelta | None = None,
) -> StatefulDecorator:
    """Give a trigger's ``run()`` or a sensor's ``poke()`` a watermark loaded from and saved to a store.

    The watermark parameter (after ``self`` in ``run()``, after ``context`` in ``poke()``, first
    in a ``@task.sensor`` function) receives the watermark; its annotation (``Watermark``,
    ``Watermark[int]`` or a subclass with your own fields) is the model the stored state is
    validated against. The parameter disappears from the decorated signature, so Airflow (and
    mypy) call ``trigger.run()`` and ``sensor.poke(context)`` as usual.

    A trigger saves once the triggerer has taken each event. A sensor saves once its task has
    succeeded (after Airflow pushed the XCom); see :func:`stateful.sensors.commit`.

    Args:
        namespace: groups related watermarks (``"s3"``, ``"postgres"``).
        name: a format template over the trigger's or sensor's attributes (``"{bucket}/{prefix}"``;
            for a TaskFlow sensor, over its task: ``"{task_id}"``) or a callable taking that
            object; together with ``namespace`` it addresses the state.
        backend: the store (an instance); ``NativeBackend()`` for the asset state store of the
            trigger or task; ``None`` chooses at first load: ``[stateful] backend``, else the
            asset state store where there is one (Airflow >= 3.3), else the SQL store
            (``STATEFUL_DATABASE_URL``, ``[stateful] database_url``, or SQLite at
            ``$AIRFLOW_HOME/stateful.db``). See https://airflow-stateful.github.io/airflow-stateful/stores/.
        lookback: how far behind the newest timestamp an item may still arrive and be new
            (see :meth:`Watermark.is_new`).
        commit: ``"after_event"`` (default, at-least-once) saves when the triggerer takes an
            event and resumes the generator, or when a sensor's task succeeded;
            ``"before_event"`` (at-most-once) saves right before the event is handed over, or as
            soon as ``poke()`` reports done; ``"never"`` loads but never saves (a trigger that
            waits on behalf of a deferrable sensor whose ``poke()`` saves, or a preview).
        max_untimed_keys: cap on keys recorded without a timestamp (default 10,000).
        ack: on Airflow >= 3.3, a ``BaseEventTrigger`` run by an ``AssetWatcher`` saves each
            snapshot only once Airflow confirmed that the events it covers were stored
            (shared-stream ack mode; zero lost events under a triggerer crash). ``False`` keeps
            saving when the triggerer resumes the generator. See https://airflow-stateful.github.io/airflow-stateful/guarantees/.
        idempotency_key: add ``"stateful_idempotency_key"`` to each event's payload (when the
            payload is a dict): the same for a repeat of the same watermark transition, so
            consumers can drop the repeats at-least-once delivery implies.
        save_batch: a trigger saving when it is resumed (``commit="after_event"`` outside ack
            mode) lets up to this many taken events share one save, written in the background
            while it goes on; a crash repeats at most this many. ``1`` saves after every event.
            ``None``: ``STATEFUL_SAVE_BATCH``, else ``[stateful] save_batch``, else 100.
        save_delay: the longest a taken event waits for a save covering it (plus one save's
            duration). ``None``: ``STATEFUL_SAVE_DELAY`` (seconds), else ``[stateful]
            save_delay``, else one second. See https://airflow-stateful.github.io/airflow-stateful/guarantees/.
        save_interval: two such saves of one trigger start at least this long apart, unless
            three quarters of a batch wait: the events of a busy trigger share fewer, larger
            saves, however fast the store commits (an event then waits up to this long for its
            save).
            ``None``: ``STATEFUL_SAVE_INTERVAL`` (seconds), else ``[stateful] save_interval``,
            else five seconds. See https://airflow-stateful.github.io/airflow-stateful/guarantees/.
        max_lag: a trigger whose watermark has not moved for longer than this while it runs
            logs a WARNING, and sends the ``stateful.stuck`` metric, once per ``max_lag``.
            ``None``: ``STATEFUL_MAX_LAG`` (seconds), else ``[stateful] max_lag``, else never.
            See https://airflow-stateful.github.io/airflow-stateful/metrics/.

    Returns:
        A decorator for an ``async def run(self, watermark, ...)`` async generator, a
        ``def poke(self, context, watermark, ...)`` method or a ``def f(watermark, ...)`` function.

    Raises:
        StatefulUsageError: at decoration time, when the function has none of these shapes, or
            the watermark's annotation is not a ``Watermark`` model, or the store lacks the
            methods the form needs (async ones for a trigger, sync ones for a sensor).
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
    try:
        # The watermark's own checks, run now rather than at the first load in the triggerer.
        Watermark[Any]().configure(lookback=lookback, max_untimed_keys=max_untimed_keys)
    except (TypeError, ValueError) as exc:
        raise StatefulUsageError(f"{where}: {exc}.") from exc
    if save_batch is not None:
        check_save_batch(save_batch, f"save_batch of {where}")
    if save_delay is not None:
        check_save_delay(save_delay, f"save_delay of {where}")
    if save_interval is not None:
        check_save_interval(save_interval, f"save_interval of {where}")
    if max_lag is not None:
        check_max_lag(max_lag, f"max_lag of {where}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        qualname = f"{fn.__module__}.{getattr(fn, '__qualname__', fn)}"
        form, signature, parameter, model = _inspect_form(fn, qualname)
        _check_backend(backend, form, qualname)
        spec = StatefulSpec(
            namespace,
            name,
            model,
            backend,
            lookback,
            commit,
            max_untimed_keys,
            form,
            ack,
            idempotency_key,
            save_batch,
            save_delay,
            save_interval,
            max_lag,
            _is_keyed(fn, parameter),
        )
        wrapper: Callable[..., Any]
        if form == "trigger":
            wrapper = async_driver(fn, spec, qualname)
        else:
            context = list(signature.parameters)[1] if form == "sensor" else None
            wrapper = sync_driver(fn, spec, qualname, context_parameter=context)
        functools.update_wrapper(wrapper, fn)
        # inspect.signature() follows __wrapped__ to the original; tools (and Airflow, whose
        # @task.sensor binds arguments by signature) must see it without the injected parameter.
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[p for p in signature.parameters.values() if p is not parameter]
        )
        wrapper.__stateful__ = spec  # type: ignore[attr-defined]
        # A trigger's run() needs its class (for ack mode): TriggerRun hooks class creation.
        return TriggerRun(wrapper, fn, spec) if form == "trigger" else wrapper

    return cast(StatefulDecorator, decorate)


_FORMS = (
    "Decorate a trigger's `async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]`, "
    "a sensor's `def poke(self, context: Context, watermark: Watermark) -> bool | PokeReturnValue`, "
    "or a `@task.sensor` function whose first parameter is `watermark: Watermark`."
)


def _inspect_form(
    fn: Callable[..., Any], qualname: str
) -> tuple[Form, inspect.Signature, inspect.Parameter, type[Watermark[Any]]]:
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if inspect.isasyncgenfunction(fn):
        if len(params) < 2 or params[1].kind not in positional:
            raise StatefulUsageError(
                f"@stateful on {qualname} needs a watermark parameter right after self: "
                f"`async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]`."
            )
        return "trigger", signature, params[1], _resolve_annotation(fn, params[1], qualname)
    if inspect.iscoroutinefunction(fn) or not callable(fn):
        raise StatefulUsageError(
            f"@stateful cannot decorate {qualname}: it is a coroutine function, not an async generator "
            f"function (a trigger's run() yields its events) nor a plain function (a sensor's poke()). "
            + _FORMS
        )
    # A sync function: the TaskFlow form when the first parameter is a watermark, else poke().
    if params and params[0].kind in positional and _is_watermark_annotation(fn, params[0]):
        return "taskflow", signature, params[0], _resolve_annotation(fn, params[0], qualname)
    swapped = _swapped_poke(fn, params, qualname)
    if swapped is not None:
        raise StatefulUsageError(swapped)
    if len(params) < 3 or params[2].kind not in positional:
        raise StatefulUsageError(
            f"@stateful cannot decorate {qualname}: it is not an async generator function, and as a "
            f"sensor it has no watermark parameter where one is expected (right after `context` in "
            f"a poke() method, or first in a TaskFlow function). " + _FORMS
        )
    return "sensor", signature, params[2], _resolve_annotation(fn, params[2], qualname)


def _swapped_poke(fn: Callable[..., Any], params: list[inspect.Parameter], qualname: str) -> str | None:
    """The message for ``poke(self, watermark, context)``: the watermark where ``context`` belongs."""
    if len(params) < 3:  # (self, watermark) alone is no swap: a run() that is not async, say
        return None
    second, third = params[1], params[2]
    watermark_second = _is_watermark_annotation(fn, second) or (
        second.name == "watermark" and second.annotation is inspect.Parameter.empty
    )
    if not watermark_second or _is_watermark_annotation(fn, third):
        return None
    found = ", ".join(p.name for p in params)
    return (
        f"@stateful on {qualname}: the watermark parameter {second.name!r} comes right after self, "
        f"where Airflow passes the context; a sensor's poke() takes `context` first and the watermark "
        f"after it: `def poke(self, context: Context, {second.name}: Watermark) -> bool` (found "
        f"`poke({found})`). Swap the two parameters."
    )


def _check_backend(backend: AsyncStateBackend | StateBackend | None, form: Form, qualname: str) -> None:
    if backend is None:
        return
    if form == "trigger" and not isinstance(backend, AsyncStateBackend):
        raise StatefulUsageError(
            f"backend {backend!r} given to @stateful on {qualname} has no async methods "
            f"(aread/awrite/...), which a trigger needs so it never blocks the triggerer's "
            f"event loop; use a store implementing AsyncStateBackend."
        )
    if form != "trigger" and not isinstance(backend, StateBackend):
        raise StatefulUsageError(
            f"backend {backend!r} given to @stateful on {qualname} has no sync methods "
            f"(read/write/...), which a sensor's poke() needs (it runs in a worker, with no event "
            f"loop); use a store implementing StateBackend."
        )


def _is_watermark_annotation(fn: Callable[..., Any], parameter: inspect.Parameter) -> bool:
    try:
        _resolve_annotation(fn, parameter, "")
    except StatefulUsageError:
        return False
    return True


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
    # Keyed[Model]: one Model per partition key (a bare Keyed: plain watermarks).
    if annotation is Keyed or get_origin(annotation) is Keyed:
        annotation = (get_args(annotation) or (Watermark,))[0]
    if not (isinstance(annotation, type) and issubclass(annotation, Watermark)):
        raise StatefulUsageError(
            f"parameter {parameter.name!r} of {qualname} is annotated {annotation!r}, which is not a "
            f"Watermark model; annotate it with Watermark, Watermark[int] or a subclass of Watermark."
        )
    return annotation


def _is_keyed(fn: Callable[..., Any], parameter: inspect.Parameter) -> bool:
    """Whether the watermark parameter is annotated ``Keyed[...]`` (already resolved once)."""
    annotation: Any = parameter.annotation
    if isinstance(annotation, str):
        namespace = dict(vars(sys.modules[fn.__module__])) if fn.__module__ in sys.modules else {}
        namespace.update(getattr(fn, "__globals__", {}))
        annotation = eval(annotation, namespace)
    if getattr(annotation, "__metadata__", None) is not None:
        annotation = get_args(annotation)[0]
    return annotation is Keyed or get_origin(annotation) is Keyed


class TriggerRun:
    """What ``@stateful`` returns for a trigger's ``run()`` until its class is created.

    Python calls :meth:`__set_name__` when the class body ends: the hook puts the plain wrapper
    function in its place (so ``Trigger.run`` is an ordinary async generator function) and, for
    a ``BaseEventTrigger`` on Airflow >= 3.3, gives the class the shared-stream members that
    make the triggerer confirm persisted events before the watermark is saved
    (:mod:`stateful._ack`). Used outside a class body it behaves as the wrapper itself.
    """

    def __init__(self, wrapper: Callable[..., Any], fn: Callable[..., Any], spec: StatefulSpec) -> None:
        self._wrapper = wrapper
        self._fn = fn
        self._spec = spec
        # Class-level attributes that __getattr__ would never be asked for.
        self.__doc__ = wrapper.__doc__
        self.__module__ = wrapper.__module__

    def __set_name__(self, owner: type, name: str) -> None:
        setattr(owner, name, self._wrapper)
        qualname = f"{owner.__module__}.{owner.__qualname__}.{name}"
        install_ack_mode(owner, name, self._wrapper, self._fn, self._spec, qualname)

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        return self._wrapper.__get__(obj, objtype)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # __name__, __doc__, __signature__, __stateful__, __code__ ...: the wrapper's, so
        # inspect.signature() and inspect.isasyncgenfunction() answer as for the function.
        return getattr(self._wrapper, name)
