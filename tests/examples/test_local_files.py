"""examples/local_files.py: NewFilesTrigger on a real directory and a real SQLite store.

Each "run" below is one trigger instance driven like the triggerer drives it, in its own event
loop, until it has completed three poll cycles (the first observes, the second emits the files
that held still since, the third proves nothing more is pending). A new instance on the same
directory is a triggerer restart.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from examples import local_files
from examples.local_files import LOOKBACK, MAX_CLOCK_SKEW, NewFilesTrigger, scan_directory
from stateful.backends import SqlBackend
from stateful.backends.sql import dispose_default_stores
from stateful.testing import run_trigger
from stateful.types import Watermark
from tests._triggerer import strip_key

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
POLL = 0.02


@pytest.fixture(autouse=True)
def store_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The default store, pointed at a SQLite file of this test."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("STATEFUL_DATABASE_URL", url)
    dispose_default_stores()
    yield url
    dispose_default_stores()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


def ns(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1) * 1000


def put(directory: Path, name: str, mtime: datetime | int, content: str = "data") -> Path:
    """Write ``directory/name`` and stamp its mtime (a datetime, or nanoseconds)."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    mtime_ns = mtime if isinstance(mtime, int) else ns(mtime)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def run(
    directory: Path,
    *,
    max_events: int | None = None,
    polls: int = 3,
    between: dict[int, Callable[[], object]] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """One trigger instance: drive it until ``polls`` poll cycles are done; return the payloads.

    ``between[n]`` runs once the trigger completed ``n`` polls and sleeps (a writer at work).
    """
    trigger = NewFilesTrigger(str(directory), poll_interval=POLL, **options)
    steps = dict(between or {})

    def until() -> bool:
        for done in sorted(n for n in steps if n <= trigger.polls):
            steps.pop(done)()
        return trigger.polls >= polls

    # With max_events: the next event is handed over, then the triggerer stops before its save.
    result = asyncio.run(
        run_trigger(
            trigger,
            until=until,
            idle_timeout=60,
            max_events=None if max_events is None else max_events + 1,
            crash=None if max_events is None else "before_save",
        )
    )
    assert result.reason == ("until" if max_events is None else "crash")
    assert max_events is not None or not steps, f"never reached poll(s) {sorted(steps)}"
    return [strip_key(event.payload) for event in result.events]


def names(payloads: list[dict[str, Any]], directory: Path) -> list[str]:
    return [Path(p["path"]).relative_to(directory).as_posix() for p in payloads]


def stored(url: str, directory: Path, pattern: str = "*") -> Watermark:
    """The watermark as stored in the SQLite file (read with a store of its own)."""
    store = SqlBackend(url)
    try:
        record = store.read("files", str(directory / pattern), "watermark")
    finally:
        store.dispose()
    assert record is not None
    return Watermark.from_state_json(record.value)


def test_one_event_per_file_oldest_first(landing: Path) -> None:
    put(landing, "b.csv", T0 + timedelta(seconds=1), "bb")
    put(landing, "c.csv", T0, "c")
    put(landing, "a.csv", T0 + timedelta(seconds=2), "aaa")

    payloads = run(landing)

    assert payloads == [
        {"path": str(landing / "c.csv"), "mtime": "2025-06-02T09:00:00+00:00", "size": 1},
        {"path": str(landing / "b.csv"), "mtime": "2025-06-02T09:00:01+00:00", "size": 2},
        {"path": str(landing / "a.csv"), "mtime": "2025-06-02T09:00:02+00:00", "size": 3},
    ]


def test_key_is_relative_path_at_mtime_ns_and_timestamp_keeps_microseconds(
    landing: Path, store_url: str
) -> None:
    mtime_ns = ns(T0) + 123_456_789
    put(landing, "a.csv", mtime_ns)

    (payload,) = run(landing)

    assert payload["mtime"] == "2025-06-02T09:00:00.123456+00:00"
    watermark = stored(store_url, landing)
    assert set(watermark.seen) == {f"a.csv@{mtime_ns}"}
    assert watermark.timestamp == T0 + timedelta(microseconds=123_456)


def test_restart_emits_nothing_already_emitted(landing: Path) -> None:
    for i in range(3):
        put(landing, f"{i}.csv", T0 + timedelta(seconds=i))
    assert len(run(landing)) == 3

    assert run(landing) == []
    assert run(landing) == []


