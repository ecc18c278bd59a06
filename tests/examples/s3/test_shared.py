"""examples/s3_shared.py: several prefixes as several watchers, one listing, against a real S3 API.

The watchers run in Airflow 3.3's real ``TriggerRunner`` (its shared-stream manager groups them);
the S3 API is moto's server over HTTP on localhost, which logs each request it serves: the test
counts the ``ListObjectsV2`` requests for its bucket there. The watermarks are in a SQLite file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from examples.s3_shared import SharedS3PrefixTrigger
from stateful.backends import SqlBackend
from stateful.types import Watermark
from tests._streams import Triggerer
from tests._triggerer import until
from tests.examples.s3.conftest import Bucket

pytestmark = pytest.mark.airflow_min("3.3", reason="shared streams")

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
PREFIXES = ("orders/", "refunds/", "customers/")


class ListRequests(logging.Handler):
    """Counts the ``ListObjectsV2`` requests the server logs for one bucket."""

    def __init__(self, bucket: str) -> None:
        super().__init__()
        self.bucket = bucket
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if f"GET /{self.bucket}?" in message and "list-type=2" in message:
            self.count += 1


@pytest.fixture
def list_requests(bucket: Bucket) -> Iterator[ListRequests]:
    server_log = logging.getLogger("werkzeug")
    handler, level = ListRequests(bucket.name), server_log.level
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    yield handler
    server_log.removeHandler(handler)
    server_log.setLevel(level)


def watchers(bucket: Bucket) -> list[SharedS3PrefixTrigger]:
    return [
        SharedS3PrefixTrigger(
            bucket.name, prefix, endpoint_url=bucket.server.endpoint_url, poll_interval=0.05
        )
        for prefix in PREFIXES
    ]


def keys(triggerer: Triggerer, trigger_id: int) -> list[str]:
    return [obj["key"] for payload in triggerer.payloads(trigger_id) for obj in payload["objects"]]


def stored(store_url: str, bucket: Bucket, prefix: str) -> Watermark | None:
    store = SqlBackend(store_url)
    try:
        record = store.read("s3", f"{bucket.name}/{prefix}", "watermark")
    finally:
        store.dispose()
    return None if record is None else Watermark.from_state_json(record.value)


def done(store_url: str, bucket: Bucket, expected: dict[str, int]) -> bool:
    """Whether each prefix's stored watermark holds its expected number of objects."""
    for prefix, count in expected.items():
        watermark = stored(store_url, bucket, prefix)
        if watermark is None or len(watermark.seen) != count:
            return False
    return True


async def test_one_listing_serves_every_prefix_each_with_its_own_watermark(
    bucket: Bucket, list_requests: ListRequests, store_url: str
) -> None:
    for n, prefix in enumerate(PREFIXES):
        for i in range(n + 1):
            bucket.put(f"{prefix}{i}.csv", at=T0 + timedelta(seconds=i))
    bucket.put("elsewhere/x.csv", at=T0)
    triggerer = Triggerer()
    triggers = watchers(bucket)
    for trigger_id, trigger in enumerate(triggers, start=1):
        triggerer.start(trigger_id, trigger)
    await until(lambda: done(store_url, bucket, {"orders/": 1, "refunds/": 2, "customers/": 3}))
    assert keys(triggerer, 1) == ["orders/0.csv"]
    assert keys(triggerer, 2) == ["refunds/0.csv", "refunds/1.csv"]
    assert keys(triggerer, 3) == ["customers/0.csv", "customers/1.csv", "customers/2.csv"]

    # New objects under one prefix: that watcher alone emits and saves.
    bucket.put("refunds/2.csv", at=T0 + timedelta(seconds=5))
    await until(lambda: done(store_url, bucket, {"refunds/": 3}))
    assert keys(triggerer, 2)[-1] == "refunds/2.csv"
    assert len(keys(triggerer, 1)) == 1 and len(keys(triggerer, 3)) == 3
    await until(lambda: sum(t.polls for t in triggers) >= 5)
    await triggerer.stop()

    # One watcher lists, for all three: one ListObjectsV2 per listing (one page each).
    assert sorted(t.polls > 0 for t in triggers) == [False, False, True]
    listings = sum(t.polls for t in triggers)
    assert listings <= list_requests.count <= listings + 1  # + a listing cut short by the stop


async def test_a_restart_resumes_each_prefix_from_its_own_watermark(bucket: Bucket, store_url: str) -> None:
    for prefix in PREFIXES:
        bucket.put(f"{prefix}a.csv", at=T0)
    first = Triggerer()
    for trigger_id, trigger in enumerate(watchers(bucket), start=1):
        first.start(trigger_id, trigger)
    await until(lambda: done(store_url, bucket, dict.fromkeys(PREFIXES, 1)))
    await first.stop()

    bucket.put("orders/b.csv", at=T0 + timedelta(seconds=1))
    bucket.put("customers/b.csv", at=T0 + timedelta(seconds=1))
    second = Triggerer()
    for trigger_id, trigger in enumerate(watchers(bucket), start=1):
        second.start(trigger_id, trigger)
    await until(lambda: done(store_url, bucket, {"orders/": 2, "refunds/": 1, "customers/": 2}))
    assert keys(second, 1) == ["orders/b.csv"]
    assert keys(second, 2) == []
    assert keys(second, 3) == ["customers/b.csv"]
    await second.stop()
