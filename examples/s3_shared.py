"""Several prefixes of one bucket as several assets, with one listing per poll: ``@shared_source``.

``SharedS3PrefixTrigger`` watches ``s3://bucket/prefix`` like :class:`examples.s3.NewS3ObjectsTrigger`
(same events, same watermark model and address, ``"s3"`` / ``"{bucket}/{prefix}"``), but its
watchers on one bucket share the listing: on Airflow >= 3.3 the triggerer lists
``s3://bucket/root`` once per ``poll_interval`` for all of them, and each watcher picks the
objects under its own prefix and keeps its own watermark, saved once Airflow confirmed its
events were stored. Before Airflow 3.3 each watcher lists on its own (``root``, not only its
prefix: keep ``root`` as narrow as the prefixes allow).

Watchers share a listing when the bucket, ``root``, the connection, the endpoint, the region,
``poll_interval`` and ``page_size`` are equal (all of them are the source); each ``prefix`` must
start with ``root``.

Install its dependencies as for :mod:`examples.s3`: ``pip install 'aiobotocore[boto3]>=2.13'``.

Example:
    Three assets on one bucket, one listing of ``s3://landing/`` per minute::

        from airflow.sdk import Asset, AssetWatcher

        from examples.s3_shared import SharedS3PrefixTrigger

        assets = [
            Asset(
                f"s3://landing/{name}/",
                watchers=[
                    AssetWatcher(name=name, trigger=SharedS3PrefixTrigger("landing", f"{name}/"))
                ],
            )
            for name in ("orders", "refunds", "customers")
        ]

    The source of a watcher, what decides which ones share a listing:

    >>> SharedS3PrefixTrigger("landing", "orders/").source
    's3://landing/ every 60.0 s (connection None, endpoint None, region None, 1000 keys a page)'
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from examples.s3 import (
    LOOKBACK,
    S3Object,
    _batches,
    _is_transient,
    _listing_failed,
    _prepared_session,
    _S3Watch,
    select_new,
)
from stateful import Watermark, shared_source

__all__ = ["SharedS3PrefixTrigger"]


@shared_source(namespace="s3", name="{bucket}/{prefix}", source="{source}")
class SharedS3PrefixTrigger(_S3Watch, BaseEventTrigger):
    """Fire for each new or updated object under ``s3://bucket/prefix``; one listing per bucket.

    Events are those of :class:`examples.s3.NewS3ObjectsTrigger`: ``{"bucket", "prefix",
    "objects": [...]}``, oldest first, one object or up to ``batch_size`` per event.

    Args:
        bucket: the bucket to watch.
        prefix: only keys starting with it; must start with ``root``.
        root: what the shared listing covers (``""``: the whole bucket).
        aws_conn_id: an Airflow AWS connection (see :class:`examples.s3.NewS3ObjectsTrigger`).
        endpoint_url: an S3-compatible endpoint, over the connection's.
        region_name: the region, over the connection's.
        poll_interval: seconds between two listings.
        lookback: see :data:`examples.s3.LOOKBACK`.
        batch_size: the most objects in one event.
        page_size: keys per ``ListObjectsV2`` request (at most 1,000).

    Attributes:
        polls: how many listings this instance made (only the one running the shared poll lists).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        root: str = "",
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
        if not prefix.startswith(root):
            raise ValueError(f"prefix {prefix!r} must start with root {root!r}: the listing covers only root")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be between 1 and 1000 (the S3 maximum), got {page_size}")
        self.root = root
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.page_size = page_size
        self.polls = 0

    if TYPE_CHECKING:  # @shared_source writes run(); type checkers see it here

        def run(self) -> AsyncIterator[TriggerEvent]: ...

    @property
    def source(self) -> str:
        """What the listing depends on: watchers with the same source share one listing."""
        return (
            f"s3://{self.bucket}/{self.root} every {self.poll_interval} s (connection {self.aws_conn_id}, "
            f"endpoint {self.endpoint_url}, region {self.region_name}, {self.page_size} keys a page)"
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return (
            "examples.s3_shared.SharedS3PrefixTrigger",
            {
                "bucket": self.bucket,
                "prefix": self.prefix,
                "root": self.root,
                "aws_conn_id": self.aws_conn_id,
                "endpoint_url": self.endpoint_url,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "lookback": self.lookback,
                "batch_size": self.batch_size,
                "page_size": self.page_size,
            },
        )

    async def poll(self) -> AsyncIterator[list[S3Object]]:
        """List ``s3://bucket/root`` forever: one listing (every object) per ``poll_interval``."""
        if self.aws_conn_id is None:
            options = self._options()
        else:
            connection = await BaseHook.aget_connection(self.aws_conn_id)
            options = self._options(connection.login, connection.password, await connection.aextra_dejson())
        session = await asyncio.to_thread(_prepared_session, options)
        where = f"s3://{self.bucket}/{self.root}"
        async with session.create_client("s3", **options) as client:
            failing = False
            while True:
                listing: list[S3Object] = []
                try:
                    pages = client.get_paginator("list_objects_v2").paginate(
                        Bucket=self.bucket, Prefix=self.root, PaginationConfig={"PageSize": self.page_size}
                    )
                    async for page in pages:
                        listing += [S3Object.from_listing(entry) for entry in page.get("Contents", ())]
                except Exception as exc:
                    if not _is_transient(exc):
                        raise _listing_failed(where, exc) from exc
                    if not failing:
                        self.log.warning("listing %s failed, retrying every poll: %s", where, exc)
                    failing = True
                else:
                    failing = False
                    self.polls += 1
                    yield listing
                await asyncio.sleep(self.poll_interval)

    def select(self, watermark: Watermark, listing: list[S3Object]) -> Iterator[TriggerEvent]:
        """This watcher's new objects in one listing, oldest first, advancing its watermark."""
        watermark.configure(lookback=self.lookback)
        mine = (
            item
            for item in listing
            if item.key.startswith(self.prefix)
            and not item.key.endswith("/")  # a folder marker, not data
            and watermark.is_new(item.version_key, item.last_modified)
        )
        for batch in _batches(select_new(mine), self.batch_size):
            for item in batch:
                watermark.advance(timestamp=item.last_modified, key=item.version_key)
            objects = [item.payload(self.bucket) for item in batch]
            yield TriggerEvent({"bucket": self.bucket, "prefix": self.prefix, "objects": objects})
