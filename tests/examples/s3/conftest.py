"""A real S3 API on localhost for the S3 example's tests: moto in server mode, over HTTP.

The server runs in this process (``ThreadedMotoServer``, a werkzeug HTTP server on a free port
of 127.0.0.1); the code under test talks to it with aiobotocore and boto3 like it would to AWS.
Being in-process lets a test set the *server's* clock. That is how a test makes an object's
``LastModified`` land where it wants: on the same second as another one, or in the past, the way
a slow upload does on S3 (S3 stamps ``LastModified`` when an upload starts; moto stamps it when
the upload completes, so "started an hour ago, completed now" needs the clock set back).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import boto3
import moto.s3.models
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.utils import utcnow
from moto.server import ThreadedMotoServer
from types_boto3_s3 import S3Client

from stateful.backends.sql import dispose_default_stores

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class ServerClock:
    """The S3 server's clock: real time, unless a test sets it."""

    def __init__(self) -> None:
        self._at: datetime | None = None
        self._real = utcnow

    def now(self) -> datetime:
        # moto keeps naive UTC datetimes.
        at = self._at
        return self._real() if at is None else at.astimezone(timezone.utc).replace(tzinfo=None)

    def set(self, at: datetime | None) -> None:
        self._at = at


@dataclass
class S3Server:
    """The running server; ``endpoint_url`` is where clients connect."""

    endpoint_url: str
    clock: ServerClock
    _names: Iterator[int] = field(default_factory=itertools.count)

    def client(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        )

    def new_bucket_name(self) -> str:
        return f"bucket-{next(self._names)}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    clock = ServerClock()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request
    with pytest.MonkeyPatch.context() as patch:
        # moto.s3.models stamps LastModified with its module-level utcnow().
        patch.setattr(moto.s3.models, "utcnow", clock.now)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield S3Server(f"http://{host}:{port}", clock)
        finally:
            server.stop()


@dataclass
class Bucket:
    """A fresh bucket on the server, and helpers to fill it over HTTP."""

    name: str
    server: S3Server
    client: S3Client

    def put(self, key: str, body: bytes = b"data", at: datetime | None = None) -> str:
        """PUT ``key``; with ``at``, the server stamps it ``LastModified = at``. Returns the ETag."""
        self.server.clock.set(at)
        try:
            return self.client.put_object(Bucket=self.name, Key=key, Body=body)["ETag"].strip('"')
        finally:
            self.server.clock.set(None)

    def last_modified(self, key: str) -> datetime:
        return self.client.head_object(Bucket=self.name, Key=key)["LastModified"].astimezone(timezone.utc)

    def fill(self, count: int, at: datetime, prefix: str = "bulk/") -> None:
        """Store ``count`` small objects stamped ``at`` straight into the server's storage.

        10,000 PUTs over HTTP to an in-process server take about a minute of CPU; the storage
        call the server's PUT handler makes takes a second. Only the listing is under test.
        """
        backend = moto.s3.models.s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        self.server.clock.set(at)
        try:
            for i in range(count):
                backend.put_object(self.name, f"{prefix}{i:05d}.csv", f"row {i}".encode())
        finally:
            self.server.clock.set(None)


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bucket]:
    """A new bucket; the environment holds credentials for botocore's default chain."""
    for variable in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # No instance-metadata lookups: there is no instance here.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = s3_server.client()
    name = s3_server.new_bucket_name()
    client.create_bucket(Bucket=name)
    yield Bucket(name, s3_server, client)
    client.close()


def add_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, bucket: Bucket) -> None:
    """An Airflow AWS connection ``conn_id`` to the server, with its endpoint in the extra.

    The credentials leave the environment: only the connection can supply them.
    """
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    connection = {
        "conn_type": "aws",
        "login": CREDENTIALS["aws_access_key_id"],
        "password": CREDENTIALS["aws_secret_access_key"],
        "extra": {"endpoint_url": bucket.server.endpoint_url, "region_name": REGION},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


@pytest.fixture(autouse=True)
def store_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The default store, pointed at a SQLite file of this test."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("STATEFUL_DATABASE_URL", url)
    dispose_default_stores()
    yield url
    dispose_default_stores()
