"""The example modules on their own: docstring examples run, and optional drivers stay optional."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import sys
from types import ModuleType

import pytest

import examples

pytestmark = pytest.mark.airflow_min("3.1", reason="the examples use airflow.sdk.BaseHook and DAG bundles")


def _modules_with_examples() -> list[ModuleType]:
    modules = [
        importlib.import_module(info.name) for info in pkgutil.walk_packages(examples.__path__, "examples.")
    ]
    return [m for m in modules if any(test.examples for test in doctest.DocTestFinder().find(m))]


def test_modules_with_examples_are_found() -> None:
    assert {"examples.postgres", "examples.sqlite_rows_sensor"} <= {
        m.__name__ for m in _modules_with_examples()
    }


@pytest.mark.parametrize("module", _modules_with_examples(), ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_the_postgres_example_imports_without_psycopg_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A scheduler parsing a DAG that uses it needs no database driver; the triggerer does.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "examples.postgres", raising=False)
    module = importlib.import_module("examples.postgres")

    trigger = module.NewRowsTrigger("orders", conninfo="host=db dbname=shop")

    with pytest.raises(ImportError, match=r"pip install 'airflow-stateful\[postgres\]'") as error:
        trigger.source  # noqa: B018 - naming it parses the connection string with psycopg
    assert type(error.value).__name__ == "MissingDependencyError"
