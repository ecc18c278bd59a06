"""Metrics through Airflow's own metrics layer, received by a real StatsD listener; stuck watermarks.

The listener is a UDP socket of the test's on 127.0.0.1; Airflow's StatsD client is configured
to send to it (``[metrics] statsd_*`` through ``AIRFLOW__METRICS__*``) and Airflow's ``Stats``
is built afresh from that configuration, as each Airflow process builds its own at start. The
triggers run under Airflow's real ``TriggerRunner`` (``tests._triggerer``), the sensors are real
``BaseSensorOperator`` classes, the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from stateful import Keyed, Watermark, stateful
from stateful import _metrics as metrics
from stateful._core import Scope, WatermarkSession
from stateful._stuck import RunWatch
from stateful.backends import SqlBackend
from stateful.backends.base import Address
from stateful.errors import StateConflictError, StatefulUsageError, StateValidationError
from stateful.sensors import commit
from tests._triggerer import Triggerer, until


@dataclass(frozen=True)
class Metric:
    name: str  # without the prefix and the tags
    tags: dict[str, str]
    value: float
    kind: str  # "c", "g", "ms"


class StatsdListener:
    """A StatsD server for one test: a UDP socket on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[Metric] = []

    def drain(self) -> list[Metric]:
        """Everything received so far (UDP on the loopback is in the socket once sent)."""
        while True:
            try:
                packet = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            for line in packet.decode().splitlines():
                self.received.append(_parse(line))

    def named(self, name: str) -> list[Metric]:
        return [m for m in self.drain() if m.name == name]

    def total(self, name: str) -> float:
        return sum(m.value for m in self.named(name))

    def last(self, name: str) -> Metric:
        found = self.named(name)
        assert found, f"no {name} among {sorted({m.name for m in self.received})}"
        return found[-1]


def _parse(line: str) -> Metric:
    # airflow.stateful.events,namespace=ns,name=x:3|c  (InfluxDB-style tags), or without tags
    head, _, rest = line.partition(":")
    value, _, kind = rest.partition("|")
    name, *tags = head.split(",")
    assert name.startswith("airflow."), line
    return Metric(name.removeprefix("airflow."), dict(t.split("=", 1) for t in tags), float(value), kind)


def _configure_stats(monkeypatch: pytest.MonkeyPatch, port: int, *, tags: bool) -> None:
    """Point Airflow's StatsD at ``port``, and build its ``Stats`` again, as a process does at start."""
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED", str(tags))
    try:  # the task SDK's metrics (Airflow >= 3.2): what a triggerer's trigger and a worker use
        from airflow.sdk._shared.observability.metrics import stats as sdk_stats
        from airflow.sdk.observability.metrics import stats_utils

        monkeypatch.setattr(sdk_stats, "_factory", sdk_stats._factory)
        monkeypatch.setattr(sdk_stats, "_backend", None)
        sdk_stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    except ImportError:  # Airflow 3.0: airflow.stats.Stats chooses its factory when imported
        statsd_logger = importlib.import_module("airflow.metrics.statsd_logger")
        stats = importlib.import_module("airflow.stats")
        monkeypatch.setattr(stats._Stats, "factory", statsd_logger.get_statsd_logger, raising=False)
        monkeypatch.setattr(stats.Stats, "instance", None)
    metrics.reset()


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    """Airflow's StatsD metrics, with InfluxDB-style tags, sent to a listener of the test's."""
    listener = StatsdListener()
    _configure_stats(monkeypatch, listener.port, tags=True)
    yield listener
    monkeypatch.undo()
    metrics.reset()
    listener.sock.close()


@pytest.fixture
def store(tmp_path: Path) -> SqlBackend:
    return SqlBackend(f"sqlite:///{tmp_path}/state.db")


BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FilesBase(BaseEventTrigger):
    """Emits ``(key, minutes after BASE)`` items that are new; a watcher then waits with ``block``."""

    def __init__(self, source: str, items: list[tuple[str, int]], block: bool = False) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source, self.items, self.block = source, items, block
        self.blocked = asyncio.Event()  # set once every item was looked at

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.Files", {"source": self.source, "items": self.items, "block": self.block})

    async def body(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
        for key, minutes in self.items:
            stamp = BASE + timedelta(minutes=minutes)
            if watermark.is_new(key, stamp):
                watermark.advance(key=key, timestamp=stamp)
                yield TriggerEvent({"key": key})
        if self.block:
            self.blocked.set()
            await asyncio.Event().wait()  # a watcher waiting for its source


def files_trigger(store: SqlBackend, *, ack: bool, max_lag: timedelta | None = None) -> type[FilesBase]:
    """The files trigger, with a lookback of 5 minutes, saving after every event."""

    class Files(FilesBase):
        @stateful(
            namespace="metrics",
            name="{source}",
            backend=store,
            lookback=timedelta(minutes=5),
            ack=ack,
            save_batch=1,
            max_lag=max_lag,
        )
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            async for event in self.body(watermark):
                yield event

    return Files


def seen_keys(store: SqlBackend, name: str) -> int:
    record = store.read("metrics", name, "watermark")
    return 0 if record is None else len(Watermark[int].from_state_json(record.value).seen)


ITEMS = [("a", 10), ("b", 11), ("c", 12), ("late", 1)]


@pytest.mark.parametrize("ack", [True, False], ids=["ack", "resume"])
async def test_a_trigger_under_the_triggerer_sends_its_metrics_tagged(
    statsd: StatsdListener, store: SqlBackend, ack: bool
) -> None:
    trigger_class = files_trigger(store, ack=ack)
    triggerer = Triggerer()
    trigger = trigger_class("landing/in, 2026", ITEMS, block=True)
    triggerer.start(trigger)
    await trigger.blocked.wait()  # the late item was skipped
    await until(lambda: len(triggerer.events) == 3)
    await triggerer.settled()
    await until(lambda: seen_keys(store, "landing/in, 2026") == 3)  # the third event's save
    await triggerer.stop()  # the end of the run reports what was not reported yet
    after = datetime.now(timezone.utc)

    tags = {"namespace": "metrics", "name": "landing/in__2026"}  # "," and " " are no tag characters
    assert {m.name for m in statsd.drain()} >= {
        "stateful.events",
        "stateful.saves",
        "stateful.save_duration",
        "stateful.late_skipped",
        "stateful.seen_size",
        "stateful.state_size",
        "stateful.lag_seconds",
    }
    assert all(m.tags == tags for m in statsd.received if m.name.startswith("stateful."))
    assert statsd.total("stateful.events") == 3
    assert statsd.total("stateful.late_skipped") == 1
    assert statsd.named("stateful.saves")[0].kind == "c"
    # The first save is reported at once, the others with the next report (the end of the run).
    assert 1 <= len(statsd.named("stateful.save_duration")) <= statsd.total("stateful.saves")
    assert all(m.kind == "ms" and m.value >= 0 for m in statsd.named("stateful.save_duration"))
    assert statsd.last("stateful.seen_size").value == 3
    record = store.read("metrics", "landing/in, 2026", "watermark")
    assert record is not None
    assert statsd.last("stateful.state_size").value == len(record.value)
    newest = BASE + timedelta(minutes=12)
    lag = statsd.last("stateful.lag_seconds")
    assert lag.kind == "g" and 0 < lag.value <= (after - newest).total_seconds()
    assert not statsd.named("stateful.conflicts") and not statsd.named("stateful.stuck")


async def test_plain_statsd_gets_namespace_and_name_in_the_metric_name(
    statsd: StatsdListener, store: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure_stats(monkeypatch, statsd.port, tags=False)
    triggerer = Triggerer()
    triggerer.start(files_trigger(store, ack=False)("landing/in.csv", ITEMS[:2]))
    await triggerer.finished()

    received = {m.name for m in statsd.drain()}
    assert "stateful.events.metrics.landing_in_csv" in received
    assert "stateful.saves.metrics.landing_in_csv" in received
    assert statsd.total("stateful.events.metrics.landing_in_csv") == 2
    assert not any(m.tags for m in statsd.received)


def sensor_class(store: SqlBackend) -> type[BaseSensorOperator]:
    class Counting(BaseSensorOperator):
        def __init__(self, *, source: str, available: list[int], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.source, self.available = source, available

        @stateful(namespace="numbers", name="{source}", backend=store)
        def poke(self, context: Context, watermark: Watermark[int]) -> bool | PokeReturnValue:
            new = [n for n in self.available if n > (watermark.cursor or 0)]
            if new:
                watermark.advance(cursor=max(new))
            return PokeReturnValue(is_done=bool(new), xcom_value=new)

    return Counting


def test_a_sensor_poke_and_its_commit_send_metrics(statsd: StatsdListener, store: SqlBackend) -> None:
    sensor = sensor_class(store)(task_id="s", source="orders", available=[1, 2])
    assert sensor.poke({})
    assert statsd.total("stateful.events") == 1
    assert not statsd.named("stateful.saves")  # saved only once the task succeeded
    assert commit(sensor) == 1
    assert statsd.total("stateful.saves") == 1
    record = store.read("numbers", "orders", "watermark")
    assert record is not None
    assert statsd.last("stateful.state_size").value == len(record.value)
    assert statsd.last("stateful.seen_size").value == 0
    assert statsd.last("stateful.saves").tags == {"namespace": "numbers", "name": "orders"}
    assert not statsd.named("stateful.lag_seconds")  # a cursor without a timestamp has no lag


def test_a_lost_compare_and_set_counts_a_conflict(statsd: StatsdListener, store: SqlBackend) -> None:
    sensor = sensor_class(store)(task_id="s", source="orders", available=[1])
    assert sensor.poke({})
    store.write(
        "numbers", "orders", "watermark", Watermark[int](cursor=7).to_state_json(), expected_version=None
    )
    with pytest.raises(StateConflictError):
        commit(sensor)
    assert statsd.total("stateful.conflicts") == 1
    assert not statsd.named("stateful.saves")


async def test_a_stored_state_that_does_not_validate_counts_a_validation_failure(
    statsd: StatsdListener, store: SqlBackend
) -> None:
    store.write("metrics", "broken", "watermark", '{"cursor": "not a number"}', expected_version=None)
    trigger = files_trigger(store, ack=False)("broken", ITEMS)
    with pytest.raises(StateValidationError):
        async for _ in trigger.run():
            pass
    sensor = sensor_class(store)(task_id="s", source="broken", available=[1])
    store.write("numbers", "broken", "watermark", '{"cursor": "x"}', expected_version=None)
    with pytest.raises(StateValidationError):
        sensor.poke({})
    assert [m.tags["namespace"] for m in statsd.named("stateful.validation_failures")] == [
        "metrics",
        "numbers",
    ]


async def test_a_watermark_still_for_longer_than_max_lag_is_reported_while_the_trigger_runs(
    statsd: StatsdListener, store: SqlBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stateful")
    trigger_class = files_trigger(store, ack=False, max_lag=timedelta(seconds=0.2))
    triggerer = Triggerer()
    triggerer.start(trigger_class("quiet", ITEMS[:1], block=True))

    def reported() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "has not moved" in r.getMessage()]

    await until(lambda: len(reported()) >= 2)  # again after another max_lag: not stopped by the first
    await triggerer.stop()
    message = reported()[0].getMessage()
    assert "metrics/quiet" in message and "max_lag (0.2 s)" in message
    assert "stateful show metrics quiet" in message
    assert reported()[0].levelno == logging.WARNING
    assert statsd.total("stateful.stuck") >= 2
    assert statsd.last("stateful.stuck").tags == {"namespace": "metrics", "name": "quiet"}
    assert statsd.named("stateful.lag_seconds")
    count = len(reported())
    await asyncio.sleep(0.3)  # the run ended: its timer is gone
    assert len(reported()) == count


def _session() -> WatermarkSession[Watermark[int]]:
    session = WatermarkSession(
        Watermark[int], Scope(Address("ns", "n", "watermark"), "memory"), commit="after_event"
    )
    session.load(None)
    return session


def test_a_stuck_watermark_is_reported_once_per_max_lag_and_no_more_once_it_moves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = _session()
    watch = RunWatch(session, timedelta(seconds=10), "T.run")
    start = watch.moved
    assert not watch.check(start + timedelta(seconds=5))
    assert not watch.check(start + timedelta(seconds=10))  # exactly max_lag: not longer
    assert watch.check(start + timedelta(seconds=11))
    assert not watch.check(start + timedelta(seconds=15))  # reported less than max_lag ago
    assert watch.check(start + timedelta(seconds=21))
    session.watermark.advance(cursor=1)
    session.emitted()
    assert not watch.check(start + timedelta(seconds=22))  # it moved
    assert not watch.check(start + timedelta(seconds=31))
    assert watch.check(start + timedelta(seconds=33))
    assert len([r for r in caplog.records if "has not moved" in r.getMessage()]) == 3


def test_without_max_lag_nothing_is_ever_stuck() -> None:
    watch = RunWatch(_session(), None, "T.run")
    assert not watch.check(watch.moved + timedelta(days=365))


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-1), 5, "soon"])
def test_a_bad_max_lag_is_refused_at_decoration_time(bad: Any) -> None:
    with pytest.raises(
        StatefulUsageError, match=r"max_lag of @stateful\(namespace='x'\) must be a duration > 0"
    ):
        stateful(namespace="x", name="y", max_lag=bad)


