"""What the plugin's API returns: the watermarks of the configured stores, as rows and details.

No web framework here: :mod:`stateful.plugin._app` turns these into HTTP responses. A row is
addressed by an opaque, URL-safe id (the store, the asset for the native store, the namespace,
name and document key, encoded). A keyed watermark's partition is a document of its own (key
``watermark[P]``), so a row, its detail and its edits are one partition's; the list itself is
:mod:`stateful.plugin._listing`'s.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from stateful._address import partition_of
from stateful._document import format_utc
from stateful._lag import is_stuck, lag_seconds, max_lag_setting
from stateful.backends.base import StateRecord
from stateful.cli._documents import summarize
from stateful.errors import StoreNotFoundError

__all__ = [
    "Located",
    "Where",
    "decode_id",
    "detail",
    "document_diff",
    "encode_id",
    "cursor_text",
    "locate",
    "native_stores",
    "row",
    "row_timestamp",
    "sql_store",
]

StoreKind = Literal["sql", "native"]


@dataclass(frozen=True)
class Where:
    """Which document a row is: the store kind, the asset (native store), namespace, name, key."""

    store: StoreKind
    asset_id: int | None
    namespace: str
    name: str
    key: str


def encode_id(where: Where) -> str:
    """The row's id: URL-safe base64 of its address, without padding.

    Example:
        >>> w = Where("sql", None, "files", "/data/*.csv", "watermark")
        >>> decode_id(encode_id(w)) == w
        True
    """
    text = json.dumps([where.store, where.asset_id, where.namespace, where.name, where.key])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_id(text: str) -> Where | None:
    """The address of an id made by :func:`encode_id`, or ``None`` when it is not one."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not (isinstance(parts, list) and len(parts) == 5 and parts[0] in ("sql", "native")):
        return None
    store, asset_id, namespace, name, key = parts
    if not all(isinstance(p, str) for p in (namespace, name, key)):
        return None
    if (store == "native") != isinstance(asset_id, int) or isinstance(asset_id, bool):
        return None
    return Where(store, asset_id, namespace, name, key)


@dataclass(frozen=True)
class Located:
    """A store the plugin reads, with what the page shows of it."""

    kind: StoreKind
    label: str
    store: Any  # a StateBackend that keeps history (SqlBackend, DbNativeStore)
    asset: Any = None  # the StoredAsset of a native store


def sql_store() -> Located:
    """The configured SQL store (as ``@stateful`` finds it), opened to read; raises when it is missing."""
    from stateful.backends.sql.default import default_store, default_url

    url, reason = default_url()
    store = default_store(url, create=False)
    path = store.sqlite_file
    if path is not None and not path.is_file():
        raise StoreNotFoundError(
            f"no store at {store.description}: the SQLite file does not exist (chosen by: {reason}). "
            f"Set STATEFUL_DATABASE_URL or [stateful] database_url for the API server as for the triggerer."
        )
    store.open()
    return Located("sql", store.description, store)


def native_stores(may_read: Callable[[int], bool]) -> list[Located] | None:
    """The native store of every asset the user may read; ``None`` before Airflow 3.3."""
    try:
        from airflow.models.asset_state_store import AssetStateStoreModel  # noqa: F401
    except ImportError:
        return None
    from stateful.plugin._native import DbNativeStore, assets

    return [Located("native", a.label, DbNativeStore(a), a) for a in assets() if may_read(a.id)]


def locate(where: Where) -> Located:
    """The store that holds ``where``.

    Raises:
        StatefulError: the store cannot be opened (missing, or the asset is gone).
    """
    if where.store == "sql":
        return sql_store()
    from stateful.plugin._native import DbNativeStore, assets

    for asset in assets():
        if asset.id == where.asset_id:
            return Located("native", asset.label, DbNativeStore(asset), asset)
    raise StoreNotFoundError(f"no asset with id {where.asset_id} in this deployment.")


def row_timestamp(text: Any) -> datetime | None:
    """A document's ``timestamp`` text as an aware datetime (UTC when it names no zone), else ``None``."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def cursor_text(value: Any) -> str | None:
    """A cursor as the table shows it: a string as it is, any other value as JSON text."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def row(located: Located, record: StateRecord, now: datetime, max_lag: timedelta | None) -> dict[str, Any]:
    """One watermark as the page's table shows it.

    ``lag_seconds`` is now minus the watermark's timestamp; ``stuck`` says it has not moved for
    longer than ``max_lag`` (its timestamp, or its last save when it has none).
    """
    where = Where(
        located.kind,
        None if located.asset is None else located.asset.id,
        record.namespace,
        record.name,
        record.key,
    )
    summary = summarize(record.value)
    timestamp = row_timestamp(summary.timestamp)
    return {
        "id": encode_id(where),
        "namespace": record.namespace,
        "name": record.name,
        "key": record.key,
        "partition": partition_of(record.key),
        "store": located.kind,
        "store_label": located.label,
        "asset": None if located.asset is None else located.asset.name,
        "timestamp": summary.timestamp,
        "cursor": cursor_text(summary.cursor),
        "seen": summary.seen or 0,
        "version": record.version,
        "saved_at": format_utc(record.updated_at),
        "saved_by": record.updated_by,
        "lag_seconds": lag_seconds(timestamp, now),
        "stuck": is_stuck(timestamp or record.updated_at, now, max_lag),
        "valid": summary.problem is None,
        "problem": summary.problem,
    }


def document_diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """What changed from ``before`` to ``after`` (JSON values), as JSON Pointer paths.

    Objects are compared key by key (``seen`` too: one entry per key added or removed);
    anything else is compared whole.

    Example:
        >>> document_diff({"cursor": 1, "seen": {"a": None}}, {"cursor": 2, "seen": {"b": None}})
        [{'path': '/cursor', 'op': 'change', 'old': 1, 'new': 2}, \
{'path': '/seen/a', 'op': 'remove', 'old': None, 'new': None}, \
{'path': '/seen/b', 'op': 'add', 'old': None, 'new': None}]
    """
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[dict[str, Any]] = []
        for key in sorted(before.keys() | after.keys(), key=str):
            where = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in after:
                found.append({"path": where, "op": "remove", "old": before[key], "new": None})
            elif key not in before:
                found.append({"path": where, "op": "add", "old": None, "new": after[key]})
            else:
                found += document_diff(before[key], after[key], where)
        return found
    if before == after:
        return []
    return [{"path": path or "/", "op": "change", "old": before, "new": after}]


def _document(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def detail(located: Located, record: StateRecord) -> dict[str, Any]:
    """A watermark with its whole document and its kept history, each version with its diff."""
    now = datetime.now(timezone.utc)
    versions = list(located.store.history(record.namespace, record.name, record.key)) or [record]
    history = []
    for i, version in enumerate(versions):
        document = _document(version.value)
        older = versions[i + 1] if i + 1 < len(versions) else None
        if older is not None:
            diff = document_diff(_document(older.value), document)
        else:
            diff = document_diff({}, document) if version.version == 1 else []
        history.append(
            {
                "version": version.version,
                "saved_at": format_utc(version.updated_at),
                "saved_by": version.updated_by,
                "reason": version.reason,
                "document": document,
                "diff": diff,
            }
        )
    return {
        "row": row(located, record, now, max_lag_setting()),
        "document": _document(record.value),
        "history": history,
    }
