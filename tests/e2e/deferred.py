"""A deferrable task on the example's files, for scenario i: the non-ack path (a deferred task's
trigger, Airflow's triggerer queue) under the same burst as scenario h.

:class:`NewFilesBatchSensor` follows the pattern of a deferrable sensor and its trigger sharing
one watermark (docs/sensors.md, ``examples/sqlite_rows_sensor.py``): each try pokes, takes the
oldest new files (at most ``limit``) and returns their paths as its XCom, and the watermark is
saved once the task succeeded; finding nothing new, it defers to :class:`NewFileWaitTrigger`,
which only waits (``commit="never"``) until the directory holds a file the watermark has not
seen, and the resumed task pokes again. A burst is therefore reported over several runs of the
DAG; the trigger of the run after them loads every key (the burst's 10,000 long keys) and scans
every file at each poll, finding nothing.

Both use the SQL store on either deployment: a deferred task's trigger has no asset scope, and
the sensor has no asset inlet or outlet (docs/running-in-airflow.md).

Example:
    In a DAG file::

        NewFilesBatchSensor(task_id="new_files", directory="/data/landing", pattern="*.csv", limit=1000)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.triggers.base import BaseTrigger, TriggerEvent

from examples.local_files import FILES_PER_TURN, LOOKBACK, scan_directory
from stateful import Watermark, stateful

__all__ = ["DAG_ID", "LIMIT", "NAMESPACE", "TASK_ID", "NewFileWaitTrigger", "NewFilesBatchSensor"]

#: The namespace of the sensor's and the trigger's one watermark (named after the glob).
NAMESPACE = "files-deferred"
#: The DAG of scenario i (``dags/deferred_burst.py``) and its one task.
DAG_ID = "e2e_deferred_burst"
TASK_ID = "new_files"
#: The most files one run reports: scenario h's burst of 5,000 takes four runs, and every run
#: but the first starts from the watermark the runs before it saved.
LIMIT = 1_250


class NewFileWaitTrigger(BaseTrigger):
    """Fires once the directory holds a file that the sensor's watermark has not seen; saves nothing.

    Args:
        directory: the directory to watch.
        pattern: an ``fnmatch`` glob for the file names.
        poll_interval: seconds between two scans.
    """

    def __init__(self, directory: str, pattern: str, poll_interval: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.directory = directory
        self.pattern = pattern
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        arguments = {
            "directory": self.directory,
            "pattern": self.pattern,
            "poll_interval": self.poll_interval,
        }
        return f"{__name__}.NewFileWaitTrigger", arguments

    @property
    def glob(self) -> str:
        """What is watched: the watermark's name, the sensor's too."""
        return os.path.join(self.directory, self.pattern)

    @stateful(namespace=NAMESPACE, name="{glob}", lookback=LOOKBACK, commit="never")
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        """Scan until a file is new to the watermark; yield one event naming it, then end."""
        while True:
            # Listing and stat() block: never on the triggerer's event loop.
            files = await asyncio.to_thread(scan_directory, self.directory, self.pattern)
            for i, file in enumerate(files, start=1):
                if i % FILES_PER_TURN == 0:
                    await asyncio.sleep(0)  # let the triggerer's other work run
                if watermark.is_new(file.key, file.mtime):
                    yield TriggerEvent({"first_new": file.path})
                    return
            await asyncio.sleep(self.poll_interval)


class NewFilesBatchSensor(BaseSensorOperator):
    """Returns the paths of the oldest ``limit`` new files; defers while there are none.

    Args:
        directory: the directory to watch.
        pattern: an ``fnmatch`` glob for the file names.
        limit: the most files one run reports; the next runs report the rest.
        poll_interval: the trigger's seconds between two scans.
        **kwargs: passed to ``BaseSensorOperator``.
    """

    def __init__(
        self, *, directory: str, pattern: str, limit: int, poll_interval: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.directory = directory
        self.pattern = pattern
        self.limit = limit
        self.poll_interval = poll_interval

    @property
    def glob(self) -> str:
        """What is watched: the watermark's name, the trigger's too."""
        return os.path.join(self.directory, self.pattern)

    @stateful(namespace=NAMESPACE, name="{glob}", lookback=LOOKBACK)
    def poke(self, context: Context, watermark: Watermark) -> bool | PokeReturnValue:
        """Take the oldest new files, at most ``limit``; staged for a save when the task succeeds."""
        taken: list[str] = []
        for file in scan_directory(self.directory, self.pattern):
            if len(taken) == self.limit:
                break
            if watermark.is_new(file.key, file.mtime):
                watermark.advance(timestamp=file.mtime, key=file.key)
                taken.append(file.path)
        return PokeReturnValue(is_done=bool(taken), xcom_value=taken)

    def execute(self, context: Context) -> Any:
        """Poke first: defer only when nothing is new."""
        return self.execute_complete(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Poke once (also when resumed by the trigger's event); defer while nothing is new."""
        result = self.poke(context)
        if result:
            return result.xcom_value if isinstance(result, PokeReturnValue) else None
        trigger = NewFileWaitTrigger(self.directory, self.pattern, self.poll_interval)
        self.defer(trigger=trigger, method_name="execute_complete")
