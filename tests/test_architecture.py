"""The package's structure, checked: an acyclic import graph, and type hints that resolve.

The import graph counts every ``import`` of a ``stateful`` module anywhere in a module: at the top,
inside a function, and under ``if TYPE_CHECKING:``. An import inside a function hides a cycle
from Python, not from a reader.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

import stateful

PACKAGE = Path(stateful.__file__).parent


def _modules() -> dict[str, Path]:
    found = {"stateful": PACKAGE / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="stateful."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None and spec.origin is not None
        found[info.name] = Path(spec.origin)
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """The ``stateful`` modules ``module`` imports, anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from stateful.backends import sql` imports a module; `import ... Name` its package.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_the_import_graph_of_the_package_has_no_cycle() -> None:
    # A package's __init__ re-exports from its modules, so a module that imports from its own
    # package (rather than from the sibling module) closes a cycle: those edges count too.
    graph = GRAPH
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def _functions() -> Iterator[tuple[str, object]]:
    for name in MODULES:
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if getattr(value, "__module__", None) != name:
                continue
            if inspect.isfunction(value):
                yield f"{name}.{attribute}", value
            elif inspect.isclass(value):
                for member, function in vars(value).items():
                    function = getattr(function, "__func__", function)
                    if inspect.isfunction(function) and function.__module__ == name:
                        yield f"{name}.{attribute}.{member}", function


FUNCTIONS = dict(_functions())
# The SQL store's annotations name SQLAlchemy 2's generic types (Select[...], Row[...]);
# SQLAlchemy 1.4, which the oldest Airflow pins, has no such generics to resolve them to.
_SQLALCHEMY_1 = pytest.mark.skipif(
    int(sqlalchemy.__version__.split(".")[0]) < 2,
    reason=f"annotations use SQLAlchemy 2's generics; installed: SQLAlchemy {sqlalchemy.__version__}",
)


@pytest.mark.parametrize(
    "qualname",
    [
        pytest.param(name, marks=_SQLALCHEMY_1) if name.startswith("stateful.backends.sql.") else name
        for name in sorted(FUNCTIONS)
    ],
)
def test_every_functions_type_hints_resolve(qualname: str) -> None:
    typing.get_type_hints(FUNCTIONS[qualname])
