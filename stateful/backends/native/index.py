"""The index of a name's partitions: how the native store lists a keyed watermark's documents.

The Execution API reads and writes keys it is given and lists none, so a keyed watermark
(:class:`~stateful.Keyed`, one document per partition under the key ``watermark[P]``) could not
find its partitions there. The native store keeps, per namespace and name, an **index**: the
document keys written under that name, under the key :func:`index_key`. A save that creates a
document writes the index first, then the document, so a crash between the two leaves at worst
an entry without a document, which reads as nothing stored for that partition; a written
partition is never missing from the index.

An index over the size limit continues in numbered parts (:func:`index_part_key`): the head
names how many there are, and new keys go to the last part, or to a new one, written before the
head that counts it. Keys are only ever added (a deleted document's entry stays, and reads as
nothing stored).

Example:
    >>> index_key("files", "bucket")
    'stateful/%index/files/bucket'
    >>> writes = plan_index([[]], ["watermark[eu]"], "files", "bucket", limit=0)
    >>> [(k, v["keys"]) for k, v in writes]
    [('stateful/%index/files/bucket', ['watermark[eu]'])]
    >>> index_chunks(writes[0][1], "here")
    (['watermark[eu]'], 0)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from stateful.backends.native.document import MAX_KEY_LENGTH
from stateful.errors import StateTooLargeError, StoreError

__all__ = ["INDEX_FORMAT", "index_chunks", "index_key", "index_part_key", "is_index_key", "plan_index"]

#: Marks an index value (its head and its parts).
INDEX_FORMAT = "airflow-stateful/index"
# "%i" is no escape native_key writes (it writes %25 and %2F): never a document's key.
_INDEX_PREFIX = "stateful/%index/"
_PART_PREFIX = "stateful/%index-part/"
# Room kept in each value for the head's part count to grow (a few digits).
_MARGIN = 16


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def index_key(namespace: str, name: str) -> str:
    """The asset state store key of the index of ``namespace``/``name``.

    Example:
        >>> index_key("a/b", "in/")
        'stateful/%index/a%2Fb/in/'
        >>> index_key("s3", "x" * 600).startswith("stateful/%index/sha256/")
        True
    """
    text = f"{_INDEX_PREFIX}{_escape(namespace)}/{name}"
    if len(text) <= MAX_KEY_LENGTH:
        return text
    return f"{_INDEX_PREFIX}sha256/{hashlib.sha256(json.dumps([namespace, name]).encode()).hexdigest()}"


def index_part_key(namespace: str, name: str, n: int) -> str:
    """The key of part ``n`` (1, 2, ...) of the index of ``namespace``/``name``.

    Example:
        >>> index_part_key("files", "bucket", 1)
        'stateful/%index-part/1/files/bucket'
    """
    text = f"{_PART_PREFIX}{n}/{_escape(namespace)}/{name}"
    if len(text) <= MAX_KEY_LENGTH:
        return text
    return f"{_PART_PREFIX}{n}/sha256/{hashlib.sha256(json.dumps([namespace, name]).encode()).hexdigest()}"


def is_index_key(key: str) -> bool:
    """Whether ``key`` holds an index (its head or a part), not a document.

    Example:
        >>> is_index_key(index_key("files", "bucket")), is_index_key("stateful/files/watermark/bucket")
        (True, False)
    """
    return key.startswith((_INDEX_PREFIX, _PART_PREFIX))


def index_chunks(value: Any, where: str) -> tuple[list[str], int]:
    """The keys an index value holds and, for a head, how many parts follow it (``None``: empty).

    Raises:
        StoreError: ``value`` is not an index (``where`` names the key and asset).

    Example:
        >>> index_chunks(None, "here")
        ([], 0)
        >>> index_chunks({"format": "x"}, "key 'k' of asset 'a'")
        Traceback (most recent call last):
        ...
        stateful.errors.StoreError: key 'k' of asset 'a' holds no index of airflow-stateful...
    """
    if value is None:
        return [], 0
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    keys = value.get("keys") if isinstance(value, dict) else None
    parts = value.get("parts", 0) if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or value.get("format") != INDEX_FORMAT
        or not isinstance(keys, list)
        or not all(isinstance(k, str) for k in keys)
        or not isinstance(parts, int)
        or parts < 0
    ):
        raise StoreError(
            f"{where} holds no index of airflow-stateful ({str(value)[:80]!r}). It lists a name's "
            f"partitions: delete the key to list only the partitions saved from now on, or put back "
            f"what airflow-stateful wrote there."
        )
    return keys, parts


def _size(value: dict[str, Any]) -> int:
    return len(json.dumps(value))  # what Airflow measures a value by


def plan_index(
    chunks: Sequence[Sequence[str]],
    new_keys: Iterable[str],
    namespace: str,
    name: str,
    *,
    limit: int,
    store: str = "NativeBackend",
) -> list[tuple[str, dict[str, Any]]]:
    """The ``(key, value)`` writes that add ``new_keys`` to an index, in the order to write them.

    ``chunks`` is the stored index: the head's keys, then each part's (``[[]]`` for none). The
    head, which counts the parts, comes last; nothing is written when every key is indexed.

    Raises:
        StateTooLargeError: one key does not fit in an index part of ``limit`` bytes.
    """
    known = {k for chunk in chunks for k in chunk}
    added = [k for k in dict.fromkeys(new_keys) if k not in known]
    if not added:
        return []
    grown = [list(c) for c in chunks] or [[]]
    changed = set[int]()
    for key in added:
        last = len(grown) - 1
        if limit <= 0 or _size(_value(grown, last, namespace, name, [*grown[last], key])) <= limit - _MARGIN:
            grown[last].append(key)
            changed.add(last)
            continue
        grown.append([key])
        changed.update({len(grown) - 1, 0})  # a new part: the head counts it
        size = _size(_value(grown, len(grown) - 1, namespace, name, [key]))
        if size > limit - _MARGIN:
            raise StateTooLargeError(
                namespace=namespace,
                name=name,
                key=key,
                size=size,
                limit=limit,
                backend=store,
                setting="[state_store] max_value_storage_bytes",
                detail=" (the index entry of this partition alone)",
            )
    return [
        (
            index_part_key(namespace, name, n) if n else index_key(namespace, name),
            _value(grown, n, namespace, name),
        )
        for n in sorted(changed, key=lambda n: (n == 0, n))
    ]


def _value(
    chunks: list[list[str]], n: int, namespace: str, name: str, keys: list[str] | None = None
) -> dict[str, Any]:
    keys = chunks[n] if keys is None else keys
    if n:
        return {"format": INDEX_FORMAT, "keys": keys}
    return {
        "format": INDEX_FORMAT,
        "namespace": namespace,
        "name": name,
        "keys": keys,
        "parts": len(chunks) - 1,
    }
