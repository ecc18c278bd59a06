"""``stateful run``: drive a ``@stateful`` trigger outside Airflow, the way the triggerer does.

Events are taken the way Airflow's triggerer takes them: by resuming ``run()`` for the next
one, which is when ``@stateful`` (``commit="after_event"``) saves the watermark that covers the
event just taken. The trigger runs against the store it would use in Airflow (or
``--database-url``), through :class:`Observed`, which reports every load and save and, with
``--dry-run``, keeps saves in memory instead of writing them.

Stopping (``--max-events``, ``--timeout``, Ctrl-C, SIGTERM) never saves past the last event
taken: a save already under way for a taken event is allowed to finish, then the trigger is
cancelled where it waits. An event produced while stopping was handed over but not taken: it is
neither printed nor saved, and comes again next time (at-least-once, as in Airflow).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, cast

import click

from stateful._links import docs_url
from stateful.cli._common import json_option, location_options
from stateful.cli._errors import CliError, user_code_failed
from stateful.cli._observed import Observed, Reporter
from stateful.cli._output import Output, logs_to_stderr
from stateful.cli._store import StoreChoice, StoreOptions, choose_trigger_store
from stateful.cli._values import load_decorated, parse_json_object
from stateful.errors import StatefulError

__all__ = ["drive", "run_command"]

EXIT_STATUS = {"returned": 0, "max_events": 0, "timeout": 0, "interrupted": 130, "terminated": 143}


class Stopper:
    """Ctrl-C and SIGTERM: the first asks for a clean stop, a second one forces it."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()

    def request(self, reason: str) -> None:
        if self.requested.is_set():
            self.forced.set()
        else:
            self.reason = reason
            self.requested.set()

    @contextlib.contextmanager
    def installed(self) -> Any:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for signum, reason in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")):
            try:
                loop.add_signal_handler(signum, self.request, reason)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):  # not on this platform / not the main thread
                pass
        try:
            yield self
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)


async def _next(events: AsyncGenerator[Any, Any]) -> Any:
    return await events.__anext__()