def test_new_files_after_restart_fire(landing: Path) -> None:
    put(landing, "old.csv", T0)
    assert names(run(landing), landing) == ["old.csv"]

    put(landing, "new-2.csv", T0 + timedelta(minutes=2))
    put(landing, "new-1.csv", T0 + timedelta(minutes=1))

    assert names(run(landing), landing) == ["new-1.csv", "new-2.csv"]
    assert run(landing) == []


def test_modified_file_fires_once(landing: Path) -> None:
    path = put(landing, "report.csv", T0, "v1")
    put(landing, "other.csv", T0 + timedelta(seconds=1))
    assert len(run(landing)) == 2

    path.write_text("v2, longer")
    os.utime(path, ns=(ns(T0 + timedelta(minutes=1)),) * 2)

    assert run(landing) == [
        {"path": str(path), "mtime": "2025-06-02T09:01:00+00:00", "size": len("v2, longer")}
    ]
    assert run(landing) == []


def test_same_mtime_ties_across_a_restart(landing: Path) -> None:
    # Coarse file-system clocks give files written together the very same mtime_ns.
    tie = ns(T0) + 500
    put(landing, "a.csv", tie)
    put(landing, "b.csv", tie)
    assert names(run(landing), landing) == ["a.csv", "b.csv"]

    put(landing, "c.csv", tie)  # lands after the restart with the same mtime as the emitted ones

    assert names(run(landing), landing) == ["c.csv"]
    assert run(landing) == []


@pytest.mark.parametrize("same_mtime", [True, False], ids=["same-mtime", "distinct-mtimes"])
def test_stop_in_the_middle_of_a_batch_repeats_never_skips(landing: Path, same_mtime: bool) -> None:
    for i, name in enumerate(["a.csv", "b.csv", "c.csv"]):
        put(landing, name, T0 if same_mtime else T0 + timedelta(seconds=i))

    # Takes a.csv; b.csv is handed over but never taken (the triggerer stopped): not recorded.
    first = run(landing, max_events=1)
    assert names(first, landing) == ["a.csv", "b.csv"]

    assert names(run(landing), landing) == ["b.csv", "c.csv"]
    assert run(landing) == []


def test_late_file_inside_the_lookback_fires_one_older_is_a_known_miss(landing: Path, store_url: str) -> None:
    put(landing, "newest.csv", T0)
    assert len(run(landing)) == 1

    # A file copied with its original mtime (`cp -p`, `rsync -t`) after newer ones were emitted.
    put(landing, "late.csv", T0 - LOOKBACK / 2)
    # KNOWN MISS: a file whose mtime is more than LOOKBACK older than the newest emitted file
    # never fires. That is the documented price of a bounded watermark.
    put(landing, "too-late.csv", T0 - LOOKBACK - timedelta(seconds=1))

    assert names(run(landing), landing) == ["late.csv"]
    assert run(landing) == []


def test_seen_keeps_only_the_keys_inside_the_lookback(landing: Path, store_url: str) -> None:
    for i in range(3):
        put(landing, f"early-{i}.csv", T0 + timedelta(seconds=i))
    run(landing)
    assert len(stored(store_url, landing).seen) == 3

    put(landing, "much-later.csv", T0 + 2 * LOOKBACK)
    assert names(run(landing), landing) == ["much-later.csv"]

    assert set(stored(store_url, landing).seen) == {f"much-later.csv@{ns(T0 + 2 * LOOKBACK)}"}
    assert run(landing) == []


def test_pattern_filters_on_the_file_name(landing: Path) -> None:
    put(landing, "a.csv", T0)
    put(landing, "b.json", T0)
    put(landing, "c.csv.tmp", T0)

    assert names(run(landing, pattern="*.csv"), landing) == ["a.csv"]
    assert run(landing, pattern="*.csv") == []


def test_each_pattern_keeps_its_own_watermark(landing: Path, store_url: str) -> None:
    put(landing, "new.csv", T0)
    put(landing, "old.json", T0 - 2 * LOOKBACK)
    assert names(run(landing, pattern="*.csv"), landing) == ["new.csv"]

    # Had they shared one, the .csv trigger's watermark would have pushed old.json out of the window.
    assert names(run(landing, pattern="*.json"), landing) == ["old.json"]
    assert set(stored(store_url, landing, "*.json").seen) == {f"old.json@{ns(T0 - 2 * LOOKBACK)}"}


