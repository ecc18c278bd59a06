"""Grouped version reads: the fences of many triggers read their versions in shared statements.

On a real SQLite file and on the PostgreSQL fixture. To know which reads share a batch, the first
batch is held in the worker thread until every read of the test is queued: the rest then make
one batch, answered by one ``SELECT`` per :data:`~stateful.backends.sql.versions.CHUNK`
addresses. Statements are counted with SQLAlchemy's engine events.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from stateful.backends import SqlBackend
from stateful.backends.base import Address, Write
from stateful.backends.sql.versions import CHUNK, VersionReads
from stateful.errors import StoreError

NS = "versions"


class HeldFirstBatch:
    """Holds the first batch of version reads in its worker until released; records every batch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[list[Address]] = []
        self.release = threading.Event()
        self.first_taken = threading.Event()
        outcomes = VersionReads._outcomes

        def held(reads: VersionReads, requests: list[Address]) -> list[Any]:
            self.batches.append(list(requests))
            if len(self.batches) == 1:
                self.first_taken.set()
                self.release.wait(30)
            return outcomes(reads, requests)

        monkeypatch.setattr(VersionReads, "_outcomes", held)


def counting_selects(store: SqlBackend) -> list[str]:
    """The version-reading statements sent to ``store``'s table from now on."""
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and store.table_name in statement:
            seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", on_execute)
    return seen


async def test_many_reads_share_a_few_statements_and_each_gets_its_own_version(
    sql_store: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = [Address(NS, f"t{i}", "watermark") for i in range(700)]
    sql_store.write_many([Write(address, "{}", None) for address in stored])
    for address in stored[:10]:
        sql_store.write(*address, "{}", expected_version=1)  # version 2
    missing = [Address(NS, f"gone{i}", "watermark") for i in range(50)]
    asked = [*stored, *missing, *stored[:5]]  # a document asked twice gets its version twice

    held = HeldFirstBatch(monkeypatch)
    selects = counting_selects(sql_store)
    first = asyncio.ensure_future(sql_store.aversion(*asked[0]))
    assert await asyncio.to_thread(held.first_taken.wait, 30)
    rest = [asyncio.ensure_future(sql_store.aversion(*address)) for address in asked[1:]]
    await asyncio.sleep(0.05)  # every read queued behind the held batch
    held.release.set()
    versions = [await first, *await asyncio.gather(*rest)]

    expected = [2 if i < 10 else 1 for i in range(700)] + [None] * 50 + [2] * 5
    assert versions == expected
    assert [len(batch) for batch in held.batches] == [1, len(asked) - 1]
    # One statement per CHUNK distinct addresses of a batch: 1 + 3 for 755 reads.
    assert len(selects) == 1 + math.ceil(len(set(asked[1:])) / CHUNK)


async def test_a_failed_statement_fails_every_read_of_its_batch_with_the_store_error(
    sql_store: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql_store.write(NS, "t", "watermark", "{}", expected_version=None)
    held = HeldFirstBatch(monkeypatch)
    first = asyncio.ensure_future(sql_store.aversion(NS, "t", "watermark"))
    assert await asyncio.to_thread(held.first_taken.wait, 30)
    with sql_store._engine.use() as engine, engine.begin() as conn:  # the table goes away first
        conn.execute(sa.text(f"DROP TABLE {sql_store.table_name}"))
    rest = [asyncio.ensure_future(sql_store.aversion(NS, name, "watermark")) for name in ("t", "u")]
    await asyncio.sleep(0.05)
    held.release.set()
    for read, name in zip([first, *rest], ("t", "t", "u"), strict=True):
        with pytest.raises(StoreError) as failed:
            await read
        message = str(failed.value)
        assert f"failed to read the version of state {NS}/{name} (key 'watermark')" in message
        assert sql_store.description in message and sql_store.table_name in message


async def test_a_read_cancelled_while_queued_is_never_sent(
    sql_store: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql_store.write(NS, "t", "watermark", "{}", expected_version=None)
    held = HeldFirstBatch(monkeypatch)
    first = asyncio.ensure_future(sql_store.aversion(NS, "t", "watermark"))
    assert await asyncio.to_thread(held.first_taken.wait, 30)
    cancelled = asyncio.ensure_future(sql_store.aversion(NS, "cancelled", "watermark"))
    kept = asyncio.ensure_future(sql_store.aversion(NS, "t", "watermark"))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    held.release.set()
    assert (await first, await kept) == (1, 1)
    assert cancelled.cancelled()
    assert Address(NS, "cancelled", "watermark") not in [a for batch in held.batches for a in batch]
