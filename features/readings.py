"""Validation of sensor readings for the IoT flow: any key, time and sensor fields.

>>> from features.sensors import SensorConfig
>>> cfg = SensorConfig(key_field="id", time_field="ts", sensors=("a", "b"))
>>> ev = validate_reading('{"id": "d1", "ts": "2024-01-01T00:00:00Z", "a": "1.5", "label": 1}', cfg, now=0.0)
>>> ev["_device"], ev["_t"], ev["_values"], ev["label"]
('d1', 1704067200.0, {'a': 1.5, 'b': None}, 1)
>>> validate_reading({"id": "d1", "a": 2.0, "b": 3.0}, cfg, now=42.0)["_t"]   # no time field: arrival time
42.0
>>> validate_reading({"id": "d1", "ts": 1, "a": "hot"}, cfg, now=0.0)
Traceback (most recent call last):
...
features.validation.ValidationError: reading of id='d1' at 1: sensor 'a' is not a number: 'hot'
"""

from __future__ import annotations

from typing import Any, Mapping

from features.sensors import SensorConfig, parse_reading
from features.validation import ValidationError, decode

__all__ = ["validate_reading"]


def validate_reading(raw: str | bytes | Mapping[str, Any], config: SensorConfig, now: float) -> dict[str, Any]:
    """Decode and check one reading; returns the input fields unchanged plus
    ``_device``, ``_t`` (event time, epoch s) and ``_values`` ({sensor: float or None}).

    A reading without the time field is timed by its arrival (``now``) and
    marked ``_time_from_arrival``. A reading with none of the sensors, a
    non-numeric or infinite sensor value, or no key is a :class:`ValidationError`.
    Missing sensors (absent, null, empty) are allowed: the reading is scored on
    the sensors present.
    """
    ev = decode(raw)
    timed = ev.get(config.time_field) not in (None, "")
    record = ev if timed else {**ev, config.time_field: now}
    try:
        device, t, values = parse_reading(record, config)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if all(v is None for v in values.values()):
        raise ValidationError(
            f"reading of {config.key_field}={device!r} has none of the sensor fields {list(config.sensors)!r}"
        )
    ev["_device"], ev["_t"], ev["_values"] = device, t, values
    if not timed:
        ev["_time_from_arrival"] = True
    return ev
