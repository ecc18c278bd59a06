"""Options and look-ups shared by the commands."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

import click

from stateful._core import DEFAULT_KEY
from stateful.backends.base import StateBackend, StateRecord
from stateful.cli._errors import NotFoundError
from stateful.cli._store import StoreChoice

__all__ = ["address", "json_option", "model_option", "read_existing", "store_options", "yes_option"]

F = TypeVar("F", bound=Callable[..., Any])

_DATABASE_URL_HELP = (
    "SQLAlchemy URL of the store, e.g. postgresql+psycopg://user:password@host/db. Default: the "
    "store @stateful uses (STATEFUL_DATABASE_URL, [stateful] database_url, $AIRFLOW_HOME/stateful.db). "
    "Prefer STATEFUL_DATABASE_URL for URLs with a password: arguments are visible to other users."
)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Write JSON to stdout instead of text.")(f)


def store_options(f: F) -> F:
    """``--database-url`` and ``--json``."""
    f = click.option("--database-url", metavar="URL", help=_DATABASE_URL_HELP)(f)
    return json_option(f)


def yes_option(f: F) -> F:
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(f)


def model_option(f: F) -> F:
    return click.option(
        "--model",
        metavar="MODULE:CLASS",
        help="Validate against this Watermark model, or the model of this @stateful trigger class "
        "(default: the fields every watermark has; a subclass's own fields are kept as they are).",
    )(f)


def address(f: F) -> F:
    """The ``NAMESPACE NAME`` arguments and ``--key``."""
    f = click.option(
        "--key",
        default=DEFAULT_KEY,
        show_default=True,
        help="Document key (@stateful stores its watermark under 'watermark').",
    )(f)
    f = click.argument("name")(f)
    return click.argument("namespace")(f)


def read_existing(choice: StoreChoice, namespace: str, name: str, key: str) -> StateRecord:
    """The stored record, or a NotFoundError that says what does exist."""
    store = choice.sync()
    record = store.read(namespace, name, key)
    if record is None:
        raise NotFoundError(_missing(store, choice.description, namespace, name, key))
    return record


def _missing(store: StateBackend, where: str, namespace: str, name: str, key: str) -> str:
    records = store.list(namespace)
    if not records:
        namespaces = sorted({r.namespace for r in store.list()})
        known = ", ".join(repr(n) for n in namespaces[:20]) or "none"
        hint = _close(namespace, namespaces)
        return (
            f"unknown namespace {namespace!r}: no watermark is stored under it in {where}. "
            f"Namespaces there: {known}.{hint} `stateful list` shows every watermark."
        )
    names = sorted({r.name for r in records if r.key == key})
    if name in {r.name for r in records}:
        keys = sorted(r.key for r in records if r.name == name)
        return f"{namespace}/{name} has no document with key {key!r} in {where}; its keys: {', '.join(keys)}."
    shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
    return (
        f"no watermark {namespace}/{name} in {where}.{_close(name, names)} Names in namespace "
        f"{namespace!r}: {shown or 'none'}; `stateful list --namespace {namespace}` shows them all."
    )


def _close(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=3)
    return f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
