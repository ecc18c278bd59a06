"""Store outages: a real PostgreSQL server stopped and started again under a running trigger.

A decorated trigger watches a directory that a writer thread fills with one file every 50 ms; it
runs in Airflow's own ``TriggerRunner`` and keeps its watermark in a PostgreSQL store whose server
the test stops (``pg_ctl stop -m fast``: open connections are cut) and starts again. What must
hold: no file is lost, none repeats while the trigger survives the outage (and at most a save
batch when it gives up and is started again), it never has more than ``save_batch`` handed-over
events unsaved, every failed attempt is logged without the password, and it catches up once the
server is back. The figures are recorded for the run's summary (docs/running-in-airflow.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from sqlalchemy.engine import make_url

from stateful import Watermark, stateful
from stateful._retry import RetryPolicy, aretry, retry, retry_policy
from stateful.backends import MemoryBackend, SqlBackend
from stateful.backends.native.planner import api_unreachable
from stateful.backends.sql.unavailable import unreachable
from stateful.errors import StateConflictError, StatefulUsageError, StoreError, StoreUnavailableError
from stateful.sensors import commit
from tests._figures import Figures
from tests._postgres import PostgresServer, find_bindir, postgres_required
from tests._triggerer import Triggerer, until

BATCH = 10  # save_batch of the trigger: the most handed-over events it keeps unsaved
EVERY = 0.05  # a new file every 50 ms
POLL = 0.05  # the trigger lists the directory every 50 ms


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own: the tests stop it, which others must not see."""
    bindir = find_bindir()
    if bindir is None:
        if postgres_required():
            pytest.fail("store-outage tests need the PostgreSQL server binaries (initdb, pg_ctl)")
        pytest.skip("store-outage tests need the PostgreSQL server binaries (initdb, pg_ctl)")
    started = PostgresServer.start(bindir)
    try:
        yield started
    finally:
        started.stop()


def secrets_of(server: PostgresServer) -> list[str]:
    return [server.password, quote(server.password, safe=""), quote_plus(server.password)]


# -- the source, the trigger and what the test watches ---------------------------------------------


class Writer(threading.Thread):
    """Creates ``000001.csv``, ``000002.csv``, ... in ``directory``, one every ``EVERY`` seconds."""

    def __init__(self, directory: Path) -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.written = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(EVERY):
            (self.directory / f"{self.written + 1:06d}.csv").touch()
            self.written += 1

    def finish(self) -> int:
        self._done.set()
        self.join()
        return self.written


