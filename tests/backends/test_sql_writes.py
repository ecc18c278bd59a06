"""What a SQL write sends, and what a refused group COMMIT says.

Statements are counted with SQLAlchemy's ``before_cursor_execute`` event on a real SQLite file
and on the PostgreSQL fixture; the refused COMMIT is a real one (a deferred constraint trigger
on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stateful.backends import SqlBackend
from stateful.errors import StateConflictError, StoreError
from tests._postgres import PostgresServer
from tests._triggerer import until
from tests.backends.test_sql_parts import ADDRESS, Database, Writer, statements
from tests.conftest import unique_table

SMALL = '{"cursor":%d,"seen":{},"timestamp":null}'


@pytest.fixture
def store(url_and_table: tuple[str, str]) -> Iterator[SqlBackend]:
    url, table = url_and_table
    made = SqlBackend(url, table_name=table, history_versions=3)
    yield made
    made.dispose()


@pytest.fixture
def db(url_and_table: tuple[str, str]) -> Iterator[Database]:
    url, table = url_and_table
    engine = sa.create_engine(url)
    yield Database(engine, table)
    engine.dispose()


def on(table: str, sent: list[str]) -> dict[str, int]:
    """How many of ``sent`` read or write the state table, its history and its parts, by kind."""
    counts: dict[str, int] = {}
    pattern = re.compile(rf"^(SELECT|INSERT|UPDATE|DELETE)\b.*?\b{table}(_history|_parts)?\b")
    for statement in sent:
        match = pattern.match(statement)
        if match is not None:
            kind = f"{match.group(1)} {table}{match.group(2) or ''}"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_a_small_save_is_one_update_and_its_history_row(store: SqlBackend, db: Database) -> None:
    store.write(*ADDRESS, SMALL % 0, expected_version=None)
    with statements() as sent:
        for version in range(1, 6):
            assert store.write(*ADDRESS, SMALL % version, expected_version=version) == version + 1

    t = db.table
    # No SELECT of the parts held, no statement on the parts table at all: the row is no manifest.
    assert on(t, sent) == {f"UPDATE {t}": 5, f"DELETE {t}_history": 5, f"INSERT {t}_history": 5}
    assert [r.version for r in store.history(*ADDRESS)] == [6, 5, 4]


async def test_group_committed_small_saves_send_no_statement_on_the_parts_table(
    store: SqlBackend, db: Database
) -> None:
    names = [f"n{i}" for i in range(20)]
    for name in names:
        await store.awrite(ADDRESS.namespace, name, ADDRESS.key, SMALL % 0, expected_version=None)
    with statements() as sent:
        writes = (
            store.awrite(ADDRESS.namespace, n, ADDRESS.key, SMALL % 1, expected_version=1) for n in names
        )
        assert await asyncio.gather(*writes) == [2] * len(names)

    t = db.table
    assert on(t, sent) == {f"UPDATE {t}": 20, f"DELETE {t}_history": 20, f"INSERT {t}_history": 20}


def test_a_small_state_after_a_large_one_keeps_a_manifest_until_its_parts_are_collected(
    store: SqlBackend, db: Database
) -> None:
    writer = Writer(store)  # history_versions=3
    writer.save(*range(1_000))  # version 1: a manifest and its parts
    held = db.part_ids()
    assert held

    store.write(*ADDRESS, SMALL % 2, expected_version=1)  # v2: drops every part
    store.write(*ADDRESS, SMALL % 3, expected_version=2)  # v3: version 1 is still kept
    # While parts are held the row is a manifest (without parts), so the next write sees them.
    assert db.state_value().startswith('{"%stateful/parts":') and db.part_ids() == held
    assert [r.value for r in store.history(*ADDRESS)][:2] == [SMALL % 3, SMALL % 2]
    assert store.history(*ADDRESS)[2].value == writer.watermark.to_state_json()

    store.write(*ADDRESS, SMALL % 4, expected_version=3)  # v4: version 1 left the window
    assert db.part_ids() == set() and db.state_value() == SMALL % 4
    with statements() as sent:
        store.write(*ADDRESS, SMALL % 5, expected_version=4)
    assert not [s for s in sent if f"{db.table}_parts" in s]
    assert [r.value for r in store.history(*ADDRESS)] == [SMALL % v for v in (5, 4, 3)]


def test_a_conflicting_small_save_is_still_a_conflict(store: SqlBackend, db: Database) -> None:
    store.write(*ADDRESS, SMALL % 0, expected_version=None)
    store.write(*ADDRESS, SMALL % 1, expected_version=1)
    with pytest.raises(StateConflictError) as caught:
        store.write(*ADDRESS, SMALL % 9, expected_version=1)
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    assert db.state_value() == SMALL % 1


@pytest.mark.postgres
async def test_a_refused_group_commit_says_the_whole_batch_was_refused(postgres: PostgresServer) -> None:
    table = unique_table()
    store = SqlBackend(postgres.url, table_name=table, commit_workers=1)
    engine = sa.create_engine(postgres.url)
    try:
        for name in ["gate", "a", "b", "c"]:
            store.write("ns", name, "k", "old", expected_version=None)
        with engine.begin() as conn:
            # A deferred constraint trigger: checked at COMMIT, so the batch's COMMIT is refused.
            conn.execute(
                sa.text(
                    f"CREATE FUNCTION {table}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF NEW.value = 'poison' THEN RAISE EXCEPTION 'poison refused at commit'; END IF; "
                    f"RETURN NULL; END $$"
                )
            )
            conn.execute(
                sa.text(
                    f"CREATE CONSTRAINT TRIGGER {table}_refuse AFTER UPDATE ON {table} DEFERRABLE "
                    f"INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_refuse()"
                )
            )
        # Hold the group committer's one worker on a row lock, so that the next three writes
        # queue meanwhile and share the next batch.
        holder = engine.connect()
        holder.execute(sa.text(f"SELECT 1 FROM {table} WHERE name = 'gate' FOR UPDATE"))
        gate = asyncio.create_task(store.awrite("ns", "gate", "k", "new", expected_version=1))

        def waiting() -> bool:
            with engine.connect() as conn:
                return bool(conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar())

        await until(waiting)
        writes = [
            asyncio.create_task(store.awrite("ns", name, "k", value, expected_version=1))
            for name, value in [("a", "new"), ("b", "poison"), ("c", "new")]
        ]
        for _ in range(3):
            await asyncio.sleep(0)  # each write is queued once its task first runs
        holder.close()  # rolls its transaction back: the row lock goes
        assert await gate == 2
        outcomes = await asyncio.gather(*writes, return_exceptions=True)

        assert all(isinstance(outcome, StoreError) for outcome in outcomes)
        message = str(outcomes[0])
        assert "poison refused at commit" in message
        assert (
            "The COMMIT of this write's batch (shared with 2 other writes by group commit) failed" in message
        )
        assert "none of its 3 writes was applied" in message
        assert "resumes from its last stored watermark" in message
        assert "group_commit=False" in message
        values = {record.name: (record.value, record.version) for record in store.list("ns")}
        assert values == {"gate": ("new", 2), "a": ("old", 1), "b": ("old", 1), "c": ("old", 1)}
        # The next batch without the poison goes through.
        assert await store.awrite("ns", "a", "k", "new", expected_version=1) == 2
    finally:
        store.dispose()
        engine.dispose()
