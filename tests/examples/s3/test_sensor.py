"""examples/s3.py: NewS3ObjectsSensor's poke() against a real S3 API server, called directly.

What a sensor author's own unit test does: call ``poke()``, then :func:`stateful.sensors.commit`
where Airflow would run the task's success callback. The task-runner path is in test_dags.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.sdk import DAG, Context, PokeReturnValue

from examples.s3 import NewS3ObjectsSensor, NewS3ObjectsTrigger
from stateful.errors import MissingDependencyError
from stateful.sensors import commit
from stateful.testing import run_trigger
from tests.examples.s3.conftest import Bucket, add_connection

pytestmark = pytest.mark.airflow_min("3.1", reason="the examples use airflow.sdk.BaseHook and DAG bundles")

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
CONTEXT: Context = {}  # poke() reads nothing from it


def sensor(bucket: Bucket, prefix: str = "", **options: Any) -> NewS3ObjectsSensor:
    options.setdefault("endpoint_url", bucket.server.endpoint_url)
    with DAG("s3_sensor_test", schedule=None):
        return NewS3ObjectsSensor(task_id="new_objects", bucket=bucket.name, prefix=prefix, **options)


def poke(task: NewS3ObjectsSensor) -> list[str] | None:
    """One poke: the keys it reported, or None when it found nothing."""
    result = task.poke(CONTEXT)
    if not result:
        return None
    assert isinstance(result, PokeReturnValue)
    assert result.xcom_value is not None
    return [obj["key"] for obj in result.xcom_value]


def test_reports_up_to_max_objects_oldest_first_and_saves_on_success(bucket: Bucket) -> None:
    for i in range(5):
        bucket.put(f"{i}.csv", at=T0 + timedelta(seconds=4 - i))

    first = sensor(bucket, max_objects=3)
    assert poke(first) == ["4.csv", "3.csv", "2.csv"]
    assert commit(first) == 1  # what the task's success callback does

    second = sensor(bucket, max_objects=3)
    assert poke(second) == ["1.csv", "0.csv"]
    commit(second)
    assert poke(sensor(bucket)) is None


def test_a_failed_try_reports_the_same_objects_again(bucket: Bucket) -> None:
    bucket.put("a.csv", at=T0)
    failed = sensor(bucket)
    assert poke(failed) == ["a.csv"]
    # No commit: the try failed after poke() (the XCom push, the worker died...).

    retry = sensor(bucket)
    assert poke(retry) == ["a.csv"]
    commit(retry)
    assert poke(sensor(bucket)) is None


def test_xcom_holds_the_objects_and_the_watermark_handles_ties_and_overwrites(bucket: Bucket) -> None:
    etag = bucket.put("a.csv", b"v1", at=T0)
    first = sensor(bucket)
    result = first.poke(CONTEXT)
    assert isinstance(result, PokeReturnValue)
    assert result.xcom_value == [
        {
            "uri": f"s3://{bucket.name}/a.csv",
            "bucket": bucket.name,
            "key": "a.csv",
            "etag": etag,
            "size": 2,
            "last_modified": "2025-06-02T09:00:00+00:00",
        }
    ]
    json.dumps(result.xcom_value)
    commit(first)

    bucket.put("b.csv", at=T0)  # same second
    bucket.put("a.csv", b"v2", at=T0)  # rewritten in the same second: a new ETag
    task = sensor(bucket)
    assert poke(task) == ["a.csv", "b.csv"]
    commit(task)
    assert poke(sensor(bucket)) is None


def test_the_sensor_and_a_trigger_on_the_same_prefix_keep_separate_watermarks(bucket: Bucket) -> None:
    bucket.put("a.csv", at=T0)
    task = sensor(bucket)
    assert poke(task) == ["a.csv"]
    commit(task)

    trigger = NewS3ObjectsTrigger(bucket.name, endpoint_url=bucket.server.endpoint_url, poll_interval=0.02)
    result = asyncio.run(run_trigger(trigger, until=lambda: trigger.polls >= 2, idle_timeout=60))
    assert [obj["key"] for event in result.events for obj in event.payload["objects"]] == ["a.csv"]


def test_credentials_and_endpoint_from_an_airflow_connection(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket.put("a.csv", at=T0)
    add_connection(monkeypatch, "s3_landing", bucket)

    assert poke(sensor(bucket, aws_conn_id="s3_landing", endpoint_url=None)) == ["a.csv"]


def test_a_missing_bucket_fails_clearly(bucket: Bucket) -> None:
    task = sensor(bucket)
    task.bucket = "no-such-bucket"

    with pytest.raises(RuntimeError, match=r"listing s3://no-such-bucket/ failed: .*NoSuchBucket"):
        task.poke(CONTEXT)


def test_without_boto3_the_error_says_what_to_install(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` meets when it is absent

    with pytest.raises(MissingDependencyError, match=r"pip install 'aiobotocore\[boto3\]>=2.13'"):
        sensor(bucket).poke(CONTEXT)


def test_without_aiobotocore_the_trigger_error_says_what_to_install(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aiobotocore.session", None)
    trigger = NewS3ObjectsTrigger(bucket.name, endpoint_url=bucket.server.endpoint_url)

    with pytest.raises(
        MissingDependencyError, match=r"needs aiobotocore.*pip install 'aiobotocore\[boto3\]>=2.13'"
    ):
        asyncio.run(run_trigger(trigger, idle_timeout=60))


def test_max_objects_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_objects must be >= 1"):
        NewS3ObjectsSensor(task_id="t", bucket="landing", max_objects=0)
