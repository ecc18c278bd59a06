"""An operator's edit while the trigger runs wins cleanly: a real triggerer process, a real store.

A process runs a trigger that keeps emitting under Airflow's own ``TriggerRunner``
(``tests/cli/_ticking.py``); while it runs, ``stateful set`` moves its cursor. The running
trigger's next save loses compare-and-set: it emits nothing after that failed save, and no more
events after the edit than the documented bound (ack mode: those Airflow had not confirmed yet;
coalesced saves: ``save_batch``); the process ends with an error that names the address, the
edit (who, when, why) and what to do. Started again, the trigger continues from the edited
state: its first events are the ones the edit implies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from stateful.backends import SqlBackend
from tests._postgres import PostgresServer
from tests.cli.conftest import REPO, WM, Cli
from tests.conftest import NEEDS_AIP_103

NS, NAME = "ops", "ticker"
EDITED = 1000  # the cursor the operator sets
#: How long a process may take to start emitting (importing Airflow on a loaded machine).
START_TIMEOUT = 240


@dataclass
class Ticking:
    """The trigger's process, its output read line by line as it comes."""

    proc: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # Airflow's own log lines

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            if text.startswith("{"):
                self.lines.append(json.loads(text))
            else:
                self.other.append(text)

    @property
    def events(self) -> list[int]:
        return [line["event"] for line in list(self.lines) if "event" in line]

    def wait_for_events(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.events) < count:
            assert self.proc.poll() is None or len(self.events) >= count, self._story()
            assert time.monotonic() < deadline, (
                f"fewer than {count} events in {START_TIMEOUT} s\n{self._story()}"
            )
            time.sleep(0.05)

    def end(self, timeout: float = START_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return code

    def _story(self) -> str:
        stderr = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        return f"lines: {self.lines[-5:]}\nairflow: {''.join(self.other[-20:])}\nstderr: {stderr[-3000:]}"


def _start(cli: Cli, url: str, mode: str, max_events: int | None = None) -> Ticking:
    args = [
        sys.executable,
        "-m",
        "tests.cli._ticking",
        mode,
        *([] if max_events is None else [str(max_events)]),
    ]
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        env=cli.environment(STATEFUL_DATABASE_URL=url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Ticking(proc)


def _edit(cli: Cli, url: str) -> dict[str, Any]:
    """``stateful set --cursor 1000`` while the trigger saves: re-run it if a save came in between."""
    for _ in range(50):
        result = cli(
            "set", NS, NAME, "--cursor", str(EDITED), "--reason", "skip to 1000, INC-7", "--yes", "--json",
            "--database-url", url,
        )  # fmt: skip
        if result.returncode == 0:
            doc: dict[str, Any] = result.json()
            return doc
        assert result.returncode == 3, result.stderr  # the trigger saved between read and write
    raise AssertionError("the edit lost 50 compare-and-sets in a row")


def _url(cli: Cli, request: pytest.FixtureRequest, where: str) -> str:
    if where == "sqlite":
        return cli.url
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url


@pytest.mark.parametrize(
    ("mode", "bound", "where"),
    [
        # An asset watcher (Airflow >= 3.3): saved once Airflow confirms its events; the events
        # not confirmed yet are at most a subscriber queue (1,024 by default).
        pytest.param("ack", 1024, "sqlite", marks=NEEDS_AIP_103),
        pytest.param("ack", 1024, "postgres", marks=[NEEDS_AIP_103, pytest.mark.postgres]),
        # A deferred task's trigger: at most save_batch (4 here) taken events are not saved yet.
        ("plain", 4, "sqlite"),
    ],
)
def test_an_edit_while_the_trigger_runs_wins_and_a_restart_continues_from_it(
    cli: Cli, request: pytest.FixtureRequest, mode: str, bound: int, where: str
) -> None:
    url = _url(cli, request, where)
    running = _start(cli, url, mode)
    try:
        running.wait_for_events(20)
        edit = _edit(cli, url)
        code = running.end()
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
    replaced, edited = edit["previous_version"], edit["version"]

    # It stopped on its own, with the error naming the address, the edit and what to do.
    assert code == 1, running._story()
    error = running.lines[-1]
    assert error.get("type") == "StateConflictError", running._story()
    message = error["error"]
    assert f"state {NS}/{NAME} (key 'watermark') in SqlBackend(" in message
    assert f"found version {edited}, written " in message
    assert (
        f"by stateful set by {edit['updated_by'].split(' by ', 1)[1]} (reason: 'skip to 1000, INC-7')"
        in message
    )
    assert (
        "An operator edited it" in message and f"continues from version {edited}, the edited state" in message
    )

    # Nothing was handed over after the failed save...
    (failed,) = [line for line in running.lines if "failed" in line]
    assert failed["handed_over"] == error["handed_over"]
    assert "stops: saving ops/ticker" in failed["failed"]
    # ... and no more events after the edit than the bound: those past the version it replaced.
    store = SqlBackend(url, history_versions=100)
    try:
        versions = {r.version: r for r in store.history(NS, NAME, WM)}
        cursor_replaced = json.loads(versions[replaced].value)["cursor"]
        assert versions[edited].reason == "skip to 1000, INC-7"
        after_edit = [n for n in running.events if n > cursor_replaced]
        assert len(after_edit) <= bound, (cursor_replaced, running.events[-10:])
        assert max(running.events) < EDITED  # none of them from the edited state

        # Started again, it continues from the edited state.
        again = _start(cli, url, mode, max_events=3)
        assert again.end() == 0, again._story()
        assert again.events == [EDITED + 1, EDITED + 2, EDITED + 3]
        current = store.read(NS, NAME, WM)
        assert current is not None and current.version >= edited
    finally:
        store.dispose()


def test_an_edit_while_stateful_run_drives_the_trigger_ends_it_with_one_line(cli: Cli) -> None:
    # `stateful run` saves after each event it takes: at most one event follows the edit.
    proc = cli.popen("run", "tests.cli._ticking:PlainTicker", "--json")
    running = Ticking(proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while sum(1 for line in list(running.lines) if line.get("type") == "saved") < 10:
            assert proc.poll() is None and time.monotonic() < deadline, running._story()
            time.sleep(0.05)
        edit = _edit(cli, cli.url)
        code = running.end()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    stderr = proc.stderr.read()

    assert code == 3, stderr  # a conflict, as docs/cli.md's table of exit statuses says
    (error,) = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert error["type"] == "StateConflictError" and "Traceback" not in stderr
    assert f"found version {edit['version']}, written " in error["error"]
    assert "(reason: 'skip to 1000, INC-7')" in error["error"]
    replaced = cli.store().history(NS, NAME, WM)[1]
    assert replaced.version == edit["previous_version"]
    taken = [line["payload"]["n"] for line in running.lines if line.get("type") == "event"]
    assert len([n for n in taken if n > json.loads(replaced.value)["cursor"]]) <= 1

    again = cli.process("run", "tests.cli._ticking:PlainTicker", "--json", "--max-events", "3")
    assert again.returncode == 0, again.stderr
    assert [line["payload"]["n"] for line in again.lines() if line["type"] == "event"] == [1001, 1002, 1003]
