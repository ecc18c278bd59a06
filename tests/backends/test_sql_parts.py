"""The SQL store writes a large state as a manifest and the parts it does not hold yet.

Real SQLite files and the PostgreSQL fixture; the layouts come from a real session over a real
watermark (S3-shaped keys, about 126 bytes per ``seen`` entry).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import pytest
import sqlalchemy as sa

from stateful import Watermark
from stateful._core import Save, Scope, WatermarkSession
from stateful._document import DEFAULT_KEY, encode_state, format_utc
from stateful._layout import Layout, part_id
from stateful.backends import SqlBackend
from stateful.backends.base import Address
from stateful.backends.sql.parts import INLINE_MAX_CHARS, MARKER, decode_manifest
from stateful.errors import StateConflictError, StoreError

ADDRESS = Address("files", "landing", DEFAULT_KEY)
SCOPE = Scope(ADDRESS, "SqlBackend")
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
LOOKBACK = timedelta(days=3650)  # keeps every key


def s3_key(index: int) -> str:
    return f"landing-bucket/incoming/orders/2024/05/01/part-{index:08d}-c000.snappy.parquet@v{index:016x}"


def stamp(index: int) -> datetime:
    return T0 + timedelta(milliseconds=index)


def stored_text(keys: int) -> str:
    """A watermark holding keys 0 .. keys - 1, as ``to_state_json`` (and a release before parts) writes it."""
    seen = {s3_key(i): format_utc(stamp(i)) for i in range(keys)}
    return encode_state({"cursor": None, "timestamp": format_utc(stamp(keys - 1)), "seen": seen})


class Writer:
    """A session over the stored watermark, saving through ``write_layout`` as the saver does."""

    def __init__(self, store: SqlBackend) -> None:
        self.store = store
        self.session = WatermarkSession(Watermark, SCOPE, commit="after_event", lookback=LOOKBACK)
        self.watermark = self.session.load(store.read(*ADDRESS))

    def add(self, *indexes: int) -> Save:
        for index in indexes:
            self.watermark.advance(timestamp=stamp(index), key=s3_key(index))
        save = self.session.after_resume(self.session.emitted())
        assert save is not None
        return save

    def layout(self, save: Save) -> Layout:
        return self.session.layout(save)

    def write(self, save: Save, layout: Layout | None = None) -> int:
        layout = self.layout(save) if layout is None else layout
        version = self.store.write_layout(*ADDRESS, layout, expected_version=save.expected_version)
        self.session.saved(save, version)
        return version

    def save(self, *indexes: int) -> int:
        return self.write(self.add(*indexes))

    def layout_ids(self) -> list[str]:
        """The part ids of the state saved last."""
        return self.session._shadow_state().layout().ids


class MakeStore(Protocol):
    def __call__(self, history_versions: int = 100) -> SqlBackend: ...


@pytest.fixture
def make_store(url_and_table: tuple[str, str]) -> Iterator[MakeStore]:
    url, table = url_and_table
    made: list[SqlBackend] = []

    def make(history_versions: int = 100) -> SqlBackend:
        made.append(SqlBackend(url, table_name=table, history_versions=history_versions))
        return made[-1]

    yield make
    for store in made:
        store.dispose()


@pytest.fixture
def db(url_and_table: tuple[str, str]) -> Iterator[Database]:
    url, table = url_and_table
    engine = sa.create_engine(url)
    yield Database(engine, table)
    engine.dispose()


class Database:
    """Looks at the store's tables directly, as an operator with a SQL prompt would."""

    def __init__(self, engine: sa.Engine, table: str) -> None:
        self.engine, self.table = engine, table

    def rows(self, sql: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql.format(t=self.table))))

    def state_value(self) -> str:
        value: str = self.rows("SELECT value FROM {t}")[0][0]
        return value

    def part_ids(self) -> set[str]:
        return {row[0] for row in self.rows("SELECT part_id FROM {t}_parts")}

    def history_values(self) -> dict[int, str]:
        if not sa.inspect(self.engine).has_table(f"{self.table}_history"):
            return {}
        return {row[0]: row[1] for row in self.rows("SELECT version, value FROM {t}_history")}

    def named(self) -> set[str]:
        """Every part id a kept manifest (the current one or one in the history) names."""
        ids: set[str] = set()
        for value in [self.state_value(), *self.history_values().values()]:
            manifest = decode_manifest(value)
            ids.update(manifest.ids if manifest is not None else [])
        return ids


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine of this process sends while the block runs."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


