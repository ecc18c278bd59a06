"""New or updated objects under an S3 prefix: an event trigger for asset watchers, and a sensor.

``NewS3ObjectsTrigger`` lists ``s3://bucket/prefix`` every ``poll_interval`` seconds with
aiobotocore (async, paginated) and emits what it has not emitted before, oldest first, one
object per event or ``batch_size`` objects per event. ``NewS3ObjectsSensor`` does the same from a
worker with boto3, one poke at a time. Both keep a ``@stateful`` watermark:

* ``timestamp`` is the newest ``LastModified`` emitted;
* ``seen`` holds ``f"{key}@{etag}"`` for the objects emitted inside the lookback window, so an
  object sharing a ``LastModified`` second with emitted ones still fires, and an overwrite (new
  ETag or newer ``LastModified``) fires once more;
* the lookback: S3 stamps an object's ``LastModified`` when its upload *started* (for a multipart
  upload, when it was initiated), and lists it only once the upload completed. A slow upload
  therefore shows up with a ``LastModified`` older than objects already emitted. It fires if it
  is listed at most ``lookback`` after its ``LastModified``; later than that it is missed.

Install its dependencies (the wheel does not ship the examples, nor an extra for them):
``pip install 'aiobotocore[boto3]>=2.13'`` (aiobotocore, with the boto3 matching its botocore).

Example:
    A DAG scheduled on the objects that land under ``s3://landing/orders/``::

        from airflow.sdk import Asset, AssetWatcher

        from examples.s3 import NewS3ObjectsTrigger

        orders = Asset(
            "s3://landing/orders/",
            watchers=[
                AssetWatcher(
                    name="orders",
                    trigger=NewS3ObjectsTrigger("landing", "orders/", aws_conn_id="aws_default"),
                )
            ],
        )
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseSensorOperator, Context, PokeReturnValue
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Watermark, stateful
from stateful.errors import MissingDependencyError

if TYPE_CHECKING:
    from aiobotocore.session import AioSession
    from types_aiobotocore_s3 import S3Client
    from types_boto3_s3 import S3Client as SyncS3Client

__all__ = [
    "LOOKBACK",
    "NewS3ObjectsSensor",
    "NewS3ObjectsTrigger",
    "S3Object",
    "client_options",
    "list_new_objects",
    "list_new_objects_async",
    "select_new",
]

# How long after its LastModified an object may first be listed and still fire.
#
# LastModified is when the upload started. A 5 GB file over a slow link, or a multipart upload
# whose parts trickle in, is listed minutes to hours after that; meanwhile smaller objects that
# started later were listed and emitted, and moved the watermark past it. With a lookback L, an
# object fires if it is listed no later than L after its LastModified (the watermark is at most
# the newest LastModified listed, which is at most the listing time, both on S3's clock). Past
# that it is a known miss. Set L to your longest upload plus one poll_interval.
#
# The price is state: `seen` keeps one key per object emitted with a LastModified inside the
# last L, and the watermark is written after every event (use batch_size for busy prefixes).
LOOKBACK = timedelta(hours=1)

_INSTALL = "pip install 'aiobotocore[boto3]>=2.13'"
# Connection extras this example understands (the Amazon provider's names). Anything else, a
# role to assume for instance, is refused: ignoring it would quietly list with other credentials.
_EXTRAS = frozenset({"region_name", "endpoint_url", "aws_session_token", "verify"})
# Client errors worth another poll rather than failing the watcher: the service was unwell.
_TRANSIENT = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling"})


@dataclass(frozen=True)
class S3Object:
    """One object of a listing.

    Attributes:
        key: the object key.
        etag: the ETag, without quotes; it changes when the content is rewritten.
        size: the size in bytes.
        last_modified: when its upload started, aware UTC (S3 gives whole seconds).
    """

    key: str
    etag: str
    size: int
    last_modified: datetime

    @property
    def version_key(self) -> str:
        """The watermark key, ``key@etag``: a rewritten object is a new item."""
        return f"{self.key}@{self.etag}"

    def payload(self, bucket: str) -> dict[str, Any]:
        """The object as JSON-ready data, as it appears in events and XCom."""
        return {
            "uri": f"s3://{bucket}/{self.key}",
            "bucket": bucket,
            "key": self.key,
            "etag": self.etag,
            "size": self.size,
            "last_modified": self.last_modified.isoformat(),
        }

    @classmethod
    def from_listing(cls, entry: Mapping[str, Any]) -> S3Object:
        """Build it from one ``Contents`` entry of ``ListObjectsV2``.

        Example:
            >>> S3Object.from_listing({"Key": "a.csv", "ETag": '"9b2c"', "Size": 3,
            ...     "LastModified": datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)}).version_key
            'a.csv@9b2c'
        """
        modified: datetime = entry["LastModified"]
        return cls(str(entry["Key"]), str(entry["ETag"]).strip('"'), int(entry["Size"]), _utc(modified))


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _new_in_page(page: Mapping[str, Any], watermark: Watermark) -> list[S3Object]:
    # Only candidates are kept: a pass over a large prefix holds the new objects, not all of them.
    found = []
    for entry in page.get("Contents", ()):
        item = S3Object.from_listing(entry)
        # A key ending in "/" is a folder marker (the console's "Create folder"), not data.
        if not item.key.endswith("/") and watermark.is_new(item.version_key, item.last_modified):
            found.append(item)
    return found


def select_new(objects: Iterable[S3Object]) -> list[S3Object]:
    """Order candidates oldest first, ``(last_modified, key)``.

    Emitting in this order keeps the watermark honest if a run stops half way: what is left
    is newer than (or ties with, under another key) what was emitted, so it still fires.
    """
    return sorted(objects, key=lambda o: (o.last_modified, o.key))


async def list_new_objects_async(
    client: S3Client, bucket: str, prefix: str, watermark: Watermark, page_size: int = 1000
) -> list[S3Object]:
    """List ``s3://bucket/prefix`` page by page; return the objects ``watermark`` calls new, oldest first."""
    paginator = client.get_paginator("list_objects_v2")
    found: list[S3Object] = []
    pages = paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size})
    async for page in pages:
        found += _new_in_page(page, watermark)
    return select_new(found)


