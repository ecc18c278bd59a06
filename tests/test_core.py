"""The I/O-free decision core, without any store: what is saved, when, with which version."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from stateful import Watermark
from stateful._core import Scope, WatermarkSession
from stateful._document import DEFAULT_KEY
from stateful._spec import CommitMode
from stateful.backends import StateRecord
from stateful.backends.base import Address

SCOPE = Scope(Address("ns", "name", DEFAULT_KEY), "TestStore")
NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def record(value: str, version: int) -> StateRecord:
    return StateRecord("ns", "name", DEFAULT_KEY, value, version, NOW, "test")


def session(commit: CommitMode = "after_event") -> WatermarkSession[Watermark[int]]:
    return WatermarkSession(Watermark[int], SCOPE, commit=commit)


def test_a_snapshot_is_taken_when_the_event_is_emitted_not_when_it_is_confirmed() -> None:
    s = session()
    wm = s.load(None)
    wm.advance(cursor=1)
    seq = s.emitted()
    wm.advance(cursor=2)  # preparing the next event, not yet emitted
    save = s.after_resume(seq)
    assert save is not None and Watermark[int].from_state_json(s.render(save)).cursor == 1
    assert (save.expected_version, save.seq) == (None, 1)


def test_pending_and_saved_are_distinct_until_the_store_acknowledges() -> None:
    s = session()
    wm = s.load(record(Watermark[int](cursor=5).to_state_json(), 7))
    wm.advance(cursor=6)
    first = s.emitted()
    wm.advance(cursor=7)
    second = s.emitted()
    assert s.pending == 2 and s.saved_version == 7
    save = s.confirm(second)  # confirming the later event covers the earlier one
    assert s.pending == 0 and save is not None
    assert Watermark[int].from_state_json(s.render(save)).cursor == 7 and save.expected_version == 7
    assert s.saved_version == 7  # not saved until the driver says the store took it
    s.saved(save, 8)
    assert (s.saved_version, s.saved_digest) == (8, save.digest)
    assert s.confirm(first) is None  # already covered


def test_confirming_an_older_event_keeps_newer_ones_pending() -> None:
    s = session()
    wm = s.load(None)
    seqs = []
    for cursor in (1, 2, 3):
        wm.advance(cursor=cursor)
        seqs.append(s.emitted())
    save = s.confirm(seqs[0])
    assert save is not None and Watermark[int].from_state_json(s.render(save)).cursor == 1
    assert s.pending == 2


def test_commit_modes_decide_before_or_after_the_handover() -> None:
    after, before = session("after_event"), session("before_event")
    for s in (after, before):
        s.load(None).advance(cursor=1)
    seq_after, seq_before = after.emitted(), before.emitted()
    assert after.before_yield(seq_after) is None and after.after_resume(seq_after) is not None
    assert before.before_yield(seq_before) is not None
    assert before.after_resume(seq_before) is None


def test_unchanged_state_is_not_saved_and_abandon_drops_pending() -> None:
    stored = Watermark[int](cursor=3).to_state_json()
    s = session()
    wm = s.load(record(stored, 1))
    assert s.after_resume(s.emitted()) is None  # emitted without advancing: nothing to write
    assert s.finish() is None
    wm.advance(cursor=4)
    s.emitted()
    s.abandon()
    assert s.pending == 0
    assert s.confirm(99) is None


def test_finish_saves_changes_made_after_the_last_event() -> None:
    s = session()
    wm = s.load(None)
    wm.advance(cursor=1)
    s.emitted()
    wm.advance(cursor=9)
    save = s.finish()
    assert save is not None and Watermark[int].from_state_json(s.render(save)).cursor == 9
    assert s.pending == 0


def test_the_watermark_is_only_available_after_load() -> None:
    with pytest.raises(RuntimeError, match="load"):
        _ = session().watermark
