"""One trigger for many folders: a keyed watermark keeps one watermark per folder.

``NewFilesPerFolderTrigger`` lists a directory whose subfolders belong to different producers
(one per tenant, per region, per upstream system) in one poll, and keeps one watermark per
folder (``Keyed[Watermark]``): each folder's newest mtime and the files emitted inside its
lookback. A folder whose producer delivers late files, or that an operator rewinds
(``stateful rewind files /data/inbox --partition acme --to 3``), never moves another folder's
watermark, and a new folder starts from nothing without making the others fire again.

Per event only the folder it came from is saved (one compare-and-set covering the folders the
event changed), so a directory with thousands of folders costs no more per file than one folder.

Example:
    >>> import asyncio, os, tempfile
    >>> from stateful.backends import MemoryBackend
    >>> inbox = tempfile.mkdtemp()
    >>> for folder, name in [("acme", "a.csv"), ("globex", "g.csv")]:
    ...     os.makedirs(os.path.join(inbox, folder), exist_ok=True)
    ...     open(os.path.join(inbox, folder, name), "w").close()
    >>> store = MemoryBackend()
    >>> class Trigger(NewFilesPerFolderTrigger):
    ...     @stateful(namespace="files", name="{directory}", backend=store, lookback=LOOKBACK)
    ...     async def run(self, folders: Keyed[Watermark]) -> AsyncIterator[TriggerEvent]:
    ...         async for event in self.poll(folders):
    ...             yield event
    >>> async def one_poll() -> list[str]:
    ...     return [e.payload["path"] async for e in Trigger(inbox).run()]
    >>> asyncio.run(one_poll())
    ['acme/a.csv', 'globex/g.csv']
    >>> open(os.path.join(inbox, "acme", "b.csv"), "w").close()
    >>> asyncio.run(one_poll())  # a restart: only the new file, in its own folder's watermark
    ['acme/b.csv']
    >>> sorted(r.key for r in store.list("files"))
    ['watermark[acme]', 'watermark[globex]']
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from examples.local_files import scan_directory
from stateful import Keyed, Watermark, stateful

__all__ = ["LOOKBACK", "NewFilesPerFolderTrigger"]

#: How much older than a folder's newest emitted mtime a file may be and still fire.
LOOKBACK = timedelta(hours=1)


class NewFilesPerFolderTrigger(BaseEventTrigger):
    """Fire once per new file in any folder of ``directory``; one watermark per folder.

    The files directly in ``directory`` are ignored: every file belongs to the folder it is in
    (its first path component). Events carry ``{"folder": str, "path": str}`` (the path relative
    to ``directory``). The watermarks live in the default store, namespace ``"files"``, name
    ``directory``, one partition per folder (``stateful list`` shows them).

    Args:
        directory: the directory whose folders to watch.
        poll_interval: seconds between two polls; ``0`` polls once and returns.
    """

    def __init__(self, directory: str, poll_interval: float = 0.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
        self.directory = directory
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return (
            "examples.keyed_folders.NewFilesPerFolderTrigger",
            {"directory": self.directory, "poll_interval": self.poll_interval},
        )

    @stateful(namespace="files", name="{directory}", lookback=LOOKBACK)
    async def run(self, folders: Keyed[Watermark]) -> AsyncIterator[TriggerEvent]:
        """Poll the folders; emit each new file once, advancing only its folder's watermark."""
        while True:
            async for event in self.poll(folders):
                yield event
            if self.poll_interval <= 0:
                return
            await asyncio.sleep(self.poll_interval)

    async def poll(self, folders: Keyed[Watermark]) -> AsyncIterator[TriggerEvent]:
        """One listing of every folder; the new files, oldest first, each under its folder."""
        files = await asyncio.to_thread(scan_directory, self.directory, "*", True)
        for file in files:
            folder, _, rest = file.relative_path.partition("/")
            if not rest:
                continue  # a file directly in the directory belongs to no folder
            watermark = folders[folder]  # looked up now: this event changes this folder only
            if watermark.is_new(file.key, file.mtime):
                watermark.advance(key=file.key, timestamp=file.mtime)
                yield TriggerEvent({"folder": folder, "path": file.relative_path})
