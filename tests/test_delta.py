"""Saving in deltas: the rendered text, the state digest, idempotency keys, a 10^5-key state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from stateful import Watermark, stateful
from stateful._core import Scope, WatermarkSession
from stateful._document import DEFAULT_KEY, encode_state, format_utc
from stateful._layout import Layout, part_id
from stateful._shadow import Shadow
from stateful._trigger_driver import IDEMPOTENCY_FIELD
from stateful.backends import MemoryBackend, SqlBackend, StateRecord
from stateful.backends.base import Address, AsyncStateBackend
from tests.conftest import POSTGRES_PARAM, unique_table
from tests.test_watermark_properties import keys, lookbacks, timestamps

SCOPE = Scope(Address("ns", "name", DEFAULT_KEY), "TestStore")
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


class Tagged(Watermark[int]):
    """User fields of several JSON shapes, so the rendered head is more than two nulls."""

    note: str = ""
    tags: list[str] = Field(default_factory=list)
    extra: dict[str, int] = Field(default_factory=dict)


# One step of user code: an advance (timestamp, cursor, key), or a change to a user field.
steps = st.one_of(
    st.tuples(st.just("advance"), st.none() | timestamps, st.none() | st.integers(-5, 5), st.none() | keys),
    st.tuples(st.just("note"), st.text(max_size=5)),
    st.tuples(st.just("tag"), st.sampled_from(["z", "é", "seen", '"q"'])),
)


def apply(wm: Tagged, step: tuple[Any, ...]) -> None:
    if step[0] == "advance":
        if step[1:] != (None, None, None):
            wm.advance(timestamp=step[1], cursor=step[2], key=step[3])
    elif step[0] == "note":
        wm.note = step[1]
    else:
        wm.tags = [*wm.tags, step[1]]
        wm.extra = {**wm.extra, step[1]: len(wm.tags)}


def assert_layout_is_the_text(layout: Layout, text: str) -> None:
    """The layout joins to ``text`` byte for byte, and each part is named by its content."""
    assert layout.text() == text and layout.size == len(text)
    assert text.startswith(layout.before) and text.endswith(layout.after)
    assert all(pid == part_id(part) and part for pid, part in layout.parts)
    assert json.loads(layout.before + layout.after)["seen"] == {}  # seen's braces open and close them


@settings(max_examples=150, deadline=None)
@given(
    lookback=lookbacks,
    cap=st.integers(1, 4),
    events=st.lists(st.lists(steps, max_size=4), max_size=8),
    confirm_every=st.integers(1, 3),
)
def test_a_rendered_save_is_the_text_to_state_json_writes(
    lookback: timedelta, cap: int, events: list[list[tuple[Any, ...]]], confirm_every: int
) -> None:
    session = WatermarkSession(Tagged, SCOPE, commit="after_event", lookback=lookback, max_untimed_keys=cap)
    wm = session.load(None)
    texts: dict[int, str] = {}
    for steps_of_event in events:
        for step in steps_of_event:
            apply(wm, step)
        seq = session.emitted()
        texts[seq] = wm.to_state_json()
        if seq % confirm_every == 0:
            save = session.confirm(seq)
            if save is not None:
                assert_layout_is_the_text(session.layout(save), texts[seq])
                assert session.render(save) == texts[seq]
                session.saved(save, seq)
    final = session.finish()
    if final is not None:
        assert session.render(final) == wm.to_state_json()
        session.saved(final, len(texts) + 1)
    # The digest kept in step with the deltas is the digest of the state, computed afresh.
    if session.saved_digest is not None:
        assert session.saved_digest == Shadow.of(Tagged.from_state_json(wm.to_state_json())).digest


def test_the_digest_is_the_state_not_the_way_there() -> None:
    one, two = Watermark(), Watermark()
    one.advance(key="a")
    one.advance(key="b")
    two.advance(key="b")
    two.advance(key="a")
    assert Shadow.of(one).digest == Shadow.of(two).digest
    two.advance(cursor=1)
    assert Shadow.of(one).digest != Shadow.of(two).digest


def test_emitting_without_a_change_records_no_delta_and_no_save() -> None:
    session = WatermarkSession(Watermark[int], SCOPE, commit="after_event")
    stored = Watermark[int](cursor=3)
    stored.advance(key="x")
    wm = session.load(StateRecord("ns", "name", DEFAULT_KEY, stored.to_state_json(), 4, T0, "test"))
    assert session.after_resume(session.emitted()) is None
    wm.advance(key="x")  # already seen: no change
    assert session.after_resume(session.emitted()) is None
    wm.advance(key="y")
    save = session.after_resume(session.emitted())
    assert save is not None and json.loads(session.render(save))["seen"] == {"x": None, "y": None}


class Files(BaseEventTrigger):
    """Emits one event per name not yet seen, keeping every key (a lookback that never expires)."""

    def __init__(self, indexes: list[int]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.indexes = indexes

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.test_delta.Files", {"indexes": self.indexes})

    async def body(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        for index in self.indexes:
            name, stamp = s3_key(index), T0 + timedelta(milliseconds=index)
            if watermark.is_new(name, stamp):
                watermark.advance(timestamp=stamp, key=name)
                yield TriggerEvent({"name": name})


def files_trigger(store: AsyncStateBackend) -> type[Files]:
    class Bound(Files):
        @stateful(namespace="tests", name="files", backend=store, ack=False, lookback=timedelta(days=3650))
        async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
            async for event in self.body(watermark):
                yield event

    return Bound


async def test_idempotency_keys_are_the_same_for_the_same_transition_after_a_restart() -> None:
    store = MemoryBackend()
    trigger = files_trigger(store)
    first = [e.payload async for e in trigger([0, 1]).run()]
    # A crash after item 2 was handed over but before it was taken: the restart repeats it.
    run = trigger([0, 1, 2, 3]).run()
    crashed = (await anext(run)).payload
    await run.aclose()  # type: ignore[attr-defined]
    repeated = [e.payload async for e in trigger([0, 1, 2, 3]).run()]
    assert [p["name"] for p in first] == [s3_key(0), s3_key(1)] and crashed["name"] == s3_key(2)
    assert [p["name"] for p in repeated] == [s3_key(2), s3_key(3)]
    assert repeated[0][IDEMPOTENCY_FIELD] == crashed[IDEMPOTENCY_FIELD]
    assert len({p[IDEMPOTENCY_FIELD] for p in [*first, *repeated]}) == 4


BIG = 100_000


def s3_key(index: int) -> str:
    # About 100 bytes, like an S3 key with its version: bucket/prefix/date/name@version.
    return f"landing-bucket/incoming/orders/2024/05/01/part-{index:08d}-c000.snappy.parquet@v{index:016x}"


def big_state() -> str:
    """A stored watermark whose ``seen`` holds keys 0 to BIG - 1 (written as to_state_json would)."""
    stamps = {s3_key(i): format_utc(T0 + timedelta(milliseconds=i)) for i in range(BIG)}
    return encode_state({"cursor": None, "timestamp": stamps[s3_key(BIG - 1)], "seen": stamps})


@pytest.mark.parametrize("kind", ["memory", "sqlite", POSTGRES_PARAM])
async def test_a_state_of_100_000_keys_loads_emits_saves_and_restarts(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store: Any = MemoryBackend()
    url = f"sqlite:///{tmp_path / 'big.db'}"
    if kind == "sqlite":
        store = SqlBackend(url)
    elif kind == "postgres":
        url = request.getfixturevalue("postgres").url
        store = SqlBackend(url, table_name=unique_table())
    # Written whole, as a release before parts wrote it: the first save upgrades it.
    store.write("tests", "files", DEFAULT_KEY, big_state(), expected_version=None)
    trigger = files_trigger(store)
    # Old keys (first, middle, last) are seen; the two after them are new.
    indexes = [0, BIG // 2, BIG - 1, BIG, BIG + 1]
    emitted = [e.payload["name"] async for e in trigger(indexes).run()]
    assert emitted == [s3_key(BIG), s3_key(BIG + 1)]
    record = store.read("tests", "files", DEFAULT_KEY)
    loaded = Watermark.from_state_json(record.value)
    assert len(loaded.seen) == BIG + 2 and record.value == loaded.to_state_json()
    assert record.version == 2  # the two taken events share one save
    if isinstance(store, SqlBackend):  # saved as a manifest and its parts, read back whole
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            value = conn.execute(sa.text(f"SELECT value FROM {store.table_name}")).scalar_one()
            parts = conn.execute(sa.text(f"SELECT count(*) FROM {store.table_name}_parts")).scalar_one()
        engine.dispose()
        assert value.startswith('{"%stateful/parts":1') and len(value) < 50_000 and parts >= 100
    # A restart finds everything seen: nothing is emitted again.
    assert [e async for e in trigger(indexes).run()] == []
    if isinstance(store, SqlBackend):
        store.dispose()


@settings(max_examples=100, deadline=None)
@given(
    start=st.sets(st.integers(0, 60), max_size=30),
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 60), st.none() | st.integers(0, 100)), max_size=12), max_size=6
    ),
)
def test_rendering_in_small_runs_keeps_the_text_of_to_state_json(
    start: set[int], batches: list[list[tuple[int, int | None]]]
) -> None:
    """Runs of two keys: every change splits, re-encodes or empties a run somewhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("stateful._shadow.RENDER_CHUNK", 2)
        stored = Watermark().configure(lookback=timedelta(days=1))
        for index in sorted(start, reverse=True):
            stored.advance(timestamp=T0 + timedelta(seconds=index), key=f"k{index:02d}")
        session = WatermarkSession(Watermark, SCOPE, commit="after_event", lookback=timedelta(seconds=30))
        record = StateRecord("ns", "name", DEFAULT_KEY, stored.to_state_json(), 1, T0, "test")
        wm = session.load(record)
        for version, batch in enumerate(batches, start=2):
            for index, seconds in batch:  # a key, stamped or not; old stamps get pruned
                stamp = None if seconds is None else T0 + timedelta(seconds=seconds)
                wm.advance(timestamp=stamp, key=f"k{index:02d}")
            save = session.after_resume(session.emitted())
            if save is not None:
                assert_layout_is_the_text(session.layout(save), wm.to_state_json())
                assert session.render(save) == wm.to_state_json()
                session.saved(save, version)