@pytest.mark.parametrize("recursive", [False, True])
def test_recursive_option(landing: Path, recursive: bool) -> None:
    put(landing, "top.csv", T0)
    put(landing, "2025/06/deep.csv", T0 + timedelta(seconds=1))
    put(landing, "2025/other.csv", T0 + timedelta(seconds=2))

    expected = ["top.csv", "2025/06/deep.csv", "2025/other.csv"] if recursive else ["top.csv"]
    assert names(run(landing, recursive=recursive), landing) == expected


def test_recursive_keys_use_relative_posix_paths(landing: Path, store_url: str) -> None:
    put(landing, "x/y/z.csv", T0)

    run(landing, recursive=True)

    assert set(stored(store_url, landing, "**/*").seen) == {f"x/y/z.csv@{ns(T0)}"}


def test_only_regular_files_are_reported(landing: Path) -> None:
    put(landing, "file.csv", T0)
    (landing / "dir.csv").mkdir()
    (landing / "dangling.csv").symlink_to(landing / "gone.csv")
    (landing / "link.csv").symlink_to(landing / "file.csv")
    if hasattr(os, "mkfifo"):
        os.mkfifo(landing / "pipe.csv")

    files = scan_directory(str(landing), "*.csv")

    # A link to a file is reported under its own name, with the target's mtime and size.
    assert [f.relative_path for f in files] == ["file.csv", "link.csv"]


