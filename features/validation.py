"""Parse and validate raw events; failures name the field and what was wrong.

Raw events are JSON text (a line from a file or a Kafka message value) or an
already-decoded mapping (a CSV row, a Parquet row, a generated event). Numeric
fields accept numbers or numeric strings (CSV). Timestamps are ISO-8601; a
timestamp without an offset is taken as UTC.

>>> parse_timestamp("2026-10-06T00:00:05.365Z")
1791244805.365
>>> as_number({"amount": "12.5"}, "amount")
12.5
>>> as_number({"amount": "twelve"}, "amount")
Traceback (most recent call last):
...
features.validation.ValidationError: field 'amount': expected a number, got 'twelve'
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Mapping

import orjson

__all__ = [
    "ValidationError",
    "decode",
    "parse_timestamp",
    "as_number",
    "as_text",
    "iso_utc",
]


class ValidationError(ValueError):
    """An event that cannot be scored; the message says which field and why."""


def decode(raw: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """Turn a raw event into a dict, or raise :class:`ValidationError`.

    >>> decode('{"a": 1}')
    {'a': 1}
    >>> decode('{"a": 1')
    Traceback (most recent call last):
    ...
    features.validation.ValidationError: not valid JSON: unexpected end of data: line 1 column 8 (char 7)
    """
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValidationError(f"expected a JSON object, got {type(value).__name__}")
    return value


def parse_timestamp(value: Any, field: str = "timestamp") -> float:
    """ISO-8601 text (or epoch seconds) to epoch seconds."""
    if isinstance(value, bool):
        raise ValidationError(f"field {field!r}: expected an ISO-8601 timestamp, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValidationError(f"field {field!r}: expected a finite time, got {value!r}")
        return float(value)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(f"field {field!r}: expected an ISO-8601 timestamp, got {value!r}") from None
    else:
        raise ValidationError(f"field {field!r}: expected an ISO-8601 timestamp, got {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def as_number(event: Mapping[str, Any], field: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    """The finite number in ``event[field]`` within ``[lo, hi]``."""
    if field not in event or event[field] is None or event[field] == "":
        raise ValidationError(f"field {field!r}: missing")
    value = event[field]
    if isinstance(value, bool):
        raise ValidationError(f"field {field!r}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValidationError(f"field {field!r}: expected a number, got {event[field]!r}") from None
    if not isinstance(value, (int, float)):
        raise ValidationError(f"field {field!r}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValidationError(f"field {field!r}: expected a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise ValidationError(f"field {field!r}: {value!r} is outside [{lo}, {hi}]")
    return value


def as_text(event: Mapping[str, Any], field: str) -> str:
    """The non-empty identifier in ``event[field]`` (numbers are turned into text)."""
    value = event.get(field)
    if value is None or value == "":
        raise ValidationError(f"field {field!r}: missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError(f"field {field!r}: expected text, got {value!r}")
    return str(value)


def iso_utc(epoch_s: float) -> str:
    """Epoch seconds to ISO-8601 UTC with milliseconds and ``Z``.

    >>> iso_utc(0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
