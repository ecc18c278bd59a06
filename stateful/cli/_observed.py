"""What ``stateful run`` sees of a trigger: its store's loads and saves, and its events.

:class:`Observed` stands between ``@stateful`` and the trigger's store: it reports each load and
save to a :class:`Reporter`, and with ``--dry-run`` keeps saves in memory instead of writing
them. :class:`Reporter` prints, as text (above a live status line on a terminal) or JSON lines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from stateful._address import display_address
from stateful._core import Scope, WatermarkSession
from stateful._trigger_driver import IDEMPOTENCY_FIELD
from stateful.backends.base import Address, AsyncStateBackend, StateRecord, default_writer, version_conflict
from stateful.cli._documents import summarize
from stateful.cli._errors import CliError
from stateful.cli._output import Output, Status, dumps
from stateful.types import Watermark

__all__ = ["Observed", "Reporter", "pretend_save"]


class Reporter:
    """Prints what happens: the load, each event, each save, the stop."""

    def __init__(self, out: Output, status: Status) -> None:
        self.out, self.status = out, status
        self.events = 0
        self.saved_version: int | None = None
        self.started = time.monotonic()

    def emit(self, kind: str, text: str, **data: Any) -> None:
        if self.out.as_json:
            self.out.json({"type": kind, **data})
        else:
            self.status.line(text)
        self.refresh()

    def refresh(self) -> None:
        saved = (
            "nothing saved yet" if self.saved_version is None else f"last saved version {self.saved_version}"
        )
        self.status.update(f"waiting for events: {self.events} taken, {saved} (Ctrl-C stops)")

    def loaded(
        self,
        namespace: str,
        name: str,
        key: str,
        record: StateRecord | None,
        model: type[Watermark[Any]],
        store: str,
    ) -> None:
        """Print what was loaded, once it validates as ``model``: never "loaded" for a refused state.

        Raises:
            StateValidationError: ``record`` does not validate, as ``@stateful`` then refuses it.
        """
        if record is not None:
            # The same check @stateful makes next, made first: "loaded ... version 7" must not
            # be printed for a state the trigger is about to refuse.
            WatermarkSession(model, Scope(Address(namespace, name, key), store), commit="never").load(record)
        where = {"namespace": namespace, "name": name, "key": key}
        if record is None:
            self.emit(
                "loaded",
                f"loaded   {display_address(namespace, name)}: nothing stored yet, starting empty",
                **where,
                version=None,
            )
            return
        summary = summarize(record.value)
        self.saved_version = record.version
        self.emit(
            "loaded",
            f"loaded   {display_address(namespace, name)} version {record.version}: {summary.line()}",
            **where,
            version=record.version,
            **summary.as_json(),
        )

    def event(self, event: Any) -> None:
        self.events += 1
        payload = getattr(event, "payload", event)
        # The idempotency key is for machines (--json); the human line shows the user's payload.
        shown = (
            {k: v for k, v in payload.items() if k != IDEMPOTENCY_FIELD}
            if isinstance(payload, dict)
            else payload
        )
        self.emit("event", f"event {self.events:<3} {dumps(shown)}", n=self.events, payload=payload)

    def saved(self, version: int, value: str, dry_run: bool) -> None:
        summary = summarize(value)
        self.saved_version = version
        verb = "would save version" if dry_run else "saved    version"
        self.emit(
            "saved",
            f"{verb} {version}: {summary.line()}{' (dry run: not written)' if dry_run else ''}",
            version=version,
            dry_run=dry_run,
            **summary.as_json(),
        )


class Observed:
    """The trigger's store, seen through: reports loads and saves; ``dry_run`` writes nothing.

    With ``dry_run`` the saves go to an overlay in memory (compare-and-set still applies), so the
    trigger runs exactly as it would, and the store is left as it was.
    """

    def __init__(
        self, store: AsyncStateBackend, reporter: Reporter, model: type[Watermark[Any]], *, dry_run: bool
    ) -> None:
        self._store, self._reporter, self._dry_run = store, reporter, dry_run
        self._model = model
        self._overlay: dict[tuple[str, str, str], StateRecord] = {}
        self._writing = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def description(self) -> str:
        return self._store.description + (" (dry run)" if self._dry_run else "")

    @property
    def writing(self) -> bool:
        """Whether a save is under way."""
        return self._writing > 0

    async def aread(self, namespace: str, name: str, key: str) -> StateRecord | None:
        record = self._overlay.get((namespace, name, key))
        if record is None:
            record = await self._store.aread(namespace, name, key)
        # Validating a large state is O(state): off the loop, as @stateful does.
        await asyncio.to_thread(
            self._reporter.loaded, namespace, name, key, record, self._model, self._store.description
        )
        return record

    async def awrite(
        self,
        namespace: str,
        name: str,
        key: str,
        value: str,
        *,
        expected_version: int | None,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        self._writing += 1
        self.idle.clear()
        try:
            if self._dry_run:
                version = self._pretend(namespace, name, key, value, expected_version)
            else:
                version = await self._store.awrite(
                    namespace,
                    name,
                    key,
                    value,
                    expected_version=expected_version,
                    updated_by=updated_by,
                    reason=reason,
                )
        finally:
            self._writing -= 1
            if not self._writing:
                self.idle.set()
        self._reporter.saved(version, value, self._dry_run)
        return version

    async def adelete(
        self, namespace: str, name: str, key: str, *, expected_version: int | None = None
    ) -> bool:
        raise CliError("stateful run does not delete watermarks")

    async def alist(self, namespace: str | None = None) -> Sequence[StateRecord]:
        return await self._store.alist(namespace)

    def _pretend(self, namespace: str, name: str, key: str, value: str, expected: int | None) -> int:
        address = Address(namespace, name, key)
        current = self._overlay.get(address)
        # Before the first pretended save, the loaded record's version is what is expected.
        actual = expected if current is None else current.version
        record = pretend_save(self.description, address, value, expected, actual)
        self._overlay[address] = record
        return record.version


def pretend_save(
    description: str, address: Address, value: str, expected: int | None, actual: int | None
) -> StateRecord:
    """The record a save would make, without writing it: compare-and-set checked against ``actual``.

    Raises:
        StateConflictError: ``actual`` is not the ``expected`` version (as the store would refuse it).

    Example:
        >>> pretend_save("MemoryBackend", Address("ns", "n", "k"), "{}", 2, 2).version
        3
    """
    if actual != expected:
        raise version_conflict(description, address, expected, actual)
    return StateRecord(*address, value, (expected or 0) + 1, datetime.now(timezone.utc), default_writer())
