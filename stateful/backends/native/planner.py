"""The native store's decisions, without I/O: what a read returns, what a write or delete does.

:class:`~stateful.backends.native.NativeBackend` reads every asset's document, hands what it
read to a :class:`Planner`, carries out the plan (sync or async), and reports back. Keeping the
decisions here lets the sync and async twins share them, and lets them be read in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from stateful._layout import Layout
from stateful.backends.base import Address, StateRecord, default_writer
from stateful.backends.native.document import FORMAT, NativeDocument, stored_size
from stateful.backends.native.history import DEFAULT_HISTORY_VERSIONS, Carry, carry_over, history_field
from stateful.backends.native.ledger import Ledger, Where, ident, oldest
from stateful.backends.native.packing import EntryTooLarge, Packing, pack_layout, pack_text
from stateful.backends.native.parts import PartMismatch, join_seen, part_key
from stateful.backends.native.scope import SIZE_SETTING
from stateful.errors import (
    StatefulError,
    StateTooLargeError,
    StateValidationError,
    StoreError,
    StoreUnavailableError,
)

__all__ = ["Planner", "ReadPlan", "WritePlan"]

_log = logging.getLogger("stateful.backends.native")
_NO_SPLIT = (
    ", and it cannot be split over several values: only the `seen` keys of a watermark are split, "
    "so its other fields (timestamp, cursor, your own fields) must fit in one value"
)
_KEY_TOO_LONG = (
    ", and it cannot be split over several values: the `seen` key {key!r} is too long to fit in "
    "one value even alone"
)
_MANIFEST = (
    " for its manifest alone (its fields besides `seen` and the list of the parts holding `seen`), "
    "which must fit in one value"
)


@dataclass(frozen=True)
class ReadPlan:
    """What a read found: the document chosen (at asset ``index``) and the keys of its parts."""

    key: str
    index: int
    doc: NativeDocument | None
    keys: tuple[str, ...]


@dataclass(frozen=True)
class WritePlan:
    """A save, asset by asset (in the planner's order).

    Attributes:
        new: the document written.
        manifests: per asset, its JSON object, under the document's key: the commit point (the
            assets' differ only in the history entries each names).
        parts: per asset, what to write before the manifest (key, JSON object), in order: the
            history entry of the document replaced, then the new parts.
        stale: per asset, the parts to delete once the manifest is written.
        carries: per asset, what the save does with its history (the entries that fell out of
            it are deleted after the commit).
        probe: ``(version, n)`` when this store has not saved this document yet: a save of
            ``version`` cut short (a killed process) may have left parts ``<version>.<n>``,
            ``<version>.<n+1>``... named by no manifest; they are deleted after this one.
        packing: which keys each part holds, once written (kept for the next save).
    """

    new: NativeDocument
    manifests: tuple[dict[str, Any], ...]
    parts: tuple[tuple[tuple[str, dict[str, Any]], ...], ...]
    stale: tuple[tuple[str, ...], ...]
    probe: tuple[int, int] | None
    packing: Packing | None = None
    carries: tuple[Carry, ...] = ()


def _suffixes(doc: NativeDocument | None) -> set[str]:
    return set() if doc is None or doc.seen is None else set(doc.seen.suffixes)


class Planner:
    """Decisions for one native store over its assets (labels in a fixed order).

    Args:
        labels: the assets' labels, in the order the store reads and writes them.
        description: the store's description, for messages.
        limit: the size limit of a stored document (0: none).
        keep: how many versions of each document to keep, the current one included (0 or 1:
            no history); ``None``: as many as the document replaced says (the command line's
            writes keep what the trigger's store chose), else the default.
    """

    def __init__(self, labels: Sequence[str], description: str, limit: int, keep: int | None = None) -> None:
        self._labels = tuple(labels)
        self._description = description
        self._limit = limit
        self.keep = keep
        self._ledger = Ledger(self._labels)
        # Per document key: the parts a failed save may have left, by asset index; the keys
        # this store has saved (a first save probes for parts a killed process left).
        self._orphans: dict[str, dict[int, set[str]]] = {}
        self._probed: set[str] = set()
        # Per document key: the parts last read or written (which keys each holds), so that a
        # save works out and writes only what changed.
        self._known: dict[str, Packing] = {}

    def parse(self, label: str, address: Address, k: str, data: Any) -> NativeDocument | None:
        """The document an asset holds under key ``k`` (``data`` as read), or ``None``.

        Raises:
            StateValidationError: not a document of this package, or of another address.
        """
        if data is None:
            return None
        namespace, name, key = address
        try:
            doc = NativeDocument.from_json_value(data)
            if doc.address != address:
                raise ValueError(
                    f"it holds {doc.namespace}/{doc.name} (key {doc.key!r}) instead: two addresses "
                    f"map to one key, or the document was copied there by hand"
                )
        except ValueError as exc:
            raise StateValidationError(
                namespace=namespace,
                name=name,
                key=key,
                backend=self._description,
                model=f"a {FORMAT} document",
                detail=f"{label}, state store key {k!r}: {exc}",
            ) from exc
        return doc

    def on_read(self, address: Address, k: str, docs: Sequence[NativeDocument | None]) -> ReadPlan:
        """What a read returns: the oldest document (see the store's docs), and its parts to read."""
        self._ledger.check_history(self._where(address), k, docs)
        index = oldest(docs)
        chosen = docs[index]
        self._ledger.remember(k, docs, None if chosen is None else chosen.version)
        if len({ident(d) for d in docs}) > 1:
            held = ", ".join(
                f"{label}: {'nothing' if d is None else f'version {d.version}'}"
                for label, d in zip(self._labels, docs, strict=True)
            )
            _log.warning(
                "stateful: the assets of %s/%s hold different states (%s); using the oldest, so "
                "events the others already saw may be emitted again (a repeat beats a skip)",
                address[0],
                address[1],
                held,
            )
        refs = () if chosen is None or chosen.seen is None else chosen.seen.refs
        keys = tuple(part_key(k, r.suffix) for r in refs)  # in bucket order
        return ReadPlan(k, index, chosen, keys)

    def finish_read(self, address: Address, plan: ReadPlan, bodies: Sequence[Any]) -> StateRecord | None:
        """The record a read returns, the parts of ``plan.keys`` (as read) joined in.

        Raises:
            PartMismatch: a part is missing or changed (a concurrent save): read again.
        """
        doc = plan.doc
        if doc is None:
            return None
        seen = doc.seen
        self._known.pop(plan.key, None)
        if seen is not None and doc.head is not None:
            doc = doc.joined(join_seen(doc.head, seen, bodies))
            if seen.bits is None:  # the previous layout (buckets) is packed afresh at the next save
                self._known[plan.key] = Packing.read(self._limit, seen, bodies)
        return StateRecord(*address, doc.value, doc.version, doc.updated_at, doc.updated_by, doc.reason)

    def torn(self, address: Address, k: str, attempts: int, exc: PartMismatch) -> StoreError:
        """The error of a read whose parts kept changing (or went missing) under it."""
        namespace, name, key = address
        return StoreError(
            f"reading {namespace}/{name} (key {key!r}, state store key {k!r}) from {self._description} "
            f"failed {attempts} times: {exc}. Either another writer keeps saving it (keep one trigger or "
            f"task per watermark), or a part was deleted by hand; inspect it with `stateful show "
            f"{namespace} {name} --airflow-url URL --asset ASSET`, or reset it with `stateful reset`."
        )

    def plan_write(
        self,
        address: Address,
        k: str,
        value: str | Layout,
        expected: int | None,
        updated_by: str | None,
        docs: Sequence[NativeDocument | None],
        reason: str | None = None,
    ) -> WritePlan:
        """What to write to each asset (parts first, then the manifest) and delete after.

        ``value`` is the watermark's text, or its :class:`~stateful._layout.Layout`: a layout
        too large for one value is packed into parts in O(change) when this planner packed the
        previous save (or read it), see :mod:`~stateful.backends.native.packing`.

        Raises:
            StateConflictError: an asset holds another version than ``expected``.
            StateRegressionError: an asset holds an older version than one seen before.
            StateTooLargeError: the document cannot fit, even in parts.
        """
        where = self._where(address)
        self._ledger.check_history(where, k, docs)
        self._ledger.check_expected(where, k, expected, docs)
        if isinstance(value, Layout) and not 0 < self._limit < value.size:
            value = value.text()  # fits in one value, or no limit: small
        present = [d for d in docs if d is not None]
        version = max((d.version for d in present), default=0) + 1
        writer = updated_by or default_writer()
        base = next((d for d in present if d.version == expected), None)
        text = "" if isinstance(value, Layout) else value
        if base is None:
            new = NativeDocument.create(*address, text, updated_by=writer, version=version, reason=reason)
        else:
            new = base.successor(text, updated_by=writer, version=version, reason=reason)
        keep = max(1, self.kept_by(base))
        carries = [carry_over(d, version, keep=keep, k=k, lineage=new.lineage) for d in docs]
        longest = max(carries, key=lambda c: len(str(c.kept))).kept  # measured with the largest field
        new = replace(new, reason=reason).with_history(longest, keep)
        # A value longer than the limit is over it once stored: no need to measure (10 MB of JSON).
        size = value.size if isinstance(value, Layout) else len(value)
        stored = {} if 0 < self._limit < size else new.to_json_value()
        size = size if not stored else stored_size(stored)
        bodies: dict[str, dict[str, Any]] = {}
        fresh = 0
        packing: Packing | None = None
        if self._limit > 0 and size > self._limit:
            held: dict[str, set[str]] = {}
            for d in present:
                for ref in () if d.seen is None else d.seen.refs:
                    held.setdefault(ref.suffix, set()).add(ref.digest)
            unavailable = frozenset(s for s, digests in held.items() if len(digests) > 1)
            cached = self._known.pop(k, None)  # changed in place: put back once written
            previous = None if base is None else base.seen
            if cached is None or previous is None or cached.seen != previous:
                cached = None
            packed = self._pack(address, cached, value, size)
            head, at, packing = packed
            seen, new_parts = packing.commit(version, at, unavailable)
            new = new.in_parts(head, seen)
            stored = new.to_json_value()
            if stored_size(stored) > self._limit:
                raise self._too_large(address, stored_size(stored), _MANIFEST)
            bodies, fresh = packing.bodies(), len(new_parts)
        else:
            self._known.pop(k, None)
        wanted = {} if new.seen is None else {r.suffix: r.digest for r in new.seen.refs}
        parts, stale = [], []
        orphans = self._orphans.get(k, {})
        for i, doc in enumerate(docs):
            has = {} if doc is None or doc.seen is None else {r.suffix: r.digest for r in doc.seen.refs}
            parts.append(
                tuple((part_key(k, s), bodies[s]) for s, digest in wanted.items() if has.get(s) != digest)
            )
            carry = carries[i] = self._carry(carries[i], wanted)
            if carry.entry is not None:  # the entry of the document replaced needs its parts
                parts[-1] = (carry.entry, *parts[-1])
                gone = orphans.get(i, set()) - set(wanted) - set(has)
            else:
                gone = (set(has) | orphans.get(i, set())) - set(wanted)
            stale.append(tuple(sorted(part_key(k, s) for s in gone)))
        probe = None if k in self._probed else (version, fresh)
        manifests = tuple({**stored, "history": history_field(c.kept, keep)} for c in carries)
        return WritePlan(new, manifests, tuple(parts), tuple(stale), probe, packing, tuple(carries))

    def kept_by(self, base: NativeDocument | None) -> int:
        """How many versions a save over ``base`` keeps (see ``keep``)."""
        if self.keep is not None:
            return self.keep
        return DEFAULT_HISTORY_VERSIONS if base is None or base.keep is None else base.keep

    @staticmethod
    def _carry(carry: Carry, wanted: dict[str, str]) -> Carry:
        """``carry`` with the new document's parts as the oldest kept, when nothing older is kept."""
        if carry.entry is None:
            return replace(carry, keeper_parts=frozenset(wanted))
        return carry

    def _pack(
        self, address: Address, packing: Packing | None, value: str | Layout, size: int
    ) -> tuple[dict[str, Any], int, Packing]:
        """``value`` as head, position of ``seen`` and parts, or :class:`StateTooLargeError`."""
        try:
            packed = None
            if isinstance(value, Layout):
                packed = pack_layout(packing, self._limit, value)
                if packed is None:  # not the layout of a watermark: parse its text, as given
                    value, packing = value.text(), None
            if packed is None and isinstance(value, str):
                packed = pack_text(packing, self._limit, value)
        except EntryTooLarge as exc:
            raise self._too_large(address, size, _KEY_TOO_LONG.format(key=str(exc)[:80])) from None
        if packed is None:
            raise self._too_large(address, size, _NO_SPLIT)
        return packed

    def after_write(
        self, address: Address, k: str, plan: WritePlan, failures: Sequence[BaseException | None]
    ) -> int:
        """The version a write returns, given each asset's failure (``None``: written).

        Raises:
            StoreError: an asset was not written; the message says which were.
        """
        new = plan.new
        failed = [(label, e) for label, e in zip(self._labels, failures, strict=True) if e is not None]
        orphans = self._orphans.setdefault(k, {})
        for i, failure in enumerate(failures):
            if failure is None:
                orphans.pop(i, None)
            else:  # the parts it may have written are named by no manifest: delete them next time
                entry = plan.carries[i].entry if plan.carries else None  # rewritten by the next save
                made = (key for key, _ in plan.parts[i] if entry is None or key != entry[0])
                orphans.setdefault(i, set()).update(key.rsplit("/", 1)[1] for key in made)
        if not failed:
            self._probed.add(k)
            if plan.packing is not None:
                self._known[k] = plan.packing
            self._ledger.remember(k, [new] * len(self._labels), new.version)
            return new.version
        self._ledger.forget(k)  # what each asset holds is unknown now
        if len(self._labels) == 1:
            raise self.io_error("writing", failed[0][0], k, failed[0][1]) from failed[0][1]
        written = [label for label, e in zip(self._labels, failures, strict=True) if e is None]
        namespace, name, key = address
        raise StoreError(
            f"writing {namespace}/{name} (key {key!r}, version {new.version}) to {self._description} "
            f"failed for {', '.join(f'{label} ({e!r})' for label, e in failed)}; written to "
            f"{', '.join(written) or 'none'}. The next read takes the oldest document, so events "
            f"since the last complete save are emitted again, none are skipped."
        ) from failed[0][1]

    def history_cut(self, address: Address, k: str, exc: PartMismatch) -> None:
        """Log that the history of ``address`` is shown up to an entry that cannot be read."""
        _log.warning(
            "stateful: the history of %s/%s (key %r, state store key %r) in %s ends early: %s. Older "
            "versions cannot be read (their parts were deleted by hand, or by a release that kept no "
            "history); the next saves replace them.",
            address[0],
            address[1],
            address[2],
            k,
            self._description,
            exc,
        )

    def left_behind(self, k: str, index: int, keys: Sequence[str]) -> None:
        """Parts that could not be deleted after a save: the next save deletes them."""
        self._orphans.setdefault(k, {}).setdefault(index, set()).update(key.rsplit("/", 1)[1] for key in keys)
        _log.warning(
            "stateful: could not delete %d unused part(s) of %s; the next save retries", len(keys), k
        )

    def plan_delete(
        self, address: Address, k: str, expected: int | None, docs: Sequence[NativeDocument | None]
    ) -> tuple[tuple[int, tuple[str, ...]], ...]:
        """The assets to delete the document from (those that hold one), each with its parts' keys."""
        where = self._where(address)
        self._ledger.check_history(where, k, docs)
        if expected is not None:
            self._ledger.check_expected(where, k, expected, docs)
        self._ledger.forget(k)
        orphans = self._orphans.pop(k, {})
        return tuple(
            (i, tuple(sorted(part_key(k, s) for s in (_suffixes(d) | orphans.get(i, set())))))
            for i, d in enumerate(docs)
            if d is not None
        )

    def _too_large(self, address: Address, size: int, detail: str) -> StateTooLargeError:
        namespace, name, key = address
        return StateTooLargeError(
            namespace=namespace,
            name=name,
            key=key,
            size=size,
            limit=self._limit,
            backend=self._description,
            setting=SIZE_SETTING,
            detail=detail,
        )

    def io_error(self, doing: str, label: str, k: str, exc: BaseException) -> StatefulError:
        """The error to raise when reading, writing or deleting ``k`` at asset ``label`` failed."""
        if isinstance(exc, StatefulError):
            return exc
        if api_unreachable(exc):
            return StoreUnavailableError(
                f"{doing} key {k!r} in the asset state store of {label} failed ({self._description}): "
                f"{exc!r}. Airflow's API server (or its database) cannot be reached now; nothing else "
                f"was changed by this call. Check that the API server is up and reachable from here."
            )
        return StoreError(
            f"{doing} key {k!r} in the asset state store of {label} failed ({self._description}): "
            f"{exc!r}. Check that the asset is still active in a DAG and that the Airflow API server "
            f"is reachable; nothing else was changed by this call."
        )

    def no_list(self) -> StoreError:
        """The error of :meth:`NativeBackend.list`: the Execution API cannot list keys."""
        return StoreError(
            f"{self._description} cannot list its documents: Airflow's Execution API offers no listing "
            f"of an asset's state store. List them with the REST API (GET /api/v2/assets/{{asset_id}}/"
            f"state-store; keys start with 'stateful/') or `stateful list`."
        )

    def _where(self, address: Address) -> Where:
        return Where(address, self._description)


def api_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means Airflow's API server (or its database) cannot be reached now.

    Airflow's supervisor answers a state-store request it could not make with an
    ``ErrorResponse`` of type ``API_SERVER_ERROR`` (raised in the task or trigger as
    ``AirflowRuntimeError``): with no status code for a network error (``httpx.ConnectError``,
    a timeout), with a 5xx when the API server failed (its database down). A 429 is a busy
    server. Errors of the HTTP client itself (``httpx.TransportError``), ``ConnectionError`` and
    ``TimeoutError`` are network errors too.

    Example:
        >>> api_unreachable(ConnectionRefusedError(111, "Connection refused"))
        True
        >>> api_unreachable(KeyError("x"))
        False
    """
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if any(
        cls.__name__ == "TransportError" and cls.__module__.startswith("httpx") for cls in type(exc).__mro__
    ):
        return True
    response = getattr(exc, "error", None)
    kind = getattr(getattr(response, "error", None), "value", None)
    if kind != "API_SERVER_ERROR":
        return False
    detail = getattr(response, "detail", None)
    status = detail.get("status_code") if isinstance(detail, dict) else None
    return status is None or status == 429 or (isinstance(status, int) and status >= 500)
