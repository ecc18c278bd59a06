"""The Airflow-native store: state in an asset's state store (AIP-103, Airflow >= 3.3).

``store`` does the I/O (sync and async twins), ``planner`` decides without I/O, ``ledger`` keeps
the versions that stand in for compare-and-set, ``document`` is the stored layout and its key,
``parts`` spreads a large watermark over several keys (a manifest and parts), ``packing``
decides which part holds each ``seen`` key, save after save, and ``scope`` finds the assets of a
trigger or task and the size limit.

Example:
    >>> from stateful.backends.native import NativeBackend, native_key
    >>> native_key("files", "landing")
    'stateful/files/watermark/landing'
"""

from stateful.backends.native.document import (
    FORMAT,
    MANIFEST_FORMAT,
    MAX_KEY_LENGTH,
    WATERMARK_KEY,
    NativeDocument,
    native_key,
    parse_native_key,
)
from stateful.backends.native.scope import SIZE_SETTING, configured_size_limit
from stateful.backends.native.store import NativeBackend

__all__ = [
    "FORMAT",
    "MANIFEST_FORMAT",
    "MAX_KEY_LENGTH",
    "SIZE_SETTING",
    "WATERMARK_KEY",
    "NativeBackend",
    "NativeDocument",
    "configured_size_limit",
    "native_key",
    "parse_native_key",
]