def test_a_file_vanishing_between_listing_and_stat_is_skipped(
    landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(landing, "stays.csv", T0)
    put(landing, "vanishes.csv", T0)
    real_stat = os.stat

    def stat_after_removal(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).endswith("vanishes.csv"):
            os.remove(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_after_removal)

    assert [f.relative_path for f in scan_directory(str(landing))] == ["stays.csv"]


def test_missing_directory_counts_as_empty_until_it_exists(tmp_path: Path) -> None:
    directory = tmp_path / "not-yet"
    with pytest.raises(FileNotFoundError):
        scan_directory(str(directory))

    assert run(directory) == []

    put(directory, "first.csv", T0)
    assert names(run(directory), directory) == ["first.csv"]


def test_a_file_stamped_in_the_future_is_held_back(landing: Path, store_url: str) -> None:
    now = datetime.now(timezone.utc)
    put(landing, "now.csv", now)
    put(landing, "future.csv", now + MAX_CLOCK_SKEW + timedelta(days=1))

    assert names(run(landing), landing) == ["now.csv"]
    # The watermark did not jump into the future, so files landing now still fire.
    assert stored(store_url, landing).timestamp == now
    put(landing, "next.csv", now + timedelta(seconds=1))
    assert names(run(landing), landing) == ["next.csv"]


def test_the_scan_runs_off_the_event_loop_thread(landing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    put(landing, "a.csv", T0)
    threads: list[threading.Thread] = []
    real_scan = local_files.scan_directory

    def recording_scan(directory: str, pattern: str = "*", recursive: bool = False) -> list[Any]:
        threads.append(threading.current_thread())
        return real_scan(directory, pattern, recursive)

    monkeypatch.setattr(local_files, "scan_directory", recording_scan)

    assert len(run(landing)) == 1
    assert threads and threading.main_thread() not in threads


def test_serialize_round_trips_through_the_classpath(tmp_path: Path) -> None:
    trigger = NewFilesTrigger(str(tmp_path), pattern="*.parquet", poll_interval=30.0, recursive=True)

    classpath, kwargs = trigger.serialize()

    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert isinstance(rebuilt, NewFilesTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.glob == str(tmp_path / "**" / "*.parquet")
    assert kwargs == {
        "directory": str(tmp_path),
        "pattern": "*.parquet",
        "poll_interval": 30.0,
        "recursive": True,
        "stable_polls": 2,
    }


def test_kwargs_serialized_before_stable_polls_existed_still_load(tmp_path: Path) -> None:
    # A trigger stored by an earlier release, restored by the triggerer after an upgrade.
    old: dict[str, Any] = {
        "directory": str(tmp_path),
        "pattern": "*.csv",
        "poll_interval": 5.0,
        "recursive": False,
    }

    assert NewFilesTrigger(**old).stable_polls == 2
    assert NewFilesTrigger(str(tmp_path), "*", 5.0, False).serialize()[1]["stable_polls"] == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_stable_polls_must_be_a_positive_int(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="stable_polls must be an int >= 1"):
        NewFilesTrigger(str(tmp_path), stable_polls=bad)


# --- files still being written --------------------------------------------------------------


def append(path: Path, text: str) -> None:
    with path.open("a") as out:
        out.write(text)


def test_a_file_still_being_written_fires_once_with_its_final_size(landing: Path) -> None:
    path = landing / "big.csv"
    path.write_text("part 1\n")
    # The writer adds a chunk after each of the first three polls, then closes the file.
    chunks: dict[int, Callable[[], object]] = {
        n: functools.partial(append, path, f"part {n + 1}\n") for n in (1, 2, 3)
    }

    payloads = run(landing, polls=6, between=chunks)

    assert [(p["path"], p["size"]) for p in payloads] == [(str(path), path.stat().st_size)]
    assert path.read_text().count("part") == 4


def test_with_stable_polls_1_a_file_fires_as_soon_as_it_is_seen(landing: Path) -> None:
    # The behaviour the default avoids: every size seen mid-write fires (as a new mtime).
    path = landing / "big.csv"
    path.write_text("part 1\n")

    payloads = run(landing, polls=3, between={1: lambda: append(path, "part 2\n")}, stable_polls=1)

    assert [p["size"] for p in payloads] == [len("part 1\n"), len("part 1\npart 2\n")]


def test_a_new_file_waits_for_the_given_number_of_stable_polls(landing: Path) -> None:
    put(landing, "a.csv", T0)

    assert run(landing, polls=2, stable_polls=3) == []  # seen unchanged in 2 polls: not yet
    assert names(run(landing, polls=4, stable_polls=3), landing) == ["a.csv"]


def test_the_first_poll_after_a_restart_only_observes(landing: Path, store_url: str) -> None:
    put(landing, "a.csv", T0)

    assert run(landing, polls=1) == []

    with pytest.raises(AssertionError):  # nothing was stored: nothing was emitted
        stored(store_url, landing)
    assert names(run(landing), landing) == ["a.csv"]


def test_a_file_settling_does_not_hold_back_the_others(landing: Path) -> None:
    growing = landing / "growing.csv"
    growing.write_text("x")
    put(landing, "done.csv", T0)

    payloads = run(
        landing, polls=4, between={1: lambda: append(growing, "y"), 2: lambda: append(growing, "z")}
    )

    assert names(payloads, landing) == ["done.csv", "growing.csv"]
    assert payloads[1]["size"] == 3


def test_a_modified_file_in_a_subdirectory_fires_once_more(landing: Path) -> None:
    path = put(landing, "2025/06/report.csv", T0, "v1")
    assert names(run(landing, recursive=True), landing) == ["2025/06/report.csv"]

    put(landing, "2025/06/report.csv", T0 + timedelta(minutes=1), "v2, longer")

    assert run(landing, recursive=True) == [
        {"path": str(path), "mtime": "2025-06-02T09:01:00+00:00", "size": len("v2, longer")}
    ]
    assert run(landing, recursive=True) == []


def test_a_large_directory_is_looked_through_in_turns_with_the_event_loop(
    landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each poll looks at every listed file; in a large directory it lets the loop run between
    every FILES_PER_TURN files, so that the triggerer's other triggers are not held up."""
    count = 4 * local_files.FILES_PER_TURN
    for i in range(count):
        put(landing, f"f{i:04d}.csv", T0 + timedelta(seconds=i))
    ticks = 0
    # For each is_new() call of the first poll (which only observes): how often the loop ran the
    # other task before it.
    ticks_at: list[int] = []
    real_is_new = Watermark.is_new

    def recording_is_new(self: Watermark, key: str, timestamp: datetime | None = None) -> bool:
        if trigger.polls == 0:
            ticks_at.append(ticks)
        return real_is_new(self, key, timestamp)

    monkeypatch.setattr(Watermark, "is_new", recording_is_new)
    trigger = NewFilesTrigger(str(landing), poll_interval=POLL)

    async def main() -> int:
        async def other_task() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(other_task())
        try:
            result = await run_trigger(trigger, until=lambda: trigger.polls >= 2, idle_timeout=60)
        finally:
            ticker.cancel()
        return len(result.events)

    assert asyncio.run(main()) == count
    assert len(ticks_at) == count
    assert ticks_at[-1] - ticks_at[0] >= count // local_files.FILES_PER_TURN - 1
