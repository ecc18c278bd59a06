"""A stored text in parts: what a store may write instead of the whole text of a large state.

A :class:`Layout` is the canonical text of a watermark cut where it changes little from save
to save: the text before the entries of ``seen`` (``before``), the entries in runs of sorted
keys, each with a content id (the SHA-256 of its text), and the text after them (``after``).
:func:`join` puts them back together: the very bytes :meth:`Watermark.to_state_json` writes.
A store that keeps parts by id writes only the runs it does not hold yet (see
``SqlBackend``); any other store writes :meth:`Layout.text`.

Example:
    >>> part = '"a.csv":null'
    >>> layout = Layout('{"seen":{', ((part_id(part), part),), '}}')
    >>> layout.text()
    '{"seen":{"a.csv":null}}'
    >>> layout.size == len(layout.text())
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Layout", "join", "part_id"]


def part_id(text: str) -> str:
    """The content id of a part: the SHA-256 of its text, in hex.

    Example:
        >>> len(part_id('"a.csv":null'))
        64
    """
    return hashlib.sha256(text.encode()).hexdigest()


def join(before: str, parts: Iterable[str], after: str) -> str:
    """The whole text: ``before``, the parts separated by commas, ``after`` (one copy).

    Example:
        >>> join('{"seen":{', ['"a":null', '"b":null'], '}}')
        '{"seen":{"a":null,"b":null}}'
    """
    pieces = [before]
    for text in parts:
        if len(pieces) > 1:
            pieces.append(",")
        pieces.append(text)
    pieces.append(after)
    return "".join(pieces)


@dataclass(frozen=True)
class Layout:
    """A canonical text as ``before``, ordered parts ``(id, text)`` and ``after`` (immutable).

    Attributes:
        before: the text up to and including the brace that opens ``seen``.
        parts: the non-empty runs of ``seen``'s entries, in order, as ``(content id, text)``.
        after: the text from the brace that closes ``seen`` to the end.
        size: the length of the whole text, in characters.
    """

    before: str
    parts: tuple[tuple[str, str], ...]
    after: str
    size: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        commas = max(0, len(self.parts) - 1)
        total = len(self.before) + len(self.after) + commas + sum(len(text) for _, text in self.parts)
        object.__setattr__(self, "size", total)

    @property
    def ids(self) -> list[str]:
        """The parts' content ids, in order."""
        return [pid for pid, _ in self.parts]

    def text(self) -> str:
        """The whole text (see :func:`join`)."""
        return join(self.before, (text for _, text in self.parts), self.after)
