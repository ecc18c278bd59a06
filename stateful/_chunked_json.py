"""Strict JSON parsing in small steps, so a large document never holds the interpreter lock long.

A watermark of 10^5 keys is a text of about 12 MB. :func:`json.loads` parses it in one call of C
code, which holds the interpreter lock for the whole parse (about 0.1 s on an idle machine, much
more on a loaded one): even in a worker thread, the triggerer's event loop cannot run meanwhile.
:func:`loads` parses objects and arrays itself and hands only single strings and numbers to the C
scanner, so the lock can pass to the loop between any two of them.

Small texts take :func:`json.loads` (faster, and holding the lock briefly). Both paths are
strict in the same way: a repeated object key and NaN or an infinity are refused.

Example:
    >>> loads('{"a": [1, 2.5, "x", null, true], "b": {"c": false}}', chunked=True)
    {'a': [1, 2.5, 'x', None, True], 'b': {'c': False}}
    >>> loads('{"a": 1, "a": 2}', chunked=True)
    Traceback (most recent call last):
    ...
    ValueError: watermark state repeats the JSON key 'a'
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["CHUNKED_ABOVE", "loads"]

#: Texts longer than this (characters) are parsed in small steps.
CHUNKED_ABOVE = 256 * 1024

_WS = re.compile(r"[ \t\n\r]*")
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


def _refuse_constant(name: str) -> None:
    raise ValueError(f"watermark state contains {name}, which is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"watermark state repeats the JSON key {key!r}")
        result[key] = value
    return result


# One scalar (number, true, false, null) at a position: the C scanner, one small value at a time.
_SCALAR = json.JSONDecoder(parse_constant=_refuse_constant)


def loads(text: str | bytes, *, chunked: bool | None = None) -> Any:
    """Parse ``text`` strictly; in small steps when it is large (or ``chunked=True``).

    Raises:
        json.JSONDecodeError: the text is not JSON (a ``ValueError``).
        ValueError: a repeated object key, NaN or an infinity.
    """
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    if chunked is None:
        chunked = len(text) > CHUNKED_ABOVE
    if not chunked:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant)
    value, end = _value(text, _WS.match(text, 0).end())  # type: ignore[union-attr]
    end = _WS.match(text, end).end()  # type: ignore[union-attr]
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _value(text: str, i: int) -> tuple[Any, int]:
    if i >= len(text):
        raise json.JSONDecodeError("Expecting value", text, i)
    first = text[i]
    if first == "{":
        return _object(text, i + 1)
    if first == "[":
        return _array(text, i + 1)
    if first == '"':
        return _scanstring(text, i + 1, True)  # type: ignore[no-any-return]
    try:
        return _SCALAR.raw_decode(text, i)
    except json.JSONDecodeError:
        raise json.JSONDecodeError("Expecting value", text, i) from None


def _object(text: str, i: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    ws = _WS.match
    i = ws(text, i).end()  # type: ignore[union-attr]
    if text.startswith("}", i):
        return result, i + 1
    while True:
        if not text.startswith('"', i):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
        key, i = _scanstring(text, i + 1, True)
        i = ws(text, i).end()  # type: ignore[union-attr]
        if not text.startswith(":", i):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
        value, i = _value(text, ws(text, i + 1).end())  # type: ignore[union-attr]
        if key in result:
            raise ValueError(f"watermark state repeats the JSON key {key!r}")
        result[key] = value
        i = ws(text, i).end()  # type: ignore[union-attr]
        if text.startswith(",", i):
            i = ws(text, i + 1).end()  # type: ignore[union-attr]
        elif text.startswith("}", i):
            return result, i + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, i)


def _array(text: str, i: int) -> tuple[list[Any], int]:
    result: list[Any] = []
    ws = _WS.match
    i = ws(text, i).end()  # type: ignore[union-attr]
    if text.startswith("]", i):
        return result, i + 1
    while True:
        value, i = _value(text, i)
        result.append(value)
        i = ws(text, i).end()  # type: ignore[union-attr]
        if text.startswith(",", i):
            i = ws(text, i + 1).end()  # type: ignore[union-attr]
        elif text.startswith("]", i):
            return result, i + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
