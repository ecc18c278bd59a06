"""Run the ``stateful`` command line as a user does: a separate process, real stores."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stateful.backends import SqlBackend
from stateful.types import Watermark

REPO = Path(__file__).resolve().parents[2]
WM = "watermark"


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
    """``stateful`` in a subprocess, with its own AIRFLOW_HOME and default store."""

    home: Path
    url: str
    env: dict[str, str] = field(default_factory=dict)
    _stores: list[SqlBackend] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "stateful", *args]

    def environment(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STATEFUL_", "AIRFLOW__STATEFUL__"))}
        env.update(AIRFLOW_HOME=str(self.home), STATEFUL_DATABASE_URL=self.url, PYTHONUNBUFFERED="1")
        env.update(self.env)
        env.update(extra)
        return env

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 120, **env: str) -> Result:
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


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    home = tmp_path / "airflow-home"
    home.mkdir()
    runner = Cli(home=home, url=f"sqlite:///{tmp_path / 'stateful.db'}")
    # Reading the history setting from Airflow's configuration would import Airflow in every
    # command (seconds each); the tests that are about that setting override it.
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
