"""The pytest plugin: loaded by its entry point in a user's project, and light to load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]


def test_the_entry_point_names_the_plugin_module() -> None:
    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert plugins["stateful"] == "stateful.testing.plugin"


def test_importing_the_plugin_imports_neither_airflow_nor_the_package() -> None:
    code = (
        "import json, sys; import stateful.testing.plugin; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('airflow', 'sqlalchemy', 'pydantic', 'stateful'))))"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    assert loaded == ["stateful", "stateful.__about__", "stateful.testing", "stateful.testing.plugin"]


def test_a_users_test_gets_the_fixture_without_importing_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mine=textwrap.dedent(
            """
            import asyncio
            from collections.abc import AsyncIterator

            from stateful import Watermark, stateful
            from stateful.testing import run_trigger


            class Counter:
                @stateful(namespace="mine", name="counter")
                async def run(self, watermark: Watermark[int]) -> AsyncIterator[int]:
                    for n in range((watermark.cursor or 0) + 1, 4):
                        watermark.advance(cursor=n)
                        yield n


            def test_counts(stateful_store):
                assert asyncio.run(run_trigger(Counter(), max_events=2)).events == [1, 2]
                assert stateful_store.read("mine", "counter", "watermark").version == 2


            def test_each_test_has_a_fresh_store(stateful_store):
                assert stateful_store.list() == []
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
