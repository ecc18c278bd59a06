"""What the wheel declares matches what it ships: install hints name real extras, imports are dependencies.

Read from the installed distribution's metadata (what ``pip install airflow-stateful`` gets), which
``make`` rebuilds whenever pyproject.toml changes.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points, metadata, packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import stateful

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(stateful.__file__).parent
META = metadata("airflow-stateful")
EXTRAS = set(META.get_all("Provides-Extra") or [])
REQUIREMENTS = [Requirement(line) for line in META.get_all("Requires-Dist") or []]
# Installed with the package itself (no extra).
CORE = {canonicalize_name(r.name) for r in REQUIREMENTS if r.marker is None}
# `pip install 'airflow-stateful[postgres]'`, in messages and docs.
HINT = re.compile(r"airflow-stateful\[([\w,-]+)\]")
# Extras for this repository's own work, not for users: never named in a user-facing hint.
DEVELOPMENT = {"test", "dev", "bench", "docs"}


def _hinted_extras() -> Iterator[tuple[str, str]]:
    texts = [*PACKAGE.rglob("*.py"), *(ROOT / "examples").rglob("*.py"), *(ROOT / "docs").rglob("*.md")]
    for path in [*texts, ROOT / "README.md"]:
        for match in HINT.finditer(path.read_text()):
            for extra in match[1].split(","):
                yield path.relative_to(ROOT).as_posix(), extra


def _third_party_imports() -> dict[str, set[str]]:
    """The top-level modules outside the standard library that stateful/ imports, and where."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.partition(".")[0] for name in names}:
                if top not in sys.stdlib_module_names and top != "stateful":
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_every_install_hint_names_an_extra_of_the_package() -> None:
    hints = sorted(set(_hinted_extras()))
    # The SQL store's missing-driver error names the postgres extra: the scan finds hints.
    assert ("stateful/backends/sql/engine.py", "postgres") in hints
    unknown = [(where, extra) for where, extra in hints if extra not in EXTRAS]
    assert unknown == [], f"install hints naming no extra of the package (extras: {sorted(EXTRAS)})"
    for_development = [(where, extra) for where, extra in hints if extra in DEVELOPMENT]
    assert for_development == [], "user-facing hints name a development extra"


def test_the_user_extras_are_the_ones_the_shipped_code_needs() -> None:
    # postgres: the psycopg 3 driver of SqlBackend("postgresql+psycopg://..."). The examples are not
    # in the wheel: their dependencies (aiobotocore for examples/s3.py) are development ones.
    user_extras = EXTRAS - DEVELOPMENT
    assert user_extras == {"postgres"}
    postgres = [r for r in REQUIREMENTS if r.marker is not None and r.marker.evaluate({"extra": "postgres"})]
    assert [canonicalize_name(r.name) for r in postgres] == ["psycopg"]


def test_every_module_the_package_imports_comes_with_it() -> None:
    distributions = packages_distributions()
    imports = _third_party_imports()
    assert {"pydantic", "sqlalchemy", "click", "airflow"} <= set(imports)  # the scan sees imports
    # The pytest plugin is loaded by pytest itself (the pytest11 entry point): pytest is there.
    assert imports.pop("pytest", set()) <= {"stateful/testing/plugin.py"}
    # The Airflow plugin is loaded by Airflow's API server (the airflow.plugins entry point), whose
    # apache-airflow-core brings FastAPI.
    assert imports.pop("fastapi", set()) <= {"stateful/plugin/_app.py"}
    missing = {
        module: sorted(where)
        for module, where in imports.items()
        if not CORE & {canonicalize_name(d) for d in distributions.get(module, [])}
    }
    assert missing == {}, "imported by stateful/ but not a dependency of airflow-stateful"


def test_the_wheel_ships_what_the_version_and_the_typing_need() -> None:
    assert META["Version"] == stateful.__version__
    assert "Typing :: Typed" in (META.get_all("Classifier") or [])
    assert (PACKAGE / "py.typed").is_file()
    assert META["License-Expression"] == "Apache-2.0"
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_airflow_loads_the_plugin_from_the_entry_point_and_the_wheel_ships_its_page() -> None:
    plugins = [e for e in entry_points(group="airflow.plugins") if e.dist and e.dist.name == META["Name"]]
    assert [(e.name, e.value) for e in plugins] == [("stateful", "stateful.plugin:StatefulPlugin")]
    # Hatch ships every file under stateful/ (no build step makes the page).
    assert (PACKAGE / "plugin" / "static" / "index.html").is_file()
