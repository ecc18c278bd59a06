"""Watching a trigger's run: its metrics at the end, and a WARNING while its watermark stays still.

:class:`RunWatch` starts when a trigger's run has loaded its watermark and stops when the run
ends (the plain driver and the ack-mode producer alike). Stopping sends the counts not sent yet
(:meth:`stateful._metrics.RunMetrics.flush`). With a ``max_lag`` (the decorator's, else
``STATEFUL_MAX_LAG``, else ``[stateful] max_lag``: :func:`stateful._lag.max_lag_setting`) a timer
on the triggerer's loop looks at the watermark every quarter of ``max_lag``: when its state has
not changed for longer than ``max_lag`` (:func:`stateful._lag.is_stuck`), it logs a WARNING and
sends ``stateful.stuck`` and ``stateful.lag_seconds``, again every ``max_lag`` while it stays
still. Nothing runs per event, and a check is O(1): it compares the digest the session keeps.
A watermark is reported within a quarter of ``max_lag`` of having been still for ``max_lag``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from stateful._address import command
from stateful._core import WatermarkSession
from stateful._lag import is_stuck, max_lag_setting
from stateful._metrics import metrics_of

__all__ = ["CHECKS_PER_MAX_LAG", "RunWatch"]

_LOG = logging.getLogger("stateful")

#: How often per ``max_lag`` the timer looks at the watermark.
CHECKS_PER_MAX_LAG = 4


class RunWatch:
    """One run of a trigger, watched: see the module docstring.

    Args:
        session: the run's session, loaded.
        max_lag: how long the watermark may stay still; ``None``: never reported stuck.
        what: names the trigger in the log line.
    """

    def __init__(self, session: WatermarkSession[Any], max_lag: timedelta | None, what: str) -> None:
        self.session = session
        self.max_lag = max_lag
        self.what = what
        now = datetime.now(timezone.utc)
        self._digest = session.digest
        self.moved = now  # when the state last changed, as far as the checks saw
        self._reported: datetime | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    @classmethod
    def start(cls, session: WatermarkSession[Any], max_lag: timedelta | None, what: str) -> RunWatch:
        """Watch ``session``'s run on the running loop (``max_lag``: the decorator's, or ``None``)."""
        watch = cls(session, max_lag_setting(max_lag), what)
        watch._arm()
        return watch

    def check(self, now: datetime) -> bool:
        """Look at the watermark at ``now``: report it (and return ``True``) when it is stuck.

        Reported at most once per ``max_lag`` while it stays still.
        """
        digest = self.session.digest
        if digest != self._digest:
            self._digest, self.moved, self._reported = digest, now, None
            return False
        if self.max_lag is None or not is_stuck(self.moved, now, self.max_lag):
            return False
        if self._reported is not None and now - self._reported < self.max_lag:
            return False
        self._reported = now
        metrics = metrics_of(self.session)
        metrics.stuck()
        lag = metrics.lag(self.session)
        scope = self.session.scope
        _LOG.warning(
            "stateful: %s in %s has not moved for %.1f s, longer than max_lag (%.1f s), while %s runs%s. "
            "Check that its source still has new items, that run() advances the watermark as it emits, "
            "and the triggerer's log for errors; `%s` shows it. Reported again every max_lag while it "
            "stays still.",
            scope,
            scope.store,
            (now - self.moved).total_seconds(),
            self.max_lag.total_seconds(),
            self.what,
            "" if lag is None else f" (its timestamp is {lag:.1f} s old)",
            command("stateful", "show", scope.namespace, scope.name),
        )
        return True

    def stop(self) -> None:
        """The run ended: stop the timer, send the counts not sent yet."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        metrics_of(self.session).flush(self.session)

    def _arm(self) -> None:
        if self.max_lag is None or self._stopped:
            return
        interval = self.max_lag.total_seconds() / CHECKS_PER_MAX_LAG
        self._timer = asyncio.get_running_loop().call_later(interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.check(datetime.now(timezone.utc))
        except Exception as exc:  # the watch never fails the trigger
            _LOG.debug("stateful: checking %s for max_lag failed: %s", self.session.scope, exc)
        self._arm()
