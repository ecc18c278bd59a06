"""What ``@stateful`` was given: the spec every driver runs from, and how a name is resolved.

A leaf of the package: it imports the model, the store protocols and the errors, and nothing
that drives a trigger or a sensor, so every layer above can take a :class:`StatefulSpec` in.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from stateful.backends.base import AsyncStateBackend, StateBackend
from stateful.errors import StateNameError
from stateful.types import Watermark

__all__ = [
    "COMMIT_MODES",
    "MAX_NAME_LENGTH",
    "CommitMode",
    "Form",
    "NameTemplate",
    "StatefulSpec",
    "check_namespace",
    "resolve_name",
]

#: When a snapshot is saved: see docs/guarantees.md.
CommitMode = Literal["after_event", "before_event", "never"]
COMMIT_MODES: tuple[CommitMode, ...] = ("after_event", "before_event", "never")

#: A format template over the decorated object's attributes, or a callable taking the object.
NameTemplate = str | Callable[[Any], str]
#: The three shapes ``@stateful`` decorates.
Form = Literal["trigger", "sensor", "taskflow"]

#: Longest namespace or name accepted; long enough for a bucket plus a prefix, short enough
#: to be a primary-key column on every database we support.
MAX_NAME_LENGTH = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class StatefulSpec:
    """What ``@stateful`` was given, kept on the wrapper as ``__stateful__`` for tools.

    Attributes:
        namespace: the namespace.
        name: the name template or callable.
        model: the watermark model class taken from the annotation.
        backend: the store given, or ``None`` for the default store.
        lookback: the boundary window of the watermark.
        commit: ``"after_event"``, ``"before_event"`` or ``"never"``.
        max_untimed_keys: the cap on keys recorded without a timestamp (``None``: the default).
        form: ``"trigger"`` (``run()``), ``"sensor"`` (``poke()``) or ``"taskflow"``.
        ack: whether a watcher saves only once Airflow confirmed its events were stored.
        idempotency_key: whether events get a ``stateful_idempotency_key`` in their payload.
        save_batch: the most taken events one save may cover (``None``: the setting or default).
        save_delay: the longest a taken event waits for its save (``None``: the setting or default).
        save_interval: the least time between the starts of two saves (``None``: the setting or default).
        max_lag: how long a trigger's watermark may stay still before it is reported stuck
            (``None``: the setting, else never).
        keyed: whether the parameter is a ``Keyed[model]``: one watermark per partition key.
    """

    namespace: str
    name: NameTemplate
    model: type[Watermark[Any]]
    backend: AsyncStateBackend | StateBackend | None
    lookback: timedelta
    commit: CommitMode
    max_untimed_keys: int | None
    form: Form = "trigger"
    ack: bool = True
    idempotency_key: bool = True
    save_batch: int | None = None
    save_delay: timedelta | None = None
    save_interval: timedelta | None = None
    max_lag: timedelta | None = None
    keyed: bool = False

    def resolve_name(self, obj: object) -> str:
        """Return the name for ``obj`` (a trigger or sensor instance, or a TaskFlow sensor's task)."""
        return resolve_name(self.name, obj, f"@stateful(namespace={self.namespace!r})")


def _check_text(kind: str, value: str, where: str) -> str:
    if not value.strip():
        raise StateNameError(f"{kind} of {where} is empty; give @stateful a non-empty {kind}.")
    if value != value.strip():
        raise StateNameError(
            f"{kind} of {where} has leading or trailing whitespace: {value!r}. It would be another "
            f"address than {value.strip()!r} that looks the same in logs; remove the whitespace (for a "
            f"template, from the attribute it reads or with a callable: name=lambda self: ...)."
        )
    if len(value) > MAX_NAME_LENGTH:
        raise StateNameError(
            f"{kind} of {where} is {len(value)} characters long, over the limit of {MAX_NAME_LENGTH}: "
            f"{value[:60]!r}...; use a shorter template, or a callable that derives a shorter {kind} "
            f"(for example a hash of the long part)."
        )
    if _CONTROL.search(value):
        raise StateNameError(f"{kind} of {where} contains a control character: {value!r}.")
    return value


def check_namespace(namespace: str, where: str) -> str:
    """Validate a namespace given to ``@stateful``."""
    if not isinstance(namespace, str):
        raise StateNameError(f"namespace of {where} must be a str, not {type(namespace).__name__}.")
    return _check_text("namespace", namespace, where)


class _Attributes(Mapping[str, Any]):
    """Presents an object's attributes to ``str.format`` so ``"{bucket}/{prefix}"`` works."""

    def __init__(self, obj: object) -> None:
        self._obj = obj

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self._obj, key)
        except AttributeError:
            raise KeyError(key) from None

    def __iter__(self) -> Any:
        return iter(vars(self._obj) if hasattr(self._obj, "__dict__") else ())

    def __len__(self) -> int:
        return len(vars(self._obj)) if hasattr(self._obj, "__dict__") else 0


def _known_attributes(obj: object) -> list[str]:
    """The attributes worth suggesting: a trigger's serialized kwargs, else public attributes."""
    serialize = getattr(obj, "serialize", None)
    if callable(serialize):
        try:
            # A trigger's kwargs are what users think of as its attributes; vars() would also
            # list Airflow's own (task_instance, trigger_id, ...).
            _, kwargs = serialize()
            return sorted(k for k in kwargs if hasattr(obj, k))
        except Exception:
            pass  # only a hint for an error message: fall back to vars()
    return sorted(k for k in getattr(obj, "__dict__", {}) if not k.startswith("_"))


def resolve_name(template: str | Callable[[Any], str], obj: object, where: str) -> str:
    """Build a watermark's name from a format template over ``obj``'s attributes, or a callable.

    Example:
        >>> class T:
        ...     bucket = "landing"
        ...     prefix = "in/"
        >>> resolve_name("{bucket}/{prefix}", T(), "T.run")
        'landing/in/'
    """
    if callable(template):
        try:
            value = template(obj)
        except Exception as exc:
            raise StateNameError(f"the name callable of {where} raised {exc!r}.") from exc
        if not isinstance(value, str):
            raise StateNameError(
                f"the name callable of {where} returned {type(value).__name__}, not str: {value!r}."
            )
        return _check_text("name", value, where)
    try:
        value = string.Formatter().vformat(template, (), _Attributes(obj))
    except KeyError as exc:
        known = _known_attributes(obj)
        raise StateNameError(
            f"name template {template!r} of {where} refers to {exc.args[0]!r}, which "
            f"{type(obj).__name__} does not have. Known attributes: {', '.join(known) or 'none'}. "
            f"Fix the template, or pass a callable: name=lambda self: ..."
        ) from None
    except (IndexError, ValueError, AttributeError) as exc:
        raise StateNameError(
            f"name template {template!r} of {where} cannot be formatted ({exc}); use named fields "
            f"such as '{{bucket}}/{{prefix}}' or a callable."
        ) from None
    return _check_text("name", value, where)
