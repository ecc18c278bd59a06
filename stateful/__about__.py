"""The package's version, in one place: the build reads it and ``stateful.__version__`` is it.

Kept in a module of its own that imports nothing, so that the build backend and
``stateful --version`` read it without importing the rest of the package.

Example:
    >>> from stateful.__about__ import __version__
    >>> __version__.count(".") >= 2
    True
"""

__version__ = "0.1.0"
