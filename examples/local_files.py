"""A trigger that fires once per new or modified file in a local directory.

``NewFilesTrigger`` polls a directory and emits one :class:`~airflow.triggers.base.TriggerEvent`
per regular file whose name matches a glob pattern and that it has not emitted before. Its
watermark (``@stateful``) survives triggerer restarts, so a restart neither re-fires for old
files nor misses the ones that landed while it was down.

Each file is identified by ``f"{relative_path}@{mtime_ns}"``: a file rewritten in place gets a
new mtime, hence a new key, and fires again. The watermark's timestamp is the file's mtime. A
file fires only once its size and mtime held still for two polls, so one still being written
does not fire half-written.

Example:
    A DAG scheduled on the files that land in ``/data/landing``::

        from airflow.sdk import Asset, AssetWatcher

        from examples.local_files import NewFilesTrigger

        landing = Asset(
            "landing",
            watchers=[AssetWatcher(name="landing", trigger=NewFilesTrigger("/data/landing", "*.csv"))],
        )
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, stateful

__all__ = ["FILES_PER_TURN", "LOOKBACK", "MAX_CLOCK_SKEW", "FileInfo", "NewFilesTrigger", "scan_directory"]

# How much older than the newest mtime already emitted a file may be and still fire.
#
# A file's mtime is not its arrival time: `cp -p`, `rsync -t`, `tar x` and `mv` of a file written
# elsewhere all land files whose mtime is in the past. Without a lookback, such a file fires only
# if its mtime is newer than everything emitted so far; with one, it fires if its mtime is at
# most LOOKBACK older than that. A file older than the window is NOT emitted: a known miss.
#
# The price is state: the watermark's `seen` keeps one key per file emitted with an mtime inside
# the window, and the whole watermark is serialised and written after every event. One hour
# covers the usual cases (an upload written to a temporary name and renamed, an rsync run of
# recent files, a copy of the last hour's batch) while keeping `seen` bounded by the files
# modified in the last hour: at 1,000 files an hour, about 80 KB of JSON and ~0.25 ms of CPU per
# event (docs/performance.md). Raise it if your producers deliver older files; for copies of
# arbitrarily old files an mtime watermark is the wrong tool (compare listings, or key on
# content without a timestamp, which max_untimed_keys bounds instead).
LOOKBACK = timedelta(hours=1)

# A file stamped further in the future than this (a writer whose clock is ahead, `touch -d` a
# future date) is held back until its mtime is no longer that far ahead. Emitting it would move
# the watermark into the future, and every file landing afterwards with a correct mtime older than
# that watermark minus LOOKBACK would be missed. Keep it well below LOOKBACK.
MAX_CLOCK_SKEW = timedelta(minutes=5)

# How many listed files the trigger looks at before it lets the triggerer's event loop run
# (a few milliseconds' work). Every poll looks at every file of the directory, emitted or not:
# in one stretch, a directory of 10,000 files would hold the loop, and every other trigger of
# the triggerer, for hundreds of milliseconds at each poll.
FILES_PER_TURN = 256

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class FileInfo:
    """One regular file found by :func:`scan_directory`.

    Attributes:
        relative_path: the path below the watched directory, with ``/`` separators.
        path: the full path (the watched directory joined with ``relative_path``).
        mtime_ns: the modification time in nanoseconds since the epoch.
        size: the size in bytes.
    """

    relative_path: str
    path: str
    mtime_ns: int
    size: int

    @property
    def key(self) -> str:
        """The watermark key: ``relative_path@mtime_ns``, so a modified file is a new item."""
        return f"{self.relative_path}@{self.mtime_ns}"

    @property
    def mtime(self) -> datetime:
        """The modification time as an aware UTC datetime, to the microsecond."""
        return _EPOCH + timedelta(microseconds=self.mtime_ns // 1000)


def scan_directory(directory: str, pattern: str = "*", recursive: bool = False) -> list[FileInfo]:
    """List the regular files of ``directory`` whose name matches ``pattern``.

    Blocking (it touches the file system): call it from a worker thread in async code. Symbolic
    links to files are followed; links to directories are not descended into. A file that
    vanishes between the listing and its ``stat()`` (or a dangling link) is skipped.

    Args:
        directory: the directory to list.
        pattern: an ``fnmatch`` glob matched against the file name (not the path).
        recursive: also list the subdirectories.

    Returns:
        The files, oldest first: ordered by ``(mtime_ns, relative_path)``.

    Raises:
        FileNotFoundError: ``directory`` does not exist or is not a directory.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory} does not exist or is not a directory")
    found: list[FileInfo] = []
    for top, dirnames, filenames in os.walk(directory):
        if not recursive:
            dirnames.clear()
        for filename in filenames:
            if not fnmatch.fnmatch(filename, pattern):
                continue
            path = os.path.join(top, filename)
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed (or renamed) since the listing, or a dangling link
            if not stat.S_ISREG(st.st_mode):
                continue
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            found.append(FileInfo(relative, path, st.st_mtime_ns, st.st_size))
    found.sort(key=lambda f: (f.mtime_ns, f.relative_path))
    return found


