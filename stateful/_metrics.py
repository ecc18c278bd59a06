"""Metrics through Airflow's own metrics layer: whatever StatsD or OpenTelemetry the deployment configured.

Every metric goes through Airflow's ``Stats`` (``airflow.sdk.observability.stats`` from the task
SDK that has it, else ``airflow.stats``), so ``[metrics]`` decides where they go (``statsd_on``,
``otel_on``, ``statsd_datadog_enabled``), under its prefix (``statsd_prefix``, ``airflow`` by
default), through its allow and block lists. Nothing is sent in a process that has not loaded
Airflow's configuration (a unit test driving a trigger with a ``MemoryBackend``, the command
line): this module never imports Airflow itself.

================================  =======  ================================================================
metric                            type     meaning
================================  =======  ================================================================
``stateful.events``               counter  events emitted (a trigger's events; a sensor's done pokes)
``stateful.saves``                counter  saves the store acknowledged
``stateful.save_duration``        timer    the longest save since the last report (render and write)
``stateful.conflicts``            counter  saves refused because another writer saved first
``stateful.validation_failures``  counter  stored states that did not validate against the model
``stateful.late_skipped``         counter  items skipped as older than the lookback
``stateful.seen_size``            gauge    keys in ``seen`` after the latest save
``stateful.state_size``           gauge    the latest saved document's length, in characters of its JSON
``stateful.lag_seconds``          gauge    now minus the watermark's ``timestamp`` (reports, stuck checks)
``stateful.stuck``                counter  stuck reports: the watermark did not move for ``max_lag``
================================  =======  ================================================================

Tags: where Airflow's metrics carry tags (OpenTelemetry; StatsD with ``statsd_influxdb_enabled``
or ``statsd_datadog_enabled``), each metric is tagged ``namespace`` and ``name``. Plain StatsD
has no tags, so they go into the name instead: ``stateful.<metric>.<namespace>.<name>``, each
part cleaned by :func:`name_part`. Either way a tag value or a part holds only the characters
Airflow's metric names allow, and a long one is cut short with a hash of the whole.

Nothing is done per event, and a save only records what it has at hand (nothing is serialised
for metrics): the counts (events, late items, saves) are read off the session and sent with the
gauges at most every :data:`REPORT_INTERVAL` seconds per watermark, at a save, and when the run
ends. Airflow's own metrics layer costs tens of microseconds per metric on the triggerer's loop
(its name and tag checks, a UDP send), so a watcher saving every second sends them every ten
seconds instead. A metric that cannot be sent is logged once at DEBUG and never fails a trigger.

Example:
    >>> name_part("landing/in.csv")
    'landing_in_csv'
    >>> tag_value("landing/in, 2026")
    'landing/in__2026'
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import sys
import time
import weakref
from datetime import datetime, timedelta, timezone
from typing import Any

from stateful._core import Scope, WatermarkSession
from stateful._lag import lag_seconds

__all__ = [
    "CONFLICTS",
    "EVENTS",
    "LAG_SECONDS",
    "LATE_SKIPPED",
    "METRICS",
    "REPORT_INTERVAL",
    "SAVES",
    "SAVE_DURATION",
    "SEEN_SIZE",
    "STATE_SIZE",
    "STUCK",
    "VALIDATION_FAILURES",
    "RunMetrics",
    "metrics_of",
    "name_part",
    "reset",
    "tag_value",
]

_LOG = logging.getLogger("stateful")

EVENTS = "stateful.events"
SAVES = "stateful.saves"
SAVE_DURATION = "stateful.save_duration"
CONFLICTS = "stateful.conflicts"
VALIDATION_FAILURES = "stateful.validation_failures"
LATE_SKIPPED = "stateful.late_skipped"
SEEN_SIZE = "stateful.seen_size"
STATE_SIZE = "stateful.state_size"
LAG_SECONDS = "stateful.lag_seconds"
STUCK = "stateful.stuck"
#: Every metric this package sends.
METRICS = (
    EVENTS,
    SAVES,
    SAVE_DURATION,
    CONFLICTS,
    VALIDATION_FAILURES,
    LATE_SKIPPED,
    SEEN_SIZE,
    STATE_SIZE,
    LAG_SECONDS,
    STUCK,
)

# Modules whose presence means Airflow's configuration (and so its metrics setup) is loaded.
_LOADED = ("airflow.sdk.configuration", "airflow.configuration")
# Airflow's metric names allow letters, digits and "_.-/"; "." separates the parts of a StatsD
# name, so a part of one keeps none; a tag value may keep "." and "/" (not "," nor "=").
_NOT_IN_PART = re.compile(r"[^A-Za-z0-9_-]")
_NOT_IN_TAG = re.compile(r"[^A-Za-z0-9_./-]")
#: A watermark's counts and gauges are sent at most this often (seconds), and when its run ends.
REPORT_INTERVAL = 10.0
#: A cleaned part or tag value longer than this keeps its start and a hash of the whole: a
#: StatsD name (prefix, metric, namespace and name) must stay under Airflow's 250 characters.
MAX_PART = 80


def _shorten(clean: str, original: str) -> str:
    if len(clean) <= MAX_PART:
        return clean
    digest = hashlib.sha256(original.encode("utf-8")).hexdigest()[:8]
    return f"{clean[: MAX_PART - 9]}-{digest}"


def name_part(text: str) -> str:
    """``text`` as one part of a StatsD metric name: each other character becomes ``_``.

    Example:
        >>> name_part("s3://bucket/prefix")
        's3___bucket_prefix'
        >>> len(name_part("x" * 300))
        80
    """
    return _shorten(_NOT_IN_PART.sub("_", text), text)


def tag_value(text: str) -> str:
    """``text`` as a tag value Airflow's metrics accept: each other character becomes ``_``.

    Example:
        >>> tag_value("landing/in.csv")
        'landing/in.csv'
    """
    return _shorten(_NOT_IN_TAG.sub("_", text), text)


class _Sink:
    """Airflow's ``Stats``, found once per process, and whether its metrics carry tags."""

    def __init__(self) -> None:
        self.stats: Any = None
        self.tagged = False
        self.failed = False

    def find(self) -> Any:
        """Airflow's ``Stats``, or ``None`` in a process without Airflow's configuration."""
        if self.stats is None and any(name in sys.modules for name in _LOADED):
            try:
                from airflow.sdk.observability.stats import Stats
            except ImportError:  # before the task SDK had its own (Airflow 3.0)
                from airflow.stats import Stats
            from stateful._airflowconf import airflow_conf

            conf = airflow_conf()
            self.tagged = any(
                conf.getboolean("metrics", option, fallback=False)
                for option in ("otel_on", "statsd_influxdb_enabled", "statsd_datadog_enabled")
            )
            self.stats = Stats
        return self.stats

    def failure(self, exc: Exception) -> None:
        if not self.failed:
            self.failed = True
            _LOG.debug("stateful: a metric could not be sent (%s); metrics are best effort", exc)


