"""The native store's packing rules, without a store: which part holds each ``seen`` key."""

from __future__ import annotations

import json
from typing import Any

from stateful._layout import Layout, part_id
from stateful.backends.native.packing import Packing, pack_layout, pack_text
from stateful.backends.native.parts import join_seen

LIMIT = 2000


def ts(i: int) -> str:
    return f"2026-01-02T00:{i // 60 % 60:02d}:{i % 60:02d}.000000Z"


def name(i: int) -> str:
    return f"objects/{(i * 7919) % 10007:05d}-{i}.csv"  # names out of arrival order


def commit(packing: Packing, version: int) -> tuple[list[str], dict[str, Any]]:
    seen, new = packing.commit(version, at=0, unavailable=frozenset())
    return [r.suffix for r in seen.refs], new


def test_new_keys_go_to_the_newest_part_and_expiry_drops_the_oldest_whole() -> None:
    packing = Packing.fresh(LIMIT, {name(i): ts(i) for i in range(200)})
    suffixes, _ = commit(packing, 1)
    assert len(suffixes) > 5

    packing.change({name(i): ts(i) for i in range(200, 205)}, removed=[])
    after, new = commit(packing, 2)
    assert after[:-2] == suffixes[:-2] and 1 <= len(new) <= 2  # the newest part (and maybe one more)

    oldest = [name(i) for i in range(60)]  # the lookback passed the oldest keys
    packing.change({}, removed=oldest)
    expired, new = commit(packing, 3)
    assert len(expired) < len(after) and len(new) <= 1  # whole parts dropped, at most one rewritten
    assert expired[-1] == after[-1]


def test_a_key_with_a_newer_timestamp_moves_to_the_newest_part() -> None:
    packing = Packing.fresh(LIMIT, {name(i): ts(i) for i in range(200)})
    commit(packing, 1)
    packing.change({name(0): ts(500)}, removed=[])
    _, new = commit(packing, 2)
    assert len(new) == 2  # the first part (which lost it) and the newest (which got it)
    newest = list(new.values())[-1]["seen"]
    assert newest.get(name(0)) == ts(500)


def test_untimed_keys_have_parts_of_their_own() -> None:
    entries: dict[str, Any] = {name(i): ts(i) for i in range(100)}
    entries.update({f"untimed-{i:04d}": None for i in range(100)})
    packing = Packing.fresh(LIMIT, entries)
    seen, new = packing.commit(1, at=0, unavailable=frozenset())
    assert seen.untimed > 0
    bodies = [new[r.suffix]["seen"] for r in seen.refs]
    assert all(all(v is None for v in b.values()) for b in bodies[-seen.untimed :])
    assert all(all(v is not None for v in b.values()) for b in bodies[: -seen.untimed])


def test_a_sparse_part_a_save_changed_is_merged_into_its_neighbour() -> None:
    packing = Packing.fresh(LIMIT, {name(i): ts(i) for i in range(200)})
    suffixes, bodies = commit(packing, 1)
    second, third = (list(bodies[s]["seen"]) for s in suffixes[1:3])
    packing.change({}, removed=second[2:] + third[2:])  # two parts left with two keys each
    after, new = commit(packing, 2)
    assert len(after) == len(suffixes) - 1  # one part holds what is left of both
    assert [sorted(body["seen"]) for body in new.values()] == [sorted(second[:2] + third[:2])]


def state(entries: dict[str, Any]) -> str:
    return json.dumps(
        {"cursor": None, "seen": dict(sorted(entries.items())), "timestamp": None}, separators=(",", ":")
    )


def layout_of(entries: dict[str, Any], run: int = 16) -> Layout:
    keys = sorted(entries)
    runs = []
    for i in range(0, len(keys), run):
        text = json.dumps({k: entries[k] for k in keys[i : i + run]}, separators=(",", ":"))[1:-1]
        runs.append((part_id(text), text))
    return Layout('{"cursor":null,"seen":{', tuple(runs), '},"timestamp":null}')


def test_a_layout_packs_as_its_text_does_and_reads_back_byte_for_byte() -> None:
    entries: dict[str, Any] = {name(i): ts(i) for i in range(300)}
    by_text = pack_text(None, LIMIT, state(entries))
    by_layout = pack_layout(None, LIMIT, layout_of(entries))
    assert by_text is not None and by_layout is not None
    by_text[2].commit(1, by_text[1], frozenset())
    by_layout[2].commit(1, by_layout[1], frozenset())
    for i in range(300, 340, 10):  # saves: ten new keys, the two oldest gone
        for k in range(i, i + 10):
            entries[name(k)] = ts(k)
        for k in range(i - 300, i - 298):
            del entries[name(k)]
        by_text = pack_text(by_text[2], LIMIT, state(entries))
        by_layout = pack_layout(by_layout[2], LIMIT, layout_of(entries))
        assert by_text is not None and by_layout is not None
        text_seen, _ = by_text[2].commit(i, by_text[1], frozenset())
        layout_seen, new = by_layout[2].commit(i, by_layout[1], frozenset())
        assert [r.digest for r in text_seen.refs] == [r.digest for r in layout_seen.refs]
        assert len(new) <= 3
        bodies = by_layout[2].bodies()
        joined = join_seen(by_layout[0], layout_seen, [bodies[r.suffix] for r in layout_seen.refs])
        assert joined == state(entries)


def test_what_is_not_the_layout_of_a_watermark_is_refused() -> None:
    entries = {name(i): ts(i) for i in range(40)}
    good = layout_of(entries)
    shuffled = Layout(good.before, tuple(reversed(good.parts)), good.after)
    assert pack_layout(None, LIMIT, shuffled) is None  # runs out of order
    assert pack_layout(None, LIMIT, Layout('{"seen":[', good.parts, "]}")) is None
    assert pack_text(None, LIMIT, '{"seen": {}}') is None  # not compact: would not come back
