"""The package's docstrings, written for Python's ``help()``, as Markdown for the API reference.

The docstrings are Google style with a few reStructuredText habits that Markdown renders badly:
cross-reference roles (``:class:`~stateful.errors.StoreError```), ``Example:`` sections (a
Google-style *admonition* to the parser, whose ``>>>`` lines Markdown turns into quotes) and
``::`` before a literal block. :func:`to_markdown` rewrites them; ``tools/griffe_rst.py`` applies
it to every docstring when the site is built, so the source keeps one style.

A role becomes an *optional* cross-reference: a link where its target is on the site, plain code
where it is not (a private module), and never a broken link.

Example:
    >>> scope = {"StoreError": "stateful.errors.StoreError"}.get
    >>> print(to_markdown("Raises :class:`StoreError`::", scope))
    Raises <autoref identifier="stateful.errors.StoreError" optional><code>StoreError</code></autoref>:
    >>> print(to_markdown("See :meth:`~stateful.types.Watermark.advance`.", scope))
    See <autoref identifier="stateful.types.Watermark.advance" optional><code>advance()</code></autoref>.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape

__all__ = ["to_markdown"]

_ROLE = re.compile(r":(?P<role>class|func|meth|mod|attr|exc|data|obj|const):`(?P<tilde>~?)(?P<target>[^`]+)`")
_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)
_LITERAL = re.compile(r"(?<=[^:\s])::$", re.MULTILINE)
_PAGE = re.compile(r"\bdocs/(?P<page>[a-z0-9/-]+)\.md\b")


def to_markdown(text: str, resolve: Callable[[str], str | None]) -> str:
    """Rewrite a docstring's reStructuredText habits as Markdown for mkdocstrings.

    Args:
        text: the docstring.
        resolve: maps a name as written in the docstring (``Watermark``, ``commit``) to its full
            path in the scope of the documented object, or ``None`` when it cannot; a dotted
            target is resolved by its first part.

    Returns:
        The docstring with roles as optional cross-references (a function or method title ends
        with ``()``), ``Example:`` as the ``Examples:`` section whose ``>>>`` lines render as code,
        and a closing ``::`` as ``:``.

    Example:
        >>> to_markdown("Example:\\n    print(1)", lambda name: None)
        'Examples:\\n    print(1)'
        >>> print(to_markdown("the :mod:`stateful._core` module", lambda name: None))
        the <autoref identifier="stateful._core" optional><code>stateful._core</code></autoref> module
        >>> print(to_markdown(":func:`nowhere`", lambda name: None))
        <code>nowhere()</code>
    """

    def role(match: re.Match[str]) -> str:
        target = match["target"]
        title = target.rsplit(".", 1)[-1] if match["tilde"] else target
        if match["role"] in ("func", "meth"):
            title += "()"
        code = f"<code>{escape(title)}</code>"
        head, dot, rest = target.partition(".")
        resolved = target if head == "stateful" else resolve(head)
        if resolved is None:
            return code
        path = resolved + dot + rest if head != "stateful" else target
        return f'<autoref identifier="{escape(path)}" optional>{code}</autoref>'

    text = _PAGE.sub(r"[docs/\g<page>.md](../\g<page>.md)", text)
    text = _ROLE.sub(role, text)
    text = _EXAMPLE.sub(r"\g<indent>Examples:", text)
    return _LITERAL.sub(":", text)
