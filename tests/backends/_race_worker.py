"""Read-modify-write increments with retry on conflict; also run as a process by the race tests.

Usage: ``python -m tests.backends._race_worker URL TABLE COUNT``. The process prints ``ready``,
waits for a line on stdin (so that every process starts at once), increments the counter
COUNT times and prints the number of conflicts it retried as JSON.
"""

from __future__ import annotations

import json
import sys

from stateful.backends import SqlBackend, StateBackend
from stateful.errors import StateConflictError

NAMESPACE, NAME, KEY = "race", "counter", "watermark"
_MAX_ATTEMPTS = 10_000


def increment(store: StateBackend) -> int:
    """Add one to the counter; return how many conflicts were retried."""
    for attempt in range(_MAX_ATTEMPTS):
        record = store.read(NAMESPACE, NAME, KEY)
        current = 0 if record is None else int(json.loads(record.value))
        try:
            store.write(
                NAMESPACE,
                NAME,
                KEY,
                json.dumps(current + 1),
                expected_version=None if record is None else record.version,
            )
        except StateConflictError:
            continue
        return attempt
    raise AssertionError(f"no increment succeeded in {_MAX_ATTEMPTS} attempts")


def main(argv: list[str]) -> None:
    url, table, count = argv[0], argv[1], int(argv[2])
    store = SqlBackend(url, table_name=table)  # first use (engine, table) only after "go"
    print("ready", flush=True)
    sys.stdin.readline()
    conflicts = sum(increment(store) for _ in range(count))
    store.dispose()
    print(json.dumps({"conflicts": conflicts}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
