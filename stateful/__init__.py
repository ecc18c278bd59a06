"""Typed, persisted watermarks for Apache Airflow triggers and sensors.

Example:
    >>> from stateful import Watermark, stateful
    >>> Watermark[int]().cursor is None
    True
"""

from stateful._spec import StatefulSpec
from stateful.decorators import StatefulDecorator, stateful
from stateful.sensors import commit
from stateful.types import Watermark

__all__ = ["StatefulDecorator", "StatefulSpec", "Watermark", "commit", "stateful"]
