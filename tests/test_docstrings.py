"""The examples in the package's docstrings run, so they cannot drift from the code."""

from __future__ import annotations

import doctest
import importlib
import logging
import pkgutil
from types import ModuleType

import pytest

import stateful


def _modules() -> list[ModuleType]:
    names = [stateful.__name__] + [
        info.name for info in pkgutil.walk_packages(stateful.__path__, prefix=f"{stateful.__name__}.")
    ]
    modules = [importlib.import_module(name) for name in names]
    # Only modules that have examples: a module without any would pass without testing anything.
    return [m for m in modules if any(test.examples for test in doctest.DocTestFinder().find(m))]


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # An example's output is what it prints. Log records are not: Airflow 3.0's root handler writes
    # them to whatever sys.stdout is at the time, which doctest captures as output.
    monkeypatch.setattr(logging.getLogger("stateful"), "propagate", False)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
