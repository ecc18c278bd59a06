"""``stateful poke``: one ``poke()`` of a ``@stateful`` sensor outside Airflow, as ``run`` is for triggers.

The sensor class is imported and built from ``--kwargs``; its ``poke()`` runs once with the
watermark stored for it, in the store it would use in Airflow (or ``--database-url``). The result
is printed with the watermark a successful try would save. Only ``--commit`` writes it (as
Airflow does once the task succeeded); without it the save goes to an overlay in memory, with
compare-and-set still applied, and the store is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from stateful.backends.base import Address, StateBackend, StateRecord
from stateful.cli._common import json_option, location_options
from stateful.cli._errors import CliError, UsageError, user_code_failed
from stateful.cli._observed import Reporter, pretend_save
from stateful.cli._output import Output, dumps, logs_to_stderr
from stateful.cli._store import StoreOptions, choose_trigger_store
from stateful.cli._values import load_decorated, parse_json_object
from stateful.errors import StatefulError
from stateful.types import Watermark

__all__ = ["poke_command"]


class Watched:
    """The sensor's store, seen through: reports the load and the save; writes only when ``commit``."""

    def __init__(
        self, store: StateBackend, reporter: Reporter, model: type[Watermark[Any]], *, commit: bool
    ) -> None:
        self._store, self._reporter, self._commit = store, reporter, commit
        self._model = model
        self.wrote = False

    @property
    def description(self) -> str:
        return self._store.description

    def read(self, namespace: str, name: str, key: str) -> StateRecord | None:
        record = self._store.read(namespace, name, key)
        self._reporter.loaded(namespace, name, key, record, self._model, self._store.description)
        return record

    def write(
        self,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        if self._commit:
            version = self._store.write(
                namespace,
                name,
                key,
                value,
                expected_version=expected_version,
                updated_by=updated_by,
                reason=reason,
            )
        else:
            current = self._store.read(namespace, name, key)  # a conflict shows, as with --commit
            actual = None if current is None else current.version
            address = Address(namespace, name, key)
            version = pretend_save(self.description, address, value, expected_version, actual).version
        self.wrote = True
        self._reporter.saved(version, value, not self._commit)
        return version

    def delete(self, namespace: str, name: str, key: str, *, expected_version: int | None = None) -> bool:
        raise UsageError("stateful poke does not delete watermarks")

    def list(self, namespace: str | None = None) -> Sequence[StateRecord]:
        return self._store.list(namespace)


def _make_sensor(path: str, kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    return load_decorated(
        path,
        kwargs,
        method="poke",
        form="sensor",
        usage="`stateful poke` runs sensors whose `poke(self, context, watermark)` is (a @task.sensor "
        "function runs with dag.test()).",
    )


@click.command("poke")
@click.argument("target", metavar="MODULE:CLASS")
@click.option(
    "--kwargs", "kwargs_text", metavar="JSON", default="{}", help="Constructor arguments, a JSON object."
)
@click.option(
    "--context", "context_text", metavar="JSON", default="{}", help="The task context poke() gets (JSON)."
)
@click.option("--commit", is_flag=True, help="Save the watermark, as a successful try would.")
@location_options
@json_option
def poke_command(
    target: str, kwargs_text: str, context_text: str, commit: bool, where: StoreOptions, as_json: bool
) -> int:
    """Run one poke() of a @stateful sensor here, printing its result and the watermark it would save.

    The sensor gets the watermark stored for it, in the store it would use in Airflow (or
    --database-url). Nothing is saved unless --commit: then the watermark is saved as Airflow
    saves it once the task succeeded. With --json, one JSON object per line (start, loaded,
    result, saved).

    \b
    Example:
      stateful poke examples.sqlite_rows_sensor:NewRowsSensor \\
          --kwargs '{"task_id": "orders", "database": "/data/shop.db", "table": "orders"}' --commit
    """
    from stateful.decorators import stateful
    from stateful.sensors import commit as commit_staged

    out = Output(as_json)
    kwargs = parse_json_object(kwargs_text, "--kwargs")
    context = parse_json_object(context_text, "--context")
    sensor, spec, original = _make_sensor(target, kwargs)
    choice = choose_trigger_store(spec, where, "sensor")
    logs_to_stderr()  # importing the sensor imported Airflow
    with out.status() as status:
        reporter = Reporter(out, status)
        reporter.emit(
            "start",
            f"poke     {target} against {choice.description} (chosen by: {choice.reason})"
            + ("" if commit else " -- nothing is saved without --commit"),
            sensor=target,
            store=choice.description,
            chosen_by=choice.reason,
            commit=commit,
        )
        watched = Watched(choice.sync(), reporter, spec.model, commit=commit)
        # The sensor's own @stateful settings, with the watched store: the decorator stays the
        # only code that loads and saves.
        poke: Callable[..., Any] = stateful(
            namespace=spec.namespace,
            name=spec.name,
            backend=watched,
            lookback=spec.lookback,
            commit=spec.commit,
            max_untimed_keys=spec.max_untimed_keys,
        )(original)
        try:
            result = poke(sensor, {"task": sensor, **context})
        except (StatefulError, CliError):
            raise  # already one message, with its exit status
        except Exception as exc:
            raise user_code_failed(
                f"poke() of {target}", exc, "Nothing was saved: Airflow would retry or fail the task."
            ) from exc
        done = bool(result)
        value = getattr(result, "xcom_value", None)
        reporter.emit(
            "result",
            f"result   {'done' if done else 'not done'}" + (f": {dumps(value)}" if value is not None else ""),
            done=done,
            xcom_value=value,
        )
        commit_staged(sensor)  # what Airflow does once the task succeeded; to the overlay unless --commit
        if not watched.wrote:
            why = "the watermark did not change" if done else "poke() is not done"
            reporter.emit("unsaved", f"nothing to save: {why}", reason=why)
    return 0
