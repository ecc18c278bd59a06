"""examples/s3.py: NewS3ObjectsTrigger against a real S3 API server (moto, HTTP on localhost).

Each "run" below is one trigger instance driven like the triggerer drives it, in its own event
loop, until it has completed two poll cycles (the first emits what is there, the second proves
nothing more is pending). A new instance on the same bucket and prefix is a triggerer restart.
The watermark is kept in a real SQLite store.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger

from examples.s3 import LOOKBACK, NewS3ObjectsTrigger
from stateful.backends import SqlBackend
from stateful.testing import run_trigger
from stateful.types import Watermark
from tests._triggerer import Triggerer, strip_key, until
from tests.examples.s3.conftest import Bucket, add_connection

pytestmark = pytest.mark.airflow_min("3.1", reason="the examples use airflow.sdk.BaseHook and DAG bundles")

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
POLL = 0.02


def trigger(bucket: Bucket, prefix: str = "", **options: Any) -> NewS3ObjectsTrigger:
    options.setdefault("endpoint_url", bucket.server.endpoint_url)
    return NewS3ObjectsTrigger(bucket.name, prefix, poll_interval=POLL, **options)


def run(
    bucket: Bucket, prefix: str = "", *, max_events: int | None = None, polls: int = 2, **options: Any
) -> list[dict[str, Any]]:
    """One trigger instance: drive it until ``polls`` poll cycles are done; return the payloads."""
    instance = trigger(bucket, prefix, **options)
    result = asyncio.run(
        run_trigger(
            instance,
            until=lambda: instance.polls >= polls,
            idle_timeout=120,
            # With max_events: the next event is handed over, then the triggerer stops before its save.
            max_events=None if max_events is None else max_events + 1,
            crash=None if max_events is None else "before_save",
        )
    )
    assert result.reason == ("until" if max_events is None else "crash")
    return [strip_key(event.payload) for event in result.events]


def keys(payloads: list[dict[str, Any]]) -> list[str]:
    """The keys of the objects in ``payloads``, in emission order."""
    return [obj["key"] for payload in payloads for obj in payload["objects"]]


def stored(url: str, bucket: Bucket, prefix: str = "") -> tuple[Watermark, int]:
    """The watermark as stored in the SQLite file, and the size of its JSON in bytes."""
    store = SqlBackend(url)
    try:
        record = store.read("s3", f"{bucket.name}/{prefix}", "watermark")
    finally:
        store.dispose()
    assert record is not None
    return Watermark.from_state_json(record.value), len(record.value.encode())


def test_one_event_per_object_oldest_first(bucket: Bucket) -> None:
    etag_b = bucket.put("b.csv", b"bb", at=T0 + timedelta(seconds=1))
    etag_c = bucket.put("c.csv", b"c", at=T0)
    bucket.put("a.csv", b"aaa", at=T0 + timedelta(seconds=2))

    payloads = run(bucket)

    assert keys(payloads) == ["c.csv", "b.csv", "a.csv"]
    assert payloads[:2] == [
        {
            "bucket": bucket.name,
            "prefix": "",
            "objects": [
                {
                    "uri": f"s3://{bucket.name}/c.csv",
                    "bucket": bucket.name,
                    "key": "c.csv",
                    "etag": etag_c,
                    "size": 1,
                    "last_modified": "2025-06-02T09:00:00+00:00",
                }
            ],
        },
        {
            "bucket": bucket.name,
            "prefix": "",
            "objects": [
                {
                    "uri": f"s3://{bucket.name}/b.csv",
                    "bucket": bucket.name,
                    "key": "b.csv",
                    "etag": etag_b,
                    "size": 2,
                    "last_modified": "2025-06-02T09:00:01+00:00",
                }
            ],
        },
    ]
    json.dumps(payloads)  # asset events store the payload as JSON


def test_watermark_is_last_modified_and_seen_holds_key_at_etag(bucket: Bucket, store_url: str) -> None:
    etag = bucket.put("a.csv", at=T0)

    run(bucket)

    watermark, _ = stored(store_url, bucket)
    assert watermark.timestamp == T0
    assert set(watermark.seen) == {f"a.csv@{etag}"}


def test_restart_emits_nothing_already_emitted(bucket: Bucket) -> None:
    for i in range(3):
        bucket.put(f"{i}.csv", at=T0 + timedelta(seconds=i))
    assert len(run(bucket)) == 3

    assert run(bucket) == []
    assert run(bucket) == []


def test_same_second_ties_across_a_restart(bucket: Bucket) -> None:
    # LastModified has whole seconds: objects written together share it.
    bucket.put("a.csv", at=T0)
    bucket.put("b.csv", at=T0)
    assert bucket.last_modified("a.csv") == bucket.last_modified("b.csv") == T0
    assert keys(run(bucket)) == ["a.csv", "b.csv"]

    bucket.put("c.csv", at=T0)  # lands after the restart, in the second already emitted

    assert keys(run(bucket)) == ["c.csv"]
    assert run(bucket) == []


def test_ties_on_real_time_fire_each_object_once(bucket: Bucket) -> None:
    # No clock set: the server stamps the real time, several objects per second.
    for i in range(20):
        bucket.put(f"{i:02d}.csv")
    first = keys(run(bucket))
    for i in range(20, 25):
        bucket.put(f"{i:02d}.csv")

    second = keys(run(bucket))

    assert sorted(first) == [f"{i:02d}.csv" for i in range(20)]
    assert sorted(second) == [f"{i:02d}.csv" for i in range(20, 25)]


@pytest.mark.parametrize("when", ["later", "same-second"])
def test_an_overwrite_fires_exactly_one_new_event(bucket: Bucket, when: str) -> None:
    bucket.put("report.csv", b"v1", at=T0)
    bucket.put("other.csv", at=T0)
    assert len(run(bucket)) == 2

    etag = bucket.put("report.csv", b"v2, longer", at=T0 + timedelta(minutes=1) if when == "later" else T0)

    (payload,) = run(bucket)
    (obj,) = payload["objects"]
    assert (obj["key"], obj["etag"], obj["size"]) == ("report.csv", etag, len(b"v2, longer"))
    assert run(bucket) == []


def test_late_object_inside_the_lookback_fires_one_outside_is_a_known_miss(bucket: Bucket) -> None:
    lookback = timedelta(minutes=10)
    bucket.put("newest.csv", at=T0)
    assert keys(run(bucket, lookback=lookback)) == ["newest.csv"]

    # Slow uploads: S3 stamps LastModified when an upload starts and lists the object when it
    # completes, after newer objects were emitted.
    bucket.put("late.csv", at=T0 - lookback / 2)
    # KNOWN MISS: listed more than the lookback after its upload started, it never fires. The
    # watermark (T0) minus the lookback is past its LastModified. That is the documented price
    # of a bounded watermark; raise the lookback above your longest upload.
    bucket.put("too-late.csv", at=T0 - lookback - timedelta(seconds=1))

    assert keys(run(bucket, lookback=lookback)) == ["late.csv"]
    assert run(bucket, lookback=lookback) == []
    listed = bucket.client.list_objects_v2(Bucket=bucket.name)["Contents"]
    assert "too-late.csv" in {obj["Key"] for obj in listed}  # it is there; it was never emitted


def test_the_default_lookback_is_an_hour(bucket: Bucket) -> None:
    bucket.put("newest.csv", at=T0)
    run(bucket)
    bucket.put("late.csv", at=T0 - LOOKBACK + timedelta(seconds=1))
    bucket.put("too-late.csv", at=T0 - LOOKBACK - timedelta(seconds=1))

    assert keys(run(bucket)) == ["late.csv"]


def test_10000_objects_in_one_pass_and_the_state_stays_bounded(bucket: Bucket, store_url: str) -> None:
    lookback = timedelta(minutes=5)
    bucket.fill(10_000, at=T0)  # 10 pages of 1,000 keys, all in one second: 10,000 ties

    instance = trigger(bucket, batch_size=500, lookback=lookback)
    result = asyncio.run(run_trigger(instance, until=lambda: instance.polls >= 1, idle_timeout=300))

    # Every object arrived in the first poll cycle, once, oldest first (by key within the tie).
    emitted = keys([event.payload for event in result.events])
    assert emitted == [f"bulk/{i:05d}.csv" for i in range(10_000)]
    assert [len(event.payload["objects"]) for event in result.events] == [500] * 20
    # The state holds the keys inside the window, here all 10,000, and nothing more: each one is
    # "bulk/NNNNN.csv@<32 hex digits>" with its timestamp, about 80 bytes of JSON.
    watermark, size = stored(store_url, bucket)
    assert len(watermark.seen) == 10_000
    assert size <= 10_000 * 80 + 200
    assert run(bucket, batch_size=500, lookback=lookback) == []

    # Once the watermark moves past T0 + lookback, the 10,000 keys are pruned.
    bucket.put("next.csv", at=T0 + lookback + timedelta(seconds=1))
    assert keys(run(bucket, batch_size=500, lookback=lookback)) == ["next.csv"]
    watermark, size = stored(store_url, bucket)
    assert [key.split("@")[0] for key in watermark.seen] == ["next.csv"]
    assert size < 300


def test_batches_hold_up_to_batch_size_objects_oldest_first(bucket: Bucket) -> None:
    for i in range(7):
        bucket.put(f"{i}.csv", at=T0 + timedelta(seconds=i))

    payloads = run(bucket, batch_size=3)

    assert [[obj["key"] for obj in p["objects"]] for p in payloads] == [
        ["0.csv", "1.csv", "2.csv"],
        ["3.csv", "4.csv", "5.csv"],
        ["6.csv"],
    ]
    assert run(bucket, batch_size=3) == []


def test_a_batch_handed_over_but_not_taken_comes_again_whole(bucket: Bucket) -> None:
    for i in range(7):
        bucket.put(f"{i}.csv", at=T0 + timedelta(seconds=i))

    # The first batch is taken; the second is handed over but never taken (the triggerer stopped).
    first = run(bucket, batch_size=3, max_events=1)
    assert keys(first) == ["0.csv", "1.csv", "2.csv", "3.csv", "4.csv", "5.csv"]

    assert keys(run(bucket, batch_size=3)) == ["3.csv", "4.csv", "5.csv", "6.csv"]
    assert run(bucket, batch_size=3) == []


@pytest.mark.parametrize("same_second", [True, False], ids=["same-second", "distinct-seconds"])
def test_stop_in_the_middle_of_a_poll_repeats_never_skips(bucket: Bucket, same_second: bool) -> None:
    for i, key in enumerate(["a.csv", "b.csv", "c.csv"]):
        bucket.put(key, at=T0 if same_second else T0 + timedelta(seconds=i))

    assert keys(run(bucket, max_events=1)) == ["a.csv", "b.csv"]  # b.csv handed over, not taken

    assert keys(run(bucket)) == ["b.csv", "c.csv"]
    assert run(bucket) == []


def test_pagination_follows_every_page(bucket: Bucket) -> None:
    for i in range(7):
        bucket.put(f"{i}.csv", at=T0 + timedelta(seconds=7 - i))  # key order is not time order

    # Three keys per ListObjectsV2 request: three pages in one poll cycle.
    payloads = run(bucket, page_size=3, polls=1)

    assert keys(payloads) == [f"{i}.csv" for i in reversed(range(7))]


def test_prefix_filter_and_folder_markers(bucket: Bucket) -> None:
    bucket.put("in/a.csv", at=T0)
    bucket.put("in/sub/", b"", at=T0)  # a folder marker, as the console creates
    bucket.put("in/sub/b.csv", at=T0 + timedelta(seconds=1))
    bucket.put("inbox/c.csv", at=T0)
    bucket.put("out/d.csv", at=T0)

    assert keys(run(bucket, "in/")) == ["in/a.csv", "in/sub/b.csv"]
    # A prefix is a string prefix, not a folder; each prefix keeps its own watermark.
    assert keys(run(bucket, "in")) == ["in/a.csv", "inbox/c.csv", "in/sub/b.csv"]
    assert keys(run(bucket)) == ["in/a.csv", "inbox/c.csv", "out/d.csv", "in/sub/b.csv"]


def test_credentials_and_endpoint_from_an_airflow_connection(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket.put("a.csv", at=T0)
    add_connection(monkeypatch, "s3_landing", bucket)

    assert keys(run(bucket, aws_conn_id="s3_landing", endpoint_url=None)) == ["a.csv"]


def test_a_connection_asking_for_a_role_is_refused(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "aws", "extra": {"role_arn": "arn:aws:iam::1:role/r"}}
    monkeypatch.setenv("AIRFLOW_CONN_S3_ROLE", json.dumps(connection))

    with pytest.raises(ValueError, match=r"connection 's3_role' has extra field\(s\) \['role_arn'\]"):
        run(bucket, aws_conn_id="s3_role")


def test_a_missing_bucket_fails_clearly(bucket: Bucket) -> None:
    instance = NewS3ObjectsTrigger("no-such-bucket", "in/", endpoint_url=bucket.server.endpoint_url)

    with pytest.raises(RuntimeError) as caught:
        asyncio.run(run_trigger(instance, idle_timeout=60))

    message = str(caught.value)
    assert "listing s3://no-such-bucket/in/ failed" in message
    assert "NoSuchBucket" in message
    assert "watermark is unchanged" in message


def test_an_unreachable_endpoint_is_retried_every_poll(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries would only slow this down
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there

    assert run(bucket, endpoint_url=closed, polls=3) == []

    # Airflow's loggers write through structlog, to the captured output.
    output = capsys.readouterr()
    warnings = [line for line in (output.out + output.err).splitlines() if "retrying every poll" in line]
    assert len(warnings) == 1, warnings  # logged once, not once per poll
    assert "Could not connect to the endpoint URL" in warnings[0]


def test_no_file_is_opened_on_the_event_loop_thread(bucket: Bucket, store_url: str) -> None:
    # aiobotocore's import, botocore's JSON models, the AWS config and credential files, the
    # store: all read in worker threads. Checked with an audit hook in a fresh interpreter.
    bucket.put("a.csv", at=T0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.examples.s3._loop_files", bucket.server.endpoint_url, bucket.name],
        env={
            **env,
            "PYTHONPATH": str(ROOT),
            "AIRFLOW_HOME": str(Path(store_url[len("sqlite:///") :]).parent),
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcome = json.loads(proc.stdout.splitlines()[-1])

    assert outcome["keys"] == ["a.csv"]
    assert outcome["aiobotocore"]  # it was imported (off the loop) during the run
    # The decorator's own lazy import of its default-store module is the SDK core's business,
    # not this example's: only files outside stateful/ count here.
    core = str(ROOT / "stateful") + os.sep
    assert [path for path in outcome["opened"] if not path.startswith(core)] == []


def objects(triggerer: Triggerer) -> list[str]:
    return [obj["key"] for payload in triggerer.events for obj in payload["objects"]]


async def test_airflow_trigger_runner_restart_repeats_nothing(bucket: Bucket) -> None:
    for i in range(3):
        bucket.put(f"{i}.csv", at=T0 + timedelta(seconds=i))
    first_trigger = trigger(bucket, batch_size=2)
    first = Triggerer()
    first.start(first_trigger)
    await until(lambda: first_trigger.polls >= 1)
    await first.settled()  # a clean shutdown: Airflow stored the events, the watermark saved
    await first.stop()
    assert objects(first) == ["0.csv", "1.csv", "2.csv"]

    bucket.put("3.csv", at=T0 + timedelta(seconds=3))
    bucket.put("2.csv", b"rewritten", at=T0 + timedelta(seconds=4))
    restarted = trigger(bucket, batch_size=2)
    second = Triggerer()
    second.start(restarted)
    await until(lambda: restarted.polls >= 2)
    await second.stop()
    assert objects(second) == ["3.csv", "2.csv"]


def test_serialize_round_trips_and_hashes_for_asset_watchers(bucket: Bucket) -> None:
    instance = NewS3ObjectsTrigger(
        "landing",
        "orders/",
        aws_conn_id="aws_landing",
        endpoint_url="http://minio:9000",
        region_name="eu-west-1",
        poll_interval=30.0,
        lookback=timedelta(minutes=20),
        batch_size=100,
        page_size=500,
    )

    classpath, kwargs = instance.serialize()

    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert isinstance(rebuilt, NewS3ObjectsTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    # The triggerer identifies a watcher's trigger by this hash; it must take the kwargs as they are.
    assert BaseEventTrigger.hash(classpath, kwargs) == BaseEventTrigger.hash(*rebuilt.serialize())
    assert BaseEventTrigger.hash(classpath, kwargs) != BaseEventTrigger.hash(
        classpath, {**kwargs, "prefix": "other/"}
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bucket": ""}, "bucket must not be empty"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"page_size": 1001}, "page_size must be between 1 and 1000"),
        ({"lookback": timedelta(seconds=-1)}, "lookback must be >= timedelta"),
    ],
)
def test_bad_arguments_are_refused_at_construction(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"bucket": "landing", **options}
    with pytest.raises(ValueError, match=message):
        NewS3ObjectsTrigger(**arguments)
