"""The control trigger of the end-to-end suite: NewFilesTrigger's own loop without ``@stateful``.

``ForgetfulFilesTrigger`` runs exactly the polling code of
:class:`examples.local_files.NewFilesTrigger` (the undecorated ``run``) with a watermark that
lives in memory only, as a hand-written trigger keeps its state. After a triggerer restart it
starts from nothing and fires again for every file in its directory: scenario (f) shows the
suite can tell the two apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from airflow.triggers.base import TriggerEvent

from examples.local_files import LOOKBACK, NewFilesTrigger
from stateful import Watermark, stateful

__all__ = ["ForgetfulFilesTrigger", "UnackedBurstTrigger", "UnackedFilesTrigger"]

# The function that @stateful wrapped: NewFilesTrigger.run(self, watermark).
_UNDECORATED_RUN = cast(
    "Callable[[NewFilesTrigger, Watermark], AsyncIterator[TriggerEvent]]",
    NewFilesTrigger.run.__wrapped__,  # type: ignore[attr-defined]
)


class ForgetfulFilesTrigger(NewFilesTrigger):
    """NewFilesTrigger with its watermark in memory: every restart fires every file again."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return f"{__name__}.ForgetfulFilesTrigger", super().serialize()[1]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """NewFilesTrigger's loop, given a fresh in-memory watermark at each start."""
        async for event in _UNDECORATED_RUN(self, Watermark().configure(lookback=LOOKBACK)):
            yield event


class UnackedFilesTrigger(NewFilesTrigger):
    """NewFilesTrigger with ``ack=False``: saved when the triggerer resumes it (the control of
    the crash scenarios: the same kills that cost ack mode nothing lose events here)."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return f"{__name__}.UnackedFilesTrigger", super().serialize()[1]

    # save_batch=1: a save right when the triggerer resumes the run after each event, the window
    # in which a kill loses the event that scenario g shows (a coalesced save comes later).
    @stateful(namespace="files-unacked", name="{glob}", lookback=LOOKBACK, ack=False, save_batch=1)
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        """NewFilesTrigger's loop under @stateful(ack=False)."""
        async for event in _UNDECORATED_RUN(self, watermark):
            yield event


class UnackedBurstTrigger(UnackedFilesTrigger):
    """NewFilesTrigger with ``ack=False`` and the default coalesced saves: scenario h's non-ack
    burst, whose events go through the triggerer's own queue instead of a shared stream."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the constructor arguments, for the triggerer."""
        return f"{__name__}.UnackedBurstTrigger", super().serialize()[1]

    @stateful(namespace="files-unacked", name="{glob}", lookback=LOOKBACK, ack=False)
    async def run(self, watermark: Watermark) -> AsyncIterator[TriggerEvent]:
        """NewFilesTrigger's loop under @stateful(ack=False), saves batched as configured."""
        async for event in _UNDECORATED_RUN(self, watermark):
            yield event
