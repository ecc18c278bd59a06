"""The step-by-step JSON parser: the same values and the same refusals as ``json.loads``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stateful import Watermark
from stateful._chunked_json import CHUNKED_ABOVE, loads
from stateful._document import decode_state

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON, st.sampled_from([None, 0, 2]))
def test_any_json_value_parses_to_what_json_loads_gives(value: Any, indent: int | None) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    assert loads(text, chunked=True) == json.loads(text)
    assert loads(text.encode(), chunked=True) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 2}', "repeats the JSON key 'a'"),
        ('{"x": {"b": 1, "b": 1}}', "repeats the JSON key 'b'"),
        ('{"a": NaN}', "contains NaN"),
        ("[Infinity]", "contains Infinity"),
        ('{"a": -Infinity}', "contains -Infinity"),
        ('{"a": 1} x', "Extra data"),
        ('{"a": 1', "Expecting ',' delimiter"),
        ('{"a" 1}', "Expecting ':' delimiter"),
        ("{'a': 1}", "Expecting property name"),
        ('{"a": }', "Expecting value"),
        ("[1, 2", "Expecting ',' delimiter"),
        ("", "Expecting value"),
        ('{"a": "\x01"}', "Invalid control character"),
    ],
)
def test_what_json_loads_refuses_is_refused_in_steps_too(text: str, message: str) -> None:
    for chunked in (True, False):
        with pytest.raises(ValueError, match=message):
            loads(text, chunked=chunked)


def test_a_large_state_decodes_in_steps_to_the_same_fields() -> None:
    wm = Watermark[str]().configure(lookback=timedelta(hours=1))
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(5_000):
        wm.advance(key=f"landing/object-{i:06d}.csv@{i:032x}", timestamp=now - timedelta(seconds=i))
    text = wm.to_state_json()
    assert len(text) > CHUNKED_ABOVE  # this size takes the step-by-step path
    assert decode_state(text) == {k: v for k, v in json.loads(text).items() if k != "schema_version"}
    assert Watermark[str].from_state_json(text) == wm


# Run in a fresh interpreter: in the test process, threads left by earlier tests take the lock in
# turns with the counting thread while the parsing thread waits for it around its call, and
# those turns counted as turns during the parse.
_TURNS = """
import json, sys, threading, time
from stateful._chunked_json import loads

text = json.dumps({"seen": {f"key-{i:07d}": "2026-01-01T00:00:00.000000Z" for i in range(200_000)}})
turns = 0
parsing = False
done = threading.Event()

def spin():
    global turns
    while not done.is_set():
        if parsing:
            turns += 1
        time.sleep(0)

def turns_while(parse):
    global parsing, turns
    turns = 0
    parsing = True
    parse()
    parsing = False
    return turns

sys.setswitchinterval(0.0005)  # the lock passes ten times as often as by default: more turns
spinner = threading.Thread(target=spin)
spinner.start()
try:
    # The fewest of three: a turn taken just before or after a call is noise, never the rule.
    in_steps = min(turns_while(lambda: loads(text, chunked=True)) for _ in range(3))
    in_one_call = min(turns_while(lambda: json.loads(text)) for _ in range(3))
finally:
    done.set()
    spinner.join()
print(in_steps, in_one_call)
"""


def test_a_large_document_lets_another_thread_run_while_it_is_parsed() -> None:
    # json.loads parses the whole text in one call that keeps the interpreter lock; in steps,
    # another thread (the event loop's, in a triggerer) gets the lock many times meanwhile. The
    # other thread counts its turns only while a parse runs (``parsing`` is set and cleared by
    # the parsing thread right before and after the call).
    result = subprocess.run([sys.executable, "-c", _TURNS], capture_output=True, text=True, check=True)
    in_steps, in_one_call = map(int, result.stdout.split())
    assert in_steps > 10 * max(in_one_call, 1), (in_steps, in_one_call)
