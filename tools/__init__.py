"""Tooling for the project's own development (the documentation site); not part of the package."""
