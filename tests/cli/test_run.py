"""`stateful run`: a @stateful trigger driven outside Airflow, stopped cleanly however it stops."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stateful._links import docs_url
from stateful.types import Watermark
from tests import triggers
from tests.cli.conftest import WM, Cli, OpenTerminal

NUMBERS = "tests.triggers:Numbers"
#: A deadlock guard, not a measure: a ``stateful run`` that imports Airflow takes 45 s to print its
#: first line at a load average of 9 on two cores, and longer under CI's heavier load.
PROCESS_TIMEOUT = 240


def kwargs(**values: Any) -> str:
    return json.dumps(values)


def counter(cli: Cli, url: str | None = None) -> tuple[int, int | None] | None:
    record = cli.store(url).read("numbers", "counter", WM)
    if record is None:
        return None
    return record.version, Watermark[int].from_state_json(record.value).cursor


def read_json_lines(
    proc: subprocess.Popen[str], until: str, count: int, timeout: float = PROCESS_TIMEOUT
) -> list[dict[str, Any]]:
    """Read JSON lines from a running ``stateful run --json`` until ``count`` lines of type ``until``.

    Reads the pipe's file descriptor directly: ``select`` on a buffered reader would wait for new
    bytes while whole lines already sit in its buffer (lines that arrived together in one chunk).
    Returns exactly the lines up to the ``count``-th one; the rest stays in the pipe for the caller.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[dict[str, Any]] = []
    pending = b""
    deadline = time.monotonic() + timeout
    while sum(1 for line in lines if line["type"] == until) < count:
        if b"\n" not in pending:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {count} {until!r} lines in time; got {lines}")
            chunk = os.read(fd, 1)  # one byte at a time: nothing past the last wanted line is taken
            if not chunk:
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"the command ended early ({proc.wait()}): {lines} {err}")
            pending += chunk
            continue
        text, pending = pending.split(b"\n", 1)
        lines.append(json.loads(text))
    return lines


def test_prints_each_event_and_each_save_and_stops_after_max_events(cli: Cli) -> None:
    result = cli("run", NUMBERS, "--kwargs", kwargs(total=10), "--max-events", "3")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"run      {NUMBERS} against SqlBackend({cli.url}) "
        f"(chosen by: environment variable STATEFUL_DATABASE_URL)"
    )
    assert lines[1] == "loaded   numbers/counter: nothing stored yet, starting empty"
    assert lines[2:8] == [
        'event 1   {"n": 1}',
        "saved    version 1: timestamp=null, cursor=1, seen=0 keys",
        'event 2   {"n": 2}',
        "saved    version 2: timestamp=null, cursor=2, seen=0 keys",
        'event 3   {"n": 3}',
        "saved    version 3: timestamp=null, cursor=3, seen=0 keys",
    ]
    assert lines[8] == "stopped after --max-events 3: 3 events taken; stored version 3"
    assert counter(cli) == (3, 3)  # every event printed was saved, the 4th was not taken


def test_a_restart_resumes_from_the_saved_watermark_until_the_trigger_returns(cli: Cli) -> None:
    first = cli("run", NUMBERS, "--kwargs", kwargs(total=5), "--max-events", "2", "--json")
    second = cli("run", NUMBERS, "--kwargs", kwargs(total=5), "--json")

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert [line["type"] for line in first.lines()] == [
        "start",
        "loaded",
        "event",
        "saved",
        "event",
        "saved",
        "stopped",
    ]
    lines = second.lines()
    loaded = lines[1]
    assert (loaded["type"], loaded["version"], loaded["cursor"]) == ("loaded", 2, 2)
    assert [line["payload"]["n"] for line in lines if line["type"] == "event"] == [3, 4, 5]
    assert lines[-1] == {"type": "stopped", "reason": "returned", "events": 3, "version": 5, "dry_run": False}
    assert counter(cli) == (5, 5)
    assert first.stderr == second.stderr == ""


