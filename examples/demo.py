"""``make demo``: a persisted watermark at work, on a real directory, in a few seconds.

Runs :class:`examples.local_files.NewFilesTrigger` outside Airflow with the command line,
``stateful run``, which drives the trigger the way Airflow's triggerer does, against the default
store: SQLite at ``$AIRFLOW_HOME/stateful.db``. Unless ``AIRFLOW_HOME`` is already set, it points
at ``<workdir>/airflow-home`` so the demo never writes into your ``~/airflow``.

Phases, each checked (the exit status is 1 if a count is off):

1. three files land; a fresh trigger emits one event per file (3 events);
2. "restart": a new run, nothing new: the old files stay quiet (0 events in 2 s);
3. two new files land and an old one is rewritten: exactly those fire (3 events);
4. ``stateful show --value`` prints the stored watermark.

Every run starts clean (the landing directory and the demo's watermark are deleted first) and
stamps file mtimes explicitly, so it prints the same output every time.

Usage::

    python examples/demo.py [--workdir DIR] [--reset]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRIGGER = "examples.local_files:NewFilesTrigger"
POLL_INTERVAL = 0.2
# Phase 2 expects silence: the trigger scans every POLL_INTERVAL, so this is about ten scans.
QUIET_SECONDS = 2
# The files' mtimes, stamped explicitly (as `touch -d` would) so the output is reproducible.
T0 = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit status (0 when every phase emitted what it should)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "demo-data",
        help="where the landing directory (and, unless AIRFLOW_HOME is set, the state) go "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="also delete <workdir>/airflow-home (the demo's SQLite file) before running; "
        "by default only the landing directory and the demo's own watermark are deleted",
    )
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    landing = workdir / "landing"
    demo_home = workdir / "airflow-home"

    # Before Airflow is imported: it reads AIRFLOW_HOME (and creates logs/ there) on import.
    if args.reset:
        shutil.rmtree(demo_home, ignore_errors=True)
    home_was_set = bool(os.environ.get("AIRFLOW_HOME"))
    if not home_was_set:
        os.environ["AIRFLOW_HOME"] = str(demo_home)
    sys.path.insert(0, str(REPO))  # examples/ is not an installed package

    from examples.local_files import LOOKBACK, NewFilesTrigger
    from stateful.backends.sql.default import choose_default_backend

    choice = choose_default_backend()
    store = choice.backend
    trigger_name = NewFilesTrigger(str(landing)).glob  # the watermark's name

    # Start clean: the same output on every run.
    shutil.rmtree(landing, ignore_errors=True)
    landing.mkdir(parents=True)
    store.delete("files", trigger_name, "watermark")

    print("airflow-stateful demo: NewFilesTrigger on a real directory, run by `stateful run` outside Airflow")
    print(f"  landing directory : {landing}")
    print(f"  state store       : {store.description}")
    print(f"                      chosen by: {choice.reason}")
    if home_was_set:
        print(f"                      (AIRFLOW_HOME was already set: {os.environ['AIRFLOW_HOME']})")
    print(f"  watermark         : namespace 'files', name '{trigger_name}', lookback {LOOKBACK}")
    print("  File mtimes are stamped explicitly (like `touch -d`) so every run prints the same output.")

    failures: list[str] = []

    kwargs = json.dumps({"directory": str(landing), "poll_interval": POLL_INTERVAL})

    def check(phase: str, events: list[str], expected: int, meaning: str) -> None:
        ok = len(events) == expected
        verdict = f"OK: {meaning}" if ok else "UNEXPECTED"
        print(f"  => {len(events)} event{'s' * (len(events) != 1)} (expected {expected}): {verdict}")
        if not ok:
            failures.append(f"{phase}: {len(events)} events, expected {expected}")

    print()
    print("Phase 1: three files land; a trigger starts with nothing stored")
    _drop(landing, "orders-001.csv", "id,amount\n1,10\n", T0)
    _drop(landing, "orders-002.csv", "id,amount\n2,20\n3,30\n", T0 + timedelta(seconds=10))
    _drop(landing, "orders-003.csv", "id,amount\n4,40\n", T0 + timedelta(seconds=20))
    events = _run_trigger(["--kwargs", kwargs, "--max-events", "3"])
    check("phase 1", events, 3, "one event per file, each saved once taken")

    print()
    print('Phase 2: "restart": a new trigger instance, nothing new in the directory')
    events = _run_trigger(["--kwargs", kwargs, "--timeout", str(QUIET_SECONDS)])
    check("phase 2", events, 0, "the files already emitted stay quiet")

    print()
    print("Phase 3: two new files land and orders-001.csv is rewritten; another new instance")
    _drop(landing, "orders-004.csv", "id,amount\n5,50\n", T0 + timedelta(minutes=5))
    _drop(landing, "orders-005.csv", "id,amount\n6,60\n", T0 + timedelta(minutes=5, seconds=10))
    _drop(landing, "orders-001.csv", "id,amount\n1,11\n", T0 + timedelta(minutes=5, seconds=20), "rewrite")
    events = _run_trigger(["--kwargs", kwargs, "--max-events", "3"])
    check("phase 3", events, 3, "the new files and the rewritten one")
    fired = {Path(json.loads(event.split(None, 2)[2])["path"]).name for event in events}
    if events and fired != {"orders-004.csv", "orders-005.csv", "orders-001.csv"}:
        failures.append(f"phase 3: {sorted(fired)} fired, not the new and rewritten files")

    print()
    print("Phase 4: the stored watermark")
    value = _stateful(["show", "files", trigger_name, "--value"])
    if value is None:
        failures.append("phase 4: no watermark stored")
    else:
        print(
            "  The old orders-001.csv key stays in `seen` until it is more than the lookback "
            f"({LOOKBACK}) older than the newest file; `seen` holds only the keys inside that window."
        )
    print()
    print("Look around with the command line (from the repository's directory):")
    for command in (["list"], ["show", "files", trigger_name], ["history", "files", trigger_name]):
        env = "" if home_was_set else f"AIRFLOW_HOME={shlex.quote(os.environ['AIRFLOW_HOME'])} "
        print(f"  {env}.venv/bin/stateful {shlex.join(command)}")

    print()
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("All phases behaved as expected. Run it again: it starts clean and prints the same.")
    return 0


def _drop(landing: Path, name: str, content: str, mtime: datetime, verb: str = "land") -> None:
    path = landing / name
    path.write_text(content)
    mtime_ns = (mtime - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1) * 1000
    os.utime(path, ns=(mtime_ns, mtime_ns))
    shown = mtime.strftime("%Y-%m-%d %H:%M:%SZ")
    print(f"  {verb:>7} landing/{name:<15} mtime {shown}  {len(content.encode())} bytes")


def _stateful(args: list[str]) -> list[str] | None:
    """Run ``stateful ARGS`` as a user would, print its output indented; None if it failed."""
    print(f"  $ stateful {shlex.join(args)}")
    proc = subprocess.run(
        [sys.executable, "-m", "stateful", *args],
        cwd=REPO,  # examples/ is importable from here
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stdout.splitlines()
    for line in lines:
        print(f"  {line}")
    if proc.returncode != 0:
        print(f"  (exit status {proc.returncode}) {proc.stderr.strip()}")
        return None
    return lines


def _run_trigger(args: list[str]) -> list[str]:
    """``stateful run`` the trigger; return its event lines."""
    lines = _stateful(["run", TRIGGER, *args])
    return [] if lines is None else [line for line in lines if line.startswith("event ")]


if __name__ == "__main__":
    sys.exit(main())
