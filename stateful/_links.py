"""Where the documentation lives: the one base URL that messages, ``--help`` and docs link to.

Users of the wheel have no ``docs`` directory; every pointer to the documentation is a page of
the site. A page is the name of a Markdown file of the repository's ``docs`` directory without
its suffix (``cli`` for the command line's page), an anchor the slug of one of its headings
(``## Switching stores`` is ``switching-stores``). ``tests/test_links.py`` checks that every page
and anchor named in the package exists.

Example:
    >>> docs_url("stores", "switching-stores")
    'https://airflow-stateful.github.io/airflow-stateful/stores/#switching-stores'
"""

from __future__ import annotations

__all__ = ["DOCS_URL", "docs_url"]

#: The documentation site (also mkdocs.yml's ``site_url`` and pyproject's Documentation URL).
DOCS_URL = "https://airflow-stateful.github.io/airflow-stateful/"


def docs_url(page: str, anchor: str | None = None) -> str:
    """The address of a page of the documentation site, or of a heading on it.

    Args:
        page: the page's file name in the ``docs`` directory without its suffix, e.g.
            ``"cli"`` or ``"reference/testing"``.
        anchor: the slug of a heading on that page (lowercase, spaces as hyphens), if any.

    Returns:
        ``<DOCS_URL><page>/``, followed by ``#<anchor>`` when an anchor is given.

    Example:
        >>> docs_url("cli")
        'https://airflow-stateful.github.io/airflow-stateful/cli/'
    """
    url = f"{DOCS_URL}{page}/"
    return f"{url}#{anchor}" if anchor else url
