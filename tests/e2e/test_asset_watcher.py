"""End to end: the ``@stateful`` NewFilesTrigger as an AssetWatcher in a real Airflow 3.3 deployment.

api-server, scheduler, dag-processor and triggerer run as separate processes (see harness.py) on
``dags/watched_files.py``: a directory watched by the ``@stateful`` trigger and one watched by
the same code without ``@stateful`` (the control), each an Asset scheduling a DAG. Asset events
are counted per file, never DAG runs (events emitted within milliseconds share a run, or wait
for the next event's run).

Every scenario runs once per state store (scenario e; see ``STORES`` in conftest.py), on one
deployment per store, in this order: a, b, d, f, then c, which kills the triggerer and may leave
files without an event behind, then g (the control of c), then h (a burst of 5,000 files), then
i (the same burst taken by a deferred task, on the SQL store's deployment), then j (three assets
on three folders of one directory, sharing one listing per poll through ``@shared_source``).
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from examples.local_files import NewFilesTrigger
from stateful import Watermark
from stateful.backends.native import NativeDocument, native_key
from stateful.backends.native.history import entry_keys
from tests._figures import Figures
from tests.e2e.conftest import LOOP_WATCHDOG_SLEEP, Store
from tests.e2e.deferred import DAG_ID as DEFERRED_DAG
from tests.e2e.deferred import LIMIT as DEFERRED_LIMIT
from tests.e2e.deferred import TASK_ID as DEFERRED_TASK
from tests.e2e.triggers import POLLER_STARTED, UnackedFilesTrigger
from tests.e2e.watched import WatchedDir, WatchedFiles

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.airflow_min("3.3", reason="the end-to-end suite runs against Airflow 3.3 (make test)"),
]


def test_a_each_new_file_is_exactly_one_asset_event_and_every_event_is_consumed(world: WatchedFiles) -> None:
    files = world.drop(world.landing, "a", 5)
    world.barrier(world.landing)

    assert world.counts_of(world.landing, files) == dict.fromkeys(files, 1)
    events = [e for e in world.events(world.landing) if e["extra"]["payload"]["path"] in files]
    assert len(events) == 5

    # Each event consumed by exactly one successful run of the consumer DAG, whose task saw the
    # paths of exactly the events that run consumed (checked inside wait_consumed).
    consumed = world.wait_consumed({int(e["id"]) for e in events})
    assert {int(e["id"]) for e in events} <= consumed.keys()


def test_b_a_graceful_restart_repeats_nothing_and_new_files_fire(world: WatchedFiles, store: Store) -> None:
    world.spare_triggerer()  # the next triggerer starts up meanwhile; it runs nothing until the restart
    before = world.drop(world.landing, "b-before", 3)
    world.barrier(world.landing)
    emitted = world.event_counts(world.landing)  # every file emitted so far, scenario a's too
    assert world.counts_of(world.landing, before) == dict.fromkeys(before, 1)

    _caught_up(world, store)  # ack mode saves once Airflow confirmed the events: about a second
    world.restart_triggerer()
    after = world.drop(world.landing, "b-after", 3)
    world.barrier(world.landing)

    counts = world.event_counts(world.landing)
    assert {path: counts[path] for path in emitted} == dict(emitted)  # 0 repeats
    assert world.counts_of(world.landing, after) == dict.fromkeys(after, 1)


def test_d_the_watermark_holds_exactly_the_emitted_files(world: WatchedFiles, store: Store) -> None:
    world.barrier(world.landing)
    name = _watermark_name(world)
    text = _caught_up(world, store)
    watermark = Watermark.from_state_json(text)

    emitted = set(world.event_counts(world.landing))
    on_disk = {str(p): p.stat().st_mtime_ns for p in world.landing.path.glob("*.csv")}
    assert emitted == set(on_disk)  # every file fired (nothing was killed yet)
    assert set(watermark.seen) == {f"{Path(p).name}@{ns}" for p, ns in on_disk.items()}
    stamps = [watermark.seen_at(key) for key in watermark.seen]
    assert None not in stamps  # every key was recorded with its file's mtime
    assert watermark.timestamp == max(s for s in stamps if s is not None)
    # Through REST: the native store's entries are the document and the history entries it names
    # (one per earlier version kept); the SQL store keeps nothing there.
    entries = world.deployment.asset_state_store(world.landing.asset_id)
    if store.native:
        key = native_key("files", name)
        entry = world.deployment.asset_state_store_entry(world.landing.asset_id, key)
        document = NativeDocument.from_json_value(entry["value"])
        assert (document.namespace, document.name, document.key) == ("files", name, "watermark")
        assert document.value == text  # what the store read is what REST shows
        assert document.history  # the earlier saves are kept as history entries
        assert sorted(e["key"] for e in entries) == sorted([key, *entry_keys(key, document)])
        assert [e["value"] for e in entries if e["key"] == key] == [entry["value"]]
    else:
        assert entries == []


def test_f_control_the_same_trigger_without_stateful_repeats_every_file_after_a_restart(
    world: WatchedFiles, store: Store
) -> None:
    world.spare_triggerer()
    files = world.drop(world.control, "f", 3)
    world.barrier(world.control)
    assert world.counts_of(world.control, files) == dict.fromkeys(files, 1)
    landing_before = world.event_counts(world.landing)

    _caught_up(world, store)
    world.restart_triggerer()
    world.barrier(world.control, world.landing)

    assert world.counts_of(world.control, files) == dict.fromkeys(files, 2)  # every file again
    landing = world.event_counts(world.landing)
    assert {path: landing[path] for path in landing_before} == dict(landing_before)  # the same restart


def test_c_a_killed_triggerer_loses_or_repeats_only_what_it_emitted_last(
    world: WatchedFiles, figures: Figures, store: Store
) -> None:
    """No file is ever left without an asset event; the repeats are measured.

    Without ack mode the watermark was saved as soon as the triggerer took an event into its
    in-memory queue, which Airflow persists about once a second: a SIGKILL or a SIGTERM in
    between lost what was queued. In ack mode (the default for watchers on Airflow 3.3) the save
    waits until Airflow confirmed it stored the events, so a kill can only repeat them. The kills
    come right after a yield (seen in the triggerer's log), right after Airflow stored the event,
    and right after the save; the figures go into docs/running-in-airflow.md.
    """
    landing = world.landing

    def saved(paths: list[str]) -> int:
        """How many of ``paths`` the watermark in the store has advanced past."""
        text = store.read(world, "files", _watermark_name(world))
        names = {key.rsplit("@", 1)[0] for key in Watermark.from_state_json(text).seen} if text else set()
        return sum(Path(p).name in names for p in paths)

    results: list[str] = []
    # Each kill's replacement is started ahead (a spare, idle until the kill); each starts the
    # next kill's replacement right away, which starts up while the scenario waits for the barrier.
    world.spare_triggerer()
    # 1. SIGKILL while files arrive: 40 files, one every 50 ms; the kill once 10 were taken.
    arriving = _ArrivingFiles(world, landing, "c1", count=40, interval=0.05)
    world.kill_triggerer_when(lambda: saved(arriving.paths) >= 10)
    taken = saved(arriving.paths)
    world.spare_triggerer()
    arriving.join()
    world.barrier(landing)
    results.append(
        _measure(world, landing, arriving.paths, f"SIGKILL while 40 files arrived ({taken} taken)")
    )

    # 2. SIGKILL right after a single file's yield, right after Airflow stored its event, and
    # right after its watermark was saved; three times each.
    points: dict[str, Callable[[str], bool]] = {
        "the yield": lambda path: Path(path).name in world.deployment.log_text("triggerer"),
        "Airflow stored the event": lambda path: world.event_counts(landing)[path] > 0,
        "the save": lambda path: saved([path]) == 1,
    }
    for point, reached in points.items():
        single: list[str] = []
        for round_ in range(3):
            # Each kill must find everything before its file saved: it then repeats only its own.
            _caught_up(world, store)
            path = world.drop_one(landing, f"c2-{len(results)}-{round_}")
            single.append(path)
            world.kill_triggerer_when(lambda path=path, reached=reached: reached(path))  # type: ignore[misc]
            world.spare_triggerer()
            world.barrier(landing)
        results.append(_measure(world, landing, single, f"SIGKILL right after {point}, 3 times"))

    # 3. SIGTERM, a graceful stop, while files arrive.
    _caught_up(world, store)
    arriving = _ArrivingFiles(world, landing, "c3", count=40, interval=0.05)
    world.deployment.wait_for("10 of the c3 files taken", lambda: saved(arriving.paths) >= 10)
    taken = saved(arriving.paths)
    world.restart_triggerer()
    arriving.join()
    world.barrier(landing)
    results.append(
        _measure(world, landing, arriving.paths, f"SIGTERM while 40 files arrived ({taken} taken)")
    )

    # Whatever was lost, new files still fire exactly once.
    new = world.drop(landing, "c-after", 2)
    world.barrier(landing)
    assert world.counts_of(landing, new) == dict.fromkeys(new, 1)
    figures.extend(f"[{store.name} store] {line}" for line in results)


def test_g_control_without_ack_mode_the_same_kills_lose_events(
    world: WatchedFiles, figures: Figures, store: Store
) -> None:
    """Proof that scenario c can fail: ``ack=False`` saves before Airflow stored the event.

    The same kill as c's "right after the save", on the same code under ``@stateful(ack=False)``:
    the watermark is past a file whose event was still in the triggerer's memory.
    """
    where = world.unacked
    name = UnackedFilesTrigger(str(where.path), "*.csv").glob

    def saved(path: str) -> bool:
        text = store.read(world, "files-unacked", name)
        names = {key.rsplit("@", 1)[0] for key in Watermark.from_state_json(text).seen} if text else set()
        return Path(path).name in names

    paths: list[str] = []
    world.spare_triggerer()
    for round_ in range(4):
        path = world.drop_one(where, f"g-{round_}")
        paths.append(path)
        world.kill_triggerer_when(lambda path=path: saved(path))  # type: ignore[misc]
        if round_ < 3:  # none after the last kill: the deployment goes on with one triggerer
            world.spare_triggerer()
        world.barrier(where)
    counts = world.counts_of(where, paths)
    lost = sorted(Path(p).name for p, n in counts.items() if n == 0)
    figures.append(
        f"[{store.name} store] control, ack=False, SIGKILL right after the save, 4 times: {len(lost)} lost"
    )
    assert lost, f"ack=False lost nothing under 4 kills right after the save: {counts}"


#: Scenario h's burst: this many files, each named with this many characters (``.csv``
#: included), dropped at once into each of two watched directories. 5,000 in the suite (about
#: five times the shared-stream queue, 0.7 MB of keys on the native store: ten values); the
#: figures in docs/running-in-airflow.md were measured with 10,000, which
#: ``STATEFUL_E2E_BURST_FILES=10000`` runs again (it adds about 10 minutes on 2 cores).
BURST_FILES = int(os.environ.get("STATEFUL_E2E_BURST_FILES", "5000"))
BURST_NAME_LENGTH = 117
#: The ``ack=False`` watcher's burst on the SQL store's deployment. Its events do not go through
#: a shared stream: the trigger runner queues them in a deque and its supervisor in another, both
#: unbounded in Airflow 3.3, so no size can overflow a queue there. What the burst checks is the
#: coalesced saves (at most ``save_batch``, 100, events unsaved: dozens of saves) keeping up
#: with more events than one shared-stream queue holds (1,024), beside the ack-mode burst, every
#: file once, no restart. 10,000 proved nothing more, and the supervisor's storing of its events
#: made that deployment's burst the suite's longest scenario.
UNACKED_BURST_FILES = 2_000
_BLOCKED = re.compile(r"Triggerer's async thread was blocked for ([0-9.]+) seconds")
# The triggerer's line for the start of a deferred task's trigger, named after its task
# instance and its id (the database reuses the id of a trigger that was deleted).
_DEFERRED_START = re.compile(rf"trigger ({DEFERRED_DAG}/\S+ \(ID \d+\)) starting")
# The scheduler's line once it handled the executor's report on a task that deferred.
_DEFERRED_SEEN = re.compile(rf"TaskInstance Finished: dag_id={DEFERRED_DAG}, .* state=deferred")
# The stateful line of a deferred task's trigger that loaded every key of scenario i's burst.
_LOADED_ALL = re.compile(rf"loaded .* for \S+NewFileWaitTrigger\.run from .* seen={BURST_FILES} keys")


def test_h_a_burst_of_thousands_of_files_dropped_at_once_is_delivered_without_a_restart(
    world: WatchedFiles, figures: Figures, store: Store
) -> None:
    """:data:`BURST_FILES` files with long names inside the one-hour lookback, dropped at once.

    Five times Airflow's shared-stream subscriber queue (1,024; ten times with 10,000): before
    backpressure the ack-mode producer emitted the whole scan before the subscriber ran, the
    queue overflowed, Airflow failed the trigger, which rescanned the same files and failed
    again, forever, without one event. On the native store the watermark (about 0.7 MB of keys;
    1.4 MB with 10,000) is ten times one value of the asset state store (64 KB): kept in one
    value, it was refused at about 500 such keys and the trigger restarted every few seconds.
    Each file must become an asset event, with no restart and at most 10 % repeats. The loop's
    stalls over 20 ms are read from Airflow's watchdog (it cannot tell the SDK's from Airflow's
    own) and reported.

    On the SQL store's deployment, a burst of :data:`UNACKED_BURST_FILES` goes at the same time
    to an ``ack=False`` watcher, whose events go through the triggerer's own queue and whose saves
    are coalesced. Not on the native store's: there each coalesced save (100 events at most)
    rewrites most of the watermark's parts through the triggerer's supervisor, which is busy
    storing the events, and thousands of files take far longer than the suite can spend
    (docs/running-in-airflow.md).
    """
    sizes = {"ack": BURST_FILES} if store.native else {"ack": BURST_FILES, "ack=False": UNACKED_BURST_FILES}
    bursts = {"ack": world.burst, "ack=False": world.burst_unacked}
    bursts = {what: bursts[what] for what in sizes}
    world.barrier(*bursts.values())  # both watchers run in this triggerer (scenario g killed one)
    log_path = world.deployment.log_path("triggerer")
    log_before = log_path.stat().st_size
    started = {}
    for watched in bursts.values():
        (trigger_id,) = world.deployment.watcher_trigger_ids(watched.asset_id)
        started[watched.asset_name] = f"trigger ID {trigger_id} starting"
    # Counted from here: on a loaded machine an earlier scenario's triggers may have started twice
    # in this triggerer (taken over by a warm spare while a late heartbeat made it look dead).
    starts_before = {
        name: world.deployment.log_text("triggerer").count(line) for name, line in started.items()
    }
    assert min(starts_before.values()) >= 1  # this triggerer runs them
    holders_before = world.holders()

    dropped = {}
    files = {}
    for what, watched in bursts.items():
        files[what] = world.drop_at_once(watched.path, "h", sizes[what], BURST_NAME_LENGTH)
        dropped[what] = time.time()
    world.deployment.wait_for(
        f"an asset event for each of the {sum(sizes.values()):,} files in {len(bursts)} directories",
        lambda: all(world.files_with_events(bursts[what], "h-") == n for what, n in sizes.items()) or None,
        timeout=1500,
        interval=2,
    )
    world.barrier(*bursts.values())  # the counts are final

    log = world.deployment.log_text("triggerer")
    stalls = _stalls(log_path, log_before)
    for what, watched in bursts.items():
        counts = world.counts_of(watched, files[what])
        events = [e for e in world.events(watched) if e["extra"]["payload"]["path"] in counts]
        assert sorted(n for n in counts.values() if n == 0) == []  # every file became an event
        assert len(events) <= 1.1 * sizes[what]
        restarts = log.count(started[watched.asset_name]) - starts_before[watched.asset_name]
        assert restarts == 0, f"the {what} burst's trigger was restarted"
        seconds = max(_epoch(e["timestamp"]) for e in events) - dropped[what]
        figures.append(
            f"[{store.name} store] burst ({what}): {sizes[what]} files ({BURST_NAME_LENGTH}-character "
            f"names) dropped at once: {len(events)} events, {len(events) - sizes[what]} repeated, "
            f"0 restarts, last event {seconds:.1f} s after the drop"
        )
    assert world.holders() == holders_before  # no other triggerer took a trigger over meanwhile
    for failure in ("fell behind", "EventNotStoredError", "StateTooLargeError"):
        assert failure not in log
    held = "held back at the queue size" if "holds the rest of a burst back" in log else "never held back"
    worst = f"worst {max(stalls) * 1000:.0f} ms" if stalls else "none"
    figures.append(
        f"[{store.name} store] burst: ack mode {held}; triggerer loop stalls over 20 ms while the "
        f"burst was delivered (Airflow's watchdog, SDK and Airflow alike): {len(stalls)}, {worst}"
    )


def test_i_a_deferred_task_takes_the_same_burst_over_its_runs_each_file_once(
    world: WatchedFiles, figures: Figures, store: Store
) -> None:
    """The non-ack path under scenario h's burst: a deferred task's trigger, the triggerer's queue.

    ``dags/deferred_burst.py``: each run of a continuous DAG reports the oldest new files, at
    most ``LIMIT``, and its watermark is saved once the task succeeded; with nothing new it
    defers to a ``@stateful`` trigger that waits for a file the watermark has not seen
    (``commit="never"``; tests/e2e/deferred.py). The first run defers on the empty directory,
    :data:`BURST_FILES` files with long names land at once, its trigger fires, and runs of
    at most ``LIMIT`` report them (four for 5,000); the next run defers, its trigger loading
    every key and scanning every file at each poll.
    Every file is reported by exactly one run, no try fails or is retried, every trigger starts
    once; the loop's stalls over 20 ms are reported, as in h.

    On the SQL store's deployment only: a deferred task's trigger has no asset scope and the task
    has no asset, so both use the SQL store on either deployment (docs/running-in-airflow.md).
    """
    if store.native:
        pytest.skip("the deferred task uses the SQL store on both deployments: run on the SQL store's")
    deployment = world.deployment
    deployment.set_paused(DEFERRED_DAG, False)
    # Airflow 3.3.2 fails a task resumed before the scheduler handled the executor's report that
    # the deferring process ended (apache/airflow#72716): the files land once it has.
    deployment.wait_for(
        "the scheduler to see the first run's task deferred",
        lambda: _DEFERRED_SEEN.search(deployment.log_text("scheduler")) and "deferred" in _task_states(world),
    )
    log_path = deployment.log_path("triggerer")
    log_before = log_path.stat().st_size
    files = world.drop_at_once(world.deferred, "i", BURST_FILES, BURST_NAME_LENGTH)
    dropped = time.time()
    runs = -(-BURST_FILES // DEFERRED_LIMIT)

    def waiting_with_everything() -> bool:
        # The next run's trigger loaded every key and waits; or a try failed: the asserts say so.
        states = _task_states(world)
        if {"failed", "up_for_retry"} & set(states):
            return True
        loaded = _LOADED_ALL.search(deployment.trigger_logs(DEFERRED_DAG)) is not None
        return states.count("success") >= runs and loaded

    deployment.wait_for(f"{runs} runs reporting {BURST_FILES:,} files", waiting_with_everything, timeout=900)
    deployment.set_paused(DEFERRED_DAG, True)

    rows = deployment.query(
        "SELECT run_id, state, try_number, end_date FROM task_instance WHERE dag_id = ? ORDER BY start_date",
        DEFERRED_DAG,
    )
    done = [row for row in rows if row[1] == "success"]
    assert [row[1] for row in rows] == ["success"] * runs + ["deferred"]
    assert {row[2] for row in rows} == {1}  # no try was retried
    reported = [deployment.xcom(DEFERRED_DAG, row[0], DEFERRED_TASK) for row in done]
    assert [len(paths) for paths in reported] == [DEFERRED_LIMIT] * runs
    assert collections.Counter(p for paths in reported for p in paths) == collections.Counter(files)
    log = deployment.log_text("triggerer") + deployment.trigger_logs(DEFERRED_DAG)
    starts = collections.Counter(_DEFERRED_START.findall(log))
    assert list(starts.values()) == [1, 1], starts  # the first and the last run's, none restarted
    for failure in ("StateTooLargeError", "StateConflictError", "StateValidationError"):
        assert failure not in log
    stalls = _stalls(log_path, log_before)
    seconds = max(_epoch(row[3]) for row in done) - dropped
    figures.append(
        f"[{store.name} store] deferred task: {BURST_FILES} files ({BURST_NAME_LENGTH}-character names) "
        f"dropped at once, reported by {runs} runs of at most {DEFERRED_LIMIT}: 0 lost, 0 repeated, "
        f"0 retries, 2 triggers each started once, the last run done {seconds:.1f} s after "
        f"the drop; triggerer loop stalls over 20 ms meanwhile: {len(stalls)}, "
        + (f"worst {max(stalls) * 1000:.0f} ms" if stalls else "none")
    )


def test_j_watchers_of_one_directory_share_one_listing_each_with_its_own_watermark(
    world: WatchedFiles, figures: Figures, store: Store
) -> None:
    """Three assets on three folders of one directory (``@shared_source``): one listing per poll.

    Their three watchers run in one triggerer; through Airflow's shared streams one poller lists
    the directory for all of them (it logs its start once per triggerer, where three plain
    ``@stateful`` triggers would start three), and each watcher keeps its own watermark, saved in
    ack mode once Airflow stored its own events. Files dropped in turn into the three folders
    each become one event of their own folder's asset, and each watermark holds its own folder's
    files and no other's. Then a SIGKILL while files arrive in all three folders loses none, and
    the next triggerer starts one poller again.
    """
    shared = world.shared
    world.barrier(*shared)  # all three watchers run in this triggerer
    pollers = world.deployment.log_text("triggerer").count(POLLER_STARTED)
    assert pollers == 1, f"{pollers} pollers for 3 watchers of one directory"

    # 1. Ten files in each folder, dropped in turn.
    dropped: dict[str, list[str]] = {w.asset_name: [] for w in shared}
    for i in range(10):
        for w in shared:
            dropped[w.asset_name].append(world.drop_one(w, f"j1-{i:03d}"))
    world.barrier(*shared)
    for w in shared:
        assert world.counts_of(w, dropped[w.asset_name]) == dict.fromkeys(dropped[w.asset_name], 1)
        elsewhere = [e["extra"]["payload"]["path"] for e in world.events(w)]
        assert [p for p in elsewhere if Path(p).parent != w.path] == []  # only its own folder's files
        seen = _shared_watermark_covers(world, store, w)
        assert {key.rsplit("@", 1)[0] for key in seen} == {
            f"{w.path.name}/{p.name}" for p in w.path.glob("*.csv")
        }
    files = sum(len(paths) for paths in dropped.values())
    figures.append(
        f"[{store.name} store] shared source: 3 assets on 3 folders of one directory, {files} files "
        f"dropped in turn: {files} events, 0 repeated, 1 poller for the 3 watchers; each watermark "
        "holds its own folder's files only"
    )

    # 2. SIGKILL while 60 files arrive, 20 in each folder (one every 50 ms in all).
    arriving = [_ArrivingFiles(world, w, "j2", count=20, interval=0.15) for w in shared]
    world.kill_triggerer_when(lambda: sum(world.files_with_events(w, "j2-") for w in shared) >= 10)
    taken = sum(world.files_with_events(w, "j2-") for w in shared)
    for files_of_one in arriving:
        files_of_one.join()
    world.barrier(*shared)
    results = [
        _measure(world, w, a.paths, f"{w.asset_name}, SIGKILL while 20 files arrived")
        for w, a in zip(shared, arriving, strict=True)
    ]
    # Each file at most twice (_measure): the kill repeats what was emitted but not yet saved.
    events = sum(sum(world.counts_of(w, a.paths).values()) for w, a in zip(shared, arriving, strict=True))
    pollers = world.deployment.log_text("triggerer").count(POLLER_STARTED)
    assert pollers == 1, f"the next triggerer started {pollers} pollers for 3 watchers of one directory"
    figures.append(
        f"[{store.name} store] shared source: SIGKILL while 60 files arrived in the 3 folders ({taken} "
        f"taken): {events} events, 0 lost, {events - 60} repeated ({'; '.join(results)}); the next "
        "triggerer started 1 poller"
    )


def _shared_watermark_covers(world: WatchedFiles, store: Store, where: WatchedDir) -> list[str]:
    """Wait until a shared folder's stored watermark covers its files; return its seen keys."""
    name = str(where.path)  # SharedFolderTrigger's name, "{directory}/{folder}"

    def covered() -> list[str] | None:
        text = store.read(world, "files-shared", name)
        if text is None:
            return None
        seen = list(Watermark.from_state_json(text).seen)
        on_disk = {f"{where.path.name}/{p.name}@{p.stat().st_mtime_ns}" for p in where.path.glob("*.csv")}
        return seen if on_disk <= set(seen) else None

    return world.deployment.wait_for(f"the {store.name} watermark of {name} to cover its files", covered, 120)