async def test_a_bad_max_lag_setting_fails_the_run_naming_it(
    store: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEFUL_MAX_LAG", "0")
    trigger = files_trigger(store, ack=False)("any", ITEMS)
    with pytest.raises(
        StatefulUsageError, match="environment variable STATEFUL_MAX_LAG must be a duration > 0"
    ):
        async for _ in trigger.run():
            pass


def test_names_and_tags_are_cleaned_and_bounded() -> None:
    assert metrics.name_part("s3://bucket/a.b") == "s3___bucket_a_b"
    assert metrics.tag_value("a=b,c") == "a_b_c"
    long = metrics.name_part("x" * 300)
    assert len(long) == metrics.MAX_PART and long != metrics.name_part("x" * 301)


def test_a_keyed_watermark_is_stuck_until_a_partition_moves() -> None:
    from stateful._keyed_session import KeyedSession

    session = KeyedSession(
        Watermark[int], Scope(Address("ns", "k", "watermark"), "memory"), commit="after_event"
    )
    keyed = session.load_partitions([])
    keyed["eu"].advance(cursor=1)
    session.emitted()
    watch = RunWatch(session, timedelta(seconds=10), "T.run")
    start = watch.moved
    assert watch.check(start + timedelta(seconds=11))
    keyed["eu"]  # looked up again, unchanged: still
    session.emitted()
    assert watch.check(start + timedelta(seconds=22))
    keyed["eu"].advance(cursor=2)
    session.emitted()
    assert not watch.check(start + timedelta(seconds=33))  # it moved (a report was due otherwise)
    assert watch.check(start + timedelta(seconds=44))


async def test_a_keyed_watermark_reports_its_saves_without_size_gauges(
    statsd: StatsdListener, store: SqlBackend
) -> None:
    class Regions(BaseEventTrigger):
        def serialize(self) -> tuple[str, dict[str, Any]]:
            return ("tests.Regions", {})

        @stateful(namespace="metrics", name="regions", backend=store, ack=False, save_batch=1)
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[TriggerEvent]:
            for region in ("eu", "us"):
                keyed[region].advance(cursor=1)
                yield TriggerEvent({"region": region})

    triggerer = Triggerer()
    triggerer.start(Regions())  # type: ignore[no-untyped-call]
    await triggerer.finished()
    assert statsd.total("stateful.events") == 2
    assert statsd.total("stateful.saves") >= 1
    assert statsd.named("stateful.save_duration")
    assert not statsd.named("stateful.seen_size") and not statsd.named("stateful.state_size")
