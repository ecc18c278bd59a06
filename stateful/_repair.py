"""The error for a stored state that does not load, with the commands that repair it.

:meth:`stateful._core.WatermarkSession.load` hands over why a stored text did not load; this
module turns it into the error the operator reads, naming the fix as a command to paste: a
``stateful set`` with ``--field``/``--drop-field`` for the fields pydantic refused, or a
``stateful rewind`` to the newest version an older-or-equal model wrote when the state is from a
newer model. No I/O of its own: the store's history, when there is one, is read through the
function the driver passes, and only on that error path.

Example:
    >>> from stateful.backends.base import Address
    >>> from stateful.types import Watermark
    >>> class Orders(Watermark[int]):
    ...     region: str
    >>> try:
    ...     Orders.from_state_json('{"cursor":1,"legacy":true,"schema_version":1}')
    ... except ValueError as exc:
    ...     address = Address("orders", "db.orders", "watermark")
    ...     error = invalid_state(address, "SqlBackend(...)", Orders, exc)
    >>> print(error.repair)  # doctest: +NORMALIZE_WHITESPACE
    correct the value: `stateful set orders db.orders --drop-field legacy --field region=VALUE`
    (VALUE: the field's value as JSON)
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from stateful._address import partition_options
from stateful._document import NewerModelVersion, model_version_of
from stateful.backends.base import Address, StateRecord, SupportsHistory
from stateful.errors import StateModelVersionError, StateValidationError
from stateful.types import Watermark

__all__ = ["History", "history_of", "invalid_state", "repair_options"]

#: Reads the kept versions of the state, newest first (a store's ``history``, bound to the address).
History = Callable[[], Sequence[StateRecord]]


def history_of(store: object, address: Address) -> History | None:
    """What reads ``store``'s kept versions of the state at ``address``; ``None`` if it keeps none."""
    if isinstance(store, SupportsHistory):
        return functools.partial(store.history, *address)
    return None


def invalid_state(
    address: Address,
    store: str,
    model: type[Watermark[Any]],
    exc: ValueError,
    history: History | None = None,
) -> StateValidationError:
    """The error to raise for a stored state at ``address`` that ``model`` refused with ``exc``.

    Args:
        address: where the state is stored.
        store: the store's description.
        model: the model that failed to load it.
        exc: what :meth:`Watermark.from_state_json` raised.
        history: the store's kept versions of the state, read only when ``exc`` says the state
            is from a newer model (to name the version to rewind to); ``None`` if it keeps none.
    """
    namespace, name, key = address
    qualified = f"{model.__module__}.{model.__qualname__}"
    if isinstance(exc, NewerModelVersion):
        target = _readable_version(history, exc.code)
        if target is None:
            rewind = _command("history", address)
        else:
            rewind = _command("rewind", address, "--to", str(target))
        return StateModelVersionError(
            namespace=namespace,
            name=name,
            key=key,
            backend=store,
            model=qualified,
            stored_version=exc.stored,
            code_version=exc.code,
            rewind_to=target,
            rewind=rewind,
        )
    options = repair_options(exc)
    repair = None
    if options:
        command = _command("set", address, *options)
        placeholders = [
            f"{word}: {meaning}"
            for word, meaning in (
                ("VALUE", "the field's value as JSON"),
                ("ISO-TIME", "a time with its zone"),
            )
            if any(word in option for option in options)
        ]
        hint = f" ({'; '.join(placeholders)})" if placeholders else ""
        repair = f"correct the value: {command}{hint}"
    return StateValidationError(
        namespace=namespace,
        name=name,
        key=key,
        backend=store,
        model=qualified,
        detail=str(exc),
        repair=repair,
    )


def repair_options(exc: ValueError) -> list[str]:
    """The ``stateful set`` options that would correct what ``exc`` refused; empty if unknown.

    Only for a state whose fields pydantic refused as stored (not after a ``migrate()``, whose
    fields are not the stored ones): ``--drop-field`` for a field the model does not have,
    ``--field NAME=VALUE`` for a missing or mistyped one, ``--timestamp``/``--cursor`` for those,
    and ``--clear-seen`` for unreadable ``seen`` keys.

    Example:
        >>> from stateful.types import Watermark
        >>> try:
        ...     Watermark[int].from_state_json('{"cursor":"7","schema_version":1}')
        ... except ValueError as exc:
        ...     repair_options(exc)
        ['--cursor', 'VALUE']
    """
    if str(exc).startswith("invalid 'seen'"):
        return ["--clear-seen"]
    if not isinstance(exc, ValidationError):
        return []
    drop: list[str] = []
    fields: list[str] = []
    for error in exc.errors():
        loc = error["loc"]
        field = loc[0] if loc else None
        if not isinstance(field, str) or field in drop or field in fields:
            continue
        (drop if error["type"] == "extra_forbidden" else fields).append(field)
    options = [word for field in drop for word in ("--drop-field", field)]
    for field in fields:
        if field == "timestamp":
            options += ["--timestamp", "ISO-TIME"]
        elif field == "cursor":
            options += ["--cursor", "VALUE"]
        else:
            options += ["--field", f"{field}=VALUE"]
    return options


def _command(verb: str, address: Address, *options: str) -> str:
    namespace, name, key = address
    words = ["stateful", verb, namespace, name, *options, *partition_options(key)]
    return f"`{shlex.join(words)}`"


def _readable_version(history: History | None, code_version: int) -> int | None:
    """The newest kept version written by model version ``code_version`` or older, if any."""
    if history is None:
        return None
    try:
        records = history()
    except Exception:  # the error being raised is the news; a failed look-up only loses a hint
        return None
    for record in records:
        version = model_version_of(record.value)
        if version is not None and version <= code_version:
            return record.version
    return None
