"""The :class:`Watermark` model: how far a trigger or sensor got, persisted between runs.

A watermark holds the highest ``timestamp`` and ``cursor`` advanced past, plus the keys already
emitted inside a boundary window, so items that share the boundary timestamp are neither lost
nor emitted twice. ``@stateful(...)`` loads it, injects it into ``run()`` and saves it after
events are emitted. The semantics in full: https://airflow-stateful.github.io/airflow-stateful/watermark/
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import reprlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, ClassVar, Generic

from pydantic import (
    BaseModel,
    ConfigDict,
    JsonValue,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from typing_extensions import Self, TypeVar

from stateful._document import (
    MODEL_VERSION_KEY,
    SCHEMA_VERSION,
    decode_state,
    encode_state,
    format_utc,
    upgrade_model,
)
from stateful._seen import SeenKeys, SeenLog
from stateful.errors import StatefulUsageError, WatermarkValueError

__all__ = ["DEFAULT_MAX_UNTIMED_KEYS", "SCHEMA_VERSION", "CursorT", "Watermark"]

_LOG = logging.getLogger("stateful")

DEFAULT_MAX_UNTIMED_KEYS = 10_000

#: The cursor type; a bare ``Watermark`` is ``Watermark[JsonValue]`` (any JSON value).
CursorT = TypeVar("CursorT", default=JsonValue)

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _aware_utc(value: object, where: str) -> datetime:
    """Return ``value`` in UTC; refuse anything but a timezone-aware datetime."""
    if type(value) is datetime and value.tzinfo is timezone.utc:
        return value  # the common case, already what astimezone() would return
    if not isinstance(value, datetime):
        raise WatermarkValueError(f"{where}: expected a datetime, got {type(value).__name__} {value!r}")
    if value.utcoffset() is None:
        raise WatermarkValueError(
            f"{where}: {value.isoformat()} is a naive datetime (no timezone); watermark timestamps "
            "must be timezone-aware. Use datetime.now(timezone.utc), or dt.replace(tzinfo=timezone.utc) "
            "if dt is known to be in UTC."
        )
    try:
        return value.astimezone(timezone.utc)
    except OverflowError as exc:
        raise WatermarkValueError(f"{where}: {value.isoformat()} is out of range in UTC") from exc


_SEEN_ADAPTER: TypeAdapter[dict[str, datetime | None]] = TypeAdapter(dict[str, datetime | None])


# Keys validated per call by _seen_entries.
_SEEN_SLICE = 4096


def _seen_entries(seen: object) -> dict[str, datetime | None]:
    """Validate a decoded ``seen`` as strict JSON mode would: ISO timestamps or null, nothing else.

    When every value is a string or null (any stored state), the strings are validated as
    strings (the same parser and errors as strict JSON mode) instead of encoding ``seen`` back
    to JSON text: at 10^5 keys that re-encoding allocates enough to set off full garbage
    collections, which hold the interpreter lock (the event loop's too) for their whole run.
    Anything else takes the JSON path, for its error messages.
    """
    if isinstance(seen, dict) and all(v is None or type(v) is str for v in seen.values()):
        timed = ((k, v) for k, v in seen.items() if v is not None)
        stamps: dict[str, datetime | None] = {}
        # In slices: one validation call holds the interpreter lock (the event loop's too) for its
        # whole run, so a large seen is validated a few thousand keys at a time.
        while part := dict(itertools.islice(timed, _SEEN_SLICE)):
            stamps.update(_SEEN_ADAPTER.validate_strings(part, strict=True))
        return {k: None if v is None else stamps[k] for k, v in seen.items()}
    return _SEEN_ADAPTER.validate_json(json.dumps(seen), strict=True)


def _unorderable(value: object) -> str | None:
    """Say why ``value`` cannot be a cursor (None if it can): cursors must be totally ordered."""
    if type(value) is int or type(value) is str:
        return None  # the common cursors, ordered: no isinstance chain per advance
    # Sets and dicts compare without TypeError in some cases (subset order, equal lists of dicts),
    # so refuse them by shape instead of relying on comparison failures alone.
    if value is None or isinstance(value, (Mapping, AbstractSet)):
        return f"a {type(value).__name__} is not ordered"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not ordered"
    if isinstance(value, datetime) and value.utcoffset() is None:
        return "a naive datetime cannot be compared with aware ones"
    if isinstance(value, (list, tuple)):
        return next((p for p in map(_unorderable, value) if p is not None), None)
    return None


def _validators(cls: type[BaseModel], field: str) -> list[Any]:
    """The functions of the field validators that apply to ``field`` (or to every field)."""
    return [
        getattr(d.func, "__func__", d.func)
        for d in cls.__pydantic_decorators__.field_validators.values()
        if field in d.info.fields or "*" in d.info.fields
    ]


@cache
def _plain_assignment(cls: type[Watermark[Any]], field: str) -> bool:
    """Whether assigning ``field`` a value ``advance`` validated may skip pydantic's validation.

    pydantic's assignment validation costs a few µs per call; ``advance`` has already checked
    the value the way the field's own validation would (the cursor against the field's
    annotation, constraints inside it included). That holds when ``cls`` adds nothing to
    Watermark's validation of the field: the same model config, no model validators, no other
    field validators on it, no constraints on the field itself (``Field(le=...)``), not frozen,
    the timestamp's own annotation, no ``__setattr__`` of its own. Otherwise the assignment goes
    through pydantic, as before.
    """
    decorators = cls.__pydantic_decorators__
    return (
        not (decorators.model_validators or decorators.root_validators or decorators.validators)
        and _validators(cls, field) == _validators(Watermark, field)
        and not cls.model_fields[field].metadata
        and not cls.model_fields[field].frozen
        and (
            field == "cursor"
            or cls.model_fields[field].annotation == Watermark.model_fields[field].annotation
        )
        and cls.model_config == Watermark.model_config
        and cls.__setattr__ is BaseModel.__setattr__
    )


@cache
def _cursor_adapter(cls: type[Watermark[Any]]) -> TypeAdapter[Any]:
    # Validates a cursor's type before comparing it; constraints and validators declared on the
    # field run when the (newer) cursor is assigned.
    annotation: Any = cls.model_fields["cursor"].annotation
    return TypeAdapter(annotation, config=ConfigDict(strict=cls.model_config.get("strict", False)))


class Watermark(BaseModel, Generic[CursorT]):
    """How far a trigger or sensor got: a timestamp, a cursor and the keys seen at the boundary.

    ``Watermark[int]`` types the cursor; a bare ``Watermark`` accepts any JSON value. Subclass it
    to keep more typed state. The model is strict (no silent conversions), validates assignments
    and refuses unknown fields. Persist it with :meth:`to_state_json`/:meth:`from_state_json`
    (``model_dump()`` does not include ``seen``).

    When you change a subclass's fields after state was stored, raise its :attr:`model_version`
    and say in :meth:`migrate` how an older stored state becomes a current one (see "Changing
    your watermark model" in the docs).

    Attributes:
        timestamp: the highest timestamp advanced past (timezone-aware, normalised to UTC).
        cursor: the highest cursor advanced past (must be totally ordered).
        model_version: the version of this model (a class attribute, 1 unless a subclass raises
            it): recorded in the stored document, checked and upgraded at load.

    Example:
        >>> from datetime import datetime, timedelta, timezone
        >>> class OrdersState(Watermark[int]):
        ...     batches: int = 0
        >>> wm = OrdersState().configure(lookback=timedelta(minutes=5))
        >>> wm.advance(timestamp=datetime(2024, 5, 1, tzinfo=timezone.utc), key="a@v1")
        >>> wm.batches += 1
        >>> wm
        OrdersState(timestamp=2024-05-01T00:00:00.000000Z, cursor=None, seen=1 key, batches=1)
    """

    model_config = ConfigDict(strict=True, validate_assignment=True, extra="forbid")

    timestamp: datetime | None = None
    cursor: CursorT | None = None

    #: The version of this model, recorded in each state it saves: raise it (2, 3, ...) when a
    #: change of the fields needs stored states upgraded by :meth:`migrate`.
    model_version: ClassVar[int] = 1

    # seen lives in a private attribute, not a field: it must not be settable through the
    # constructor or assignment (which would bypass its bounds), nor show up as a plain dict in
    # model_dump(). __eq__ below compares it explicitly. Policy is private too: it is not stored.
    _log: SeenLog = PrivateAttr(default_factory=SeenLog)
    _lookback: timedelta = PrivateAttr(default=timedelta(0))
    _max_untimed_keys: int = PrivateAttr(default=DEFAULT_MAX_UNTIMED_KEYS)
    _warned: bool = PrivateAttr(default=False)
    # Items is_new() judged older than the lookback window: in all, and since the drivers last
    # logged them (with the oldest timestamp among those). Counted, never stored.
    _late_total: int = PrivateAttr(default=0)
    _late_unlogged: int = PrivateAttr(default=0)
    _late_oldest: datetime | None = PrivateAttr(default=None)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # A field named like a method or property of Watermark would shadow it (pydantic only
        # warns), and schema_version is written next to the fields in the stored document.
        super().__pydantic_init_subclass__(**kwargs)
        reserved = {"schema_version", *(n for n in vars(Watermark) if not n.startswith("_"))}
        clash = reserved.intersection(cls.model_fields) - Watermark.model_fields.keys()
        if clash:
            raise StatefulUsageError(
                f"{cls.__qualname__} declares reserved field name(s) {sorted(clash)}: they would shadow "
                f"Watermark's own; rename them."
            )
        version = cls.model_version
        if type(version) is not int or version < 1:
            raise StatefulUsageError(
                f"{cls.__qualname__}.model_version is {version!r}: it must be an int of at least 1 "
                f"(1, then 2, 3, ... as the model changes)."
            )

    @classmethod
    def migrate(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Upgrade a stored state's ``data`` from model version ``version`` to ``version + 1``.

        Called at load, before validation, once per step from the version the state records up
        to :attr:`model_version` (a state of version 1 loaded by a model of version 3: with 1,
        then with 2). The upgraded state is saved at the next save (not at load), as a new
        version: the store's history keeps the old one. The default changes nothing. Override
        it in your subclass; it must not do I/O (a trigger loads in a worker thread).

        Args:
            version: the model version ``data`` is at.
            data: the stored fields as JSON values (``timestamp`` as ISO text, ``cursor``, your
                own fields), without ``seen``, which is kept as it is. Yours to change.

        Returns:
            The fields at model version ``version + 1``.

        Example:
            >>> class Orders(Watermark[int]):
            ...     model_version = 3
            ...     region: str
            ...     batch_count: int = 0
            ...
            ...     @classmethod
            ...     def migrate(cls, version, data):
            ...         if version == 1:  # version 2 renamed "batches" to "batch_count"
            ...             data["batch_count"] = data.pop("batches", 0)
            ...         if version == 2:  # version 3 added "region", which has no default
            ...             data["region"] = "eu"
            ...         return data
            >>> Orders.from_state_json('{"batches":4,"cursor":7,"schema_version":1}')
            Orders(timestamp=None, cursor=7, seen=0 keys, region='eu', batch_count=4)
        """
        return data

    @classmethod
    def _upgrade_model(cls, doc: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """``doc`` (without ``seen``) brought to :attr:`model_version`, and the version it was at.

        Raises:
            NewerModelVersion: ``doc`` records a newer model version than this class's.
            ValueError: an invalid recorded version, or a :meth:`migrate` step that raised or
                returned something else than a dict (the message names the step).
        """
        return upgrade_model(doc, cls.model_version, cls.migrate, f"{cls.__module__}.{cls.__qualname__}")

    @field_validator("timestamp")
    @classmethod
    def _check_timestamp(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _aware_utc(value, "timestamp")

    @property
    def seen(self) -> AbstractSet[str]:
        """Keys already emitted inside the boundary window (read-only, sorted iteration)."""
        return SeenKeys(self._seen_log())

    @property
    def lookback(self) -> timedelta:
        """How far behind ``timestamp`` items still count as possibly new (see :meth:`configure`)."""
        lookback: timedelta = self._private()["_lookback"]
        return lookback

    @property
    def skipped_late(self) -> int:
        """How many times :meth:`is_new` answered ``False`` because the item was older than the window.

        That is, stamped before ``timestamp - lookback``: too late to tell whether it was emitted,
        so it is skipped. Counted since the watermark was loaded (each run of a trigger, each
        ``poke()``), in memory only: never stored. ``@stateful`` also logs these items at INFO once
        per poll (see the triggers page of the docs); :meth:`summary` shows the count when not 0.

        Example:
            >>> t = datetime(2024, 5, 1, tzinfo=timezone.utc)
            >>> wm = Watermark(timestamp=t).configure(lookback=timedelta(minutes=5))
            >>> wm.is_new("old.csv", t - timedelta(hours=1)), wm.skipped_late
            (False, 1)
        """
        count: int = self._private()["_late_total"]
        return count

    def _take_skipped_late(self) -> tuple[int, datetime | None]:
        """The items skipped as late since the last call, and the oldest one's timestamp; reset."""
        private = self._private()
        count, oldest = private["_late_unlogged"], private["_late_oldest"]
        if count:
            private["_late_unlogged"], private["_late_oldest"] = 0, None
        return count, oldest

    @property
    def max_untimed_keys(self) -> int:
        """How many keys recorded without a timestamp are kept (see :meth:`configure`)."""
        cap: int = self._private()["_max_untimed_keys"]
        return cap

    def _private(self) -> dict[str, Any]:
        # The private attributes. Reading one as self._log goes through pydantic's
        # BaseModel.__getattr__ (about 2 µs a read, several per advance); the dict behind them
        # is a slot. Assignments (rare) still go through pydantic.
        return self.__pydantic_private__  # type: ignore[return-value]

    def _assign(self, field: str, value: Any) -> None:
        """Set ``field`` to ``value``, which ``advance`` has validated: skips pydantic's second
        validation of it where that adds nothing (see :func:`_plain_assignment`)."""
        if _plain_assignment(type(self), field):
            self.__dict__[field] = value
            self.__pydantic_fields_set__.add(field)
        else:
            setattr(self, field, value)

    def configure(self, *, lookback: timedelta | None = None, max_untimed_keys: int | None = None) -> Self:
        """Set the policy (not stored with the state); return ``self``.

        ``@stateful`` calls it after loading. It drops nothing itself: the bounds are applied by
        the next :meth:`advance`.

        Args:
            lookback: how late an item may arrive and still be new (``>= timedelta(0)``).
            max_untimed_keys: cap on keys recorded without a timestamp (``>= 1``).

        Raises:
            StatefulUsageError: (also a ``TypeError``) a value of the wrong type.
            WatermarkValueError: (also a ``ValueError``) a negative lookback, a cap below 1.

        Example:
            >>> Watermark().configure(lookback=timedelta(hours=1)).lookback
            datetime.timedelta(seconds=3600)
        """
        if lookback is not None:
            if not isinstance(lookback, timedelta):
                raise StatefulUsageError(f"lookback must be a timedelta, got {type(lookback).__name__}")
            if lookback < timedelta(0):
                raise WatermarkValueError(f"lookback must be >= timedelta(0), got {lookback!r}")
        if max_untimed_keys is not None:
            if isinstance(max_untimed_keys, bool) or not isinstance(max_untimed_keys, int):
                raise StatefulUsageError(
                    f"max_untimed_keys must be an int, got {type(max_untimed_keys).__name__}"
                )
            if max_untimed_keys < 1:
                raise WatermarkValueError(f"max_untimed_keys must be >= 1, got {max_untimed_keys}")
            self._max_untimed_keys = max_untimed_keys
        if lookback is not None:
            self._lookback = lookback
        return self

    def seen_at(self, key: str) -> datetime | None:
        """Return the timestamp ``key`` was recorded with (None if none); KeyError if not seen.

        Example:
            >>> wm = Watermark()
            >>> wm.advance(key="a")
            >>> wm.seen_at("a") is None
            True
        """
        log = self._seen_log()
        if key in log.untimed:
            return None
        return log.timed[key]

    def _floor(self) -> datetime | None:
        if self.timestamp is None:
            return None
        try:
            return self.timestamp - self.lookback
        except OverflowError:  # the window reaches before datetime.min: nothing is below it
            return None

    def is_new(self, key: str, timestamp: datetime | None = None) -> bool:
        """Tell whether the item ``key`` (stamped ``timestamp``) has not been emitted yet.

        With both timestamps set, with ``T = self.timestamp`` and ``L = self.lookback``: an item
        newer than ``T`` is new, one older than ``T - L`` is not, and inside ``[T - L, T]`` it is
        new exactly when ``key`` is not in :attr:`seen`. Otherwise only ``key`` decides.

        Raises:
            WatermarkValueError: ``timestamp`` is naive or not a datetime, or ``key`` not a str.

        Example:
            >>> t = datetime(2024, 5, 1, tzinfo=timezone.utc)
            >>> wm = Watermark(timestamp=t)
            >>> wm.is_new("a", t - timedelta(seconds=1)), wm.is_new("a", t)
            (False, True)
        """
        if not isinstance(key, str):
            raise WatermarkValueError(f"is_new(key=...): expected a str, got {type(key).__name__}")
        if timestamp is not None:
            ts = _aware_utc(timestamp, "is_new(timestamp=...)")
            if self.timestamp is not None:
                if ts > self.timestamp:
                    return True
                floor = self._floor()
                if floor is not None and ts < floor:
                    self._count_late(ts)
                    return False
        return key not in self._seen_log()

    def _count_late(self, ts: datetime) -> None:
        private = self._private()
        private["_late_total"] += 1
        private["_late_unlogged"] += 1
        oldest = private["_late_oldest"]
        if oldest is None or ts < oldest:
            private["_late_oldest"] = ts

    def advance(
        self, *, timestamp: datetime | None = None, cursor: CursorT | None = None, key: str | None = None
    ) -> None:
        """Record an emitted item; ``timestamp`` and ``cursor`` never move backwards.

        ``key`` is recorded with ``timestamp``. Keys whose timestamp falls below
        ``self.timestamp - lookback`` are pruned; keys without a timestamp beyond
        ``max_untimed_keys`` are evicted oldest first (they may then be reported new again).

        Raises:
            WatermarkValueError: nothing given, a naive timestamp, or a cursor that is invalid for
                the cursor type or not ordered against the current one. Nothing is changed then.

        Example:
            >>> wm = Watermark[int](cursor=10)
            >>> wm.advance(cursor=7)
            >>> wm.cursor
            10
        """
        if timestamp is None and cursor is None and key is None:
            raise WatermarkValueError("advance() needs at least one of timestamp=, cursor=, key=")
        ts = None if timestamp is None else _aware_utc(timestamp, "advance(timestamp=...)")
        if key is not None and not isinstance(key, str):
            raise WatermarkValueError(f"advance(key=...): expected a str, got {type(key).__name__}")
        new_cursor = None if cursor is None else self._newer_cursor(cursor)
        # The cursor assignment is the last check that can fail (validators declared on the
        # field), so it goes first: a refused call leaves the watermark unchanged.
        if new_cursor is not None:
            try:
                self._assign("cursor", new_cursor)
            except ValidationError as exc:
                raise WatermarkValueError(f"cursor {new_cursor!r} is refused: {exc}") from exc
        if ts is not None and (self.timestamp is None or ts > self.timestamp):
            self._assign("timestamp", ts)
        private = self._private()
        log: SeenLog = private["_log"]
        if key is not None:
            log.add(key, ts)
        floor = self._floor()
        if floor is not None:
            log.prune(floor)
        evicted = log.evict(private["_max_untimed_keys"])
        if evicted and not private["_warned"]:
            self._warned = True
            _LOG.warning(
                "%s: more than %d keys recorded without a timestamp; evicted the oldest. An evicted "
                "key is reported new again if it shows up again (a repeat, never a skip: delivery "
                "stays at-least-once). Raise max_untimed_keys, or advance with timestamps and a "
                "lookback so keys expire by time. (Logged once per watermark.)",
                type(self).__name__,
                private["_max_untimed_keys"],
            )

    def _newer_cursor(self, cursor: object) -> Any:
        """Validate ``cursor``; return it if it is newer than the current one, else None."""
        try:
            value = _cursor_adapter(type(self)).validate_python(cursor)
        except ValidationError as exc:
            detail = "; ".join(e["msg"] for e in exc.errors())
            raise WatermarkValueError(
                f"cursor {cursor!r} is invalid for {type(self).__name__}: {detail}"
            ) from exc
        problem = _unorderable(value)
        if problem is None and self.cursor is not None:
            try:
                return value if value > self.cursor else None
            except TypeError:
                problem = f"it cannot be compared with the current cursor {self.cursor!r}"
        if problem is not None:
            raise WatermarkValueError(
                f"cursor {_REPR.repr(value)}: {problem}. Cursors must be totally ordered (int, float, "
                "str, aware datetime, or a list/tuple of those). Use a tuple for a composite position "
                "(e.g. Watermark[tuple[str, int]]) and keep unordered data in a field of your own."
            )
        return value

    def to_state_json(self) -> str:
        """Return the state as deterministic JSON (sorted keys, ``schema_version``).

        Example:
            >>> Watermark[int](cursor=3).to_state_json()
            '{"cursor":3,"schema_version":1,"seen":{},"timestamp":null}'
        """
        seen = {k: None if ts is None else format_utc(ts) for k, ts in self._seen_log().entries().items()}
        return encode_state({**self._head(), "seen": seen})

    def _head(self) -> dict[str, Any]:
        """The stored fields except ``seen`` (JSON values): O(your fields), whatever ``seen`` holds."""
        doc = self.model_dump(mode="json", round_trip=True)
        doc["timestamp"] = None if self.timestamp is None else format_utc(self.timestamp)
        version = type(self).model_version
        if version != 1:
            doc[MODEL_VERSION_KEY] = version
        return doc

    def _seen_log(self) -> SeenLog:
        """The bookkeeping behind :attr:`seen`, for the session that saves it in deltas."""
        log: SeenLog = self._private()["_log"]
        return log

    @classmethod
    def from_state_json(cls, text: str | bytes) -> Self:
        """Load state written by :meth:`to_state_json`, strictly: no conversions, no unknown fields.

        A state saved by an earlier :attr:`model_version` is upgraded by :meth:`migrate` first.

        Raises:
            ValueError: not JSON, missing or newer ``schema_version``, a newer ``model_version``
                (``NewerModelVersion``), a :meth:`migrate` step that failed, or a value of the
                wrong type (a ``pydantic.ValidationError`` is a ``ValueError``).

        Example:
            >>> try:
            ...     Watermark[int].from_state_json('{"schema_version":1,"cursor":"5"}')
            ... except ValueError as exc:
            ...     print(str(exc).splitlines()[:2])
            ['1 validation error for Watermark[int]', 'cursor']
        """
        doc = decode_state(text)
        seen = doc.pop("seen", {})
        doc, stored = cls._upgrade_model(doc)
        # Strict *JSON* mode accepts ISO strings for datetimes but refuses numbers; strict Python
        # mode would refuse the strings, so the (migrated) document is validated as JSON text.
        try:
            wm = cls.model_validate_json(json.dumps(doc), strict=True)
        except (ValidationError, TypeError) as exc:  # TypeError: migrate() returned a non-JSON value
            if stored == cls.model_version:
                raise
            raise ValueError(
                f"the state upgraded by {cls.__qualname__}.migrate() from model version {stored} to "
                f"{cls.model_version} does not validate: {exc}"
            ) from exc
        try:
            entries = _seen_entries(seen)
            wm._log = SeenLog(
                {k: None if v is None else _aware_utc(v, f"seen[{k!r}]") for k, v in entries.items()}
            )
        except ValueError as exc:  # ValidationError, or WatermarkValueError for a naive timestamp
            raise ValueError(f"invalid 'seen' in watermark state: {exc}") from exc
        return wm

    def summary(self) -> str:
        """Return a one-line summary, e.g. for logs.

        Example:
            >>> Watermark[int](cursor=3).summary()
            'timestamp=None, cursor=3, seen=0 keys'
        """
        ts = None if self.timestamp is None else format_utc(self.timestamp)
        n = len(self._seen_log())
        late = self._private()["_late_total"]
        return f"timestamp={ts}, cursor={_REPR.repr(self.cursor)}, seen={n} key{'' if n == 1 else 's'}" + (
            f", skipped_late={late}" if late else ""
        )

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={_REPR.repr(getattr(self, name))}"
            for name in type(self).model_fields
            if name not in ("timestamp", "cursor")
        )
        return f"{type(self).__name__}({self.summary()}{extra})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        # Equal exactly when the stored JSON would be: fields and seen keys count; the policy and
        # bookkeeping (warning flag, expiry heap, eviction order) are not stored, so they don't.
        # Like pydantic, compare generic origins: Watermark[int](cursor=1) == Watermark(cursor=1).
        if not isinstance(other, Watermark):
            return NotImplemented
        origin = self.__pydantic_generic_metadata__["origin"] or type(self)
        other_origin = other.__pydantic_generic_metadata__["origin"] or type(other)
        return (
            origin is other_origin
            and self._seen_log() == other._seen_log()
            and all(getattr(self, f) == getattr(other, f) for f in type(self).model_fields)
        )

    def __copy__(self) -> Self:
        # pydantic's shallow copy would share the seen log: advancing the copy would change both.
        clone = super().__copy__()
        clone._log = self._seen_log().copy()
        return clone
