"""Errors raised by airflow-stateful.

Every error derives from :class:`StatefulError`, so ``except StatefulError`` catches anything
this package raises on purpose. Each message says what happened, where (namespace / name / key
and the store), and what to do next.

Error tree::

    StatefulError
    ├── StateConflictError        a compare-and-set lost: someone else saved first
    │   ├── StateRegressionError  the stored version went backwards (a restore, a stale writer)
    │   └── StateTakenOverError   another instance saved the state while this one ran: it stops
    │                             before emitting more (fencing)
    ├── StateValidationError      stored state no longer validates against the model
    │   └── StateModelVersionError  stored state written by a newer model version than the code's
    ├── StateNameError            (also ValueError) a namespace/name template is unusable
    ├── WatermarkValueError       (also ValueError) a bad value given to advance()/is_new()
    ├── StatefulUsageError        (also TypeError) the decorator is applied to something it
    │                             cannot serve; raised at decoration time
    ├── StoreError                the store failed (unreachable database, broken table, ...)
    │   ├── StoreUnavailableError the store cannot be reached now (connection refused, server
    │   │                         restarting, network error); retried with backoff first
    │   ├── StoreNotFoundError    a store opened read-only does not exist; nothing was created
    │   └── StateTooLargeError    a value over the store's size limit; nothing was written
    ├── StoreConfigError          (also ValueError) the store cannot be chosen as configured
    ├── StoreSwitchError          the chosen store is empty but another one holds the state
    ├── EventNotStoredError       Airflow did not confirm it stored an event (ack mode); the
    │                             watermark stays before it and the trigger restarts
    └── MissingDependencyError    (also ImportError) an optional extra is not installed

Example:
    >>> from stateful.errors import StatefulError, StateConflictError
    >>> issubclass(StateConflictError, StatefulError)
    True
"""

from __future__ import annotations

from datetime import datetime

from stateful._address import command, display_address, partition_options

#: How the ``updated_by`` of a write made with the ``stateful`` command starts
#: (``stateful set by alice@ops-1``): such a write is an operator's edit.
OPERATOR_EDIT_PREFIX = "stateful "

__all__ = [
    "EventNotStoredError",
    "MissingDependencyError",
    "StateConflictError",
    "StateNameError",
    "StateRegressionError",
    "StateTakenOverError",
    "StateModelVersionError",
    "StateTooLargeError",
    "StateValidationError",
    "StatefulError",
    "StatefulUsageError",
    "StoreConfigError",
    "StoreError",
    "StoreNotFoundError",
    "StoreSwitchError",
    "StoreUnavailableError",
    "WatermarkValueError",
]


class StatefulError(Exception):
    """Root of every error raised by airflow-stateful."""


