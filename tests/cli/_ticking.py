"""A trigger that keeps emitting, run by Airflow's ``TriggerRunner`` in a process of its own.

Usage: ``python -m tests.cli._ticking MODE [MAX_EVENTS]``, with ``STATEFUL_DATABASE_URL`` naming
the store. ``MODE`` is ``ack`` (an asset watcher on Airflow >= 3.3: saves once Airflow confirms
its events) or ``plain`` (a deferred task's trigger: coalesced saves, ``save_batch`` 4). The
process prints one JSON object per line, in the order things happened:

* ``{"event": N}`` for each event the triggerer queued (its payload's number);
* ``{"failed": MESSAGE, "handed_over": K}`` when ``@stateful`` logs that a save failed, with how
  many events the trigger had handed over by then;
* ``{"error": MESSAGE, "type": NAME, "handed_over": K}`` when the trigger ended with an error
  (exit status 1), or ``{"stopped": K}`` after MAX_EVENTS events (exit status 0).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, stateful
from tests._triggerer import Triggerer

#: The pause between two events, in seconds.
PAUSE = 0.01


class _Ticking(BaseEventTrigger):
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {})

    async def tick(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        n = watermark.cursor or 0
        while True:
            n += 1
            watermark.advance(cursor=n)
            yield TriggerEvent({"n": n})
            await asyncio.sleep(PAUSE)


class AckTicker(_Ticking):
    """An asset watcher's trigger: ack mode, the default on Airflow >= 3.3."""

    @stateful(namespace="ops", name="ticker")
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        async for event in self.tick(watermark):
            yield event


class PlainTicker(_Ticking):
    """A deferred task's trigger: saves when resumed, four taken events per save at most."""

    @stateful(
        namespace="ops",
        name="ticker",
        ack=False,
        save_batch=4,
        save_delay=timedelta(milliseconds=20),
        save_interval=timedelta(0),
    )
    async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        async for event in self.tick(watermark):
            yield event


class _Printer(logging.Handler):
    """Prints the events queued so far, then the failed save it is handed, in that order."""

    def __init__(self, triggerer: Triggerer, ack: bool, limit: int | None = None) -> None:
        super().__init__(logging.ERROR)
        self.triggerer, self.ack, self.limit, self.printed = triggerer, ack, limit, 0

    @property
    def handed_over(self) -> int:
        # In ack mode the producer hands events to Airflow's shared stream, which queues them a
        # moment later: count what the producer yielded.
        return self.triggerer.emitted if self.ack else len(self.triggerer.runner.events)

    def events(self) -> None:
        # A loaded machine can queue several events between two looks: print only the first
        # ``limit`` (MAX_EVENTS), the ones the caller asked for.
        for payload in self.triggerer.events[self.printed : self.limit]:
            _print({"event": payload["n"]})
            self.printed += 1

    def emit(self, record: logging.LogRecord) -> None:
        if "stops: saving" in record.getMessage():
            self.events()
            _print({"failed": record.getMessage(), "handed_over": self.handed_over})


def _print(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def main(mode: str, max_events: int | None) -> int:
    triggerer = Triggerer()
    printer = _Printer(triggerer, ack=mode == "ack", limit=max_events)
    logging.getLogger("stateful").addHandler(printer)
    triggerer.start(AckTicker() if mode == "ack" else PlainTicker(), is_watcher=mode == "ack")
    assert triggerer.task is not None
    while not triggerer.task.done():
        printer.events()
        if max_events is not None and printer.printed >= max_events:
            await triggerer.stop()
            _print({"stopped": printer.printed})
            return 0
        await asyncio.sleep(0.002)
    printer.events()
    try:
        await triggerer.finished()
    except Exception as exc:
        _print({"error": str(exc), "type": type(exc).__name__, "handed_over": printer.handed_over})
        return 1
    _print({"returned": printer.printed})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)))
