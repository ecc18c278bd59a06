"""Run the ``stateful`` command line against real stores: in this process, or as a user does.

``cli(...)`` calls the command line's ``main(argv)`` in this process, with its own stdin,
stdout, stderr and environment (click's ``CliRunner`` isolation), as ``python -m stateful``
runs it: the same arguments, outputs and exit status, an uncaught exception printed as a
traceback with exit status 1, and nothing kept from one command to the next (the default
stores the command opened are disposed of, the logging it configured is undone). Tests that
need a real process (signals, a terminal, the installed console script) use ``cli.popen``,
``cli.process`` or the ``terminal`` fixture.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import pty
import select
import subprocess
import sys
import termios
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from stateful.backends import SqlBackend
from stateful.backends.sql import dispose_default_stores
from stateful.cli import main
from stateful.types import Watermark

REPO = Path(__file__).resolve().parents[2]
WM = "watermark"
# Variables that would choose another store or history setting than the test's.
_OWN_SETTINGS = ("STATEFUL_", "AIRFLOW__STATEFUL__")
# click < 8.2 mixes stderr into stdout unless asked not to; click >= 8.2 always keeps it apart.
_SEPARATE_STDERR: dict[str, Any] = (
    {"mix_stderr": False} if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else {}
)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines()]


@dataclass
class Cli:
    """``stateful`` with its own AIRFLOW_HOME and default store."""

    home: Path
    url: str
    env: dict[str, str] = field(default_factory=dict)
    _stores: list[SqlBackend] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "stateful", *args]

    def environment(self, **extra: str) -> dict[str, str]:
        """The environment of a command: this process's, without settings of its own, plus the test's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)}
        env.update(AIRFLOW_HOME=str(self.home), STATEFUL_DATABASE_URL=self.url, PYTHONUNBUFFERED="1")
        env.update(self.env)
        env.update(extra)
        return env

    def __call__(self, *args: str, stdin: str | None = None, **env: str) -> Result:
        """Run ``stateful ARGS`` in this process; see the module docstring.

        Called from a coroutine (an async test), the command runs in a thread, as it would
        from a shell: ``stateful run`` starts an event loop of its own.
        """
        if _in_event_loop():
            return Running(lambda: self._call(args, stdin, env)).result(timeout=120)
        return self._call(args, stdin, env)

    def _call(self, args: tuple[str, ...], stdin: str | None, env: dict[str, str]) -> Result:
        wanted = self.environment(**env)
        changes: dict[str, str | None] = {k: None for k in os.environ if k not in wanted}
        changes.update(wanted)
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            with CliRunner(**_SEPARATE_STDERR).isolation(input=stdin or "", env=changes) as streams:
                try:
                    code = main(list(args))
                except Exception as exc:  # what the interpreter does with it: a traceback, status 1
                    click.echo("".join(traceback.format_exception(exc)), err=True, nl=False)
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
                stdout, stderr = streams[0].getvalue(), streams[1].getvalue()
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
            dispose_default_stores()  # a new command starts without the stores an earlier one opened
        return Result(code, stdout.decode(), stderr.decode())

    def start(self, *args: str, **env: str) -> Running:
        """Run ``stateful ARGS`` in this process, in a thread, while the test goes on."""
        return Running(lambda: self(*args, **env))

    def process(self, *args: str, stdin: str | None = None, timeout: float = 120, **env: str) -> Result:
        """Run ``stateful ARGS`` in a subprocess, as a user does."""
        proc = subprocess.run(
            self.command(*args),
            cwd=REPO,
            env=self.environment(**env),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=REPO,
            env=self.environment(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def store(self, url: str | None = None) -> SqlBackend:
        store = SqlBackend(url or self.url, history_versions=100)
        self._stores.append(store)
        return store

    def seed(self, namespace: str, name: str, *values: Watermark[Any], url: str | None = None) -> int:
        """Write ``values`` as successive versions; return the last version."""
        store = self.store(url)
        record = store.read(namespace, name, WM)
        version = None if record is None else record.version
        for value in values:
            version = store.write(namespace, name, WM, value.to_state_json(), expected_version=version)
        assert version is not None
        return version

    def close(self) -> None:
        for store in self._stores:
            store.dispose()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Running:
    """A command running in a thread (a daemon: a test that fails while it waits does not hang)."""

    def __init__(self, command: Callable[[], Result]) -> None:
        self._result: Result | None = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._result = command()
            except BaseException as exc:  # handed to the test by result()
                self._error = exc

        self._thread = threading.Thread(target=target, name="stateful-command", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self, timeout: float = 60) -> Result:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the command did not end within {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    home = tmp_path / "airflow-home"
    home.mkdir()
    runner = Cli(home=home, url=f"sqlite:///{tmp_path / 'stateful.db'}")
    # Reading the history setting from Airflow's configuration would import Airflow in every
    # command run as a subprocess (seconds each); the tests that are about that setting override it.
    runner.env["STATEFUL_HISTORY_VERSIONS"] = "100"
    yield runner
    runner.close()


def _controlling_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A command on a pseudo-terminal: what a person at a keyboard sees and types."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.fd, child = pty.openpty()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, "TERM": "xterm", "COLUMNS": "160"},
            stdin=child,
            stdout=child,
            stderr=child,
            preexec_fn=_controlling_terminal,  # so that Ctrl-C typed there sends SIGINT
        )
        os.close(child)
        self.screen = ""

    def read_until(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                raise AssertionError(f"{text!r} did not appear; the screen shows:\n{self.screen}")
        return self.screen

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.screen += data.decode(errors="replace")
        return bool(data)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0.05):
            pass
        code = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        os.close(self.fd)
        return code


OpenTerminal = Callable[..., Terminal]


@pytest.fixture
def terminal(cli: Cli) -> Iterator[OpenTerminal]:
    opened: list[Terminal] = []

    def open_terminal(*args: str, **env: str) -> Terminal:
        opened.append(Terminal(cli.command(*args), cli.environment(**env), REPO))
        return opened[-1]

    yield open_terminal
    for term in opened:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait()
