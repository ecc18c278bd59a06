"""The version bookkeeping that stands in for compare-and-set in the native store.

AIP-103's asset state store only upserts. The native store therefore reads every asset's
document right before it writes, and this ledger decides whether the write may go ahead:

* **history** (process-wide): the highest ``(lineage, version)`` seen per asset and key. A
  document of the same lineage with a lower version is a regression. A new lineage (deleted
  and created again, e.g. ``stateful reset``) is not.
* **last seen** (per store): what each asset held when this store last read or wrote the key,
  and the version it returned. A write naming that version must find exactly that again; a
  write naming another version (a "blind" write) must find that version on every asset.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from stateful.backends.base import Address, StateRecord, version_conflict
from stateful.backends.native.document import NativeDocument
from stateful.errors import StateRegressionError

__all__ = ["Ident", "Ledger", "Where", "ident", "oldest"]

# (lineage, version) of one asset's document; None when the asset has none.
Ident = tuple[str, int] | None

_history_lock = threading.Lock()
_history: dict[tuple[str, str], tuple[str, int]] = {}


def ident(doc: NativeDocument | None) -> Ident:
    """``(lineage, version)`` of a document, ``None`` for none."""
    return None if doc is None else (doc.lineage, doc.version)


def oldest(docs: Sequence[NativeDocument | None]) -> int:
    """Index of the oldest document: a missing one, else the lowest version, then the earliest."""
    never = datetime.min.replace(tzinfo=timezone.utc)

    def age(i: int) -> tuple[int, datetime, int]:
        doc = docs[i]
        return (0, never, i) if doc is None else (doc.version, doc.updated_at, i)

    return min(range(len(docs)), key=age)


@dataclass(frozen=True)
class Where:
    """The document a decision is about, for error messages."""

    address: Address
    backend: str


@dataclass(frozen=True)
class _Seen:
    presented: int | None  # the version the last read returned (or the last write made)
    idents: tuple[Ident, ...]  # what each asset held then


class Ledger:
    """Decisions for one native store over its assets (labels in a fixed order)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self._labels = tuple(labels)
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}

    def check_history(self, where: Where, k: str, docs: Sequence[NativeDocument | None]) -> None:
        """Raise :class:`StateRegressionError` if a document is older than one already seen here."""
        with _history_lock:
            highs = [_history.get((label, k)) for label in self._labels]
        for label, doc, high in zip(self._labels, docs, highs, strict=True):
            if doc is not None and high is not None and high[0] == doc.lineage and doc.version < high[1]:
                raise _regression(where, label, high[1], doc.version)

    def remember(self, k: str, docs: Sequence[NativeDocument | None], presented: int | None) -> None:
        """Record what was read (or written) and the version handed out."""
        with _history_lock:
            for label, doc in zip(self._labels, docs, strict=True):
                high = _history.get((label, k))
                if doc is not None and (high is None or high[0] != doc.lineage or high[1] < doc.version):
                    _history[(label, k)] = (doc.lineage, doc.version)
        with self._lock:
            self._seen[k] = _Seen(presented, tuple(ident(d) for d in docs))

    def forget(self, k: str) -> None:
        """What the assets hold is unknown (after a failed write) or gone (after a delete)."""
        with self._lock:
            self._seen.pop(k, None)

    def check_expected(
        self, where: Where, k: str, expected: int | None, docs: Sequence[NativeDocument | None]
    ) -> None:
        """The compare of an emulated compare-and-set, on documents read just before the write.

        Raises:
            StateRegressionError: an asset holds an older version of the same lineage.
            StateConflictError: an asset holds anything else than expected.
        """
        with self._lock:
            seen = self._seen.get(k)
        wanted = seen.idents if seen is not None and seen.presented == expected else None
        for i, (label, doc) in enumerate(zip(self._labels, docs, strict=True)):
            if wanted is not None:
                if ident(doc) == wanted[i]:
                    continue
                remembered = wanted[i]
                want = None if remembered is None else remembered[1]
                same_lineage = remembered is not None and doc is not None and doc.lineage == remembered[0]
            else:
                if (None if doc is None else doc.version) == expected:
                    continue
                want, same_lineage = expected, True
            actual = None if doc is None else doc.version
            if actual is not None and want is not None and actual < want and same_lineage:
                raise _regression(where, label, want, actual)
            # Who wrote what was found, and why, for the error (the value is not needed there).
            found = (
                None
                if doc is None
                else StateRecord(*where.address, "", doc.version, doc.updated_at, doc.updated_by, doc.reason)
            )
            raise version_conflict(where.backend, where.address, want, actual, found)


def _regression(where: Where, label: str, expected: int, actual: int) -> StateRegressionError:
    return StateRegressionError(
        namespace=where.address.namespace,
        name=where.address.name,
        key=where.address.key,
        expected_version=expected,
        actual_version=actual,
        backend=where.backend,
        detail=label,
    )
