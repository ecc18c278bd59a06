"""Keyed watermarks: one decorated ``run()`` or ``poke()`` keeps one watermark per partition key.

Real stores: the memory store, a SQLite file, a PostgreSQL server and Airflow's own asset state
store through its Execution API accessors (``store`` fixture); real
Airflow ``BaseEventTrigger`` and ``BaseSensorOperator`` classes; ack mode through Airflow's own
``TriggerRunner`` (``tests._triggerer``). The cost tests count the SQL statements a save sends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, cast

import pytest
import sqlalchemy
from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Keyed, Watermark, stateful
from stateful._address import partition_key
from stateful._core import Scope
from stateful._keyed_session import astored_partitions
from stateful.backends import MemoryBackend, SqlBackend
from stateful.backends.base import Address, SupportsWriteMany, Write
from stateful.backends.native import NativeBackend
from stateful.backends.native.document import native_key
from stateful.backends.native.index import index_key, is_index_key
from stateful.backends.native.listing import documents_in
from stateful.errors import (
    StateConflictError,
    StateNameError,
    StateValidationError,
    StoreConfigError,
    StoreError,
)
from stateful.sensors import commit
from stateful.testing import run_trigger
from tests._airflow import AirflowStateStore
from tests._postgres import PostgresServer
from tests._triggerer import Triggerer, until
from tests.conftest import NATIVE_PARAM, POSTGRES_PARAM, DualBackend, fresh_store, unique_table

NAMESPACE, NAME = "files", "bucket"


class Store(DualBackend, SupportsWriteMany, Protocol):
    """A built-in store: both Protocols, layouts, and several documents in one write."""


@pytest.fixture(params=["memory", "sqlite", POSTGRES_PARAM, NATIVE_PARAM])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each kind (see ``tests.conftest.fresh_store``)."""
    for made in fresh_store(request.param, request, tmp_path):
        yield cast(Store, made)  # every built-in store writes several documents at once