class StateConflictError(StatefulError):
    """A write lost a compare-and-set race: the stored version is not the one expected.

    Nothing was written. Another process (a second triggerer running the same watcher, an
    operator using the CLI) saved this state since it was read; re-read it and decide again.
    When the store says who wrote the version it found (the SQL and memory stores do), the
    message names that write: when, by whom and why (``--reason``), and says so plainly when it
    was an operator's edit made with the ``stateful`` command.

    Attributes:
        namespace: namespace of the state.
        name: name of the state.
        key: key of the state document.
        expected_version: the version the writer read (``None``: it expected no state).
        actual_version: the version found in the store (``None``: no state is stored).
        backend: a description of the store, with any password masked.
        actual_by: who wrote ``actual_version`` (its ``updated_by``), if the store said.
        actual_at: when ``actual_version`` was written, if the store said.
        actual_reason: why ``actual_version`` was written (its ``reason``), if given.

    Example:
        >>> error = StateConflictError(
        ...     namespace="files", name="landing", key="watermark", expected_version=5,
        ...     actual_version=6, backend="MemoryBackend", actual_by="stateful set by alice@ops-1",
        ...     actual_reason="skip the broken batch",
        ... )
        >>> "by stateful set by alice@ops-1 (reason: 'skip the broken batch')" in str(error)
        True
        >>> error.edited
        True
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
        actual_by: str | None = None,
        actual_at: datetime | None = None,
        actual_reason: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.key = key
        self.expected_version = expected_version
        self.actual_version = actual_version
        self.backend = backend
        self.actual_by = actual_by
        self.actual_at = actual_at
        self.actual_reason = actual_reason
        expected = "no stored state" if expected_version is None else f"version {expected_version}"
        actual = "no stored state" if actual_version is None else f"version {actual_version}"
        written = ""
        if actual_version is not None and (actual_at or actual_by):
            when = "" if actual_at is None else f" {actual_at.isoformat().replace('+00:00', 'Z')}"
            who = "" if actual_by is None else f" by {actual_by}"
            why = "" if actual_reason is None else f" (reason: {actual_reason!r})"
            written = f", written{when}{who}{why}"
        head = (
            f"state {display_address(namespace, name, key)} in {backend} changed since it was read: "
            f"expected {expected}, found {actual}{written}. Nothing was written."
        )
        if self.edited:
            history = _cmd("history", namespace, name, key)
            advice = (
                f" An operator edited it with the stateful command while this trigger or sensor held "
                f"{expected}: the edit stands, and this run stops here (it emits nothing more). Restart "
                f"it (retry its task; the triggerer starts an asset watcher again) and it continues from "
                f"{actual}, the edited state. `{history}` lists both versions."
            )
        else:
            advice = (
                f" Another writer (a second triggerer or worker running the same state, or an operator) "
                f"saved it first; make sure only one trigger or sensor owns "
                f"{display_address(namespace, name)}, then restart it so it reloads the stored state."
            )
        super().__init__(head + advice)

    @property
    def edited(self) -> bool:
        """Whether the version found was written by the ``stateful`` command (an operator's edit)."""
        return self.actual_version is not None and (self.actual_by or "").startswith(OPERATOR_EDIT_PREFIX)


class StateRegressionError(StateConflictError):
    """The stored version is older than one already seen: the state went backwards.

    Raised by stores without an atomic compare-and-set (the Airflow-native store) when a read
    or the check before a save finds an older version of the same document than this process
    has already loaded or saved: a database restore, a document copied back by hand through the
    REST API, or a writer that saved stale state. Nothing was written. Going back on purpose is
    done by writing a *newer* version that holds the older value (``stateful set`` / ``rewind``).
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
        detail: str = "",
    ) -> None:
        super().__init__(
            namespace=namespace,
            name=name,
            key=key,
            expected_version=expected_version,
            actual_version=actual_version,
            backend=backend,
        )
        self.detail = detail
        where = f" ({detail})" if detail else ""
        self.args = (
            f"state {display_address(namespace, name, key)} in {backend} went backwards{where}: version "
            f"{expected_version} was already loaded or saved, the store now holds version {actual_version}. "
            f"Nothing was written. Something wrote an older copy (a restored database, a document put "
            f"back by hand through the REST API, or a second writer with stale state). Inspect it "
            f"(`{_cmd('show', namespace, name, key)}`); to go back on purpose write a newer "
            f"version (`stateful set` or `stateful rewind`), then restart the trigger or task.",
        )


class StateTakenOverError(StateConflictError):
    """Another instance of a trigger saved its state while this one ran: this one stops (fencing).

    Raised by a decorated ``run()`` before it hands over an event, when a cheap read of the stored
    version finds a version this instance neither loaded nor saved: a second triggerer took the
    trigger over (Airflow re-assigns the triggers of a triggerer whose heartbeat expired, and a
    triggerer frozen by a long pause can resume beside its successor), or an operator edited the
    state. The stale instance emits nothing more and its trigger fails; the instance that wrote
    the newer version goes on from it, so nothing is lost. Nothing to fix: it appears in the log
    of the triggerer that lost the trigger.

    Example:
        >>> error = StateTakenOverError(
        ...     namespace="files", name="landing", key="watermark", expected_version=5,
        ...     actual_version=7, backend="MemoryBackend",
        ... )
        >>> "another instance of this trigger took it over" in str(error)
        True
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
        super().__init__(
            namespace=namespace,
            name=name,
            key=key,
            expected_version=expected_version,
            actual_version=actual_version,
            backend=backend,
        )
        held = "no stored state" if expected_version is None else f"version {expected_version}"
        found = "no stored state" if actual_version is None else f"version {actual_version}"
        self.args = (
            f"state {display_address(namespace, name, key)} in {backend} moved on while this trigger ran: "
            f"it loaded or saved {held}, the store now holds {found}. Most likely another instance of "
            f"this trigger took it over (a second triggerer, after this one missed its heartbeat or "
            f"was paused); otherwise an operator edited it. This instance emits nothing more and stops; "
            f"the instance that saved {found} goes on from there, so no event is lost. "
            f"`{_cmd('history', namespace, name, key)}` shows who wrote it.",
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
        repair: how to correct the stored value, as the message says it (a ``stateful set``
            command when the fields at fault are known).
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
        repair: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.key = key
        self.backend = backend
        self.model = model
        self.detail = detail
        self.repair = repair or (
            f"correct the value (`{_cmd('set', namespace, name, key)} --field NAME=VALUE`, or "
            f"`--drop-field NAME` for a field the model no longer has; VALUE is JSON)"
        )
        super().__init__(
            f"stored state {display_address(namespace, name, key)} in {backend} does not validate as "
            f"{model}: {detail}\n"
            f"It was left as it is; nothing was reset. Inspect it "
            f"(`{_cmd('show', namespace, name, key)}`), then either fix the model, {self.repair}, "
            f"or reset it on purpose (`{_cmd('reset', namespace, name, key)}`: everything is "
            f"then new again)."
        )


class StateModelVersionError(StateValidationError):
    """Stored state was written by a newer version of the model than the code loading it.

    Raised at load when the stored ``model_version`` is above the model's
    :attr:`~stateful.types.Watermark.model_version`: older code cannot know what the newer
    model's fields mean. Nothing is changed; deploy the newer code, or rewind the state to a
    version an older-or-equal model wrote.

    Attributes:
        stored_version: the model version recorded in the stored state.
        code_version: the model version of the code that tried to load it.
        rewind_to: the newest kept version written by a model version the code reads, when
            the store keeps history and holds one (else ``None``).
        rewind: the ``stateful rewind`` (or ``stateful history``) command the message suggests.
    """

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        key: str,
        backend: str,
        model: str,
        stored_version: int,
        code_version: int,
        rewind_to: int | None,
        rewind: str,
    ) -> None:
        detail = (
            f"it was written by model version {stored_version}, newer than this code's model "
            f"version {code_version}"
        )
        super().__init__(namespace=namespace, name=name, key=key, backend=backend, model=model, detail=detail)
        self.stored_version = stored_version
        self.code_version = code_version
        self.rewind_to = rewind_to
        self.rewind = rewind
        if rewind_to is None:
            back = (
                f"go back to a version written by model version {code_version} or older: {rewind} "
                f"lists the kept versions, `{_cmd('rewind', namespace, name, key)} --to VERSION` "
                f"restores one"
            )
        else:
            back = (
                f"rewind to version {rewind_to}, the newest one written by model version "
                f"{code_version} or older: {rewind}"
            )
        self.args = (
            f"stored state {display_address(namespace, name, key)} in {backend} was written by model version "
            f"{stored_version} of {model}, newer than this code's model version {code_version}. It was "
            f"left as it is. Deploy the code with model version {stored_version}, or {back} (the "
            f"newer versions stay in the history).",
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


class StoreUnavailableError(StoreError):
    """The store cannot be reached now: connection refused, server restarting, network error.

    A transient failure, unlike a broken table or wrong credentials: the drivers retry the load
    or save that raised it with capped exponential backoff (``[stateful] store_retries``,
    ``store_retry_delay``, ``store_retry_max_delay``; see :mod:`stateful._retry`) and raise it
    only once the attempts are spent. Nothing was written by the failed call. A trigger that
    raises it is restarted by Airflow and resumes from the stored watermark (the events since
    the last save repeat, none is lost); a sensor's try fails and Airflow retries the task.

    The message names the store (password masked), the state and what to do next; the
    database's or API's error is chained as ``__cause__``.

    Example:
        >>> from stateful.errors import StoreError, StoreUnavailableError
        >>> issubclass(StoreUnavailableError, StoreError)
        True
    """


class StoreNotFoundError(StoreError):
    """A store opened to read only (``SqlBackend(..., create=False)``) does not exist.

    Its SQLite file or its state table is missing; nothing was created. The message names the
    store (password masked) and what is missing.
    """


class StateTooLargeError(StoreError):
    """A value is over the store's size limit; it was refused before anything was written.

    Attributes:
        namespace: namespace of the state.
        name: name of the state.
        key: key of the state document.
        size: the size of the document that would have been written, in bytes.
        limit: the limit, in bytes.
        backend: a description of the store.
    """

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        key: str,
        size: int,
        limit: int,
        backend: str,
        setting: str,
        detail: str = "",
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.key = key
        self.size = size
        self.limit = limit
        self.backend = backend
        super().__init__(
            f"state {display_address(namespace, name, key)} would take {size:,} bytes in {backend}, over the "
            f"limit of {limit:,} bytes ({setting}){detail}. Nothing was written: the last saved state "
            f"stays, so events since then repeat after a restart. Keep the watermark smaller: a shorter "
            f"lookback (fewer seen keys kept), a lower max_untimed_keys cap, or shorter keys; or raise "
            f"{setting}; or keep this watermark in the SQL store (backend=SqlBackend(...) or [stateful] "
            f"backend = sql)."
        )


class StoreConfigError(StatefulError, ValueError):
    """The store cannot be chosen as configured (an unknown ``[stateful] backend`` value, or the
    Airflow-native store asked for where there is no asset state store)."""


class StoreSwitchError(StatefulError):
    """The store chosen now holds nothing, but another candidate store holds this state.

    Starting from an empty watermark would re-emit (or, for a newer copy elsewhere, mis-emit)
    everything, so nothing is started. The message names both stores and how to migrate.

    Attributes:
        namespace: namespace of the state.
        name: name of the state.
        key: key of the state document.
        chosen: description of the store chosen now.
        other: description of the store that holds the state.
    """

    def __init__(self, message: str, *, namespace: str, name: str, key: str, chosen: str, other: str) -> None:
        self.namespace = namespace
        self.name = name
        self.key = key
        self.chosen = chosen
        self.other = other
        super().__init__(message)


class MissingDependencyError(StatefulError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class EventNotStoredError(StatefulError):
    """Airflow did not confirm that it stored an event of an ack-mode watcher.

    Raised by the watcher's shared-stream producer (it appears in the triggerer's log) when
    Airflow reports an event as not cleanly stored: its persist failed, or the ack timeout
    (``[triggerer] shared_stream_ack_timeout``) passed. Airflow then fails the trigger and starts
    it again; the watermark stays at the last confirmed event, so the events after it are emitted
    again (a repeat, never a loss). Nothing to fix in the watermark: look at the triggerer's log
    for why the events were not stored (the metadata database, the supervisor).
    """


def _cmd(verb: str, namespace: str, name: str, key: str) -> str:
    """The ``stateful VERB`` command for a document, with ``--partition`` (or ``--key``) when needed."""
    return command("stateful", verb, namespace, name, *partition_options(key))