_SINK = _Sink()


async def aprepare() -> None:
    """Find Airflow's ``Stats`` in a worker thread, once per process: importing it reads files.

    Called at the start of a trigger's run, so that its first metric opens no file on the
    event loop.
    """
    sink = _SINK
    if sink.stats is None and any(name in sys.modules for name in _LOADED):
        try:
            await asyncio.to_thread(sink.find)
        except Exception as exc:  # a metric never fails a trigger
            sink.failure(exc)


def reset() -> None:
    """Find Airflow's ``Stats`` (and whether it takes tags) again at the next metric.

    For tests that configure Airflow's metrics after a metric was sent; a deployment reads them
    once per process, as Airflow does.
    """
    global _SINK
    _SINK = _Sink()


class RunMetrics:
    """The metrics of one watermark in one run of a trigger (or one poke of a sensor).

    The session is passed to each call rather than kept: :func:`metrics_of` keys these objects
    weakly by their session.

    Args:
        scope: the watermark's address and store, whose namespace and name tag every metric.
    """

    __slots__ = ("_events_sent", "_late_sent", "_names", "_reported", "_saves", "_sizes", "_slowest", "_tags")

    def __init__(self, scope: Scope) -> None:
        self._tags = {"namespace": tag_value(scope.namespace), "name": tag_value(scope.name)}
        suffix = f".{name_part(scope.namespace)}.{name_part(scope.name)}"
        self._names = {metric: metric + suffix for metric in METRICS}
        self._events_sent = 0
        self._late_sent = 0
        self._saves = 0  # saves not reported yet
        self._slowest = 0.0  # the longest of them, in seconds
        self._sizes: tuple[int, int] | None = None  # seen size and state size at the latest save
        self._reported = -math.inf  # when saves were last reported (monotonic)

    def saved(self, session: WatermarkSession[Any], state_size: int | None, seconds: float) -> None:
        """The store acknowledged a save of ``state_size`` characters that took ``seconds``.

        ``state_size=None`` (a keyed watermark's save, of several partitions) sends no size gauges.

        Recorded in O(1); reported with :meth:`flush` when :data:`REPORT_INTERVAL` has passed
        since saves were last reported (the first save of a run is reported at once).
        """
        self._saves += 1
        self._slowest = max(self._slowest, seconds)
        self._sizes = None if state_size is None else (session.size, state_size)
        if time.monotonic() - self._reported >= REPORT_INTERVAL:
            self.flush(session)

    def lag(self, session: WatermarkSession[Any]) -> float | None:
        """Send the watermark's lag (none without a timestamp) and return it."""
        lag = lag_seconds(session.timestamp, datetime.now(timezone.utc))
        if lag is not None:
            self._send("gauge", LAG_SECONDS, lag)
        return lag

    def flush(self, session: WatermarkSession[Any]) -> None:
        """Send what was not reported yet: events, late items, saves, and the gauges after a save."""
        events = session.emitted_count
        if events > self._events_sent:
            self._send("incr", EVENTS, events - self._events_sent)
            self._events_sent = events
        late = session.skipped_late
        if late > self._late_sent:
            self._send("incr", LATE_SKIPPED, late - self._late_sent)
            self._late_sent = late
        if self._saves:
            self._reported = time.monotonic()
            saves, slowest, self._saves, self._slowest = self._saves, self._slowest, 0, 0.0
            self._send("incr", SAVES, saves)
            self._send("timing", SAVE_DURATION, timedelta(seconds=slowest))
            if self._sizes is not None:
                self._send("gauge", SEEN_SIZE, self._sizes[0])
                self._send("gauge", STATE_SIZE, self._sizes[1])
            self.lag(session)

    def conflict(self) -> None:
        """A save was refused: another writer saved first."""
        self._send("incr", CONFLICTS, 1)

    def validation_failure(self) -> None:
        """The stored state did not validate against the model."""
        self._send("incr", VALIDATION_FAILURES, 1)

    def stuck(self) -> None:
        """The watermark was reported stuck."""
        self._send("incr", STUCK, 1)

    def _send(self, kind: str, metric: str, value: Any) -> None:
        sink = _SINK
        try:
            stats = sink.find()
            if stats is None:
                return
            if sink.tagged:
                getattr(stats, kind)(metric, value, tags=self._tags)
            else:
                getattr(stats, kind)(self._names[metric], value)
        except Exception as exc:  # a metric never fails a trigger
            sink.failure(exc)


_RUNS: weakref.WeakKeyDictionary[WatermarkSession[Any], RunMetrics] = weakref.WeakKeyDictionary()


def metrics_of(session: WatermarkSession[Any]) -> RunMetrics:
    """The metrics of ``session``'s run (made at the first call): one per session."""
    run = _RUNS.get(session)
    if run is None:
        run = _RUNS[session] = RunMetrics(session.scope)
    return run
