"""The S3 example's docs cannot drift: its page gets tests/test_docs.py's checks, its docstring
examples run."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from examples import s3
from tests import test_docs

pytestmark = pytest.mark.airflow_min("3.1", reason="the examples use airflow.sdk.BaseHook and DAG bundles")

PAGE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "s3.md"


def test_the_page_quotes_code_and_it_is_verbatim() -> None:
    assert len(test_docs.VERBATIM.findall(PAGE.read_text())) >= 4
    test_docs.test_quoted_code_is_verbatim_from_its_source(PAGE)


def test_the_page_links_resolve() -> None:
    test_docs.test_relative_links_resolve(PAGE)


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(s3, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0