@contextlib.contextmanager
def failing(prefix: str) -> Iterator[None]:
    """Make the first statement starting with ``prefix`` fail, as a crash or a lost connection would."""

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if " ".join(statement.split()).startswith(prefix):
            raise RuntimeError(f"injected failure before: {prefix}")

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", fail)


def test_a_large_state_is_stored_as_a_manifest_and_read_back_whole(
    make_store: MakeStore, db: Database
) -> None:
    store = make_store()
    store.write(*ADDRESS, stored_text(2_000), expected_version=None)
    writer = Writer(store)
    save = writer.add(2_000)
    layout = writer.layout(save)

    assert writer.write(save, layout) == 2

    value = db.state_value()
    assert value.startswith(f'{{"{MARKER}":1') and len(value) < 4_000
    assert db.part_ids() == set(layout.ids) and len(layout.ids) >= 2
    record = store.read(*ADDRESS)
    assert record is not None and record.value == layout.text() == writer.watermark.to_state_json()
    assert [r.value for r in store.list(ADDRESS.namespace)] == [layout.text()]


def test_an_old_inline_row_loads_and_the_next_save_upgrades_it(make_store: MakeStore, db: Database) -> None:
    old = stored_text(1_000)  # written whole, as the release before parts writes every state
    make_store().write(*ADDRESS, old, expected_version=None)
    assert db.state_value() == old and db.part_ids() == set()

    writer = Writer(make_store())
    assert writer.watermark.to_state_json() == old
    writer.save(1_000)

    assert decode_manifest(db.state_value()) is not None
    reread = Writer(make_store())
    assert len(reread.watermark.seen) == 1_001 and reread.watermark.to_state_json() == (
        writer.watermark.to_state_json()
    )


def test_a_small_state_stays_inline(make_store: MakeStore, db: Database) -> None:
    store = make_store()
    writer = Writer(store)
    writer.save(0, 1, 2)
    assert db.state_value() == writer.watermark.to_state_json() and len(db.state_value()) < INLINE_MAX_CHARS
    assert db.part_ids() == set()


def test_a_save_adding_one_key_inserts_only_the_part_it_changed(make_store: MakeStore, db: Database) -> None:
    store = make_store()
    store.write(*ADDRESS, stored_text(10_000), expected_version=None)
    writer = Writer(store)
    save = writer.add(10_000)
    before = writer.layout(save)
    writer.write(save, before)  # the upgrade from the inline row writes every part
    held = db.part_ids()

    save = writer.add(10_001)
    layout = writer.layout(save)
    with statements() as sent:
        writer.write(save, layout)

    changed = set(layout.ids) - set(before.ids)
    assert 1 <= len(changed) <= 2 and len(layout.ids) >= 10  # a run re-encoded (or split in two)
    assert db.part_ids() == held | changed  # the replaced part is kept: the history names it
    inserts = [s for s in sent if s.startswith(f"INSERT INTO {db.table}_parts")]
    assert len(inserts) == 1  # one statement for the new parts, whatever the size
    parts_statements = [s for s in sent if f"{db.table}_parts" in s]
    assert len(parts_statements) <= 5
    assert not any(s.startswith(f"SELECT {db.table}_parts.part_id, {db.table}_parts.value") for s in sent)


def test_history_rows_are_manifests_and_history_returns_whole_texts(
    make_store: MakeStore, db: Database
) -> None:
    store = make_store()
    store.write(*ADDRESS, stored_text(2_000), expected_version=None)
    writer = Writer(store)
    texts = {1: stored_text(2_000)}
    for version, index in enumerate(range(2_000, 2_004), start=2):
        assert writer.save(index) == version
        texts[version] = writer.watermark.to_state_json()

    kept = db.history_values()
    assert kept[1] == texts[1]  # the row written whole stays whole
    assert all(decode_manifest(kept[v]) is not None and len(kept[v]) < 4_000 for v in range(2, 6))
    assert [(r.version, r.value) for r in store.history(*ADDRESS)] == sorted(texts.items(), reverse=True)
    assert [r.version for r in store.history(*ADDRESS, limit=2)] == [5, 4]


def test_rewinding_to_an_old_version_writes_its_text_and_keeps_every_version_readable(
    make_store: MakeStore, db: Database
) -> None:
    store = make_store()
    writer = Writer(store)
    writer.save(*range(1_000))
    writer.save(1_000)
    old = store.history(*ADDRESS)[1]
    # What `stateful rewind --to 1` does: write the old version's whole text, compare-and-set.
    assert store.write(*ADDRESS, old.value, expected_version=2) == 3

    record = store.read(*ADDRESS)
    assert record is not None and record.value == old.value
    # Version 2's parts are still held, so the row says so: a manifest without parts, the text before.
    manifest = decode_manifest(db.state_value())
    assert manifest is not None and manifest.ids == [] and manifest.after == ""
    assert manifest.before == old.value
    assert [r.version for r in store.history(*ADDRESS)] == [3, 2, 1]
    assert store.history(*ADDRESS)[1].value == writer.watermark.to_state_json()
    assert db.part_ids() == db.named()  # version 2's parts are kept for its history row
    # A new session continues from the rewound state and writes parts again.
    again = Writer(make_store())
    again.save(1_000)
    assert decode_manifest(db.state_value()) is not None
    assert store.read(*ADDRESS) == again.store.read(*ADDRESS)


