"""The docs cannot drift from the code: every Python block runs or is quoted verbatim, and links resolve.

The pages are README.md and the site's sources (docs/). A Python block is one of:

* ``<!-- verbatim: PATH -->`` right before it: the block must appear as is in ``PATH``;
* a ``pycon`` block: run as a doctest (each page's blocks in order, in one namespace);
* any other ``python`` block: run, each page's blocks in order in one namespace (a block may use
  what an earlier one defined), in a temporary working directory.

Relative links must name a file that exists; links to the repository on GitHub must name a file
or folder of this checkout; links to the site must name a page of docs/.
"""

from __future__ import annotations

import doctest
import importlib
import logging
import re
import sys
import types
from pathlib import Path

import pytest

import tools.rst_docstrings
from stateful.backends.sql import dispose_default_stores

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
VERBATIM = re.compile(r"<!-- verbatim: (?P<source>\S+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)
# A fenced Python block, with what stands right before it (a verbatim marker, or not).
PYTHON = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```", re.DOTALL)
LINK = re.compile(r"\]\((?P<target>[^)#:\s]+)(?:#[^)]*)?\)")
REPOSITORY = "https://github.com/airflow-stateful/airflow-stateful/"
REPOSITORY_LINK = re.compile(re.escape(REPOSITORY) + r"(?:blob|tree)/main/(?P<path>[^)#\s]+)")


def _site_url() -> str:
    match = re.search(r"^site_url: (\S+)$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    assert match, "mkdocs.yml has no site_url"
    return match[1]


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def test_some_code_is_quoted_verbatim() -> None:
    assert sum(len(VERBATIM.findall(page.read_text())) for page in PAGES) >= 5


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_quoted_code_is_verbatim_from_its_source(page: Path) -> None:
    for match in VERBATIM.finditer(page.read_text()):
        source = ROOT / match["source"]
        assert match["code"] in source.read_text(), (
            f"{page.name}: this block is not in {source}:\n{match['code']}"
        )


def _runnable_blocks(page: Path) -> list[str]:
    return [
        match["code"]
        for match in PYTHON.finditer(page.read_text())
        if not match["before"].startswith("<!-- verbatim:")
    ]


RUNNABLE = [page for page in PAGES if _runnable_blocks(page)]


def test_some_pages_have_python_blocks_that_run() -> None:
    assert len(RUNNABLE) >= 5


@pytest.mark.parametrize("page", RUNNABLE, ids=_page_id)
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The default store of a block's trigger (backend=None, outside Airflow): a SQLite file here.
    monkeypatch.setenv("STATEFUL_DATABASE_URL", f"sqlite:///{tmp_path / 'stateful.db'}")
    # A module of its own, importable by name, as a user's file would be: a trigger's
    # serialize() returns f"{__name__}.Class", and pickling or typing may look the module up.
    name = "docs_page_" + re.sub(r"\W", "_", _page_id(page))
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    try:
        for number, code in enumerate(_runnable_blocks(page), start=1):
            compiled = compile(code, f"{_page_id(page)}, Python block {number}", "exec")
            exec(compiled, module.__dict__)
    finally:
        dispose_default_stores()


DOCTESTED = [page for page in PAGES if "```pycon" in page.read_text()]


@pytest.mark.parametrize("page", DOCTESTED, ids=_page_id)
def test_pycon_blocks_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An example's output is what it prints; Airflow's root log handler would print records.
    monkeypatch.setattr(logging.getLogger("stateful"), "propagate", False)
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_docstrings_are_rewritten_as_markdown_for_the_site() -> None:
    result = doctest.testmod(tools.rst_docstrings)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_nested_blocks_are_indented_for_the_site(page: Path) -> None:
    # GitHub nests a list or a code block indented by 2 or 3 spaces under a list item; the site's
    # Markdown (Python-Markdown) needs 4, or it ends the list there.
    # Likewise a list right under a paragraph, without a blank line, is that paragraph's text.
    fenced, previous = False, ""
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if not fenced:
            where = f"{_page_id(page)}:{number}"
            assert not re.match(r"^ {1,3}(```|[-*] )", line), f"{where}: indent by 4"
            if re.match(r"^([-*]|\d+\.) ", line) and re.match(r"^[^\s#|*\d-]", previous):
                raise AssertionError(f"{where}: a blank line before the list")
        fenced ^= line.lstrip().startswith("```")
        previous = line


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_resolve(page: Path) -> None:
    for match in LINK.finditer(page.read_text()):
        target = (page.parent / match["target"]).resolve()
        assert target.exists(), f"{page.name} links to {match['target']}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_links_to_the_repository_name_its_files(page: Path) -> None:
    for match in REPOSITORY_LINK.finditer(page.read_text()):
        assert (ROOT / match["path"]).exists(), f"{page.name} links to {match[0]}: no {match['path']} here"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_links_to_the_site_name_its_pages(page: Path) -> None:
    site = re.escape(_site_url())
    for match in re.finditer(site + r"(?P<page>[^)#\s>]*)", page.read_text()):
        path = match["page"].strip("/") or "index"
        assert (ROOT / "docs" / f"{path}.md").exists(), f"{page.name} links to {match[0]}: no such page"


def test_every_page_is_in_the_site_navigation() -> None:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = set(re.findall(r"^ *- (?:[^:\n]+: )?(\S+\.md)$", text[text.index("\nnav:") :], re.MULTILINE))
    on_disk = {_page_id(page).removeprefix("docs/") for page in PAGES if page.parent != ROOT}
    assert nav == on_disk


@pytest.mark.parametrize("page", sorted((ROOT / "docs" / "reference").glob("*.md")), ids=_page_id)
def test_the_api_reference_lists_every_public_symbol(page: Path) -> None:
    module_name, *members = re.findall(r"^::: (\S+)$", page.read_text(), re.MULTILINE)
    module = importlib.import_module(module_name)
    if members:  # listed one by one, in the order a reader needs them: all of them
        assert sorted(m.removeprefix(f"{module_name}.") for m in members) == sorted(module.__all__)


def test_site_url_is_the_documentation_url_of_the_package() -> None:
    from stateful._links import DOCS_URL

    assert _site_url() == DOCS_URL
