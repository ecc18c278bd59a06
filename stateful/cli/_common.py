"""Options and look-ups shared by the commands."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from stateful._address import command, display_address, partition_key, partition_of, shown_address
from stateful._document import DEFAULT_KEY
from stateful._keyed import check_partition
from stateful.backends.base import StateBackend, StateRecord
from stateful.cli._errors import NotFoundError
from stateful.cli._output import Output
from stateful.cli._store import StoreChoice, StoreOptions
from stateful.errors import StateNameError

__all__ = [
    "address",
    "check_part",
    "json_option",
    "location_options",
    "model_option",
    "read_existing",
    "store_options",
    "stored_records",
    "yes_option",
]

F = TypeVar("F", bound=Callable[..., Any])

_DATABASE_URL_HELP = (
    "SQLAlchemy URL of the store, e.g. postgresql+psycopg://user:password@host/db. Default: the "
    "store @stateful uses (STATEFUL_DATABASE_URL, [stateful] database_url, $AIRFLOW_HOME/stateful.db). "
    "Prefer STATEFUL_DATABASE_URL for URLs with a password: arguments are visible to other users."
)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Write JSON to stdout instead of text.")(f)


def location_options(f: F) -> F:
    """The options that choose the store; the command receives them as ``where: StoreOptions``."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        database_url: str | None,
        airflow_url: str | None,
        asset: str | None,
        token: str | None,
        username: str | None,
        password: str | None,
        **kwargs: Any,
    ) -> Any:
        where = StoreOptions(database_url, airflow_url, asset, token, username, password)
        return f(*args, where=where, **kwargs)

    options = [
        click.option("--database-url", metavar="URL", help=_DATABASE_URL_HELP),
        click.option(
            "--airflow-url",
            metavar="URL",
            help="Use the Airflow-native store (an asset's state store, Airflow >= 3.3) through the REST "
            "API of this API server, e.g. http://localhost:8080.",
        ),
        click.option(
            "--asset", metavar="NAME|URI|ID", help="The asset whose state store to use (--airflow-url)."
        ),
        click.option(
            "--token",
            envvar="STATEFUL_AIRFLOW_TOKEN",
            metavar="JWT",
            help="REST API token (env STATEFUL_AIRFLOW_TOKEN); or --username/--password to get one.",
        ),
        click.option(
            "--username",
            envvar="STATEFUL_AIRFLOW_USERNAME",
            help="REST API user (env STATEFUL_AIRFLOW_USERNAME).",
        ),
        click.option(
            "--password",
            envvar="STATEFUL_AIRFLOW_PASSWORD",
            help="REST API password (env STATEFUL_AIRFLOW_PASSWORD; prefer it to the option).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return cast(F, wrapper)


def store_options(f: F) -> F:
    """The store options and ``--json``."""
    return json_option(location_options(f))


def yes_option(f: F) -> F:
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(f)


def model_option(f: F) -> F:
    return click.option(
        "--model",
        metavar="MODULE:CLASS",
        help="Validate against this Watermark model, or the model of this @stateful trigger class "
        "(default: the fields every watermark has; a subclass's own fields are kept as they are).",
    )(f)


def check_part(ctx: click.Context | None, param: click.Parameter, value: str | None) -> str | None:
    """A namespace or name given on the command line: surrounding whitespace is refused (exit 2).

    ``@stateful`` refuses such names too, so ``" files"`` is a typo (an unquoted paste, a stray
    space), never a watermark; accepting it would show or change nothing, or create a second,
    look-alike watermark.

    Example:
        >>> check_part(None, click.Argument(["name"]), "landing")
        'landing'
    """
    if value is not None and value != value.strip():
        raise click.BadParameter(
            f"{value!r} has leading or trailing whitespace, which no watermark's namespace or name "
            f"has (@stateful refuses it); did you mean {value.strip()!r}?",
            ctx=ctx,
            param=param,
        )
    return value


def address(f: F) -> F:
    """The ``NAMESPACE NAME`` arguments, ``--key`` and ``--partition`` (which sets the key)."""

    @functools.wraps(f)
    def with_partition(*args: Any, partition: str | None = None, **kwargs: Any) -> Any:
        if partition is not None:
            if kwargs.get("key", DEFAULT_KEY) != DEFAULT_KEY:
                raise click.BadParameter("give --partition or --key, not both.", param_hint="'--partition'")
            try:
                kwargs["key"] = partition_key(check_partition(partition))
            except StateNameError as exc:
                raise click.BadParameter(str(exc), param_hint="'--partition'") from None
        return f(*args, **kwargs)

    wrapped = cast(F, with_partition)
    wrapped = click.option(
        "--partition",
        metavar="KEY",
        help="A partition of a keyed watermark (Keyed[...]): the watermark of partition KEY.",
    )(wrapped)
    wrapped = click.option(
        "--key",
        default=DEFAULT_KEY,
        show_default=True,
        help="Document key (@stateful stores its watermark under 'watermark').",
    )(wrapped)
    wrapped = click.argument("name", callback=check_part)(wrapped)
    return click.argument("namespace", callback=check_part)(wrapped)


def stored_records(
    out: Output, choice: StoreChoice, namespace: str | None
) -> list[tuple[str | None, StateRecord]]:
    """Every stored document (of ``namespace``), each with its asset on the native store.

    Raises:
        NotFoundError: ``namespace`` holds nothing; the message lists the namespaces there are.
    """
    found: list[tuple[str | None, StateRecord]] = []
    problems: list[str] = []
    asset = getattr(choice.store, "asset", None)  # one asset's native store, through REST
    if choice.store is None or (asset is not None and choice.api is not None):  # native, via REST
        from stateful.cli._native import list_asset

        assert choice.api is not None
        assets = choice.api.assets() if asset is None else [asset]
        with out.progress(len(assets), "reading assets", data_on_stdout=False) as progress:
            for asset in assets:
                found += [(asset.name, r) for r in list_asset(choice.api, asset, None, problems)]
                progress.advance()
    else:
        found = [(None, r) for r in choice.sync().list()]
    # One broken watermark must not hide the others: each is named, with what to do.
    for problem in problems:
        click.echo(f"Warning: skipped {problem}", err=True)
    if namespace is None:
        return found
    mine = [(a, r) for a, r in found if r.namespace == namespace]
    if not found:
        raise NotFoundError(f"unknown namespace {namespace!r}: {_empty(choice)}")
    if not mine:
        known = sorted({r.namespace for _, r in found})
        raise NotFoundError(
            f"unknown namespace {namespace!r}: no watermark is stored under it in {choice.description}. "
            f"Namespaces there: {', '.join(repr(n) for n in known) or 'none'}.{choice.hint()}"
        )
    return mine


def read_existing(choice: StoreChoice, namespace: str, name: str, key: str) -> StateRecord:
    """The stored record, or a NotFoundError that says what does exist."""
    store = choice.sync()
    record = store.read(namespace, name, key)
    if record is None and not store.list():
        raise NotFoundError(f"no watermark {shown_address(namespace, name, key)}: {_empty(choice)}")
    if record is None:
        raise NotFoundError(_missing(store, choice.description, namespace, name, key) + choice.hint())
    return record


def _empty(choice: StoreChoice) -> str:
    """Why a store that holds nothing at all may be the wrong one."""
    return (
        f"{choice.description} holds no watermark at all (chosen by: {choice.reason}). If you "
        f"expected state there, check --database-url and STATEFUL_DATABASE_URL.{choice.hint()}"
    )


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
        partition = partition_of(key)
        if partition is not None:
            partitions = [p for p in map(partition_of, keys) if p is not None]
            listed = ", ".join(repr(p) for p in partitions[:20]) + (", ..." if len(partitions) > 20 else "")
            return (
                f"{display_address(namespace, name)} has no partition {partition!r} in {where}; its "
                f"partitions: {listed or 'none'}.{_close(partition, partitions)}"
            )
        shown_keys = ", ".join(keys)
        shown = display_address(namespace, name, key)
        return f"{shown} has no document with key {key!r} in {where}; its keys: {shown_keys}."
    shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
    return (
        f"no watermark {shown_address(namespace, name, key)} in {where}.{_close(name, names)} Names in "
        f"namespace {namespace!r}: {shown or 'none'}; "
        f"`{command('stateful', 'list', '--namespace', namespace)}` shows them all."
    )


def _close(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=3)
    return f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