def test_parts_no_kept_version_names_are_deleted_when_the_history_prunes(
    make_store: MakeStore, db: Database
) -> None:
    writer = Writer(make_store(history_versions=2))
    writer.save(*range(1_000))
    for index in range(1_000, 1_000 + 6):
        writer.save(index)
        assert db.part_ids() == db.named()
    assert sorted(db.history_values()) == [6, 7]
    assert len(db.part_ids()) == len(writer.layout_ids()) + 1  # the one part version 6 replaced


def test_without_history_only_the_current_parts_are_kept(make_store: MakeStore, db: Database) -> None:
    writer = Writer(make_store(history_versions=0))
    writer.save(*range(1_000))
    for index in range(1_000, 1_003):
        writer.save(index)
        assert db.part_ids() == db.named() == set(writer.layout_ids())
    # A whole text written over the manifest leaves no part behind.
    store = writer.store
    store.write(*ADDRESS, "{}", expected_version=4)
    assert db.part_ids() == set()


def test_delete_deletes_the_parts(make_store: MakeStore, db: Database) -> None:
    writer = Writer(make_store())
    writer.save(*range(1_000))
    writer.save(1_000)
    assert writer.store.delete(*ADDRESS) and db.part_ids() == set()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {t} SET",
        "INSERT INTO {t}_history",
        "INSERT INTO {t}_parts",
        "UPDATE {t}_parts",
        "DELETE FROM {t}_parts",
    ],
)
def test_a_save_interrupted_between_its_statements_leaves_the_previous_version_whole(
    make_store: MakeStore, db: Database, statement: str
) -> None:
    writer = Writer(make_store(history_versions=1))  # so the save also drops and deletes parts
    writer.save(*range(2_000))
    writer.save(2_000)
    before = (writer.store.read(*ADDRESS), db.part_ids(), db.history_values())
    save = writer.add(2_001)  # replaces the last part: every statement of a save runs

    with failing(statement.format(t=db.table)), pytest.raises(StoreError, match="injected failure"):
        writer.write(save)

    assert (make_store().read(*ADDRESS), db.part_ids(), db.history_values()) == before
    assert writer.write(save) == 3  # the same save, retried, goes through
    assert make_store().read(*ADDRESS) == writer.store.read(*ADDRESS)


def test_a_conflicting_save_writes_no_part(make_store: MakeStore, db: Database) -> None:
    first = Writer(make_store())
    first.save(*range(1_000))
    second = Writer(make_store())
    first.save(1_000)
    held = db.part_ids()
    save = second.add(5_000)

    with pytest.raises(StateConflictError) as caught:
        second.write(save)

    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    assert db.part_ids() == held


async def test_the_async_write_takes_the_layout_too(make_store: MakeStore, db: Database) -> None:
    store = make_store()
    writer = Writer(store)
    save = writer.add(*range(1_000))
    layout = writer.layout(save)
    assert await store.awrite_layout(*ADDRESS, layout, expected_version=None) == 1
    record = await store.aread(*ADDRESS)
    assert record is not None and record.value == layout.text() and db.part_ids() == set(layout.ids)


def test_a_part_edited_by_hand_is_a_clear_error(make_store: MakeStore, db: Database) -> None:
    store = make_store()
    Writer(store).save(*range(1_000))
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {db.table}_parts SET value = 'x'"))
    with pytest.raises(StoreError, match="does not match its content id") as caught:
        make_store().read(*ADDRESS)
    assert "files/landing" in str(caught.value) and "stateful rewind" in str(caught.value)


def test_a_layout_joins_to_the_text_its_parts_are_cut_from() -> None:
    parts = ['"a":null', '"b":"2024-05-01T00:00:00.000000Z"']
    layout = Layout('{"cursor":1,"seen":{', tuple((part_id(p), p) for p in parts), "}}")
    assert json.loads(layout.text()) == {"cursor": 1, "seen": {"a": None, "b": "2024-05-01T00:00:00.000000Z"}}
    assert layout.size == len(layout.text())
