"""Typed, persisted watermarks for Apache Airflow triggers and sensors.

Example:
    >>> from stateful import Watermark, stateful
    >>> Watermark[int]().cursor is None
    True
"""

from stateful.decorators import StatefulSpec, stateful
from stateful.types import Watermark

__all__ = ["StatefulSpec", "Watermark", "stateful"]
