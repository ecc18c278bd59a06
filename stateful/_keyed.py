"""``Keyed``: one watermark per partition key, for one decorated ``run()`` or ``poke()``.

Annotate the watermark parameter ``Keyed[Model]`` instead of ``Model`` and ``@stateful`` injects
a :class:`Keyed`: ``keyed["eu"]`` is partition ``"eu"``'s watermark, loaded (and validated
against ``Model``) when first looked up, or a fresh one when nothing is stored for it. Each
partition is its own document in the store, under the key ``watermark[eu]`` of the decorator's
namespace and name, so each advances, saves and rewinds independently; the partitions an event
changed are saved together (see https://airflow-stateful.github.io/airflow-stateful/keyed/).

Example:
    >>> from stateful import Watermark
    >>> partitions: dict[str, Watermark[int]] = {}
    >>> keyed = Keyed(_DictPartitions(partitions))
    >>> keyed["eu"].advance(cursor=3)
    >>> ("eu" in keyed, "us" in keyed, list(keyed), keyed["eu"].cursor)
    (True, False, ['eu'], 3)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from stateful.errors import StateNameError
from stateful.types import Watermark

__all__ = ["MAX_PARTITION_CHARS", "Keyed", "Partitions", "check_partition"]

W = TypeVar("W", bound=Watermark[Any])
W_co = TypeVar("W_co", bound=Watermark[Any], covariant=True)

#: The longest partition key: its document key ``watermark[...]`` fits the stores' 255 characters.
MAX_PARTITION_CHARS = 240

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_partition(partition: object) -> str:
    """Return ``partition`` if it can name a partition, else raise :class:`StateNameError`.

    A partition key is a non-empty ``str`` of at most :data:`MAX_PARTITION_CHARS` characters,
    without surrounding whitespace or control characters (the rules of a name).

    Example:
        >>> check_partition("eu-west-1")
        'eu-west-1'
        >>> check_partition(" eu")
        Traceback (most recent call last):
        ...
        stateful.errors.StateNameError: partition key ' eu' has leading or trailing whitespace...
    """
    if not isinstance(partition, str):
        raise StateNameError(
            f"a partition key must be a str, not {type(partition).__name__} ({partition!r}); "
            f"convert it, e.g. keyed[str(tenant_id)]."
        )
    if not partition.strip():
        raise StateNameError("a partition key must not be empty; give each partition a non-empty str.")
    if partition != partition.strip():
        raise StateNameError(
            f"partition key {partition!r} has leading or trailing whitespace, which would make a second "
            f"partition that looks like {partition.strip()!r} in logs; strip it."
        )
    if _CONTROL.search(partition):
        raise StateNameError(f"partition key {partition!r} contains a control character.")
    if len(partition) > MAX_PARTITION_CHARS:
        raise StateNameError(
            f"partition key {partition[:40]!r}... has {len(partition)} characters, over the "
            f"{MAX_PARTITION_CHARS} a partition may have; use a shorter key (a hash of a long one)."
        )
    return partition


class Partitions(Protocol[W_co]):
    """Where a :class:`Keyed` gets its partitions from (the run's session)."""

    def partition(self, partition: str) -> W_co:
        """The watermark of ``partition`` (a checked key): loaded, or fresh, at its first lookup."""
        ...

    def partitions(self) -> list[str]:
        """The partitions stored or looked up so far, sorted."""
        ...

    def has_partition(self, partition: str) -> bool:
        """Whether ``partition`` is stored or was looked up."""
        ...


class Keyed(Generic[W]):
    """One watermark per partition key, injected by ``@stateful`` for a ``Keyed[Model]`` parameter.

    ``keyed[partition]`` returns that partition's watermark (a ``Model``): the stored one,
    validated at this first lookup, or a new one when nothing is stored for it. Loading a run
    reads the stored partitions' text in one query and validates none of them; a partition costs
    its validation only when looked up.

    A partition counts as changed by an event when it was looked up since the previous event:
    look partitions up when you use them (``keyed[prefix].advance(...)``) rather than keeping a
    partition's watermark across events. Changes to a watermark kept and changed without a new
    lookup are saved with the next event that looks it up, or when ``run()`` returns.

    Example:
        >>> from collections.abc import AsyncIterator
        >>> from stateful import Keyed, Watermark, stateful
        >>> from stateful.backends import MemoryBackend
        >>> store = MemoryBackend()
        >>> class Prefixes:
        ...     bucket = "landing"
        ...     @stateful(namespace="demo", name="{bucket}", backend=store)
        ...     async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[str]:
        ...         for prefix in ("eu", "us"):
        ...             n = (keyed[prefix].cursor or 0) + 1
        ...             keyed[prefix].advance(cursor=n)
        ...             yield f"{prefix}:{n}"
        >>> async def twice() -> list[str]:
        ...     return [e async for e in Prefixes().run()] + [e async for e in Prefixes().run()]
        >>> import asyncio; asyncio.run(twice())
        ['eu:1', 'us:1', 'eu:2', 'us:2']
        >>> [r.key for r in store.list("demo")]
        ['watermark[eu]', 'watermark[us]']
    """

    __slots__ = ("_source",)

    def __init__(self, source: Partitions[W]) -> None:
        self._source = source

    def __getitem__(self, partition: str) -> W:
        return self._source.partition(check_partition(partition))

    def __contains__(self, partition: object) -> bool:
        return isinstance(partition, str) and self._source.has_partition(partition)

    def __iter__(self) -> Iterator[str]:
        return iter(self._source.partitions())

    def __len__(self) -> int:
        return len(self._source.partitions())

    def keys(self) -> list[str]:
        """The partitions stored or looked up so far, sorted (their watermarks are not loaded)."""
        return self._source.partitions()

    def summary(self) -> str:
        """A one-line description for logs: how many partitions, and the first few keys."""
        shown = self._source.partitions()
        first = ", ".join(shown[:3]) + (", ..." if len(shown) > 3 else "")
        return f"{len(shown)} partition{'' if len(shown) == 1 else 's'}" + (f" ({first})" if shown else "")

    def __repr__(self) -> str:
        shown = self._source.partitions()
        more = "" if len(shown) <= 5 else f", ... ({len(shown)} partitions)"
        return f"Keyed({', '.join(map(repr, shown[:5]))}{more})"


class _DictPartitions(Generic[W]):
    """Partitions in a dict of plain watermarks (for the module's example)."""

    def __init__(self, partitions: dict[str, W], model: type[W] | None = None) -> None:
        self._partitions = partitions
        self._model: Any = model or Watermark

    def partition(self, partition: str) -> W:
        found = self._partitions.get(partition)
        if found is None:
            found = self._partitions[partition] = self._model()
        return found

    def partitions(self) -> list[str]:
        return sorted(self._partitions)

    def has_partition(self, partition: str) -> bool:
        return partition in self._partitions