class WatchBase(BaseEventTrigger):
    """Emits one event per new file of ``directory``, in name order, forever."""

    def __init__(self, directory: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.directory = directory

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.FileWatch", {"directory": self.directory})


def make_watch(store: SqlBackend) -> type[WatchBase]:
    class FileWatch(WatchBase):
        @stateful(
            namespace="outage",
            name="files",
            backend=store,
            ack=False,
            save_batch=BATCH,
            save_delay=timedelta(seconds=0.1),
            save_interval=timedelta(seconds=0.2),
        )
        async def run(self, watermark: Watermark[int]) -> AsyncIterator[TriggerEvent]:
            while True:
                for name in sorted(await asyncio.to_thread(os.listdir, self.directory)):
                    number = int(name.split(".")[0])
                    if watermark.cursor is None or number > watermark.cursor:
                        watermark.advance(cursor=number)
                        yield TriggerEvent({"file": name})
                await asyncio.sleep(POLL)

    return FileWatch


class Saves(logging.Handler):
    """Follows the ``stateful`` logger: the event the last save covered, and each retry line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.last_saved = 0
        self.saved_at: list[float] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.lines.append(text)
        if record.msg.startswith("stateful: saved %s as version %d in %s (event %d)"):
            assert isinstance(record.args, tuple)
            self.last_saved = int(str(record.args[-1]))
            self.saved_at.append(time.monotonic())

    def retries(self) -> list[str]:
        return [line for line in self.lines if "store unavailable: attempt" in line]


@pytest.fixture
def saves() -> Iterator[Saves]:
    handler = Saves()
    logger = logging.getLogger("stateful")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def files_of(triggerer: Triggerer) -> list[str]:
    return [event["file"] for event in triggerer.events]


async def outage(
    server: PostgresServer, triggerer: Triggerer, saves: Saves, seconds: float, *, survive: bool = True
) -> tuple[int, float]:
    """Stop the server for ``seconds``; return the most events unsaved meanwhile, and when it was back."""
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, len(triggerer.events) - saves.last_saved)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.to_thread(server.halt)
        await asyncio.sleep(seconds)
        if survive:
            assert triggerer.task is not None and not triggerer.task.done(), "the trigger gave up too soon"
        await asyncio.to_thread(server.resume)
        back = time.monotonic()
    finally:
        watcher.cancel()
    return most, back


async def caught_up(triggerer: Triggerer, saves: Saves, writer: Writer, before: tuple[str, ...] = ()) -> int:
    """Stop the writer; wait until every file was emitted (``before`` by an earlier run, or by
    ``triggerer``) and saved; return how many were written."""
    written = writer.finish()

    def done() -> bool:
        return len({*before, *files_of(triggerer)}) >= written and saves.last_saved == len(triggerer.events)

    await until(done)
    return written


def check_lines(saves: Saves, server: PostgresServer) -> None:
    retries = saves.retries()
    assert retries, "no retry was logged"
    assert all("outage/files" in line and "attempt " in line for line in retries)
    assert "attempt 1/8" in retries[0] and "retrying in 0.5 s" in retries[0]
    assert not [line for line in saves.lines for secret in secrets_of(server) if secret in line]


# -- the trigger -------------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_a_trigger_rides_out_a_few_seconds_of_outage_and_loses_nothing(
    server: PostgresServer, tmp_path: Path, saves: Saves, figures: Figures
) -> None:
    store = SqlBackend(server.url, table_name="outage_fast")
    writer = Writer(tmp_path)
    triggerer = Triggerer()
    triggerer.start(make_watch(store)(str(tmp_path)))
    writer.start()
    await until(lambda: saves.last_saved >= 2 * BATCH)  # running and saving
    most, back = await outage(server, triggerer, saves, 3.0)
    await until(lambda: saves.saved_at[-1] > back)
    recovered = min(at for at in saves.saved_at if at > back) - back
    written = await caught_up(triggerer, saves, writer)
    await triggerer.stop()

    files = files_of(triggerer)
    lost, repeats = written - len(set(files)), len(files) - len(set(files))
    figures.append(
        f"[store outage 3 s] {written} files, lost {lost}, repeated {repeats}, at most {most} events "
        f"unsaved (bound {BATCH}), first save {recovered:.1f} s after the server was back"
    )
    assert lost == 0 and repeats == 0
    assert most <= BATCH  # the bound held...
    assert most == BATCH  # ...and was reached: the trigger stopped taking files, it did not race on
    check_lines(saves, server)
    assert store.read("outage", "files", "watermark") is not None


@pytest.mark.postgres
async def test_a_trigger_that_gives_up_fails_clearly_and_its_restart_loses_nothing(
    server: PostgresServer, tmp_path: Path, saves: Saves, monkeypatch: pytest.MonkeyPatch, figures: Figures
) -> None:
    monkeypatch.setenv("STATEFUL_STORE_RETRIES", "3")
    monkeypatch.setenv("STATEFUL_STORE_RETRY_DELAY", "0.1")
    monkeypatch.setenv("STATEFUL_STORE_RETRY_MAX_DELAY", "0.2")
    store = SqlBackend(server.url, table_name="outage_gives_up")
    watch = make_watch(store)
    writer = Writer(tmp_path)
    first = Triggerer()
    first.start(watch(str(tmp_path)))
    writer.start()
    await until(lambda: saves.last_saved >= 2 * BATCH)
    await asyncio.to_thread(server.halt)
    try:
        with pytest.raises(StoreUnavailableError) as failure:
            await asyncio.wait_for(first.finished(), 30)
    finally:
        await asyncio.to_thread(server.resume)
    message = str(failure.value)
    assert "gave up trying to save outage/files" in message and "after 3 attempts" in message
    assert "resumes from the stored watermark" in message
    assert not [secret for secret in secrets_of(server) if secret in message]
    assert [line for line in saves.retries() if "attempt 3/3" in line]

    second = Triggerer()  # what Airflow does with a failed trigger: it starts it again
    saves.last_saved = 0  # the new run numbers its events from 1
    second.start(watch(str(tmp_path)))
    written = await caught_up(second, saves, writer, tuple(files_of(first)))
    await second.stop()

    files = files_of(first) + files_of(second)
    lost, repeats = written - len(set(files)), len(files) - len(set(files))
    figures.append(
        f"[store outage, retries spent] {written} files, lost {lost}, repeated {repeats} "
        f"after the restart (bound {BATCH})"
    )
    assert lost == 0
    assert repeats <= BATCH


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_thirty_second_outage_while_files_arrive_loses_nothing(
    server: PostgresServer, tmp_path: Path, saves: Saves, figures: Figures
) -> None:
    store = SqlBackend(server.url, table_name="outage_slow")
    writer = Writer(tmp_path)
    triggerer = Triggerer()
    triggerer.start(make_watch(store)(str(tmp_path)))
    writer.start()
    await until(lambda: saves.last_saved >= 2 * BATCH)
    most, back = await outage(server, triggerer, saves, 30.0)
    await until(lambda: saves.saved_at[-1] > back, timeout=90)
    recovered = min(at for at in saves.saved_at if at > back) - back
    written = await caught_up(triggerer, saves, writer)
    caught = time.monotonic() - back
    await triggerer.stop()

    files = files_of(triggerer)
    lost, repeats = written - len(set(files)), len(files) - len(set(files))
    attempts = len(saves.retries())
    figures.append(
        f"[store outage 30 s] {written} files, lost {lost}, repeated {repeats}, at most {most} events "
        f"unsaved (bound {BATCH}), {attempts} failed attempts logged, first save {recovered:.1f} s and "
        f"caught up {caught:.1f} s after the server was back"
    )
    assert lost == 0 and repeats == 0
    assert most == BATCH
    check_lines(saves, server)


# -- the sensor --------------------------------------------------------------------------------------


def make_sensor(store: SqlBackend) -> BaseSensorOperator:
    class FileSensor(BaseSensorOperator):
        def __init__(self, *, available: list[int], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.available = available

        @stateful(namespace="outage", name="sensor", backend=store)
        def poke(self, context: Context, watermark: Watermark[int]) -> bool | PokeReturnValue:
            new = [n for n in self.available if n > (watermark.cursor or 0)]
            if new:
                watermark.advance(cursor=max(new))
            return PokeReturnValue(is_done=bool(new), xcom_value=new)

    return FileSensor(task_id="sense", available=[1, 2, 3])


@pytest.mark.postgres
def test_a_poke_during_an_outage_fails_the_try_clearly_and_the_next_try_succeeds(
    server: PostgresServer, saves: Saves, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEFUL_STORE_RETRIES", "2")
    monkeypatch.setenv("STATEFUL_STORE_RETRY_DELAY", "0.1")
    store = SqlBackend(server.url, table_name="outage_sensor")
    store.open()
    sensor = make_sensor(store)
    server.halt()
    try:
        with pytest.raises(StoreUnavailableError) as failure:
            sensor.poke({})
    finally:
        server.resume()
    message = str(failure.value)
    assert "gave up trying to load outage/sensor" in message and "after 2 attempts" in message
    assert "a sensor's try fails and Airflow retries the task" in message
    assert not [secret for secret in secrets_of(server) if secret in message]
    assert [line for line in saves.retries() if "attempt 1/2" in line and "retrying in 0.1 s" in line]
    assert commit(sensor) == 0  # the failed try staged nothing
    assert store.read("outage", "sensor", "watermark") is None

    retried = make_sensor(store)  # Airflow's next try
    result = retried.poke({})
    assert isinstance(result, PokeReturnValue) and result.xcom_value == [1, 2, 3]
    assert commit(retried) == 1


# -- what is retried, and what is not --------------------------------------------------------------


@pytest.mark.postgres
def test_a_stopped_server_is_unavailable_and_a_wrong_password_is_not(server: PostgresServer) -> None:
    store = SqlBackend(server.url, table_name="outage_kinds")
    store.open()
    server.halt()
    try:
        with pytest.raises(StoreUnavailableError, match="cannot be reached now"):
            store.read("outage", "kinds", "watermark")
    finally:
        server.resume()
    assert store.read("outage", "kinds", "watermark") is None  # the pool recovers by itself
    # The URL with another password, rendered by SQLAlchemy (1.4 and 2.0 quote a password alike
    # only through their own URL object).
    wrong_url = make_url(server.url).set(password="wrong").render_as_string(hide_password=False)
    wrong = SqlBackend(wrong_url, table_name="outage_kinds")
    with pytest.raises(StoreError) as refused:
        wrong.read("outage", "kinds", "watermark")
    assert not isinstance(refused.value, StoreUnavailableError)


def test_a_locked_sqlite_file_is_unavailable_and_a_missing_table_is_not(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            other.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.OperationalError) as missing:
            holder.execute("SELECT * FROM no_such_table")
    finally:
        other.close()
        holder.close()
    assert unreachable(locked.value)
    assert not unreachable(missing.value)


@pytest.mark.airflow_min("3.3", reason="AIP-103 asset state store: its error types")
def test_airflows_api_server_errors_are_unavailable_for_the_native_store() -> None:
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    def runtime(error: ErrorType, status: int | None) -> AirflowRuntimeError:
        return AirflowRuntimeError(ErrorResponse(error=error, detail={"status_code": status, "message": "x"}))

    assert api_unreachable(runtime(ErrorType.API_SERVER_ERROR, None))  # httpx.ConnectError in the supervisor
    assert api_unreachable(runtime(ErrorType.API_SERVER_ERROR, 503))
    assert not api_unreachable(runtime(ErrorType.API_SERVER_ERROR, 404))
    assert not api_unreachable(runtime(ErrorType.ASSET_STORE_NOT_FOUND, None))


def test_a_lost_compare_and_set_is_not_retried() -> None:
    store = MemoryBackend()
    store.write("outage", "cas", "watermark", "{}", expected_version=None)
    calls = []

    def write() -> int:
        calls.append(1)
        return store.write("outage", "cas", "watermark", "{}", expected_version=None)

    with pytest.raises(StateConflictError):
        retry(write, "save outage/cas", policy=RetryPolicy(attempts=5, delay=0.0))
    assert len(calls) == 1


async def test_the_async_retry_waits_without_blocking_the_loop() -> None:
    failures = [StoreUnavailableError("down"), StoreUnavailableError("still down")]
    ticks = 0

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "saved"

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    running = asyncio.create_task(ticker())
    try:
        assert await aretry(call, "save x/y", policy=RetryPolicy(attempts=3, delay=0.05)) == "saved"
    finally:
        running.cancel()
    assert ticks > 10  # the loop ran on while the retry waited (0.05 s, then 0.1 s)


def test_the_retry_settings_come_from_the_environment_and_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert retry_policy() == RetryPolicy(attempts=8, delay=0.5, max_delay=15.0)
    monkeypatch.setenv("STATEFUL_STORE_RETRIES", "3")
    monkeypatch.setenv("STATEFUL_STORE_RETRY_DELAY", "1")
    monkeypatch.setenv("STATEFUL_STORE_RETRY_MAX_DELAY", "2")
    policy = retry_policy()
    assert policy == RetryPolicy(attempts=3, delay=1.0, max_delay=2.0) and policy.patience == 3.0
    monkeypatch.setenv("STATEFUL_STORE_RETRIES", "0")
    with pytest.raises(StatefulUsageError, match="STATEFUL_STORE_RETRIES must be a whole number >= 1"):
        retry_policy()
