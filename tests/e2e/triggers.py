"""The suite's own triggers: the control (NewFilesTrigger's loop without ``@stateful``) and others.

``ForgetfulFilesTrigger`` runs exactly the polling code of
:class:`examples.local_files.NewFilesTrigger` (the undecorated ``run``) with a watermark that
lives in memory only, as a hand-written trigger keeps its state. After a triggerer restart it
starts from nothing and fires again for every file in its directory: scenario (f) shows the
suite can tell the two apart.

``UnackedFilesTrigger`` and ``UnackedBurstTrigger`` run the same loop under ``@stateful(ack=False)``
(scenarios g and h); ``SharedFolderTrigger`` watches one folder of a directory with
``@shared_source``, its watchers sharing one listing of the directory (scenario j).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from examples.local_files import LOOKBACK, FileInfo, NewFilesTrigger, scan_directory
from stateful import Watermark, shared_source, stateful

__all__ = [
    "POLLER_STARTED",
    "SHARED_FOLDERS",
    "ForgetfulFilesTrigger",
    "SharedFolderTrigger",
    "UnackedBurstTrigger",
    "UnackedFilesTrigger",
]

#: What a SharedFolderTrigger's poll logs when it starts: once per triggerer for all the watchers
#: of one directory when they share it, once per watcher when they do not.
POLLER_STARTED = "shared folders: one listing of"
#: The folders of scenario j's directory, each watched as an asset of its own.
SHARED_FOLDERS = ("a", "b", "c")

# The function that @stateful wrapped: NewFilesTrigger.run(self, watermark).
_UNDECORATED_RUN = cast(
    "Callable[[NewFilesTrigger, Watermark], AsyncIterator[TriggerEvent]]",
    NewFilesTrigger.run.__wrapped__,  # type: ignore[attr-defined]
)


class ForgetfulFilesTrigger(NewFilesTrigger):
    """NewFilesTrigger with its watermark in memory: every restart fires every file again."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return f"{__name__}.ForgetfulFilesTrigger", super().serialize()[1]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """NewFilesTrigger's loop, given a fresh in-memory watermark at each start."""
        async for event in _UNDECORATED_RUN(self, Watermark().configure(lookback=LOOKBACK)):
            yield event


class UnackedFilesTrigger(NewFilesTrigger):
    """NewFilesTrigger with ``ack=False``: saved when the triggerer resumes it (the control of
    the crash scenarios: the same kills that cost ack mode nothing lose events here)."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return f"{__name__}.UnackedFilesTrigger", super().serialize()[1]

    # save_batch=1: a save right when the triggerer resumes the run after each event, the window
    # in which a kill loses the event that scenario g shows (a coalesced save comes later).
    @stateful(namespace="files-unacked", name="{glob}", lookback=LOOKBACK, ack=False, save_batch=1)
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        """NewFilesTrigger's loop under @stateful(ack=False)."""
        async for event in _UNDECORATED_RUN(self, watermark):
            yield event


class UnackedBurstTrigger(UnackedFilesTrigger):
    """NewFilesTrigger with ``ack=False`` and the default coalesced saves: scenario h's non-ack
    burst, whose events go through the triggerer's own queue instead of a shared stream."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return f"{__name__}.UnackedBurstTrigger", super().serialize()[1]

    @stateful(namespace="files-unacked", name="{glob}", lookback=LOOKBACK, ack=False)
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        """NewFilesTrigger's loop under @stateful(ack=False), saves batched as configured."""
        async for event in _UNDECORATED_RUN(self, watermark):
            yield event


@shared_source(
    namespace="files-shared",
    name="{directory}/{folder}",
    source="{directory} every {poll_interval} s",
    lookback=LOOKBACK,
)
class SharedFolderTrigger(BaseEventTrigger):
    """Fire once per new ``*.csv`` file in ``directory/folder``; the folders share one listing.

    The watchers of one directory (and poll interval) share a poll on Airflow >= 3.3: the
    directory is listed (recursively) once per ``poll_interval`` for all of them, and each keeps
    its own watermark (namespace ``"files-shared"``, name ``"<directory>/<folder>"``). Events
    carry ``{"path": str, "mtime": ISO 8601 str, "size": int}``, as NewFilesTrigger's.
    """

    def __init__(self, directory: str, folder: str, poll_interval: float = 5.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
        self.directory, self.folder, self.poll_interval = directory, folder, poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return (
            f"{__name__}.SharedFolderTrigger",
            {"directory": self.directory, "folder": self.folder, "poll_interval": self.poll_interval},
        )

    if TYPE_CHECKING:  # @shared_source writes run(); this tells type checkers it is there

        def run(self) -> AsyncIterator[TriggerEvent]: ...

    async def poll(self) -> AsyncIterator[list[FileInfo]]:
        """List the whole directory once per ``poll_interval``, oldest files first."""
        self.log.info("%s %s", POLLER_STARTED, self.directory)
        while True:
            yield await asyncio.to_thread(scan_directory, self.directory, "*.csv", True)
            await asyncio.sleep(self.poll_interval)

    def select(self, watermark: Watermark, listing: list[FileInfo]) -> Iterator[TriggerEvent]:
        """This folder's new files of one listing, each advancing this watcher's watermark."""
        prefix = f"{self.folder}/"
        for file in listing:
            if file.relative_path.startswith(prefix) and watermark.is_new(file.key, file.mtime):
                watermark.advance(timestamp=file.mtime, key=file.key)
                yield TriggerEvent({"path": file.path, "mtime": file.mtime.isoformat(), "size": file.size})
