"""Concurrent writers on one database: compare-and-set must never lose an update.

Every test uses several independent SqlBackend instances (each with its own engine and
connections), as separate triggerers or workers would; one also uses separate OS processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stateful.backends import SqlBackend
from stateful.errors import StateConflictError
from tests.backends._race_worker import KEY, NAME, NAMESPACE, increment
from tests.backends.conftest import SqlFactory

REPO = Path(__file__).resolve().parents[2]


def _counter(store: SqlBackend) -> tuple[int, int]:
    record = store.read(NAMESPACE, NAME, KEY)
    assert record is not None
    return int(json.loads(record.value)), record.version


def test_racing_writers_from_the_same_version_exactly_one_wins(sql_factory: SqlFactory) -> None:
    first, second = sql_factory(), sql_factory()
    first.write(NAMESPACE, NAME, KEY, "0", expected_version=None)
    barrier = threading.Barrier(2)

    def attempt(store: SqlBackend, version: int, value: str) -> int | StateConflictError:
        barrier.wait()
        try:
            return store.write(NAMESPACE, NAME, KEY, value, expected_version=version)
        except StateConflictError as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        for round_ in range(20):
            version = round_ + 1
            outcomes = list(pool.map(attempt, [first, second], [version] * 2, ["first", "second"]))

            wins = [o for o in outcomes if isinstance(o, int)]
            losses = [o for o in outcomes if isinstance(o, StateConflictError)]
            assert wins == [version + 1] and len(losses) == 1
            assert (losses[0].expected_version, losses[0].actual_version) == (version, version + 1)
            # The stored value is the winner's, never a mix or the loser's.
            record = second.read(NAMESPACE, NAME, KEY)
            assert record is not None and record.version == version + 1
            winner = ["first", "second"][outcomes.index(wins[0])]
            assert record.value == winner


def test_concurrent_first_use_and_increments_lose_nothing(sql_factory: SqlFactory) -> None:
    # Fresh database: the engines are created, and the table created, while racing.
    stores = [sql_factory() for _ in range(4)]
    workers, per_worker = 8, 25
    barrier = threading.Barrier(workers)

    def work(index: int) -> int:
        store = stores[index % len(stores)]
        barrier.wait()
        return sum(increment(store) for _ in range(per_worker))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(workers)))

    total = workers * per_worker
    # One create (version 1) and total - 1 updates.
    assert _counter(stores[0]) == (total, total)


def test_processes_sharing_a_sqlite_file_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'shared.db'}"  # the directory does not exist yet
    table, processes, per_process = "stateful_process_state", 4, 30
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.backends._race_worker", url, table, str(per_process)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line == "ready\n", child.communicate()[1]
        for child in children:  # release them together
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [child.communicate() for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert "conflicts" in json.loads(out)
    store = SqlBackend(url)
    try:
        assert _counter(store) == (processes * per_process, processes * per_process)
    finally:
        store.dispose()


@pytest.mark.parametrize("workers", [2, 6])
def test_racing_creates_exactly_one_wins(sql_factory: SqlFactory, workers: int) -> None:
    stores = [sql_factory() for _ in range(workers)]
    stores[0].list()  # the table exists; only the insert races
    barrier = threading.Barrier(workers)

    def create(index: int) -> bool:
        barrier.wait()
        try:
            stores[index].write(NAMESPACE, NAME, KEY, str(index), expected_version=None)
        except StateConflictError as exc:
            assert (exc.expected_version, exc.actual_version) == (None, 1)
            return False
        return True

    with ThreadPoolExecutor(workers) as pool:
        created = list(pool.map(create, range(workers)))

    assert created.count(True) == 1
    record = stores[-1].read(NAMESPACE, NAME, KEY)
    assert record is not None and record.value == str(created.index(True))
