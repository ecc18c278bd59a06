"""Every pointer to the documentation in the package is a page of the site that exists.

A wheel user has no ``docs/`` directory: messages, ``--help`` and docstrings link to the site
(:data:`stateful._links.DOCS_URL`), whose pages are the files of ``docs/`` (``docs/cli.md`` is
``<DOCS_URL>cli/``) and whose anchors are the slugs of their headings.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

import stateful
from stateful._links import DOCS_URL, docs_url

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SOURCES = sorted(Path(stateful.__file__).parent.rglob("*.py"))
# Any address on the site's host, whatever base it was written with.
SITE_URL = re.compile(r"https?://airflow-stateful\.github\.io/[^\s\"'`)>]*[^\s\"'`)>.,;:]")
REPOSITORY_DOCS = re.compile(r"\bdocs/[\w/-]+\.md\b")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """The anchor MkDocs gives a heading (Python-Markdown's toc ``slugify``), markup removed."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: str) -> set[str]:
    """The anchors of ``docs/<page>.md``: its headings' slugs (code blocks left out)."""
    text = FENCE.sub("", (DOCS / f"{page}.md").read_text())
    return {slug(match[1]) for match in HEADING.finditer(text)}


def _strings(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def _docs_url_calls(path: Path) -> Iterator[tuple[str, str | None]]:
    """The ``docs_url(page, anchor)`` calls of a module whose arguments are literals."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "docs_url":
            values = [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
            assert len(values) == len(node.args), f"{path}: docs_url() with a computed argument"
            page, anchor = [*values, None][:2]
            assert isinstance(page, str) and (anchor is None or isinstance(anchor, str))
            yield page, anchor


def _site_links() -> Iterator[tuple[str, str]]:
    """(module, address) for every address of the site the package names, called or written out."""
    for path in SOURCES:
        where = path.relative_to(ROOT).as_posix()
        for page, anchor in _docs_url_calls(path):
            yield where, docs_url(page, anchor)
        for text in _strings(path):
            for match in SITE_URL.finditer(text):
                yield where, match[0]


LINKS = sorted(set(_site_links()))


def test_the_package_links_to_the_site() -> None:
    # The CLI's help, its history and run errors, and the store switch error call docs_url().
    called = {where for path in SOURCES for where in [path.name] if any(_docs_url_calls(path))}
    assert {"_app.py", "_store.py", "_run.py", "_resolve.py"} <= called
    assert len(LINKS) >= 10


@pytest.mark.parametrize(("where", "url"), LINKS, ids=[f"{w}:{u[len(DOCS_URL) :]}" for w, u in LINKS])
def test_every_link_is_a_page_of_the_site_that_exists(where: str, url: str) -> None:
    assert url.startswith(DOCS_URL), f"{where}: {url} is not under the documentation site {DOCS_URL}"
    page, _, anchor = url[len(DOCS_URL) :].partition("#")
    if not page and not anchor:
        return  # the site's home page
    assert page.endswith("/"), f"{where}: {url}: a page's address ends with '/'"
    page = page.rstrip("/")
    assert (DOCS / f"{page}.md").is_file(), f"{where}: {url}: there is no docs/{page}.md"
    if anchor:
        assert anchor in anchors(page), f"{where}: {url}: docs/{page}.md has no heading #{anchor}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_message_or_docstring_points_at_a_repository_path(path: Path) -> None:
    found = [m[0] for text in _strings(path) for m in REPOSITORY_DOCS.finditer(text)]
    assert found == [], f"{path.name} names {found}: a wheel user has no docs/; use docs_url()"


def test_the_slugs_are_the_ones_mkdocs_makes() -> None:
    assert slug("Switching stores") == "switching-stores"
    assert slug("`stateful run`") == "stateful-run"
    assert slug("Worked incident: a bad deploy advanced the watermark too far") == (
        "worked-incident-a-bad-deploy-advanced-the-watermark-too-far"
    )
    assert "switching-stores" in anchors("stores") and "stateful-run" in anchors("cli")


def test_the_site_and_the_package_metadata_agree_on_the_address() -> None:
    from importlib.metadata import metadata

    urls = dict(line.split(", ", 1) for line in metadata("airflow-stateful").get_all("Project-URL") or [])
    assert urls["Documentation"] == urls["Homepage"] == DOCS_URL
    assert urls["Changelog"] == docs_url("changelog")
    mkdocs = ROOT / "mkdocs.yml"
    if not mkdocs.exists():
        pytest.skip("no mkdocs.yml in this checkout yet: the site's configuration is added with the site")
    site_url = re.search(r"^site_url:\s*['\"]?([^'\"\s]+)", mkdocs.read_text(), re.MULTILINE)
    assert site_url is not None and site_url[1] == DOCS_URL
