"""A throwaway PostgreSQL server for the tests, started from the system binaries.

Each test process (each pytest-xdist worker) starts its own server: its own temporary directory
(``tempfile.mkdtemp``), its own free port, nothing fixed on disk.

The server runs as an unprivileged user (``initdb`` refuses root), listens on a free port on
127.0.0.1 with its Unix socket in its own temporary directory, requires a password (so that
password masking is tested for real), and reports times in a non-UTC zone (so that UTC
conversion is tested for real).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from stateful.backends.sql.engine import SQLALCHEMY_2

__all__ = ["INSTALL_HINT", "PG_DRIVER", "PostgresServer", "find_bindir", "postgres_required"]

INSTALL_HINT = (
    "install the PostgreSQL server binaries (Debian/Ubuntu: `apt-get install postgresql`, "
    "Fedora: `dnf install postgresql-server`, macOS: `brew install postgresql`)"
)
# The SQLAlchemy driver of the store's URLs: SQLAlchemy 1.4 (Airflow 3.0) has no psycopg 3 dialect.
PG_DRIVER = "psycopg" if SQLALCHEMY_2 else "psycopg2"
_USER = "stateful"
_DATABASE = "stateful_test"
_FALLBACK_OS_USER = "stateful-pg"
# Well off UTC, so a store that forgets to convert returns the wrong offset.
_SERVER_TIMEZONE = "America/New_York"


def postgres_required() -> bool:
    """Whether a missing PostgreSQL must fail the run (CI) instead of skipping."""
    if os.environ.get("STATEFUL_REQUIRE_POSTGRES", "") not in {"", "0"}:
        return True
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first, or ``None``."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versioned = [*Path("/usr/lib/postgresql").glob("*/bin"), *Path("/usr").glob("pgsql-*/bin")]
    candidates += sorted(versioned, key=_version_key, reverse=True)
    candidates += [Path("/usr/local/pgsql/bin"), Path("/opt/homebrew/bin")]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path)))


@dataclass
class PostgresServer:
    """A running server; :meth:`stop` it when done."""

    bindir: Path
    root: Path
    port: int
    password: str
    run_as: tuple[int, int] | None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database, password included (and URL-quoted)."""
        return URL.create(
            f"postgresql+{PG_DRIVER}",
            username=_USER,
            password=self.password,
            host="127.0.0.1",
            port=self.port,
            database=_DATABASE,
        ).render_as_string(hide_password=False)

    @property
    def conninfo(self) -> str:
        """libpq connection string of the test database, password included."""
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, user=_USER, password=self.password, dbname=_DATABASE
        )

    @classmethod
    def start(cls, bindir: Path) -> PostgresServer:
        """initdb a temporary directory, start the server and create the test database."""
        run_as = _unprivileged_user() if os.geteuid() == 0 else None
        # Not under pytest's tmp_path: that is private to root, and the server user must reach it.
        root = Path(tempfile.mkdtemp(prefix="stateful-pg-"))
        # Characters that must be URL-quoted: masking must catch the quoted form as well.
        password = f"pw-{secrets.token_hex(8)}-@:/%"
        server = cls(bindir=bindir, root=root, port=0, password=password, run_as=run_as)
        try:
            (root / "pwfile").write_text(password + "\n")
            if run_as is not None:
                for path in (root, root / "pwfile"):
                    os.chown(path, *run_as)
            server._run(
                "initdb",
                "-D",
                str(root / "data"),
                "-U",
                _USER,
                f"--pwfile={root / 'pwfile'}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            )
            server._start_on_free_port()
            server._create_database()
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        """Stop the server (if started) and delete its files."""
        if (self.root / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server as an outage does (fast shutdown: open connections are cut), keeping
        its files and port; :meth:`resume` starts it again."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start a halted server again on its port."""
        self._pg_start()

    def _start_on_free_port(self) -> None:
        # A free port can be taken between our probe and the server's bind: try a few.
        error: RuntimeError | None = None
        for _ in range(5):
            self.port = _free_port()
            try:
                self._pg_start()
                return
            except RuntimeError as exc:
                error = exc
        log = (self.root / "server.log").read_text(errors="replace")
        raise RuntimeError(f"PostgreSQL did not start:\n{log}") from error

    def _pg_start(self) -> None:
        options = (
            f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off "
            f"-c full_page_writes=off -c timezone={_SERVER_TIMEZONE}"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def _create_database(self) -> None:
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=_USER,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            # ICU collation orders "B" after "a", unlike code-point order: the stores' list()
            # ordering must not depend on the database's collation.
            try:
                conn.execute(
                    f"CREATE DATABASE {_DATABASE} TEMPLATE template0 ENCODING 'UTF8' "
                    "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
                )
            except psycopg.Error:
                conn.execute(f"CREATE DATABASE {_DATABASE} TEMPLATE template0 ENCODING 'UTF8'")

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        kwargs: dict[str, Any] = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "HOME": str(self.root)}
        result = subprocess.run(
            [str(self.bindir / program), *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed with exit code {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )


def _unprivileged_user() -> tuple[int, int]:
    for name in ("postgres", _FALLBACK_OS_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    # Several test processes (pytest-xdist workers) may get here at once: the one whose useradd
    # fails because another created the user finds it all the same.
    created = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_OS_USER],
        check=False,
        capture_output=True,
        text=True,
    )
    try:
        entry = pwd.getpwnam(_FALLBACK_OS_USER)
    except KeyError:
        raise RuntimeError(f"useradd {_FALLBACK_OS_USER} failed: {created.stderr}") from None
    return entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
