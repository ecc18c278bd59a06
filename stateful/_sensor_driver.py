"""The sync driver for ``poke()``, and :func:`commit`, the sensor's save point (public in
:mod:`stateful.sensors`).

A sensor's ``poke()`` runs in a worker, not in the triggerer: plain blocking store I/O is right
here, and no event loop is ever created. Every decision is the one the trigger driver makes,
taken from :mod:`stateful._core`; what differs is *when* a snapshot is written.

Saving when ``poke()`` reports done would be too early: Airflow pushes the XCom after
``execute()`` returns, and the worker can die or the push can fail in between; the retry would
then start past items nobody received. So a done poke only *stages* its snapshot on the task
object (the copy Airflow made for this try) and registers an ``on_success_callback`` that writes
it. Airflow runs that callback after it has pushed the XCom and reported the task successful, in
the real worker and in ``dag.test()`` alike. A try that fails never reaches it, and its copy of
the task (with the staged snapshot) is thrown away: the retry finds the same items again.

The life of one try::

    poke() ─► load ─► user poke ─► done? ─no─► nothing staged (each poke starts from the store)
                                     │yes
                                     ▼
                      stage Save on the task ─► execute() returns ─► XCom pushed ─► success
                                                                                      │
                                 on_success_callback ─► still success? ─► commit(task) ─► write (CAS)
                                                              │no (its success was refused)
                                                              ▼
                                                nothing saved: the next try repeats the items
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stateful._address import command, partition_options
from stateful._core import Save, Scope, WatermarkSession, log_loaded
from stateful._document import DEFAULT_KEY
from stateful._keyed_session import KeyedSave, KeyedSession, log_loaded_keyed, session_for, stored_partitions
from stateful._metrics import metrics_of
from stateful._repair import history_of
from stateful._retry import retry
from stateful._spec import StatefulSpec
from stateful.backends.base import Address, StateBackend
from stateful.errors import StateConflictError, StatefulUsageError, StateValidationError

__all__ = ["commit", "sync_driver"]

_LOG = logging.getLogger("stateful")

# Attribute of the task object holding the snapshots staged by done pokes of this try.
_STAGED = "_stateful_staged"


@dataclass
class _Staged:
    store: StateBackend
    session: WatermarkSession[Any]
    save: Save
    value: str
    qualname: str


def commit(task: object) -> int:
    """Write the watermarks staged by ``task``'s done pokes; return how many were written.

    Airflow calls this for you once the task succeeded (the decorator registers it as an
    ``on_success_callback``). Call it yourself when you drive a sensor outside Airflow's task
    runner, for example in a unit test that calls ``sensor.execute(context)`` directly.
    Each write is compare-and-set against the version the poke read; nothing is overwritten.

    Args:
        task: the sensor (classic form) or the ``@task.sensor`` operator (TaskFlow form).

    Returns:
        The number of watermarks written (0 when no poke reported done, or nothing changed).

    Raises:
        StateConflictError: another writer changed a watermark after the poke read it; that
            watermark is left as the other writer saved it.
        StatefulError: or a store error, when a write failed; the staged snapshot is dropped,
            so the next run reports the same items again (a repeat, never a loss).

    Example:
        >>> from stateful.sensors import commit
        >>> commit(object())  # nothing staged on this object
        0
    """
    staged: dict[Scope, _Staged] = getattr(task, _STAGED, None) or {}
    # Taken off the task first, so a second commit() (or a second callback) writes nothing twice.
    if staged:
        setattr(task, _STAGED, {})
    written = 0
    failure: BaseException | None = None
    for item in staged.values():
        save, scope = item.save, item.save.scope
        try:
            version = _write(item.store, save, item.value, item.session)
        except Exception as exc:
            # Airflow logs callback errors and swallows them; this line is the operator's signal.
            outcome = (
                "another writer saved it first and its watermark stands; the next run starts from it"
                if isinstance(exc, StateConflictError)
                else "the watermark was NOT advanced: the next run reports the same items again"
            )
            _LOG.error(
                "stateful: FAILED to save %s for %s in %s after the task succeeded: %s. Outcome: %s. "
                "Inspect it with `%s`.",
                scope,
                item.qualname,
                scope.store,
                exc,
                outcome,
                command(
                    "stateful",
                    "show",
                    scope.namespace,
                    scope.name,
                    *partition_options(getattr(exc, "key", scope.key)),
                ),
            )
            failure = failure or exc
            continue
        item.session.saved(save, version)
        written += 1
        _LOG.info(
            "stateful: saved %s as version %d in %s: %s",
            scope,
            version,
            scope.store,
            item.session.watermark.summary(),
        )
    if failure is not None:
        raise failure
    return written


def _save_on_success(context: Any) -> None:
    """The ``on_success_callback`` the decorator registers on a sensor for this try.

    Airflow runs it even when the API server refused the try's success report (the try was
    failed or marked failed meanwhile: Airflow logs "Failed to report terminal task state" and
    still calls this callback). Saving then would move the watermark past items that only the
    XCom of a failed try holds, so the try's state is asked first; a try that is no longer
    running or successful drops its snapshot and the next try reports the same items again.
    """
    task = context["task"]
    state = _try_state(context)
    if state is not None and state not in _SAVING_STATES:
        staged: dict[Scope, _Staged] = getattr(task, _STAGED, None) or {}
        setattr(task, _STAGED, {})
        for item in staged.values():
            scope = item.save.scope
            _LOG.error(
                "stateful: NOT saving %s for %s: Airflow ran the success callback, but this try is "
                "%r in Airflow's database (its success was refused, e.g. the try was failed or marked "
                "failed meanwhile). The watermark stays where it was: the next try reports the same "
                "items again. Inspect it with `stateful show %s %s`.",
                scope,
                item.qualname,
                state,
                scope.namespace,
                scope.name,
            )
        return
    commit(task)


# A try whose state is one of these may save: it is the one that succeeded (or its success is on
# its way). Anything else (failed, up_for_retry, ...) means its success report was refused.
_SAVING_STATES = frozenset({"success", "running"})


def _try_state(context: Any) -> str | None:
    """This try's state in Airflow's database, or None when it cannot be asked."""
    ti = context.get("ti") if hasattr(context, "get") else None
    ask = getattr(ti, "get_task_states", None)
    if ti is None or ask is None:
        return None  # not Airflow's task runner (a test calling the callback): nothing to ask
    map_index = getattr(ti, "map_index", -1)
    mapped = map_index is not None and map_index >= 0
    try:
        states = ask(
            dag_id=ti.dag_id,
            task_ids=[ti.task_id],
            run_ids=[ti.run_id],
            map_index=map_index if mapped else None,
        )
    except Exception as exc:  # an older or unreachable API: keep today's behaviour, and say so
        _LOG.warning(
            "stateful: could not ask Airflow for the state of %s before saving (%s); saving as the "
            "try reported success.",
            ti.task_id,
            exc,
        )
        return None
    key = f"{ti.task_id}_{map_index}" if mapped else ti.task_id
    state = (states.get(ti.run_id) or {}).get(key)
    return None if state is None else str(getattr(state, "value", state))


def sync_driver(
    fn: Callable[..., Any], spec: StatefulSpec, qualname: str, *, context_parameter: str | None
) -> Callable[..., Any]:
    """Wrap a ``poke(self, context, watermark, ...)`` method or a TaskFlow ``f(watermark, ...)``.

    ``context_parameter`` names the method's context parameter; ``None`` means the TaskFlow form.
    """
    if context_parameter is not None:

        def poke(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            # Airflow calls self.poke(context); the watermark goes right after the context.
            if args:
                context, rest = args[0], args[1:]
            elif context_parameter in kwargs:
                context, rest = kwargs.pop(context_parameter), ()
            else:
                raise StatefulUsageError(f"{qualname}() needs the task context as its first argument.")
            # The name formats over the sensor; a done poke's snapshot is staged on it.
            return _poke(spec, qualname, self, context, lambda wm: fn(self, context, wm, *rest, **kwargs))

        return poke

    def taskflow(*args: Any, **kwargs: Any) -> Any:
        # @task.sensor calls the function with its own arguments only: the task comes from the
        # running task's context, and the name formats over it ("{task_id}").
        context = _current_context(qualname)
        return _poke(spec, qualname, context["task"], context, lambda wm: fn(wm, *args, **kwargs))

    return taskflow


def _current_context(qualname: str) -> Any:
    try:
        from airflow.sdk import get_current_context

        context = get_current_context()
        context["task"]  # a context without its task fails here too, as outside a task
        return context
    except Exception as exc:  # Airflow raises a RuntimeError-like error outside a task
        raise StatefulUsageError(
            f"@stateful TaskFlow sensor {qualname} was called outside a running Airflow task "
            f"({exc}); it needs the task's context to name and save its watermark. Run it with "
            f"`dag.test()`, or decorate a BaseSensorOperator.poke(self, context, watermark) instead."
        ) from exc


def _poke(spec: StatefulSpec, qualname: str, task: Any, context: Any, call: Callable[[Any], Any]) -> Any:
    # The rule (given store, [stateful] backend, asset scope, SQL default) and its log line
    # live in the backends package, shared with the trigger driver.
    from stateful.backends._resolve import load, resolve_sync_store

    name = spec.resolve_name(task)
    choice = resolve_sync_store(spec.backend, task, context)
    store = choice.store
    scope = Scope(Address(spec.namespace, name, DEFAULT_KEY), store.description)
    watermark: Any
    # A store that cannot be reached is tried again with backoff (stateful._retry); once the
    # attempts are spent the try fails with StoreUnavailableError and Airflow retries the task.
    loading = f"load {scope} for {qualname}"
    session = session_for(spec, scope)
    # Keyed: one watermark per partition, their texts now, each validated when looked up.
    if isinstance(session, KeyedSession):
        stored = retry(lambda: stored_partitions(store, scope), loading)
        watermark = session.load_partitions(stored, functools.partial(history_of, store))
        log_loaded_keyed(session, qualname)
    else:
        # Every poke starts from the store: in reschedule mode each poke is a new process anyway,
        # and in poke mode an earlier poke of this try that returned False saved nothing.
        record = retry(lambda: load(choice, *scope.address), loading)
        try:
            watermark = session.load(record, history_of(store, scope.address))
        except StateValidationError:
            metrics_of(session).validation_failure()
            raise
        log_loaded(session, qualname)
    try:
        result = call(watermark)
    except BaseException:
        session.abandon()
        raise
    # PokeReturnValue is falsy when is_done is False, like a plain False.
    if not result:
        session.abandon()
        metrics_of(session).flush(session)  # the late items this poke skipped
        return result
    seq = session.emitted()
    metrics_of(session).flush(session)
    now = session.before_yield(seq)
    if now is not None:  # commit="before_event": at-most-once, saved as soon as poke() is done
        session.saved(now, _write(store, now, session.render(now), session))
    later = session.after_resume(seq)
    if later is not None:  # rendered now: a worker has no event loop to keep free
        _stage(task, _Staged(store, session, later, session.render(later), qualname))
    return result


def _write(store: StateBackend, save: Save, value: str, session: WatermarkSession[Any]) -> int:
    scope = save.scope
    started = time.perf_counter()
    try:
        if isinstance(save, KeyedSave):  # the partitions it changed, with one write_many
            version = retry(lambda: save.write(store), f"save {scope}")
        else:
            version = retry(
                lambda: store.write(*scope.address, value, expected_version=save.expected_version),
                f"save {scope}",
            )
    except StateConflictError:
        metrics_of(session).conflict()
        raise
    metrics_of(session).saved(session, len(value), time.perf_counter() - started)
    return version


def _stage(task: Any, item: _Staged) -> None:
    staged: dict[Scope, _Staged] = dict(getattr(task, _STAGED, None) or {})
    staged[item.save.scope] = item
    setattr(task, _STAGED, staged)
    callbacks = list(getattr(task, "on_success_callback", None) or ())
    if _save_on_success not in callbacks:
        # A new list, never append(): Airflow's copy of the task for this try shares the
        # original's list, and the callback must not leak into the DAG's task or other tries.
        task.on_success_callback = [*callbacks, _save_on_success]
    _LOG.info(
        "stateful: %s reported done; %s will be saved when the task succeeds", item.qualname, item.save.scope
    )