class NewFilesTrigger(BaseEventTrigger):
    """Fire once per new or modified file in a directory; remember what fired across restarts.

    The watermark lives in the default store (``STATEFUL_DATABASE_URL``, else
    ``[stateful] database_url``, else SQLite at ``$AIRFLOW_HOME/stateful.db``) under namespace
    ``"files"`` and the name :attr:`glob` (``/data/landing/*.csv``, or ``/data/landing/**/*.csv``
    when recursive): triggers that differ in pattern or recursion keep separate watermarks, and
    changing either starts a new one (every file present then fires once). Pass an absolute
    directory, spelled the same everywhere.

    Events carry ``{"path": str, "mtime": ISO 8601 str, "size": int}``. Delivery is
    at-least-once: files are emitted oldest first, so if the triggerer stops in the middle of a
    batch, the files not yet emitted (and at most the last one emitted) fire after the restart;
    none is skipped. A file fires once its size and mtime were the same in ``stable_polls``
    consecutive polls, so a file still being written is not emitted early; a writer that pauses
    longer than ``poll_interval`` mid-file is taken as done (its file fires again, with its new
    mtime, when it finishes): let producers write to a name ``pattern`` does not match and
    rename when done. A file whose mtime is more than :data:`MAX_CLOCK_SKEW` in the future is
    held back (with a warning) until it no longer is; a file older than the newest one emitted
    minus :data:`LOOKBACK` never fires.

    Args:
        directory: the directory to watch.
        pattern: an ``fnmatch`` glob for the file names to report (``"*.csv"``).
        poll_interval: seconds to wait between two scans.
        recursive: also watch the subdirectories.
        stable_polls: in how many consecutive polls a file must show the same size and mtime
            before it fires (``1``: as soon as it is seen). The first poll after a start only
            observes.

    Attributes:
        polls: how many poll cycles (a scan and its events) this instance has completed; for
            monitoring and tests.
    """

    def __init__(
        self,
        directory: str,
        pattern: str = "*",
        poll_interval: float = 5.0,
        recursive: bool = False,
        stable_polls: int = 2,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
        if isinstance(stable_polls, bool) or not isinstance(stable_polls, int) or stable_polls < 1:
            raise ValueError(f"stable_polls must be an int >= 1, got {stable_polls!r}")
        self.directory = directory
        self.pattern = pattern
        self.poll_interval = poll_interval
        self.recursive = recursive
        self.stable_polls = stable_polls
        self.polls = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return (
            "examples.local_files.NewFilesTrigger",
            {
                "directory": self.directory,
                "pattern": self.pattern,
                "poll_interval": self.poll_interval,
                "recursive": self.recursive,
                "stable_polls": self.stable_polls,
            },
        )

    @property
    def glob(self) -> str:
        """What is watched, e.g. ``/data/landing/*.csv``; the name of the watermark."""
        if self.recursive:
            return os.path.join(self.directory, "**", self.pattern)
        return os.path.join(self.directory, self.pattern)

    # The name is the glob, not just the directory: two triggers on one directory with different
    # patterns sharing a watermark would conflict on every write, and one's newer files would push
    # the other's older ones out of the lookback window.
    @stateful(namespace="files", name="{glob}", lookback=LOOKBACK)
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        """Poll the directory forever and yield one event per file not emitted before.

        Args:
            watermark: injected by ``@stateful``; callers use ``trigger.run()``.

        Yields:
            One ``TriggerEvent({"path", "mtime", "size"})`` per new or modified file.
        """
        missing = False
        held_back: set[str] = set()
        # New files not yet stable: (key, size) -> in how many consecutive polls seen so. In
        # memory only: after a restart, a file is observed for stable_polls polls again.
        settling: dict[tuple[str, int], int] = {}
        while True:
            try:
                # Listing and stat() block: never on the triggerer's event loop.
                files = await asyncio.to_thread(scan_directory, self.directory, self.pattern, self.recursive)
            except FileNotFoundError:
                if not missing:
                    self.log.warning("%s does not exist (yet); polling until it does", self.directory)
                files, missing = [], True
            else:
                missing = False
            horizon = datetime.now(timezone.utc) + MAX_CLOCK_SKEW
            # In whole microseconds, as FileInfo.mtime: no datetime built per file.
            horizon_us = (horizon - _EPOCH) // timedelta(microseconds=1)
            future = {f.key for f in files if f.mtime_ns // 1000 > horizon_us}
            for key in sorted(future - held_back):
                self.log.warning("holding back %s: its mtime is more than %s ahead", key, MAX_CLOCK_SKEW)
            held_back = future
            previous, settling = settling, {}
            for i, file in enumerate(files, start=1):
                if i % FILES_PER_TURN == 0:
                    await asyncio.sleep(0)  # let the triggerer's other work run
                ts = file.mtime
                if ts > horizon:
                    break  # files are sorted by mtime: the rest are in the future too
                if not watermark.is_new(file.key, ts):
                    continue
                # A writer changes the size (and mtime) as it writes; unchanged since the last
                # poll, it has most likely finished.
                state = (file.key, file.size)
                polls_stable = previous.get(state, 0) + 1
                if polls_stable < self.stable_polls:
                    settling[state] = polls_stable
                    continue
                watermark.advance(timestamp=ts, key=file.key)
                yield TriggerEvent({"path": file.path, "mtime": ts.isoformat(), "size": file.size})
            self.polls += 1
            await asyncio.sleep(self.poll_interval)
