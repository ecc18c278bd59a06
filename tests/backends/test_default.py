"""The default store: which rule picks it, at call time, and one shared store per URL."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stateful.backends import SqlBackend
from stateful.backends.sql import dispose_default_stores
from stateful.backends.sql.default import choose_default_backend, default_backend

AIRFLOW_ENV = "AIRFLOW__STATEFUL__DATABASE_URL"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.delenv("STATEFUL_DATABASE_URL", raising=False)
    monkeypatch.delenv(AIRFLOW_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
    dispose_default_stores()
    yield
    dispose_default_stores()


def test_without_configuration_sqlite_in_airflow_home(tmp_path: Path) -> None:
    choice = choose_default_backend()

    db = tmp_path / "airflow-home" / "stateful.db"
    assert choice.backend.description == f"SqlBackend(sqlite:///{db})"
    assert "default SQLite file" in choice.reason and str(db) in choice.reason
    assert not db.exists()  # chosen, not opened
    choice.backend.write("ns", "name", "key", "{}", expected_version=None)
    assert db.exists()


def test_without_airflow_home_sqlite_in_home_airflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIRFLOW_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))

    assert (
        default_backend().description
        == f"SqlBackend(sqlite:///{tmp_path / 'user' / 'airflow' / 'stateful.db'})"
    )


def test_airflow_configuration_beats_the_sqlite_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(AIRFLOW_ENV, f"sqlite:///{tmp_path / 'from-airflow.db'}")

    choice = choose_default_backend()
    assert "from-airflow.db" in choice.backend.description
    assert choice.reason == "Airflow configuration [stateful] database_url"


def test_stateful_env_var_beats_airflow_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(AIRFLOW_ENV, f"sqlite:///{tmp_path / 'from-airflow.db'}")
    monkeypatch.setenv("STATEFUL_DATABASE_URL", "postgresql://airflow:hunter2@db/airflow")

    choice = choose_default_backend()
    assert choice.backend.description == "SqlBackend(postgresql://airflow:***@db/airflow)"
    assert choice.reason == "environment variable STATEFUL_DATABASE_URL"
    assert "hunter2" not in choice.reason


def test_empty_settings_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATEFUL_DATABASE_URL", "")
    monkeypatch.setenv(AIRFLOW_ENV, "")

    assert "default SQLite file" in choose_default_backend().reason


def test_rules_are_applied_at_each_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    before = default_backend()
    monkeypatch.setenv("STATEFUL_DATABASE_URL", f"sqlite:///{tmp_path / 'later.db'}")
    after = default_backend()

    assert "later.db" in after.description and after is not before
    monkeypatch.delenv("STATEFUL_DATABASE_URL")
    assert default_backend() is before


def test_one_store_per_url_even_under_concurrent_calls() -> None:
    barrier = threading.Barrier(16)

    def resolve(_: int) -> SqlBackend:
        barrier.wait()
        return default_backend()

    with ThreadPoolExecutor(16) as pool:
        stores = list(pool.map(resolve, range(16)))
    assert all(store is stores[0] for store in stores)


def test_importing_chooses_nothing(tmp_path: Path) -> None:
    # An unusable URL raises when a store is built from it: at the first call, not at import.
    env = {"STATEFUL_DATABASE_URL": "not a url", "AIRFLOW_HOME": str(tmp_path), "PATH": ""}
    code = (
        "import stateful, stateful.backends.sql.default as d\n"
        "from stateful.errors import StoreError\n"
        "print('imported')\n"
        "try:\n"
        "    d.default_backend()\n"
        "except StoreError:\n"
        "    print('refused at the first call')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split("\n")[:2] == ["imported", "refused at the first call"]
