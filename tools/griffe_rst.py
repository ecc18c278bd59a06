"""A griffe extension: the package's docstrings as Markdown (see ``tools/rst_docstrings.py``).

mkdocs.yml loads it for mkdocstrings' Python handler; it needs the ``docs`` extra (griffe).
"""

from __future__ import annotations

from typing import Any

import griffe

from tools.rst_docstrings import to_markdown


class RstDocstrings(griffe.Extension):
    """Rewrite every docstring once the package's object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, resolving names in its scope."""
        _rewrite(obj)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the package's own docstring (``on_object`` is not called for it)."""
        _rewrite(pkg)


def _rewrite(obj: griffe.Object) -> None:
    if obj.docstring is None:
        return

    def resolve(name: str) -> str | None:
        try:
            return obj.resolve(name)
        except griffe.NameResolutionError:
            return None

    obj.docstring.value = to_markdown(obj.docstring.value, resolve)
