"""The native store's decisions, without I/O: what a read returns, what a write or delete does.

:class:`~stateful.backends.native.NativeBackend` reads every asset's document, hands what it
read to a :class:`Planner`, carries out the plan (sync or async), and reports back. Keeping the
decisions here lets the sync and async twins share them, and lets them be read in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from stateful.backends.base import Address, StateRecord, default_writer
from stateful.backends.native.document import FORMAT, NativeDocument, stored_size
from stateful.backends.native.ledger import Ledger, Where, ident, oldest
from stateful.backends.native.scope import SIZE_SETTING
from stateful.errors import StatefulError, StateTooLargeError, StateValidationError, StoreError

__all__ = ["Planner"]

_log = logging.getLogger("stateful.backends.native")


class Planner:
    """Decisions for one native store over its assets (labels in a fixed order).

    Args:
        labels: the assets' labels, in the order the store reads and writes them.
        description: the store's description, for messages.
        limit: the size limit of a stored document (0: none).
    """

    def __init__(self, labels: Sequence[str], description: str, limit: int) -> None:
        self._labels = tuple(labels)
        self._description = description
        self._limit = limit
        self._ledger = Ledger(self._labels)

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

    def on_read(self, address: Address, k: str, docs: Sequence[NativeDocument | None]) -> StateRecord | None:
        """What a read returns: the oldest document (see the store's docs)."""
        self._ledger.check_history(self._where(address), k, docs)
        chosen = docs[oldest(docs)]
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
        if chosen is None:
            return None
        return StateRecord(*address, chosen.value, chosen.version, chosen.updated_at, chosen.updated_by)

    def plan_write(
        self,
        address: Address,
        k: str,
        value: str,
        expected: int | None,
        updated_by: str | None,
        docs: Sequence[NativeDocument | None],
    ) -> tuple[NativeDocument, dict[str, Any]]:
        """The document to write to every asset, and its JSON object.

        Raises:
            StateConflictError: an asset holds another version than ``expected``.
            StateRegressionError: an asset holds an older version than one seen before.
            StateTooLargeError: the document is over the size limit.
        """
        where = self._where(address)
        self._ledger.check_history(where, k, docs)
        self._ledger.check_expected(where, k, expected, docs)
        present = [d for d in docs if d is not None]
        version = max((d.version for d in present), default=0) + 1
        writer = updated_by or default_writer()
        base = next((d for d in present if d.version == expected), None)
        if base is None:
            new = NativeDocument.create(*address, value, updated_by=writer, version=version)
        else:
            new = base.successor(value, updated_by=writer, version=version)
        stored = new.to_json_value()
        size = stored_size(stored)
        if self._limit > 0 and size > self._limit:
            namespace, name, key = address
            raise StateTooLargeError(
                namespace=namespace,
                name=name,
                key=key,
                size=size,
                limit=self._limit,
                backend=self._description,
                setting=SIZE_SETTING,
            )
        return new, stored

    def after_write(
        self, address: Address, k: str, new: NativeDocument, failures: Sequence[BaseException | None]
    ) -> int:
        """The version a write returns, given each asset's failure (``None``: written).

        Raises:
            StoreError: an asset was not written; the message says which were.
        """
        failed = [(label, e) for label, e in zip(self._labels, failures, strict=True) if e is not None]
        if not failed:
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

    def plan_delete(
        self, address: Address, k: str, expected: int | None, docs: Sequence[NativeDocument | None]
    ) -> tuple[int, ...]:
        """The indexes of the assets to delete the document from (those that hold one)."""
        where = self._where(address)
        self._ledger.check_history(where, k, docs)
        if expected is not None:
            self._ledger.check_expected(where, k, expected, docs)
        self._ledger.forget(k)
        return tuple(i for i, d in enumerate(docs) if d is not None)

    def io_error(self, doing: str, label: str, k: str, exc: BaseException) -> StatefulError:
        """The error to raise when reading, writing or deleting ``k`` at asset ``label`` failed."""
        if isinstance(exc, StatefulError):
            return exc
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
