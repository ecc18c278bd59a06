"""examples/postgres.py on a real PostgreSQL server, with its watermarks stored in that server.

Each "run" is one trigger instance driven the way the triggerer drives it, in its own event
loop, until it completed a number of poll cycles; a new instance is a triggerer restart. Rows
are written by real transactions on their own connections, committed in the order each test
needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import psycopg
import pytest
from airflow.models.trigger import Trigger
from airflow.sdk import DAG, PokeReturnValue
from airflow.serialization.encoders import encode_trigger
from airflow.triggers.base import TriggerEvent

from examples.postgres import MAX_CLOCK_SKEW, NewRowsSensor, NewRowsTrigger, Row, RowSource, take_new_rows
from stateful import Watermark, commit
from stateful.backends import SqlBackend
from stateful.backends.sql import dispose_default_stores
from stateful.testing import run_trigger
from tests._postgres import PostgresServer
from tests._triggerer import Triggerer, until
from tests.conftest import unique_table

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.airflow_min("3.1", reason="the examples use airflow.sdk.BaseHook and DAG bundles"),
]

POLL = 0.02
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
T0 = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def state_in_postgres(monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer) -> Iterator[None]:
    """The default store: a state table in the same PostgreSQL server."""
    monkeypatch.setenv("STATEFUL_DATABASE_URL", postgres.url)
    monkeypatch.setenv("AIRFLOW__STATEFUL__DATABASE_URL", postgres.url)
    dispose_default_stores()
    yield
    dispose_default_stores()


@pytest.fixture
def db(postgres: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres.conninfo, autocommit=True) as connection:
        yield connection


@pytest.fixture
def table(db: psycopg.Connection[Any]) -> str:
    """A fresh table: an identity id, a payload, and an updated_at the writer stamps."""
    name = unique_table()
    db.execute(
        f"CREATE TABLE {name} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload text, "
        f"updated_at timestamptz NOT NULL DEFAULT now())"
    )
    db.execute(f"CREATE INDEX ON {name} (updated_at, id)")
    # The usual way to keep updated_at current: a trigger stamps every update.
    db.execute(
        f"CREATE FUNCTION {name}_touch() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$"
    )
    db.execute(f"CREATE TRIGGER touch BEFORE UPDATE ON {name} FOR EACH ROW EXECUTE FUNCTION {name}_touch()")
    return name


def insert(connection: psycopg.Connection[Any], table: str, *payloads: str) -> list[int]:
    """Insert rows in the connection's current transaction (or at once in autocommit); their ids."""
    ids = []
    for payload in payloads:
        row = connection.execute(
            f"INSERT INTO {table} (payload) VALUES (%s) RETURNING id", [payload]
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def trigger_for(
    postgres: PostgresServer, table: str, page_rows: int | None = None, **options: Any
) -> NewRowsTrigger:
    trigger = NewRowsTrigger(table, conninfo=postgres.conninfo, poll_interval=POLL, **options)
    if page_rows is not None:
        trigger.page_rows = page_rows
    return trigger


def run(
    trigger: NewRowsTrigger,
    polls: int = 2,
    between: dict[int, Callable[[], None]] | None = None,
    max_events: int | None = None,
) -> list[list[int]]:
    """Drive one trigger instance until it completed ``polls`` poll cycles; the ids of each event.

    ``between[n]`` runs once the trigger completed ``n`` polls and sleeps (a commit elsewhere).
    With ``max_events``, stop as soon as one more event arrives, without taking it.
    """
    steps = dict(between or {})

    def until() -> bool:
        for done in sorted(n for n in steps if n <= trigger.polls):
            steps.pop(done)()
        return trigger.polls >= polls

    # With max_events: the next event is handed over, then the triggerer stops before its save.
    result = asyncio.run(
        run_trigger(
            trigger,
            until=until,
            idle_timeout=60,
            max_events=None if max_events is None else max_events + 1,
            crash=None if max_events is None else "before_save",
        )
    )
    assert result.reason == ("until" if max_events is None else "crash")
    assert max_events is not None or not steps, f"never reached poll(s) {sorted(steps)}"
    for event in result.events:
        assert event.payload["table"] == trigger.rows.table
    return [[row["id"] for row in event.payload["rows"]] for event in result.events]


def flat(events: list[list[int]]) -> list[int]:
    return [row_id for event in events for row_id in event]


def stored(postgres: PostgresServer, name: str) -> Watermark[int]:
    store = SqlBackend(postgres.url)
    try:
        record = store.read("postgres", name, "watermark")
    finally:
        store.dispose()
    assert record is not None
    return Watermark[int].from_state_json(record.value)


# --- by id -----------------------------------------------------------------------------------


def test_new_rows_fire_once_in_id_order_and_a_restart_repeats_nothing(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    first = insert(db, table, "a", "b", "c")
    assert flat(run(trigger_for(postgres, table))) == first

    assert run(trigger_for(postgres, table)) == []

    later = insert(db, table, "d", "e")
    assert flat(run(trigger_for(postgres, table))) == later
    assert run(trigger_for(postgres, table)) == []


def test_a_lower_id_committed_after_a_higher_one_is_reported_exactly_once(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    # The classic trap, with two real concurrent transactions: T1 takes id N, T2 takes N+1 and
    # commits first; a poll sees N+1 only. `id > last_id` would never read N.
    with psycopg.connect(postgres.conninfo) as t1, psycopg.connect(postgres.conninfo) as t2:
        (n,) = insert(t1, table, "T1, slow")
        (n1,) = insert(t2, table, "T2, fast")
        assert n1 == n + 1
        t2.commit()
        trigger = trigger_for(postgres, table)

        events = run(trigger, polls=3, between={1: t1.commit})

    # Poll 1 reported N+1 (N was invisible); after T1 committed, N alone.
    assert events == [[n1], [n]]
    assert run(trigger_for(postgres, table)) == []  # restart: nothing again


def test_a_lower_id_is_reported_even_after_higher_ids_were_reported_since(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    # As above, and a later row is reported while T1 is still open: the position has moved on
    # past N twice before N becomes visible.
    with psycopg.connect(postgres.conninfo) as t1, psycopg.connect(postgres.conninfo) as t2:
        (n,) = insert(t1, table, "T1, slow")
        (n1,) = insert(t2, table, "T2, fast")
        t2.commit()
        later: list[int] = []
        trigger = trigger_for(postgres, table)

        events = run(
            trigger, polls=4, between={1: lambda: later.extend(insert(db, table, "c")), 2: t1.commit}
        )

    assert events == [[n1], later, [n]]
    assert run(trigger_for(postgres, table)) == []


def test_out_of_order_commit_across_a_restart(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    with psycopg.connect(postgres.conninfo) as t1, psycopg.connect(postgres.conninfo) as t2:
        (n,) = insert(t1, table, "T1")
        (n1,) = insert(t2, table, "T2")
        t2.commit()
        assert run(trigger_for(postgres, table)) == [[n1]]
        later = insert(db, table, "c")
        assert run(trigger_for(postgres, table)) == [later]
        t1.commit()

    assert run(trigger_for(postgres, table)) == [[n]]
    assert run(trigger_for(postgres, table)) == []


async def test_in_airflows_triggerer_loop_out_of_order_commits_and_a_restart(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    # The loop Airflow's triggerer runs for every watcher (TriggerRunner.run_trigger).
    def ids(triggerer: Triggerer) -> list[int]:
        return [row["id"] for payload in triggerer.events for row in payload["rows"]]

    with psycopg.connect(postgres.conninfo) as t1:
        (n,) = insert(t1, table, "T1, slow")
        (n1,) = insert(db, table, "fast")
        first, trigger = Triggerer(), trigger_for(postgres, table)
        first.start(cast(Any, trigger))
        await until(lambda: trigger.polls >= 2)
        assert ids(first) == [n1]
        t1.commit()
        await until(lambda: len(ids(first)) == 2)
        await first.settled()  # a clean shutdown: Airflow stored both events, the watermark saved
        await first.stop()
    assert ids(first) == [n1, n]

    again, restarted = Triggerer(), trigger_for(postgres, table)
    again.start(cast(Any, restarted))
    await until(lambda: restarted.polls >= 2)
    await again.stop()
    assert again.events == []


def test_known_miss_a_transaction_committing_later_than_the_lookback(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    # With no lookback the floor passes N as soon as a later poll reports something: this is
    # the naive `id > last_id`, and it loses N. A default lookback keeps N (test above).
    with psycopg.connect(postgres.conninfo) as t1:
        (n,) = insert(t1, table, "T1, slow")
        (n1,) = insert(db, table, "fast")
        options: dict[str, Any] = {"lookback": timedelta(0)}
        assert run(trigger_for(postgres, table, **options)) == [[n1]]
        (n2,) = insert(db, table, "next")
        assert run(trigger_for(postgres, table, **options)) == [[n2]]
        t1.commit()

    assert run(trigger_for(postgres, table, **options)) == []  # KNOWN MISS: N is never reported
    assert n < n1 < n2


def test_rows_are_paged_and_batched(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    ids = insert(db, table, *(f"row {i}" for i in range(10)))

    events = run(trigger_for(postgres, table, page_rows=4, batch_size=3))

    # Pages of 4 rows (4, 4, 2), each emitted in events of at most 3 rows.
    assert events == [ids[0:3], ids[3:4], ids[4:7], ids[7:8], ids[8:10]]
    # Every row is now inside the lookback: the next run pages through seen rows, reports none.
    assert run(trigger_for(postgres, table, page_rows=4, batch_size=3)) == []


def test_an_event_not_taken_is_repeated_and_the_rest_of_its_page_follows(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    ids = insert(db, table, *"abcde")

    # The triggerer took the first event; the second was handed over, then it stopped.
    assert run(trigger_for(postgres, table, batch_size=2), max_events=1) == [ids[0:2], ids[2:4]]

    assert run(trigger_for(postgres, table, batch_size=2)) == [ids[2:4], ids[4:]]
    assert run(trigger_for(postgres, table, batch_size=2)) == []


def test_state_stays_within_the_lookback(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    options: dict[str, Any] = {"lookback": timedelta(0)}
    first = insert(db, table, "a", "b")
    assert flat(run(trigger_for(postgres, table, **options))) == first
    (later,) = insert(db, table, "c")
    assert flat(run(trigger_for(postgres, table, **options))) == [later]

    watermark = stored(postgres, trigger_for(postgres, table).source)
    # The keys read before the last report settled: the floor passed them and they were pruned.
    assert watermark.cursor == first[-1]
    assert set(watermark.seen) == {str(later)}


def test_the_query_runs_off_the_event_loop(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    (row_id,) = insert(db, table, "a")

    async def scenario() -> tuple[int, list[Any]]:
        trigger = trigger_for(postgres, table)
        ticks = 0
        with psycopg.connect(postgres.conninfo) as locker:
            # Another transaction holds the table: the trigger's SELECT waits on the server.
            locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            events = cast("AsyncGenerator[TriggerEvent, None]", trigger.run())
            pending = asyncio.ensure_future(anext(events))
            for _ in range(50):
                await asyncio.sleep(0.005)
                ticks += 1
            assert not pending.done()
            locker.rollback()
        event = await asyncio.wait_for(pending, 30)
        await events.aclose()
        return ticks, event.payload["rows"]

    ticks, rows = asyncio.run(scenario())
    assert ticks == 50  # the loop kept running while the query waited
    assert rows == [{"id": row_id}]


def test_a_dropped_connection_is_reopened(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str, capfd: pytest.CaptureFixture[str]
) -> None:
    (first,) = insert(db, table, "a")
    app = f"watch-{table}"
    trigger = NewRowsTrigger(
        table, conninfo=f"{postgres.conninfo} application_name={app}", poll_interval=POLL
    )

    def drop_and_insert() -> None:
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [app]
        )
        insert(db, table, "b")

    events = run(trigger, polls=5, between={2: drop_and_insert})

    assert flat(events) == [first, first + 1]
    # Airflow's trigger logger writes through structlog to the console.
    assert "terminating connection due to administrator command; reconnecting" in capfd.readouterr().out


def test_an_airflow_connection_id(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = postgres.url.replace("postgresql+psycopg://", "postgresql://")
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", f"{uri}?sslmode=disable&cursor=dictcursor")
    ids = insert(db, table, "a")
    trigger = NewRowsTrigger(table, conn_id="shop_db", poll_interval=POLL)

    assert flat(run(trigger)) == ids
    assert trigger.source == f"shop_db/{table}/id"


def test_serialize_round_trips_through_airflow(postgres: PostgresServer, table: str) -> None:
    trigger = NewRowsTrigger(
        f"public.{table}", conn_id="shop", updated_at_column="updated_at", lookback=timedelta(minutes=3)
    )

    classpath, kwargs = trigger.serialize()
    # What Airflow stores for a watcher (a Trigger row) and what the triggerer builds from it.
    encoded = encode_trigger(trigger)
    row = Trigger(classpath=encoded["classpath"], kwargs=encoded["kwargs"])

    rebuilt = NewRowsTrigger(**row.kwargs)
    assert classpath == "examples.postgres.NewRowsTrigger"
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.lookback == timedelta(minutes=3)


# --- by updated_at ---------------------------------------------------------------------------


def by_updated_at(
    postgres: PostgresServer, table: str, page_rows: int | None = None, **options: Any
) -> NewRowsTrigger:
    return trigger_for(postgres, table, page_rows, updated_at_column="updated_at", **options)


def test_updated_rows_fire_again_once_per_version(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    ids = insert(db, table, "a", "b")
    assert flat(run(by_updated_at(postgres, table))) == ids

    db.execute(f"UPDATE {table} SET payload = 'a2' WHERE id = %s", [ids[0]])

    assert flat(run(by_updated_at(postgres, table))) == [ids[0]]
    assert run(by_updated_at(postgres, table)) == []


def test_by_updated_at_a_long_transaction_committing_late_is_reported_once(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    # now() is the transaction's start: T1's row carries a time older than T2's, and commits later.
    with psycopg.connect(postgres.conninfo) as t1, psycopg.connect(postgres.conninfo) as t2:
        (old,) = insert(t1, table, "T1")
        (new,) = insert(t2, table, "T2")
        t2.commit()
        trigger = by_updated_at(postgres, table)

        events = run(trigger, polls=3, between={1: t1.commit})

    assert events == [[new], [old]]
    assert run(by_updated_at(postgres, table)) == []


def test_same_updated_at_across_pages(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    with psycopg.connect(postgres.conninfo) as writer:  # one transaction: one now() for all rows
        ids = insert(writer, table, *(f"tie {i}" for i in range(7)))

    assert flat(run(by_updated_at(postgres, table, page_rows=3))) == ids
    assert run(by_updated_at(postgres, table, page_rows=3)) == []


def test_a_row_stamped_in_the_future_is_held_back(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    db.execute(
        f"INSERT INTO {table} (payload, updated_at) VALUES ('future', now() + %s)",
        [MAX_CLOCK_SKEW + timedelta(days=1)],
    )
    ids = insert(db, table, "now")

    assert flat(run(by_updated_at(postgres, table))) == ids
    # The window did not jump a day ahead, so rows stamped now are still reported.
    (later,) = insert(db, table, "later")
    assert flat(run(by_updated_at(postgres, table))) == [later]


def test_a_timestamp_without_time_zone_is_refused(
    postgres: PostgresServer, db: psycopg.Connection[Any]
) -> None:
    name = unique_table()
    db.execute(f"CREATE TABLE {name} (id serial PRIMARY KEY, updated_at timestamp NOT NULL DEFAULT now())")
    db.execute(f"INSERT INTO {name} DEFAULT VALUES")

    with pytest.raises(TypeError, match=r"updated_at is not a timestamptz.*ALTER it to timestamptz"):
        run(by_updated_at(postgres, name))


def test_a_non_integer_id_column_is_refused(postgres: PostgresServer, db: psycopg.Connection[Any]) -> None:
    name = unique_table()
    db.execute(f"CREATE TABLE {name} (id text PRIMARY KEY)")
    db.execute(f"INSERT INTO {name} VALUES ('a')")

    with pytest.raises(TypeError, match="needs an incrementing integer column"):
        run(trigger_for(postgres, name))


def test_exactly_one_way_to_connect() -> None:
    with pytest.raises(ValueError, match="exactly one of conn_id="):
        NewRowsTrigger("orders")
    with pytest.raises(ValueError, match="exactly one of conn_id="):
        NewRowsSensor(task_id="t", table="orders", conn_id="a", conninfo="dbname=x")
    with pytest.raises(ValueError, match=r"'name' or 'schema\.name'"):
        RowSource("a.b.c", conn_id="x")


# --- the decision, without a database -------------------------------------------------------


def test_the_floor_passes_an_id_once_it_was_read_more_than_the_lookback_ago() -> None:
    wm = Watermark[int]().configure(lookback=timedelta(minutes=10))
    assert [r.id for r in take_new_rows(wm, [Row(5), Row(7)], T0)] == [5, 7]
    # Id 6 was invisible at T0; it commits 9 minutes later: still read (id > floor) and new.
    assert [r.id for r in take_new_rows(wm, [Row(5), Row(6), Row(7), Row(8)], T0 + timedelta(minutes=9))] == [
        6,
        8,
    ]
    assert wm.cursor is None
    # 11 minutes on, 5 and 7 (read at T0) settled: the floor is 7 and their keys are gone.
    take_new_rows(wm, [Row(9)], T0 + timedelta(minutes=11))
    assert wm.cursor == 7
    assert set(wm.seen) == {"6", "8", "9"}


def test_limit_advances_only_past_the_rows_returned() -> None:
    wm = Watermark[int]()
    assert [r.id for r in take_new_rows(wm, [Row(1), Row(2), Row(3)], T0, limit=2)] == [1, 2]
    assert [r.id for r in take_new_rows(wm, [Row(1), Row(2), Row(3)], T0)] == [3]


# --- the sensor ------------------------------------------------------------------------------


def sensor_for(postgres: PostgresServer, table: str, **options: Any) -> NewRowsSensor:
    with DAG(f"dag_{table}", schedule=None, start_date=START):
        return NewRowsSensor(task_id="new_rows", table=table, conninfo=postgres.conninfo, **options)


def poke(sensor: NewRowsSensor) -> list[int] | None:
    result = sensor.poke({})  # this sensor's poke() reads no context
    assert isinstance(result, PokeReturnValue)
    if not result.is_done:
        return None
    assert isinstance(result.xcom_value, list)
    return [row["id"] for row in result.xcom_value]


def test_the_sensor_reports_the_same_rows_again_after_a_failed_try(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    ids = insert(db, table, "a", "b")
    sensor = sensor_for(postgres, table)

    assert poke(sensor) == ids
    # The try failed after poke(): Airflow never ran the success callback, nothing was saved.
    retry = sensor_for(postgres, table)
    assert poke(retry) == ids
    assert commit(retry) == 1  # this try succeeded

    next_run = sensor_for(postgres, table)
    assert poke(next_run) is None
    (later,) = insert(db, table, "c")
    assert poke(next_run) == [later]


def test_the_sensor_handles_out_of_order_commits(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    with psycopg.connect(postgres.conninfo) as t1:
        (n,) = insert(t1, table, "T1")
        (n1,) = insert(db, table, "fast")
        first = sensor_for(postgres, table)
        assert poke(first) == [n1]
        commit(first)
        t1.commit()

    second = sensor_for(postgres, table)
    assert poke(second) == [n]
    commit(second)
    assert poke(sensor_for(postgres, table)) is None


def test_the_sensor_limit_leaves_the_rest_for_the_next_run(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    ids = insert(db, table, *"abcde")
    reported = []
    for _ in range(3):
        sensor = sensor_for(postgres, table, limit=2)
        sensor.page_rows = 3  # pages and the limit do not line up
        reported.append(poke(sensor))
        commit(sensor)
    assert reported == [ids[:2], ids[2:4], ids[4:]]


def test_the_sensor_by_updated_at_and_its_watermark_name(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    ids = insert(db, table, "a")
    sensor = sensor_for(postgres, table, updated_at_column="updated_at")
    assert poke(sensor) == ids
    commit(sensor)

    watermark = stored(postgres, f"dag_{table}.new_rows/{sensor.source}")
    assert sensor.source.endswith(f"/{table}/updated_at")
    assert watermark.timestamp is not None and len(watermark.seen) == 1
    # The server's TimeZone is America/New_York; keys are written in UTC all the same.
    (key,) = watermark.seen
    assert key.startswith(f"{ids[0]}@") and key.endswith("+00:00")