class Prefixes(BaseEventTrigger):
    """Emits each ``(prefix, n)`` above that prefix's cursor; ``then="block"`` polls forever after."""

    def __init__(self, items: list[tuple[str, int]], then: str = "return") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.bucket = NAME
        self.items = items
        self.then = then
        self.blocked = asyncio.Event()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.test_keyed.Prefixes", {"items": self.items, "then": self.then})

    async def body(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
        for prefix, n in self.items:
            if n > (keyed[prefix].cursor or 0):
                keyed[prefix].advance(cursor=n)
                yield TriggerEvent({"prefix": prefix, "n": n})
        if self.then == "block":
            self.blocked.set()
            await asyncio.Event().wait()


def prefixes(store: Store, **options: Any) -> type[Prefixes]:
    class KeyedPrefixes(Prefixes):
        @stateful(namespace=NAMESPACE, name="{bucket}", backend=store, **options)
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
            async for event in self.body(keyed):
                yield event

    return KeyedPrefixes


def text(cursor: int) -> str:
    return Watermark[int](cursor=cursor).to_state_json()


async def drain(trigger: BaseEventTrigger) -> list[tuple[str, int]]:
    return [(e.payload["prefix"], e.payload["n"]) async for e in trigger.run()]


def stored(store: Store) -> dict[str, tuple[int, int | None]]:
    """Each stored partition: its version and cursor."""
    found = {}
    for record in store.list_name(NAMESPACE, NAME):
        partition = record.key[len("watermark[") : -1]
        found[partition] = (record.version, Watermark[int].from_state_json(record.value).cursor)
    return found


async def test_each_partition_advances_and_survives_a_restart(store: Store) -> None:
    trigger_class = prefixes(store, save_batch=1)
    first = await drain(trigger_class([("eu", 1), ("us", 1), ("eu", 2)]))
    assert first == [("eu", 1), ("us", 1), ("eu", 2)]
    assert stored(store) == {"eu": (2, 2), "us": (1, 1)}
    # A restart (a new trigger object, a new run): each partition resumes where it was.
    again = await drain(trigger_class([("eu", 1), ("eu", 2), ("us", 1), ("eu", 3), ("us", 2), ("ap", 1)]))
    assert again == [("eu", 3), ("us", 2), ("ap", 1)]
    assert stored(store) == {"ap": (1, 1), "eu": (3, 3), "us": (2, 2)}
    assert store.read(NAMESPACE, NAME, "watermark") is None  # no single watermark is written


async def test_rewinding_one_partition_moves_no_other(store: Store) -> None:
    trigger_class = prefixes(store, save_batch=1)
    await drain(trigger_class([("eu", 5), ("us", 7)]))
    eu = store.read(NAMESPACE, NAME, partition_key("eu"))
    assert eu is not None
    # An operator sets eu back to 2 (what `stateful set --partition eu` writes).
    store.write(
        NAMESPACE, NAME, eu.key, Watermark[int](cursor=2).to_state_json(), expected_version=eu.version
    )
    assert stored(store) == {"eu": (2, 2), "us": (1, 7)}
    events = await drain(trigger_class([("eu", 3), ("eu", 4), ("us", 6), ("us", 7)]))
    assert events == [("eu", 3), ("eu", 4)]  # eu re-emits after its rewind; us stays where it was
    assert stored(store) == {"eu": (4, 4), "us": (1, 7)}


async def test_the_partitions_one_event_changes_are_saved_together(store: Store) -> None:
    class Both(Prefixes):
        @stateful(namespace=NAMESPACE, name="{bucket}", backend=store, save_batch=1)
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
            for n in (1, 2):
                keyed["eu"].advance(cursor=n)
                keyed["us"].advance(cursor=n * 10)
                yield TriggerEvent({"prefix": "both", "n": n})

    assert len(await drain(Both([]))) == 2
    assert stored(store) == {"eu": (2, 2), "us": (2, 20)}


def transactional(store: Store) -> None:
    if isinstance(store, NativeBackend):
        pytest.skip("the native store writes partitions one after the other (see the native tests below)")


async def test_write_many_is_one_compare_and_set_all_or_nothing(store: Store) -> None:
    transactional(store)
    eu, us = (Address(NAMESPACE, NAME, partition_key(p)) for p in ("eu", "us"))
    assert store.write_many([Write(eu, '{"cursor":1}', None), Write(us, '{"cursor":1}', None)]) == [1, 1]
    # us is stale: neither is written.
    with pytest.raises(StateConflictError) as caught:
        store.write_many([Write(eu, '{"cursor":2}', 1), Write(us, '{"cursor":2}', 5)])
    assert caught.value.key == us.key
    assert "--partition us" in str(caught.value) or "partition 'us'" in str(caught.value)
    assert [r.version for r in store.list_name(NAMESPACE, NAME)] == [1, 1]
    assert await store.awrite_many([Write(eu, '{"cursor":2}', 1), Write(us, '{"cursor":2}', 1)]) == [2, 2]
    with pytest.raises(StateConflictError):
        await store.awrite_many([Write(eu, '{"cursor":3}', 2), Write(us, '{"cursor":3}', 1)])
    assert [json.loads(r.value)["cursor"] for r in store.list_name(NAMESPACE, NAME)] == [2, 2]


async def test_a_lost_race_on_one_partition_stops_the_run_and_writes_no_partition(store: Store) -> None:
    transactional(store)

    class Racing(Prefixes):
        @stateful(namespace=NAMESPACE, name="{bucket}", backend=store, save_batch=1)
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
            keyed["eu"].advance(cursor=1)
            keyed["us"].advance(cursor=1)
            # Another writer saves us meanwhile.
            store.write(NAMESPACE, NAME, partition_key("us"), text(99), expected_version=None)
            yield TriggerEvent({"prefix": "both", "n": 1})
            yield TriggerEvent({"prefix": "never", "n": 2})

    with pytest.raises(StateConflictError):
        await drain(Racing([]))
    assert stored(store) == {"us": (1, 99)}  # eu was not written either


async def test_a_partition_is_validated_only_when_looked_up(store: Store) -> None:
    store.write(NAMESPACE, NAME, partition_key("broken"), '{"cursor": "not a number"}', expected_version=None)
    trigger_class = prefixes(store, save_batch=1)
    assert await drain(trigger_class([("eu", 1)])) == [("eu", 1)]  # the broken one was never looked up
    with pytest.raises(StateValidationError) as caught:
        await drain(trigger_class([("broken", 1)]))
    assert "--partition broken" in str(caught.value)  # the command it suggests names the partition


async def test_bad_partition_keys_are_refused(store: Store) -> None:
    class Bad(Prefixes):
        @stateful(namespace=NAMESPACE, name="{bucket}", backend=store)
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
            keyed[self.items[0][0]].advance(cursor=1)
            yield TriggerEvent({"prefix": "bad", "n": 1})

    for bad in (" eu", "", "a\nb", "x" * 241):
        with pytest.raises(StateNameError):
            await drain(Bad([(bad, 1)]))
    assert stored(store) == {}


async def test_the_mapping_lists_stored_and_new_partitions_without_loading_them(store: Store) -> None:
    await drain(prefixes(store)([("eu", 1), ("us", 1)]))
    seen: list[Any] = []

    class Lister(Prefixes):
        @stateful(namespace=NAMESPACE, name="{bucket}", backend=store)
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
            seen.extend([list(keyed), len(keyed), "eu" in keyed, "ap" in keyed, 3 in keyed])
            keyed["ap"].advance(cursor=1)
            seen.extend([keyed.keys(), keyed.summary()])
            yield TriggerEvent({"prefix": "ap", "n": 1})

    await drain(Lister([]))
    assert seen == [["eu", "us"], 2, True, False, False, ["ap", "eu", "us"], "3 partitions (ap, eu, us)"]


@pytest.mark.airflow_min("3.3", reason="shared-stream ack mode")
async def test_ack_mode_saves_each_partition_once_airflow_confirms(store: Store) -> None:
    triggerer = Triggerer(store_events=False)
    trigger = prefixes(store)([("eu", 1), ("us", 1), ("eu", 2)], then="block")
    triggerer.start(trigger)
    await trigger.blocked.wait()
    await until(lambda: len(triggerer.events) == 3)
    for _ in range(20):
        await asyncio.sleep(0.005)
    assert stored(store) == {}  # nothing confirmed, nothing saved
    assert triggerer.store_events() == 3
    await until(lambda: stored(store) == {"eu": (1, 2), "us": (1, 1)})
    await triggerer.stop()
    # A restart emits nothing already confirmed.
    assert await drain(prefixes(store)([("eu", 2), ("us", 1), ("us", 2)])) == [("us", 2)]


async def test_idempotency_keys_repeat_for_the_same_transition_of_a_partition() -> None:
    store = MemoryBackend()
    trigger_class = prefixes(store, save_batch=1)
    items = [("eu", 1), ("us", 1), ("eu", 2)]
    crashed = await run_trigger(trigger_class(items), max_events=2, crash="before_save", ack=False)
    first = [e.payload["stateful_idempotency_key"] for e in crashed.events]
    again = await run_trigger(trigger_class(items), ack=False)
    keys = [e.payload["stateful_idempotency_key"] for e in again.events]
    # "us" at 1 was handed over, not saved: emitted again after the crash, with the same key
    # (although this run also looked "eu" up on the way, which it did not move).
    assert [(e.payload["prefix"], e.payload["n"]) for e in again.events] == [("us", 1), ("eu", 2)]
    assert keys[0] == first[1]
    assert len({*first, *keys}) == 3


class KeyedSensor(BaseSensorOperator):
    """Reports, per tenant, the numbers above that tenant's cursor."""

    def __init__(self, *, available: dict[str, list[int]], store: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = NAME
        self.available = available

    def report(self, keyed: Keyed[Watermark[int]]) -> bool | PokeReturnValue:
        found = {}
        for tenant, numbers in self.available.items():
            new = [n for n in numbers if n > (keyed[tenant].cursor or 0)]
            if new:
                keyed[tenant].advance(cursor=max(new))
                found[tenant] = new
        return PokeReturnValue(is_done=bool(found), xcom_value=found)


def keyed_sensor(store: Store) -> type[KeyedSensor]:
    class Sensor(KeyedSensor):
        @stateful(namespace=NAMESPACE, name="{source}", backend=store)
        def poke(self, context: Context, keyed: Keyed[Watermark[int]]) -> bool | PokeReturnValue:
            return self.report(keyed)

    return Sensor


def test_a_sensor_saves_the_tenants_it_reported_when_the_task_succeeds(store: Store) -> None:
    sensor_class = keyed_sensor(store)
    sensor = sensor_class(task_id="t", available={"acme": [1, 2], "globex": [5]})
    result = sensor.poke({})
    assert isinstance(result, PokeReturnValue) and result.xcom_value == {"acme": [1, 2], "globex": [5]}
    assert stored(store) == {}  # staged until the task succeeds
    assert commit(sensor) == 1
    assert stored(store) == {"acme": (1, 2), "globex": (1, 5)}
    later = sensor_class(task_id="t", available={"acme": [1, 2, 3], "globex": [5]})
    result = later.poke({})
    assert isinstance(result, PokeReturnValue) and result.xcom_value == {"acme": [3]}
    commit(later)
    assert stored(store) == {"acme": (2, 3), "globex": (1, 5)}  # globex was not written again


async def test_an_unbound_native_store_is_refused_with_what_to_do() -> None:
    scope = Scope(Address(NAMESPACE, NAME, "watermark"), "NativeBackend(unbound)")
    with pytest.raises(StoreConfigError, match="not bound to an asset state store"):
        await astored_partitions(NativeBackend(), scope)


# -- the native store: a name's index lists its partitions ---------------------------------------


async def test_native_partitions_are_listed_from_the_index_written_before_them(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store = NativeBackend(airflow.accessors(asset))
    assert await drain(prefixes(store, save_batch=1)([("eu", 1), ("us", 1)])) == [("eu", 1), ("us", 1)]
    head = index_key(NAMESPACE, NAME)
    assert airflow.stored(asset, head)["keys"] == ["watermark[eu]", "watermark[us]"]
    # What a crash between the index and the new partition's document leaves: an entry without a
    # document, which reads as nothing stored for that partition.
    airflow.put(
        asset,
        head,
        {**airflow.stored(asset, head), "keys": ["watermark[eu]", "watermark[ghost]", "watermark[us]"]},
    )
    restarted = NativeBackend(airflow.accessors(asset))  # a new process: nothing cached
    assert stored(restarted) == {"eu": (1, 1), "us": (1, 1)}
    events = await drain(prefixes(restarted, save_batch=1)([("ghost", 1), ("eu", 1), ("ap", 1)]))
    assert events == [("ghost", 1), ("ap", 1)]
    assert stored(NativeBackend(airflow.accessors(asset))) == {
        "ap": (1, 1),
        "eu": (1, 1),
        "ghost": (1, 1),
        "us": (1, 1),
    }
    # The operator's listing (REST API, UI plugin) takes the index for no document.
    entries = {key: airflow.stored(asset, key) for key in airflow.keys(asset)}
    problems: list[str] = []
    listed = documents_in(entries, "asset", NAMESPACE, problems, lambda *a: None)
    assert problems == [] and [r.key for r in listed] == [
        partition_key(p) for p in ("ap", "eu", "ghost", "us")
    ]


async def test_native_a_crash_between_the_index_and_the_partition_reads_as_nothing_stored(
    airflow_state_store: AirflowStateStore,
) -> None:
    # Airflow >= 3.3 only (AIP-103), like the fixture: imported here so the module loads on 3.0.
    from airflow.sdk.execution_time.context import AssetStateStoreAccessor

    class DiesBeforeTheDocument(AssetStateStoreAccessor):
        """Airflow's accessor whose process dies when it writes a document (the index is written first).

        The one stand-in of this file: a crash between two writes cannot be produced on purpose
        with the real parts.
        """

        async def aset(self, key: str, value: Any) -> None:
            if not is_index_key(key):
                raise ConnectionError("the triggerer was killed")
            await super().aset(key, value)

    airflow = airflow_state_store
    asset = airflow.new_asset()
    scope = airflow.accessors(asset)
    scope._by_name[asset.name] = DiesBeforeTheDocument(name=asset.name)
    eu = Address(NAMESPACE, NAME, partition_key("eu"))
    with pytest.raises(StoreError):
        await NativeBackend(scope).awrite_many([Write(eu, text(1), None)])
    assert airflow.stored(asset, index_key(NAMESPACE, NAME))["keys"] == [eu.key]
    assert airflow.stored(asset, native_key(*eu)) is None
    restarted = NativeBackend(airflow.accessors(asset))
    assert stored(restarted) == {}
    assert await drain(prefixes(restarted, save_batch=1)([("eu", 1)])) == [("eu", 1)]
    assert stored(restarted) == {"eu": (1, 1)}


async def test_native_index_continues_in_parts_past_the_size_limit(
    airflow_state_store: AirflowStateStore,
) -> None:
    airflow = airflow_state_store
    asset = airflow.new_asset()
    store = NativeBackend(airflow.accessors(asset), max_value_bytes=1000)
    tenants = [f"tenant-{n:03d}-" + "x" * 40 for n in range(60)]
    addresses = [Address(NAMESPACE, NAME, partition_key(t)) for t in tenants]
    store.write_many([Write(a, text(1), None) for a in addresses[:30]])
    await store.awrite_many([Write(a, text(1), None) for a in addresses[30:]])
    parts = [k for k in airflow.keys(asset) if k.startswith("stateful/%index-part/")]
    assert len(parts) >= 3
    assert all(
        len(json.dumps(airflow.stored(asset, k))) <= 1000 for k in [*parts, index_key(NAMESPACE, NAME)]
    )
    restarted = NativeBackend(airflow.accessors(asset), max_value_bytes=1000)
    assert sorted(stored(restarted)) == sorted(tenants)
    assert [r.key for r in await restarted.alist_name(NAMESPACE, NAME)] == sorted(a.key for a in addresses)


async def test_native_write_many_writes_one_partition_after_the_other(
    airflow_state_store: AirflowStateStore,
) -> None:
    store = NativeBackend(airflow_state_store.accessors(airflow_state_store.new_asset()))
    eu, us = (Address(NAMESPACE, NAME, partition_key(p)) for p in ("eu", "us"))
    assert store.write_many([Write(eu, text(1), None), Write(us, text(1), None)]) == [1, 1]
    with pytest.raises(StateConflictError) as caught:
        store.write_many([Write(eu, text(2), 1), Write(us, text(2), 5)])
    assert caught.value.key == us.key
    assert stored(store) == {"eu": (2, 2), "us": (1, 1)}  # eu, before us, was written: no transaction


# -- cost: thousands of partitions, a few changing per event -------------------------------------


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def counted_sql(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SqlBackend, list[str]]]:
    """A SQL store whose every statement is recorded (the engine it creates is listened to)."""
    statements: list[str] = []
    real: Callable[..., sqlalchemy.Engine] = sqlalchemy.create_engine

    def counting(*args: Any, **kwargs: Any) -> sqlalchemy.Engine:
        engine = real(*args, **kwargs)

        def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            statements.append(statement.lstrip().split(None, 1)[0].upper())

        sqlalchemy.event.listen(engine, "before_cursor_execute", record)
        return engine

    monkeypatch.setattr(sqlalchemy, "create_engine", counting)
    if request.param == "sqlite":
        sql = SqlBackend(f"sqlite:///{tmp_path / 'many.db'}", group_commit=False)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        sql = SqlBackend(server.url, table_name=unique_table(), group_commit=False)
    yield sql, statements
    sql.dispose()


def sql_url(sql: SqlBackend) -> str:
    return sql._url.render_as_string(hide_password=False)


def writes(statements: list[str]) -> int:
    return sum(1 for s in statements if s in ("INSERT", "UPDATE", "DELETE"))


async def test_five_thousand_partitions_cost_per_save_what_changed(
    counted_sql: tuple[SqlBackend, list[str]],
) -> None:
    sql, statements = counted_sql
    partitions = [f"p{i:04d}" for i in range(5000)]
    # Thousands stored (as a long first run leaves them), inserted in one statement to save time.
    sql.open()
    now = datetime.now(timezone.utc)
    rows = [
        {"namespace": NAMESPACE, "name": NAME, "key": partition_key(p), "value": text(1), "version": 1}
        | {"updated_at": now, "updated_by": "test"}
        for p in partitions
    ]
    engine = sqlalchemy.create_engine(sql_url(sql))
    with engine.begin() as conn:
        conn.execute(sql._table.insert(), rows)
    engine.dispose()
    statements.clear()
    changed_per_event = [["p0001", "p2500"], ["p4999"], ["p0001", "p0002", "p0003"]]
    per_save: list[int] = []  # the write statements of each event's save
    listed: list[int] = []

    class Few(Prefixes):
        @stateful(namespace=NAMESPACE, name="{bucket}", backend=sql, save_batch=1)
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
            listed.append(len(keyed))
            for n, changed in enumerate(changed_per_event, start=2):
                if n > 2:  # resumed: the previous event's save is done
                    per_save.append(writes(statements))
                statements.clear()
                for p in changed:
                    keyed[p].advance(cursor=n)
                yield TriggerEvent({"prefix": ",".join(changed), "n": n})
            per_save.append(writes(statements))
            statements.clear()

    assert len(await drain(Few([]))) == 3
    assert writes(statements) == 0  # finish() found nothing left to save
    assert listed == [5000]
    # Each save writes only the partitions its event changed: per partition the same few statements.
    per_partition = per_save[1]
    # The compare-and-set UPDATE of its row, its history row, the trim of its history: a handful.
    assert 1 <= per_partition <= 3
    assert per_save == [2 * per_partition, per_partition, 3 * per_partition]
    changed = {p for p, (version, _) in stored(sql).items() if version > 1}
    assert changed == {"p0001", "p0002", "p0003", "p2500", "p4999"}


async def test_the_testing_kit_runs_a_keyed_trigger_and_its_crash_saves_nothing_after_it() -> None:
    store = MemoryBackend()
    trigger_class = prefixes(store, save_batch=1)
    run = await run_trigger(
        trigger_class([("eu", 1), ("us", 1), ("eu", 2)]), max_events=2, crash="before_save", ack=False
    )
    assert [(e.payload["prefix"], e.payload["n"]) for e in run.events] == [("eu", 1), ("us", 1)]
    assert stored(store) == {"eu": (1, 1)}  # the second event's save was cut by the crash
    again = await run_trigger(trigger_class([("eu", 1), ("us", 1), ("eu", 2)]), ack=False)
    assert [(e.payload["prefix"], e.payload["n"]) for e in again.events] == [("us", 1), ("eu", 2)]
    assert stored(store) == {"eu": (2, 2), "us": (1, 1)}
