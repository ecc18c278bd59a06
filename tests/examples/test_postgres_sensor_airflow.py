"""The PostgreSQL ``NewRowsSensor`` run by Airflow's own task runner, on the real server.

One subprocess (a fresh Airflow, its own ``AIRFLOW_HOME`` with a copy of the session's migrated
metadata database) runs ``tests/examples/dags/postgres_scenarios.py`` twice with ``dag.test()``; the
sensor's first try in each run fails after it found rows. Its watermark is kept in the same
PostgreSQL server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stateful import Watermark
from stateful.backends import SqlBackend
from tests._airflow import copy_metadata_db
from tests._postgres import PostgresServer
from tests.conftest import unique_table

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.airflow_min("3.1", reason="the examples use airflow.sdk.BaseHook and DAG bundles"),
]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "dags" / "postgres_scenarios.py"


@pytest.fixture(scope="module")
def outcome(
    tmp_path_factory: pytest.TempPathFactory, migrated_airflow_db: Path, postgres: PostgresServer
) -> tuple[list[dict[str, Any]], list[int], str]:
    table = unique_table()
    with psycopg.connect(postgres.conninfo, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload text)")
        rows = db.execute(f"INSERT INTO {table} (payload) VALUES ('a'), ('b') RETURNING id").fetchall()
    home = tmp_path_factory.mktemp("airflow")
    copy_metadata_db(migrated_airflow_db, home)  # AIRFLOW_HOME's default metadata database
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(SCENARIOS, dags)
    results = home / "results.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STATEFUL_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_SCENARIO_DB=postgres.url.replace("postgresql+psycopg://", "postgresql://"),
        STATEFUL_DATABASE_URL=postgres.url,
        STATEFUL_TEST_TABLE=table,
        STATEFUL_TEST_RESULTS=str(results),
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, str(dags / SCENARIOS.name), "2"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    return records, [int(row[0]) for row in rows], table


def test_a_failed_try_is_retried_with_the_same_rows_and_the_next_run_gets_only_new_ones(
    outcome: tuple[list[dict[str, Any]], list[int], str],
) -> None:
    records, first, _ = outcome
    later = first[-1] + 1
    expected_pokes = [[1, first], [2, first], [1, [later]], [2, [later]]]
    assert [[r["try_number"], [row["id"] for row in r["rows"]]] for r in records if r["kind"] == "poke"] == (
        expected_pokes
    )
    assert [[row["id"] for row in r["rows"]] for r in records if r["kind"] == "xcom"] == [first, [later]]
    assert [r["state"] for r in records if r["kind"] == "run"] == ["success", "success"]


def test_the_watermark_is_saved_once_per_successful_run(
    outcome: tuple[list[dict[str, Any]], list[int], str], postgres: PostgresServer
) -> None:
    _, first, table = outcome
    store = SqlBackend(postgres.url)
    try:
        name = f"postgres_rows.new_rows/scenario_db/{table}/id"
        record = store.read("postgres", name, "watermark")
    finally:
        store.dispose()
    assert record is not None and record.version == 2
    assert set(Watermark[int].from_state_json(record.value).seen) == {str(i) for i in [*first, first[-1] + 1]}
