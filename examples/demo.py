"""``make demo``: a persisted watermark at work, on a real directory, in a few seconds.

Runs :class:`examples.local_files.NewFilesTrigger` outside Airflow, the way the triggerer would
(``async for event in trigger.run()``), with the default store: SQLite at
``$AIRFLOW_HOME/stateful.db``. Unless ``AIRFLOW_HOME`` is already set, it points at
``<workdir>/airflow-home`` so the demo never writes into your ``~/airflow``.

Phases, each checked (the exit status is 1 if a count is off):

1. three files land; a fresh trigger emits one event per file (3 events);
2. "restart": a new trigger instance, nothing new: the old files stay quiet (0 events);
3. two new files land and an old one is rewritten: exactly those fire (3 events);
4. the stored watermark is printed, with where it lives.

Every run starts clean (the landing directory and the demo's watermark are deleted first) and
stamps file mtimes explicitly, so it prints the same output every time.

Usage::

    python examples/demo.py [--workdir DIR] [--reset]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from examples.local_files import NewFilesTrigger

REPO = Path(__file__).resolve().parents[1]
POLL_INTERVAL = 0.2
# Only a safety net: each phase stops once the trigger completed three poll cycles.
IDLE_TIMEOUT = 30.0
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
    from stateful.backends._default import choose_default_backend
    from stateful.types import Watermark

    _show_stateful_logs()
    choice = choose_default_backend()
    store = choice.backend
    trigger_name = NewFilesTrigger(str(landing)).glob  # the watermark's name

    # Start clean: the same output on every run.
    shutil.rmtree(landing, ignore_errors=True)
    landing.mkdir(parents=True)
    store.delete("files", trigger_name, "watermark")

    print("airflow-stateful demo: NewFilesTrigger on a real directory, outside Airflow")
    print(f"  landing directory : {landing}")
    print(f"  state store       : {store.description}")
    print(f"                      chosen by: {choice.reason}")
    if home_was_set:
        print(f"                      (AIRFLOW_HOME was already set: {os.environ['AIRFLOW_HOME']})")
    print(f"  watermark         : namespace 'files', name '{trigger_name}', lookback {LOOKBACK}")
    print(f"  serialize()       : {NewFilesTrigger(str(landing), poll_interval=POLL_INTERVAL).serialize()}")
    print("  File mtimes are stamped explicitly (like `touch -d`) so every run prints the same output.")

    failures: list[str] = []

    def check(phase: str, events: list[dict[str, Any]], expected: int, meaning: str) -> None:
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
    events = _run_trigger(NewFilesTrigger(str(landing), poll_interval=POLL_INTERVAL), workdir)
    check("phase 1", events, 3, "one event per file")

    print()
    print('Phase 2: "restart": a new trigger instance, nothing new in the directory')
    events = _run_trigger(NewFilesTrigger(str(landing), poll_interval=POLL_INTERVAL), workdir)
    check("phase 2", events, 0, "the files already emitted stay quiet")

    print()
    print("Phase 3: two new files land and orders-001.csv is rewritten; another new instance")
    _drop(landing, "orders-004.csv", "id,amount\n5,50\n", T0 + timedelta(minutes=5))
    _drop(landing, "orders-005.csv", "id,amount\n6,60\n", T0 + timedelta(minutes=5, seconds=10))
    _drop(landing, "orders-001.csv", "id,amount\n1,11\n", T0 + timedelta(minutes=5, seconds=20), "rewrite")
    events = _run_trigger(NewFilesTrigger(str(landing), poll_interval=POLL_INTERVAL), workdir)
    check("phase 3", events, 3, "the new files and the rewritten one, nothing else")

    print()
    print("Phase 4: the stored watermark")
    record = store.read("files", trigger_name, "watermark")
    if record is None:
        print("  nothing stored!")
        failures.append("phase 4: no watermark stored")
    else:
        watermark = Watermark.from_state_json(record.value)
        print(f"  where   : {store.description}, table {store.table_name}")
        print(f"            row (namespace, name, key) = ('files', '{trigger_name}', 'watermark')")
        print(f"  version : {record.version} (one compare-and-set write per event taken)")
        print(f"  summary : {watermark.summary()}")
        print("  JSON    :")
        for line in json.dumps(json.loads(record.value), indent=2).splitlines():
            print(f"    {line}")
        print(
            "  The old orders-001.csv key stays in `seen` until it is more than the lookback "
            f"({LOOKBACK}) older than the newest file; `seen` holds only the keys inside that window."
        )

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


def _run_trigger(trigger: NewFilesTrigger, workdir: Path) -> list[dict[str, Any]]:
    """Drive ``trigger.run()`` until it completed three poll cycles; print and return the payloads."""
    from examples._drive import drive

    # Three cycles: the first observes the files, the second emits those that held still since,
    # the third proves nothing more is pending.
    result = asyncio.run(
        drive(
            trigger.run(), until=lambda: trigger.polls >= trigger.stable_polls + 1, idle_timeout=IDLE_TIMEOUT
        )
    )
    if result.reason != "until":
        print(f"  (stopped early: {result.reason})")
    payloads: list[dict[str, Any]] = [event.payload for event in result.events]
    for payload in payloads:
        path = Path(payload["path"]).relative_to(workdir)
        print(f"  event   {path!s:<23} mtime {payload['mtime']}  size {payload['size']}")
    return payloads


def _show_stateful_logs() -> None:
    """Print what ``@stateful`` logs (load and start), indented under the current phase."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  log     %(message)s"))
    logger = logging.getLogger("stateful")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