def list_new_objects(
    client: SyncS3Client, bucket: str, prefix: str, watermark: Watermark, page_size: int = 1000
) -> list[S3Object]:
    """The blocking twin of :func:`list_new_objects_async`, for a sensor's ``poke()``."""
    paginator = client.get_paginator("list_objects_v2")
    found: list[S3Object] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}):
        found += _new_in_page(page, watermark)
    return select_new(found)


def client_options(
    *,
    conn_id: str | None = None,
    login: str | None = None,
    password: str | None = None,
    extra: Mapping[str, Any] | None = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``create_client("s3", ...)`` from an Airflow connection's fields.

    An AWS connection keeps the access key id in ``login``, the secret in ``password``, and
    ``region_name``, ``endpoint_url``, ``aws_session_token``, ``verify`` in its extra. Explicit
    ``endpoint_url``/``region_name`` win over the connection's. Without credentials, botocore's
    default chain applies (environment, ``~/.aws``, the instance or pod role).

    Raises:
        ValueError: the extra holds keys this example does not support (e.g. ``role_arn``).

    Example:
        >>> client_options(login="AKIA", password="s3cret", extra={"endpoint_url": "http://minio:9000"})
        {'aws_access_key_id': 'AKIA', 'aws_secret_access_key': 's3cret', 'endpoint_url': 'http://minio:9000'}
    """
    extra = dict(extra or {})
    unsupported = sorted(set(extra) - _EXTRAS)
    if unsupported:
        raise ValueError(
            f"connection {conn_id!r} has extra field(s) {unsupported} that examples.s3 does not support "
            f"(it understands {sorted(_EXTRAS)}). Remove them, or use the Amazon provider's S3 hooks "
            f"for role assumption and profiles."
        )
    options: dict[str, Any] = {}
    if login or password:
        options.update(aws_access_key_id=login, aws_secret_access_key=password)
    if extra.get("aws_session_token"):
        options["aws_session_token"] = extra["aws_session_token"]
    if "verify" in extra:
        options["verify"] = extra["verify"]
    endpoint = endpoint_url or extra.get("endpoint_url")
    region = region_name or extra.get("region_name")
    if endpoint:
        options["endpoint_url"] = endpoint
    if region:
        options["region_name"] = region
    return options


def _prepared_session(options: dict[str, Any]) -> AioSession:
    """An aiobotocore session whose files are already read. Blocking: run it in a thread.

    Creating a client reads botocore's service models and partitions (JSON files), the AWS
    config files and possibly credentials from disk; a paginator reads its own model. Doing it
    once here, in a worker thread with a private event loop, fills the session's caches, so the
    client the trigger then creates on the triggerer's loop touches no file.
    """
    try:
        from aiobotocore.session import get_session
    except ImportError as exc:
        raise MissingDependencyError(
            f"examples.s3.NewS3ObjectsTrigger needs aiobotocore, which cannot be imported ({exc}). "
            f"Install it in the triggerer's environment: {_INSTALL}"
        ) from exc
    session = get_session()

    async def prime() -> None:
        async with session.create_client("s3", **options) as client:
            client.get_paginator("list_objects_v2")

    asyncio.run(prime())
    return session


def _is_transient(exc: Exception) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or exc.response.get("Error", {}).get("Code") in _TRANSIENT
    return False


def _listing_failed(where: str, exc: Exception) -> RuntimeError:
    return RuntimeError(
        f"listing {where} failed: {exc}. Nothing was emitted and the watermark is unchanged. Check "
        f"the bucket name, the endpoint and that the credentials allow s3:ListBucket on it."
    )


def _batches(items: Sequence[S3Object], size: int) -> Iterator[Sequence[S3Object]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _S3Watch:
    """Where to list and how to connect: what the trigger and the sensor share."""

    bucket: str
    prefix: str
    aws_conn_id: str | None
    endpoint_url: str | None
    region_name: str | None
    lookback: timedelta

    def _watch(
        self,
        bucket: str,
        prefix: str,
        aws_conn_id: str | None,
        endpoint_url: str | None,
        region_name: str | None,
        lookback: timedelta,
    ) -> None:
        if not bucket:
            raise ValueError("bucket must not be empty")
        if lookback < timedelta(0):
            raise ValueError(f"lookback must be >= timedelta(0), got {lookback!r}")
        self.bucket = bucket
        self.prefix = prefix
        self.aws_conn_id = aws_conn_id
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.lookback = lookback

    @property
    def location(self) -> str:
        """``s3://bucket/prefix``, for messages."""
        return f"s3://{self.bucket}/{self.prefix}"

    def _options(
        self, login: str | None = None, password: str | None = None, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return client_options(
            conn_id=self.aws_conn_id,
            login=login,
            password=password,
            extra=extra,
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
        )


class NewS3ObjectsTrigger(_S3Watch, BaseEventTrigger):
    """Fire for each new or updated object under ``s3://bucket/prefix``; remember what fired.

    The watermark lives in the default store under namespace ``"s3"`` and the name
    ``"{bucket}/{prefix}"`` (:attr:`location`). Run one watcher per bucket and prefix; changing
    either starts a new watermark (every object present then fires once).

    Each event carries ``{"bucket", "prefix", "objects": [{"uri", "bucket", "key", "etag",
    "size", "last_modified"}, ...]}`` with one object, or up to ``batch_size``. Objects are
    emitted oldest first; delivery is at-least-once (a triggerer stopped in the middle of a poll
    repeats at most the last event). Keys ending in ``/`` (folder markers) are ignored. A
    listing error that is the service's (5xx, throttling, the endpoint unreachable) is logged
    and retried at the next poll; any other (no such bucket, access denied) fails the trigger.

    Args:
        bucket: the bucket to watch.
        prefix: only keys starting with it (``""``: the whole bucket).
        aws_conn_id: an Airflow AWS connection (credentials in login/password, extras
            ``region_name``, ``endpoint_url``, ``aws_session_token``, ``verify``). ``None``:
            botocore's default credential chain.
        endpoint_url: an S3-compatible endpoint (MinIO, Ceph...), over the connection's.
        region_name: the region, over the connection's.
        poll_interval: seconds between two listings.
        lookback: how long after its ``LastModified`` an object may first be listed and still
            fire (see :data:`LOOKBACK`).
        batch_size: the most objects in one event (1: an event per object).
        page_size: keys per ``ListObjectsV2`` request (at most 1,000).

    Attributes:
        polls: how many poll cycles this instance has completed (for monitoring and tests).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        aws_conn_id: str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        poll_interval: float = 60.0,
        lookback: timedelta = LOOKBACK,
        batch_size: int = 1,
        page_size: int = 1000,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
        self._watch(bucket, prefix, aws_conn_id, endpoint_url, region_name, lookback)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be between 1 and 1000 (the S3 maximum), got {page_size}")
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.page_size = page_size
        self.polls = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return (
            "examples.s3.NewS3ObjectsTrigger",
            {
                "bucket": self.bucket,
                "prefix": self.prefix,
                "aws_conn_id": self.aws_conn_id,
                "endpoint_url": self.endpoint_url,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "lookback": self.lookback,
                "batch_size": self.batch_size,
                "page_size": self.page_size,
            },
        )

    async def _client_options(self) -> dict[str, Any]:
        if self.aws_conn_id is None:
            return self._options()
        connection = await BaseHook.aget_connection(self.aws_conn_id)
        return self._options(connection.login, connection.password, await connection.aextra_dejson())

    @stateful(namespace="s3", name="{bucket}/{prefix}")
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        """List the prefix forever; yield the objects not emitted before, oldest first.

        Args:
            watermark: injected by ``@stateful``; callers use ``trigger.run()``.

        Yields:
            ``TriggerEvent({"bucket", "prefix", "objects": [...]})``.
        """
        watermark.configure(lookback=self.lookback)
        options = await self._client_options()
        session = await asyncio.to_thread(_prepared_session, options)
        async with session.create_client("s3", **options) as client:
            failing = False
            while True:
                try:
                    new = await list_new_objects_async(
                        client, self.bucket, self.prefix, watermark, self.page_size
                    )
                except Exception as exc:
                    if not _is_transient(exc):
                        raise _listing_failed(self.location, exc) from exc
                    if not failing:
                        self.log.warning("listing %s failed, retrying every poll: %s", self.location, exc)
                    new, failing = [], True
                else:
                    failing = False
                for batch in _batches(new, self.batch_size):
                    for item in batch:
                        watermark.advance(timestamp=item.last_modified, key=item.version_key)
                    objects = [item.payload(self.bucket) for item in batch]
                    yield TriggerEvent({"bucket": self.bucket, "prefix": self.prefix, "objects": objects})
                self.polls += 1
                await asyncio.sleep(self.poll_interval)


class NewS3ObjectsSensor(_S3Watch, BaseSensorOperator):
    """Wait for new or updated objects under ``s3://bucket/prefix``; return them as XCom.

    Each poke lists the prefix with boto3 (a sensor runs in a worker: blocking calls are
    right here) and reports up to ``max_objects`` objects the task has not reported before,
    oldest first; the rest come with the next run. The watermark is the trigger's kind (newest
    ``LastModified``, ``key@etag`` seen within ``lookback``), kept per task under namespace
    ``"s3"`` and the name ``"{dag_id}.{task_id}"``, and saved once the task has succeeded.

    For event-driven DAGs prefer :class:`NewS3ObjectsTrigger` under an ``AssetWatcher``: it
    waits in the triggerer, not in a worker slot.

    Args:
        bucket: the bucket to watch.
        prefix: only keys starting with it.
        aws_conn_id: an Airflow AWS connection (see :class:`NewS3ObjectsTrigger`).
        endpoint_url: an S3-compatible endpoint, over the connection's.
        region_name: the region, over the connection's.
        lookback: see :data:`LOOKBACK`.
        max_objects: the most objects one run reports.
        **kwargs: passed to ``BaseSensorOperator`` (``mode``, ``poke_interval``, ``timeout``...).
    """

    template_fields = ("bucket", "prefix")

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        aws_conn_id: str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        lookback: timedelta = LOOKBACK,
        max_objects: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._watch(bucket, prefix, aws_conn_id, endpoint_url, region_name, lookback)
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        self.max_objects = max_objects

    def _client(self) -> SyncS3Client:
        try:
            import boto3
        except ImportError as exc:
            raise MissingDependencyError(
                f"examples.s3.NewS3ObjectsSensor needs boto3, which cannot be imported ({exc}). "
                f"Install it on the workers: {_INSTALL}"
            ) from exc
        if self.aws_conn_id is None:
            options = self._options()
        else:
            connection = BaseHook.get_connection(self.aws_conn_id)
            options = self._options(connection.login, connection.password, connection.extra_dejson)
        return boto3.client("s3", **options)

    @stateful(namespace="s3", name="{dag_id}.{task_id}")
    def poke(self, context: Context, watermark: Watermark) -> bool | PokeReturnValue:
        watermark.configure(lookback=self.lookback)
        client = self._client()
        with contextlib.closing(client):
            try:
                new = list_new_objects(client, self.bucket, self.prefix, watermark)
            except Exception as exc:
                raise _listing_failed(self.location, exc) from exc
        if not new:
            return False
        reported = new[: self.max_objects]
        for item in reported:
            watermark.advance(timestamp=item.last_modified, key=item.version_key)
        return PokeReturnValue(is_done=True, xcom_value=[item.payload(self.bucket) for item in reported])