def test_dry_run_loads_but_never_saves(cli: Cli) -> None:
    cli.seed("numbers", "counter", Watermark[int](cursor=2))

    result = cli("run", NUMBERS, "--kwargs", kwargs(total=4), "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "loaded   numbers/counter version 1: timestamp=null, cursor=2, seen=0 keys" in result.stdout
    assert (
        "would save version 2: timestamp=null, cursor=3, seen=0 keys (dry run: not written)" in result.stdout
    )
    assert "would save version 3: timestamp=null, cursor=4" in result.stdout
    assert "stored version 3 (dry run: nothing written)" in result.stdout
    assert counter(cli) == (1, 2)


@pytest.mark.parametrize(
    ("signum", "code", "reason"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_and_sigterm_stop_cleanly_saving_nothing_past_the_last_event(
    cli: Cli, signum: int, code: int, reason: str
) -> None:
    # After 3 events the trigger advances to 4 without emitting it, then waits: that must
    # never reach the store.
    proc = cli.popen("run", NUMBERS, "--kwargs", kwargs(total=3, hold=True), "--json")
    try:
        lines = read_json_lines(proc, "saved", 3)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += [json.loads(line) for line in out.splitlines()]

    assert proc.returncode == code, err
    assert lines[-1] == {"type": "stopped", "reason": reason, "events": 3, "version": 3, "dry_run": False}
    assert counter(cli) == (3, 3)
    assert "Traceback" not in err


def test_status_line_and_ctrl_c_on_a_terminal(cli: Cli, terminal: OpenTerminal) -> None:
    term = terminal("run", NUMBERS, "--kwargs", kwargs(total=2, hold=True))
    term.read_until("saved    version 2")
    term.read_until("waiting for events: 2 taken, last saved version 2 (Ctrl-C stops)")
    term.type("\x03")  # Ctrl-C: the terminal sends SIGINT

    assert term.wait() == 130
    assert "interrupted (Ctrl-C): 2 events taken; stored version 2" in term.screen
    assert counter(cli) == (2, 2)


def test_timeout_stops_a_waiting_trigger(cli: Cli) -> None:
    result = cli("run", NUMBERS, "--kwargs", kwargs(total=1, hold=True), "--timeout", "0.5", "--json")

    assert result.returncode == 0, result.stderr
    assert result.lines()[-1]["reason"] == "timeout"
    assert counter(cli) == (1, 1)


def test_a_change_by_someone_else_while_running_is_a_version_conflict(cli: Cli, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    running = cli.start("run", NUMBERS, "--kwargs", kwargs(total=3, gate=str(gate)), "--json")
    store, deadline = cli.store(), time.monotonic() + 60
    while (record := store.read("numbers", "counter", WM)) is None or record.version != 1:
        # Until the first event was taken and saved; then the run waits at the gate.
        assert running.running and time.monotonic() < deadline, "the first save did not happen"
        time.sleep(0.02)
    cli.seed("numbers", "counter", Watermark[int](cursor=100))  # an operator, or a second runner
    gate.with_name("gate.2").touch()
    result = running.result()

    assert result.returncode == 3, result.stderr
    assert [line["type"] for line in result.lines()][:4] == ["start", "loaded", "event", "saved"]
    err = result.stderr
    assert "state numbers/counter (key 'watermark')" in err and "expected version 1, found version 2" in err
    assert "Nothing was written" in err
    assert counter(cli) == (2, 100)


def test_a_failing_trigger_keeps_what_was_taken(cli: Cli) -> None:
    result = cli("run", NUMBERS, "--kwargs", kwargs(total=5, fail_at=3))

    assert result.returncode == 1
    assert "RuntimeError: the source failed at 3" in result.stderr
    assert 'event 2   {"n": 2}' in result.stdout
    assert counter(cli) == (2, 2)


def test_a_stored_watermark_that_does_not_validate_stops_the_run(cli: Cli) -> None:
    cli.store().write(
        "numbers",
        "counter",
        WM,
        '{"cursor":"x","schema_version":1,"seen":{},"timestamp":null}',
        expected_version=None,
    )

    result = cli("run", NUMBERS, "--kwargs", kwargs(total=5))

    assert result.returncode == 1
    assert "does not validate as" in result.stderr and "stateful show numbers counter" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.triggers:Plain"], "tests.triggers:Plain.run() is not decorated with @stateful"),
        (["tests.triggers:Plain"], f"(see {docs_url('cli', 'stateful-run')})"),
        ([NUMBERS, "--kwargs", "{total: 3}"], "--kwargs is not valid JSON"),
        ([NUMBERS, "--kwargs", "[3]"], "--kwargs must be a JSON object"),
        ([NUMBERS, "--kwargs", '{"totl": 3}'], "cannot create tests.triggers:Numbers from --kwargs"),
        (["tests.cli.nowhere:Numbers"], "cannot import module 'tests.cli.nowhere'"),
        (["tests.triggers:Nothing"], "module 'tests.triggers' has no attribute 'Nothing'"),
        (["tests.triggers"], "expected MODULE:NAME"),
        (["tests.triggers:OrdersState"], "is not decorated with @stateful"),
        ([NUMBERS, "--max-events", "0"], "Invalid value for '--max-events'"),
    ],
)
def test_bad_input_is_a_clear_error(cli: Cli, args: list[str], message: str) -> None:
    result = cli("run", *args)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert counter(cli) is None


def test_database_url_overrides_and_a_trigger_may_name_its_own_store(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    own = f"sqlite:///{tmp_path / 'own.db'}"
    monkeypatch.setattr(triggers, "OwnStore", triggers.own_store_trigger(own), raising=False)

    overridden = cli("run", NUMBERS, "--kwargs", kwargs(total=1), "--database-url", other)
    by_decorator = cli("run", "tests.triggers:OwnStore")

    assert overridden.returncode == by_decorator.returncode == 0, overridden.stderr + by_decorator.stderr
    assert "(chosen by: --database-url)" in overridden.stdout
    assert counter(cli, other) == (1, 1) and counter(cli) is None
    assert (
        f"against SqlBackend({own}) (chosen by: the trigger's @stateful(backend=...))" in by_decorator.stdout
    )
    assert cli.store(own).read("own", "store", WM) is not None
