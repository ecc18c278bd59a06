"""Errors raised by airflow-stateful.

Every error derives from :class:`StatefulError`, so ``except StatefulError`` catches anything
this package raises on purpose. Each message says what happened, where (namespace / name / key
and the store), and what to do next.

Error tree::

    StatefulError
    ├── StateConflictError        a compare-and-set lost: someone else saved first
    ├── StateValidationError      stored state no longer validates against the model
    ├── StateNameError            (also ValueError) a namespace/name template is unusable
    ├── WatermarkValueError       (also ValueError) a bad value given to advance()/is_new()
    ├── StatefulUsageError        (also TypeError) the decorator is applied to something it
    │                             cannot serve; raised at decoration time
    ├── StoreError                the store failed (unreachable database, broken table, ...)
    └── MissingDependencyError    (also ImportError) an optional extra is not installed

Example:
    >>> from stateful.errors import StatefulError, StateConflictError
    >>> issubclass(StateConflictError, StatefulError)
    True
"""

from __future__ import annotations

__all__ = [
    "MissingDependencyError",
    "StateConflictError",
    "StateNameError",
    "StateValidationError",
    "StatefulError",
    "StatefulUsageError",
    "StoreError",
    "WatermarkValueError",
]


class StatefulError(Exception):
    """Root of every error raised by airflow-stateful."""


class StateConflictError(StatefulError):
    """A write lost a compare-and-set race: the stored version is not the one expected.

    Nothing was written. Another process (a second triggerer running the same watcher, an
    operator using the CLI) saved this state since it was read; re-read it and decide again.

    Attributes:
        namespace: namespace of the state.
        name: name of the state.
        key: key of the state document.
        expected_version: the version the writer read (``None``: it expected no state).
        actual_version: the version found in the store (``None``: no state is stored).
        backend: a description of the store, with any password masked.
    """

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        key: str,
        expected_version: int | None,
        actual_version: int | None,
        backend: str,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.key = key
        self.expected_version = expected_version
        self.actual_version = actual_version
        self.backend = backend
        expected = "no stored state" if expected_version is None else f"version {expected_version}"
        actual = "no stored state" if actual_version is None else f"version {actual_version}"
        super().__init__(
            f"state {namespace}/{name} (key {key!r}) in {backend} changed since it was read: "
            f"expected {expected}, found {actual}. Nothing was written. Another writer (a second "
            f"triggerer or worker running the same state, or an operator) saved it first; make sure "
            f"only one trigger or sensor owns {namespace}/{name}, then restart it so it reloads the "
            f"stored state."
        )


class StateValidationError(StatefulError):
    """Stored state does not validate against the model that loads it.

    The stored value is left untouched and is never replaced by a default: a watermark that
    silently restarts from nothing re-fires (or skips) everything.

    Attributes:
        namespace: namespace of the state.
        name: name of the state.
        key: key of the state document.
        backend: a description of the store, with any password masked.
        model: qualified name of the model class that failed to load it.
        detail: the validation error, as text.
    """

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        key: str,
        backend: str,
        model: str,
        detail: str,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.key = key
        self.backend = backend
        self.model = model
        self.detail = detail
        super().__init__(
            f"stored state {namespace}/{name} (key {key!r}) in {backend} does not validate as "
            f"{model}: {detail}\n"
            f"It was left as it is; nothing was reset. Inspect it (`stateful show {namespace} {name}`), "
            f"then either fix the model, correct the value (`stateful set ...`), or reset it on "
            f"purpose (`stateful reset {namespace} {name}`: everything is then new again)."
        )


class StateNameError(StatefulError, ValueError):
    """A namespace or name (or the template that builds it) is unusable."""


class WatermarkValueError(StatefulError, ValueError):
    """A value given to :meth:`Watermark.advance` or :meth:`Watermark.is_new` is unusable."""


class StatefulUsageError(StatefulError, TypeError):
    """``@stateful`` was applied to something it cannot serve (raised at decoration time)."""


class StoreError(StatefulError):
    """The state store failed: unreachable database, missing permissions, broken table.

    The message names the store (password masked) and the operation. The original exception
    is chained as ``__cause__``.
    """


class MissingDependencyError(StatefulError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
