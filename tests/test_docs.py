"""The docs cannot drift from the code: quoted code is verbatim, and every relative link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
VERBATIM = re.compile(r"<!-- verbatim: (?P<source>\S+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)
LINK = re.compile(r"\]\((?P<target>[^)#:\s]+)(?:#[^)]*)?\)")


def test_some_code_is_quoted_verbatim() -> None:
    assert sum(len(VERBATIM.findall(page.read_text())) for page in PAGES) >= 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_quoted_code_is_verbatim_from_its_source(page: Path) -> None:
    for match in VERBATIM.finditer(page.read_text()):
        source = ROOT / match["source"]
        assert match["code"] in source.read_text(), (
            f"{page.name}: this block is not in {source}:\n{match['code']}"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for match in LINK.finditer(page.read_text()):
        target = (page.parent / match["target"]).resolve()
        assert target.exists(), f"{page.name} links to {match['target']}, which does not exist"