def _task_states(world: WatchedFiles) -> list[str]:
    rows = world.deployment.query("SELECT state FROM task_instance WHERE dag_id = ?", DEFERRED_DAG)
    return [str(row[0]) for row in rows]


def _stalls(log_path: Path, offset: int) -> list[float]:
    """The stalls of the triggerer's loop over 20 ms that its log reports after ``offset`` bytes."""
    with log_path.open("rb") as text:
        text.seek(offset)
        found = _BLOCKED.findall(text.read().decode(errors="replace"))
    return [float(s) - LOOP_WATCHDOG_SLEEP for s in found]


def _epoch(timestamp: str) -> float:
    """Seconds since the epoch of a timestamp of Airflow's metadata database (UTC)."""
    moment = datetime.fromisoformat(timestamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _caught_up(world: WatchedFiles, store: Store, timeout: float = 120) -> str:
    """Wait until the stored watermark covers every file in the landing directory; return it.

    In ack mode (the default on Airflow 3.3) a watermark is saved once Airflow confirmed it stored
    the events: about a second after they became asset events.
    """
    name = _watermark_name(world)

    def covered() -> str | None:
        text = store.read(world, "files", name)
        if text is None:
            return None
        on_disk = {f"{p.name}@{p.stat().st_mtime_ns}" for p in world.landing.path.glob("*.csv")}
        return text if on_disk <= set(Watermark.from_state_json(text).seen) else None

    return world.deployment.wait_for(f"the {store.name} watermark to cover every file", covered, timeout)


def _watermark_name(world: WatchedFiles) -> str:
    return NewFilesTrigger(str(world.landing.path), "*.csv").glob  # the example's watermark name


class _ArrivingFiles:
    """Drops ``count`` files into a watched directory from a thread, one every ``interval`` s."""

    def __init__(self, world: WatchedFiles, where: WatchedDir, prefix: str, count: int, interval: float):
        self.paths: list[str] = []
        self._error: BaseException | None = None

        def write() -> None:
            try:
                for i in range(count):
                    self.paths.append(world.drop_one(where, f"{prefix}-{i:03d}"))
                    time.sleep(interval)
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=write, name=f"drop-{prefix}", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _measure(world: WatchedFiles, where: WatchedDir, paths: list[str], what: str) -> str:
    """Count the files without an event (lost) and the extra events (repeats)."""
    counts = world.counts_of(where, paths)
    lost = sorted(Path(p).name for p, n in counts.items() if n == 0)
    repeated = sum(n - 1 for n in counts.values() if n > 1)
    assert all(n <= 2 for n in counts.values()), counts  # one crash repeats a file at most once
    # Ack mode (the default on Airflow 3.3): the watermark only passes events Airflow stored.
    assert lost == [], f"{what}: {len(lost)} files never became an asset event: {lost}"
    return f"{what}: {len(lost)} lost, {repeated} repeated"