async def _wait(step: asyncio.Future[Any], stopper: Stopper, timeout: float | None) -> None:
    stop = asyncio.ensure_future(stopper.requested.wait())
    try:
        await asyncio.wait({step, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()


async def drive(
    events: AsyncGenerator[Any, Any],
    observed: Observed,
    reporter: Reporter,
    stopper: Stopper,
    *,
    max_events: int | None,
    timeout: float | None,
) -> str:
    """Take events until the trigger returns, ``max_events`` were taken, ``timeout`` passed or a signal."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    step: asyncio.Future[Any] = asyncio.ensure_future(_next(events))
    try:
        while True:
            await _wait(step, stopper, None if deadline is None else max(0.0, deadline - loop.time()))
            if step.done():
                try:
                    event = step.result()
                except StopAsyncIteration:
                    return "returned"
                reporter.event(event)
                # Take it, as the triggerer does: resuming run() makes @stateful save it.
                step = asyncio.ensure_future(_next(events))
                if max_events is not None and reporter.events >= max_events:
                    reason = "max_events"
                    break
                continue
            reason = stopper.reason or "timeout"
            break
        await _settle(step, observed, stopper)
        return reason
    finally:
        if not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
        with contextlib.suppress(StopAsyncIteration, RuntimeError):
            await events.aclose()


async def _settle(step: asyncio.Future[Any], observed: Observed, stopper: Stopper) -> None:
    """Let a save for an event already taken finish; then cancel the trigger where it waits."""
    # One turn of the loop: the resumed run() reaches its first await, and @stateful starts the
    # save of the event just taken before it resumes the trigger's own code.
    await asyncio.sleep(0)
    while not step.done() and observed.writing and not stopper.forced.is_set():
        idle, forced = (
            asyncio.ensure_future(observed.idle.wait()),
            asyncio.ensure_future(stopper.forced.wait()),
        )
        try:
            await asyncio.wait({idle, forced, step}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            forced.cancel()
    if not step.done():
        step.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await step  # an event produced by now was not taken: not printed, not saved


def _make_trigger(path: str, kwargs: dict[str, Any]) -> tuple[Any, Any, Callable[..., AsyncIterator[Any]]]:
    return load_decorated(
        path,
        kwargs,
        method="run",
        form="trigger",
        usage=f"`stateful run` drives triggers whose run() is (see {docs_url('cli', 'stateful-run')}).",
    )


@click.command("run")
@click.argument("target", metavar="MODULE:CLASS")
@click.option(
    "--kwargs", "kwargs_text", metavar="JSON", default="{}", help="Constructor arguments, a JSON object."
)
@click.option(
    "--max-events", type=click.IntRange(min=1), metavar="N", help="Stop after N events (each saved)."
)
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S", help="Stop after S seconds."
)
@click.option("--dry-run", is_flag=True, help="Load the watermark but never save: a preview.")
@location_options
@json_option
def run_command(
    target: str,
    kwargs_text: str,
    max_events: int | None,
    timeout: float | None,
    dry_run: bool,
    where: StoreOptions,
    as_json: bool,
) -> int:
    """Run a @stateful trigger here, outside Airflow, printing each event and each save.

    The trigger is driven as Airflow's triggerer drives it, against the store it would use
    there (or --database-url): a watermark saved here is the one the deployed trigger loads.
    Stop it with --max-events, --timeout, Ctrl-C or SIGTERM: nothing is saved past the last
    event taken. With --json, one JSON object per line (loaded, event, saved, stopped).

    \b
    Example:
      stateful run examples.local_files:NewFilesTrigger \\
          --kwargs '{"directory": "/tmp/landing", "poll_interval": 1}' --max-events 10
    """
    out = Output(as_json)
    kwargs = parse_json_object(kwargs_text, "--kwargs")
    trigger, spec, original = _make_trigger(target, kwargs)
    choice = choose_trigger_store(spec, where)
    logs_to_stderr()  # importing the trigger imported Airflow
    try:
        return asyncio.run(_main(out, target, trigger, spec, original, choice, max_events, timeout, dry_run))
    except (StatefulError, CliError):
        raise  # already one message, with its exit status
    except Exception as exc:
        # The trigger's own code raised: an expected failure, told in one line (or JSON object).
        raise user_code_failed(
            f"the trigger {target}",
            exc,
            "Nothing was saved for an event not yet taken: the next run starts from the last saved "
            "watermark.",
        ) from exc


async def _main(
    out: Output,
    target: str,
    trigger: Any,
    spec: Any,
    original: Callable[..., AsyncIterator[Any]],
    choice: StoreChoice,
    max_events: int | None,
    timeout: float | None,
    dry_run: bool,
) -> int:
    from stateful.decorators import stateful

    with out.status() as status:
        reporter = Reporter(out, status)
        observed = Observed(choice.store, reporter, spec.model, dry_run=dry_run)
        reporter.emit(
            "start",
            f"run      {target} against {choice.description} (chosen by: {choice.reason})"
            + (" -- dry run: nothing will be saved" if dry_run else ""),
            trigger=target,
            store=choice.description,
            chosen_by=choice.reason,
            dry_run=dry_run,
        )
        # The trigger's own @stateful settings, with the observed store: the decorator stays the
        # only code that loads and saves, so what runs here is what runs in Airflow.
        run: Callable[..., AsyncIterator[Any]] = stateful(
            namespace=spec.namespace,
            name=spec.name,
            backend=observed,
            lookback=spec.lookback,
            commit=spec.commit,
            max_untimed_keys=spec.max_untimed_keys,
            idempotency_key=spec.idempotency_key,
            # One save per event taken, each printed: what a run here is for. (In Airflow,
            # outside ack mode, several taken events share a save: docs/guarantees.md.)
            save_batch=1,
        )(original)
        events = cast("AsyncGenerator[Any, Any]", run(trigger))  # the wrapper is an async generator
        with Stopper().installed() as stopper:
            reason = await drive(events, observed, reporter, stopper, max_events=max_events, timeout=timeout)
        saved = reporter.saved_version
        text = {
            "returned": "the trigger returned",
            "max_events": f"stopped after --max-events {max_events}",
            "timeout": f"stopped after --timeout {timeout:g}s" if timeout is not None else "stopped",
            "interrupted": "interrupted (Ctrl-C)",
            "terminated": "terminated (SIGTERM)",
        }[reason]
        reporter.emit(
            "stopped",
            f"{text}: {reporter.events} event{'s' * (reporter.events != 1)} taken; "
            + ("nothing saved" if saved is None else f"stored version {saved}")
            + (" (dry run: nothing written)" if dry_run else ""),
            reason=reason,
            events=reporter.events,
            version=saved,
            dry_run=dry_run,
        )
    return EXIT_STATUS[reason]
