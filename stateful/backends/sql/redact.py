"""Keeping database passwords out of descriptions, error messages and chained exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

__all__ = ["Redactor"]

MASK = "***"
# libpq and most drivers also accept the password as a query parameter.
_SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd"})
_SUMMARY_LIMIT = 500


class RedactedError(Exception):
    """Stands in for a driver exception whose text showed the password (masked here)."""


class Redactor:
    """Masks the secrets of one database URL in any text or exception."""

    def __init__(self, url: URL) -> None:
        secrets: set[str] = set()
        if url.password:
            secrets.update({url.password, quote(url.password, safe=""), quote_plus(url.password)})
        query: dict[str, str | tuple[str, ...]] = {}
        for name, value in url.query.items():
            if name.lower() in _SECRET_QUERY_KEYS:
                secrets.update((value,) if isinstance(value, str) else value)
                query[name] = MASK
            else:
                query[name] = value
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)
        self.masked_url = url.set(query=query).render_as_string(hide_password=True)

    def scrub(self, text: str) -> str:
        """Return ``text`` with every secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def leaks(self, exc: BaseException) -> bool:
        """Whether the text of ``exc`` or of any exception chained to it shows a secret."""
        texts = [text for e in _chain(exc) for text in (str(e), repr(e))]
        return any(secret in text for secret in self._secrets for text in texts)

    def summary(self, exc: BaseException) -> str:
        """One masked line naming the error, for a StoreError message."""
        # A DBAPIError's own text repeats the SQL and parameters; the driver's text is the news.
        shown = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = " ".join(str(shown).split()) or "(no message)"
        if len(text) > _SUMMARY_LIMIT:
            text = text[:_SUMMARY_LIMIT] + "..."
        return self.scrub(f"{type(shown).__name__}: {text}")

    def safe_cause(self, exc: BaseException) -> BaseException:
        """Return ``exc`` if no text in its chain shows a secret, else a masked stand-in."""
        if not self.leaks(exc):
            return exc
        stand_in = RedactedError(f"{type(exc).__module__}.{type(exc).__qualname__}: {self.scrub(str(exc))}")
        return stand_in.with_traceback(exc.__traceback__)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending.extend(
            [current.__cause__, current.__context__, orig if isinstance(orig, BaseException) else None]
        )
