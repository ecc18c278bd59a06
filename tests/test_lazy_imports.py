"""Importing stateful and decorating import neither SQLAlchemy nor Airflow's configuration.

Both are slow to import (SQLAlchemy alone took half of ``import stateful``), and a DAG file that
decorates a sensor pays for them at every parse; only opening a store needs them. Each check runs
in a fresh interpreter: in this one, other tests have imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("sqlalchemy", "airflow.configuration", "airflow.sdk.configuration")

_PRELUDE = f"""
import json, sys
from collections.abc import AsyncIterator
from typing import Any

HEAVY = {HEAVY!r}
seen = {{}}

def loaded(step):
    seen[step] = [name for name in HEAVY if name in sys.modules]
"""


def _loaded_after_each_step(body: str) -> dict[str, list[str]]:
    """Run ``body`` (which calls ``loaded(step)``) in a fresh interpreter; the heavy modules per step."""
    code = _PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(seen))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    steps: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return steps


def test_import_and_decorating_a_sensor_load_nothing_heavy_until_a_store_is_opened(tmp_path: object) -> None:
    steps = _loaded_after_each_step(
        f"""
        import stateful
        from stateful import Watermark, stateful as decorate
        from stateful.backends import MemoryBackend, StateBackend
        loaded("import stateful")

        class RowsSensor:
            table = "orders"

            @decorate(namespace="rows", name="{{table}}")
            def poke(self, context: Any, watermark: Watermark[int]) -> bool:
                return False

        loaded("decorate a sensor")

        from stateful.backends import SqlBackend
        SqlBackend("sqlite:///{tmp_path}/state.db").read("rows", "orders", "watermark")
        loaded("open a SQL store")
        """
    )
    # The check sees an import when there is one: opening a store imports SQLAlchemy.
    assert "sqlalchemy" in steps.pop("open a SQL store")
    assert steps == {"import stateful": [], "decorate a sensor": []}


def test_decorating_a_trigger_loads_nothing_heavy() -> None:
    steps = _loaded_after_each_step(
        """
        from stateful import Watermark, stateful as decorate

        class FilesTrigger:
            directory = "landing"

            @decorate(namespace="files", name="{directory}")
            async def run(self, watermark: Watermark) -> AsyncIterator[Any]:
                yield watermark

        loaded("decorate a trigger")
        """
    )
    assert steps == {"decorate a trigger": []}
