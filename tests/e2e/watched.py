"""The end-to-end suite's world: a deployment running ``dags/watched_files.py`` and its two directories.

:class:`WatchedFiles` drops files into the watched directories and counts the asset events they
became. Files are told apart by name, so each scenario counts only its own files, whatever the
scenarios before it left behind.

Waiting for a count is done with a *barrier*: a file dropped after the files of interest, with a
strictly later mtime. The trigger emits each scan's files oldest first, and the triggerer
persists one trigger's events in the order they were emitted, so once the barrier's event is in
the database every file dropped before it has been handled: whatever count is there now is
final (a later event for those files could only come from a restart). No sleeping, no guessing.
"""

from __future__ import annotations

import collections
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import AirflowDeployment, DeploymentError

__all__ = ["CONSUMER_DAG", "CONSUMER_TASK", "WatchedDir", "WatchedFiles"]

CONSUMER_DAG = "e2e_consume_landing"
CONSUMER_TASK = "consume"


@dataclass
class WatchedDir:
    """A watched directory and the asset its watcher feeds."""

    path: Path
    asset_name: str
    asset_id: int = 0


@dataclass
class WatchedFiles:
    """Drop files, count asset events, restart the triggerer; see the module docstring."""

    deployment: AirflowDeployment
    landing: WatchedDir  # watched by the @stateful NewFilesTrigger
    control: WatchedDir  # watched by the same code without @stateful
    unacked: WatchedDir  # watched by the @stateful code with ack=False
    burst: WatchedDir  # watched by the @stateful NewFilesTrigger, for scenario h's bursts
    burst_unacked: WatchedDir  # watched by the @stateful code with ack=False, for scenario h
    deferred: Path  # scanned by the deferred task of scenario i (no asset)
    shared: tuple[WatchedDir, ...]  # the folders of one directory, one @shared_source watcher each
    _barriers: Iterator[int] = field(default_factory=itertools.count, init=False)
    _consumed: dict[str, list[int]] = field(default_factory=dict, init=False)
    # The job ids of the triggerers stopped or killed so far (their rows outlive a SIGKILL).
    _gone: set[int] = field(default_factory=set, init=False)
    # The job ids of every triggerer started before the spare: the spare's job is none of them.
    _before_spare: set[int] = field(default_factory=set, init=False)

    def resolve_assets(self) -> None:
        """Look the assets up once the DAG processor has registered them."""
        for watched in self.watched:
            asset = self.deployment.wait_for(
                f"asset {watched.asset_name!r} with its watcher",
                lambda name=watched.asset_name: self._watched_asset(name),  # type: ignore[misc]
            )
            watched.asset_id = int(asset["id"])

    @property
    def watched(self) -> tuple[WatchedDir, ...]:
        """Every watched directory."""
        return (self.landing, self.control, self.unacked, self.burst, self.burst_unacked, *self.shared)

    def _watched_asset(self, name: str) -> dict[str, Any] | None:
        try:
            asset = self.deployment.asset(name)
        except DeploymentError:
            return None
        return asset if asset["watchers"] else None

    # -- files ---------------------------------------------------------------------------------

    def drop(self, where: WatchedDir, prefix: str, count: int) -> list[str]:
        """Write ``count`` new files ``<prefix>-<i>.csv``; return their paths."""
        return [self.drop_one(where, f"{prefix}-{i:03d}") for i in range(count)]

    def drop_at_once(self, directory: Path, prefix: str, count: int, name_length: int = 0) -> list[str]:
        """Land ``count`` new files ``<prefix>-<i>[-000...].csv`` together, as a bulk upload does.

        Each is written under a name the pattern ignores first; then all are renamed in one quick
        loop, so that one scan finds them all. A ``name_length`` pads each name (``.csv``
        included) with zeros to that many characters: long names make large watermarks.
        Returns their paths.
        """
        partials = []
        for i in range(count):
            stem = f"{prefix}-{i:05d}"
            stem = f"{stem}-".ljust(name_length - len(".csv"), "0") if name_length else stem
            partial = directory / f"{stem}.partial"
            partial.write_text(f"{stem}\n")
            partials.append(partial)
        paths = [partial.with_suffix(".csv") for partial in partials]
        if any(path.exists() for path in paths):
            raise RuntimeError(
                f"{prefix}-* files exist in {directory}: each scenario must use names of its own"
            )
        for partial, path in zip(partials, paths, strict=True):
            os.rename(partial, path)
        return [str(path) for path in paths]

    def drop_one(self, where: WatchedDir, stem: str) -> str:
        """Write one new file ``<stem>.csv``, its mtime later than every file already there."""
        path = where.path / f"{stem}.csv"
        if path.exists():
            raise RuntimeError(f"{path} exists: each scenario must use names of its own")
        floor = max((p.stat().st_mtime_ns for p in where.path.iterdir()), default=0)
        # A temporary name the pattern ignores, renamed when complete: the watcher never sees a
        # file half written (it would fire again once finished: a new mtime, a new key).
        partial = path.with_suffix(".partial")
        partial.write_text(f"{stem}\n")
        while partial.stat().st_mtime_ns <= floor:  # a coarse file system clock: wait for a tick
            time.sleep(0.005)
            partial.touch()
        os.rename(partial, path)
        return str(path)

    def barrier(self, *where: WatchedDir, timeout: float = 360) -> None:
        """Drop a barrier file in each directory and wait for their asset events: earlier files'
        counts are final. Several directories' barriers are awaited together."""
        barriers = [(w, self.drop_one(w, f"barrier-{next(self._barriers):03d}")) for w in where]

        def reached() -> bool:
            return all(self.event_counts(w)[path] > 0 for w, path in barriers)

        paths = ", ".join(path for _, path in barriers)
        self.deployment.wait_for(f"the asset events of {paths}", reached, timeout)

    # -- asset events --------------------------------------------------------------------------

    def events(self, where: WatchedDir) -> list[dict[str, Any]]:
        """The asset's events, oldest first."""
        return self.deployment.asset_events(where.asset_id)

    def event_counts(self, where: WatchedDir) -> collections.Counter[str]:
        """How many asset events each file (path) became."""
        return collections.Counter(e["extra"]["payload"]["path"] for e in self.events(where))

    def counts_of(self, where: WatchedDir, paths: Iterable[str]) -> dict[str, int]:
        """``{path: number of asset events}`` for the given files (0 for a file without any)."""
        counts = self.event_counts(where)
        return {path: counts[path] for path in paths}

    def files_with_events(self, where: WatchedDir, prefix: str) -> int:
        """How many files named ``<prefix>*`` have at least one asset event: one cheap query,
        to poll while thousands of events arrive."""
        start = f"{where.path / prefix}"
        rows = self.deployment.query(
            "SELECT COUNT(DISTINCT json_extract(extra, '$.payload.path')) FROM asset_event "
            "WHERE asset_id = ? AND substr(json_extract(extra, '$.payload.path'), 1, ?) = ?",
            where.asset_id,
            len(start),
            start,
        )
        return int(rows[0][0])

    # -- the consumer DAG ----------------------------------------------------------------------

    def wait_consumed(
        self, event_ids: set[int], timeout: float = 480, nudge_every: float = 5
    ) -> dict[int, str]:
        """Wait until successful runs of the consumer DAG consumed every event in ``event_ids``.

        In Airflow 3.3.2 an asset event stored while a run for the asset is already queued is
        left out of that run and queues no other: the next event's run takes it. So while some
        are not consumed yet, a new file is dropped every ``nudge_every`` seconds (named
        ``nudge-*``, and fired like any other) to give them that next run.

        Returns:
            ``{event id: run id}``; fails if an event was consumed by two runs, or if a run's
            task reported paths other than those of the events it consumed.
        """

        last_nudge = time.monotonic()

        def probe() -> dict[int, str] | None:
            nonlocal last_nudge
            consumed: dict[int, str] = {}
            for run in self.deployment.dag_runs(CONSUMER_DAG):
                if run["state"] != "success":
                    continue
                ids = self._consumed_by(run["dag_run_id"])
                for event_id in ids:
                    if event_id in consumed:
                        raise DeploymentError(
                            f"asset event {event_id} consumed by two runs: {consumed[event_id]}, "
                            f"{run['dag_run_id']}"
                        )
                    consumed[event_id] = run["dag_run_id"]
            if event_ids <= consumed.keys():
                return consumed
            if time.monotonic() - last_nudge >= nudge_every:
                self.drop_one(self.landing, f"nudge-{next(self._barriers):03d}")
                last_nudge = time.monotonic()
            return None

        what = f"runs of {CONSUMER_DAG} consuming {len(event_ids)} events"
        return self.deployment.wait_for(what, probe, timeout)

    def _consumed_by(self, run_id: str) -> list[int]:
        """The ids of the events a successful run consumed, checked against what its task saw."""
        if run_id not in self._consumed:
            events = self.deployment.upstream_asset_events(CONSUMER_DAG, run_id)
            ids = sorted(int(e["id"]) for e in events)
            expected = sorted(e["extra"]["payload"]["path"] for e in events)
            reported = self.deployment.xcom(CONSUMER_DAG, run_id, CONSUMER_TASK)
            if reported != expected:
                raise DeploymentError(
                    f"run {run_id} consumed events for {expected}, but its task saw {reported}"
                )
            self._consumed[run_id] = ids
        return self._consumed[run_id]

    # -- the triggerer -------------------------------------------------------------------------

    def spare_triggerer(self) -> None:
        """Start the next triggerer now, beside the running one, unless it is started already.

        A triggerer takes seconds to start (imports, database, its trigger runner): started ahead,
        while a scenario drops files and waits, the replacement is warm when the running one is
        stopped or killed, and takes its triggers over as soon as Airflow lets it (see
        :meth:`AirflowDeployment.start_spare`). Until then it runs no trigger.

        It is started only once the running triggerer holds every watcher's trigger: started
        while the triggers pass from a stopped or killed triggerer to the running one, the spare
        could take some of them itself, and the scenario would watch (and kill) the wrong process.
        """
        self.deployment.wait_for("the running triggerer to hold every watcher's trigger", self._held)
        if not self.deployment.has_spare("triggerer"):
            self._before_spare = self._triggerer_jobs()
            self.deployment.start_spare("triggerer")

    def _held(self) -> bool:
        holders = self.holders()
        return None not in holders and not holders & self._gone

    def holders(self) -> set[int | None]:
        """The job ids of the triggerers holding the watchers' triggers (``None``: not assigned)."""
        rows = self.deployment.query(
            "SELECT t.triggerer_id FROM trigger t JOIN asset_watcher w ON w.trigger_id = t.id"
        )
        return {row[0] for row in rows}

    def _triggerer_jobs(self) -> set[int]:
        return {row[0] for row in self.deployment.query("SELECT id FROM job WHERE job_type = 'TriggererJob'")}

    def _leaving(self) -> None:
        """Remember the running triggerer's job as gone: it is being stopped or killed.

        That is every triggerer job started before the spare, not the jobs holding the triggers
        now: on a loaded machine the running triggerer's heartbeat can be late by more than
        ``triggerer_health_check_threshold``, and the warm spare then takes some triggers over
        while the running one is alive; its job must not count as gone.
        """
        self._gone |= self._before_spare

    def restart_triggerer(self) -> None:
        """Stop the triggerer gracefully (SIGTERM); the spare (started now if none is) takes over."""
        self.spare_triggerer()
        self._leaving()
        self.deployment.stop("triggerer")

    def kill_triggerer_when(self, condition: Callable[[], bool], timeout: float = 360) -> None:
        """SIGKILL the triggerer's process group as soon as ``condition()`` holds (polled every 2 ms).

        The spare (started now if none is) takes the killed one's triggers over once its heartbeat
        is ``triggerer_health_check_threshold`` seconds old, as a restarted triggerer would.
        """
        self.spare_triggerer()
        self._leaving()  # the running triggerer holds every trigger (see spare_triggerer)
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise DeploymentError(f"timed out after {timeout:.0f} s waiting to kill the triggerer")
            time.sleep(0.002)
        self.deployment.kill("triggerer")
