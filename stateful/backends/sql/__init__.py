"""The SQL store: SQLite, PostgreSQL and more, on SQLAlchemy Core.

``store`` is the compare-and-set protocol, ``engine`` the engine's lifecycle (lazy, per process,
fork-safe), ``schema`` the tables, ``history`` the kept versions, ``redact`` keeps passwords out
of messages, and ``default`` chooses the store used when ``@stateful`` is given none.
"""

from stateful.backends.sql.default import dispose_default_stores
from stateful.backends.sql.store import DEFAULT_TABLE, SqlBackend

__all__ = ["DEFAULT_TABLE", "SqlBackend", "dispose_default_stores"]
