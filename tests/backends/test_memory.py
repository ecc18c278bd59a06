"""MemoryBackend specifics (the shared behaviour is in test_contract.py), and the package exports."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import stateful.backends
from stateful.backends import MemoryBackend
from tests.backends._race_worker import KEY, NAME, NAMESPACE, increment


def test_exports() -> None:
    assert stateful.backends.__all__ == sorted(stateful.backends.__all__)
    assert set(stateful.backends.__all__) == {
        "AsyncStateBackend",
        "MemoryBackend",
        "NativeBackend",
        "SqlBackend",
        "StateBackend",
        "StateRecord",
    }


def test_description_and_repr() -> None:
    assert MemoryBackend().description == "MemoryBackend"
    assert repr(MemoryBackend()) == "MemoryBackend()"


def test_instances_do_not_share_state() -> None:
    first, second = MemoryBackend(), MemoryBackend()
    first.write("ns", "name", "key", "{}", expected_version=None)
    assert second.read("ns", "name", "key") is None


def test_concurrent_increments_lose_nothing() -> None:
    store = MemoryBackend()
    workers, per_worker = 8, 200
    barrier = threading.Barrier(workers)

    def work(_: int) -> None:
        barrier.wait()
        for _ in range(per_worker):
            increment(store)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(workers)))

    record = store.read(NAMESPACE, NAME, KEY)
    assert record is not None
    assert (json.loads(record.value), record.version) == (workers * per_worker, workers * per_worker)
