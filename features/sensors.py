"""Sensor readings for the IoT flow: the typed :class:`Reading`, its parser, and
the per-device streaming features.

Pure logic, no stream engine. :func:`parse_reading` turns one raw input (JSON
text or bytes, or a row mapping) into a :class:`Reading` or raises
:class:`~features.records.ValidationError` naming the field. Times follow the
one time policy of :mod:`features.records` (``parse_time``, ``format_time``).
:class:`DeviceFeatures` keeps one device's windows as tiled aggregates and a
short exact tail of recent readings (:class:`~features.windows.TiledWindows`);
its snapshot is plain data and holds no configuration.

Features of one reading (``None`` where undefined, so records stay JSON-safe):

* ``dt_s``: seconds since the device's previous reading in event time;
* ``late_s``: how far behind the device's newest event time the reading is
  (0.0 when in order);
* per sensor ``s``: ``s_delta`` (change since the previous reading that had ``s``)
  and ``s_{mean,std,min,max}_{W}s`` over the event-time window ``(t - W, t]``
  (population std), for every window ``W`` in ``windows_s``, read by tiles of
  ``W / 60``: between ``W`` and ``W + W / 60`` of event time (see :class:`DeviceFeatures`).

Readings missing some sensors (absent, None, empty or NaN) are kept: the missing
sensors get ``None`` for ``s_delta`` and are skipped by the window statistics.

>>> cfg = SensorConfig(sensors=("temperature",), windows_s=(120.0,))
>>> r = parse_reading('{"device_id": "d1", "timestamp": "2024-01-01T00:00:00Z", "temperature": "20.5"}',
...                   cfg, arrival=0.0)
>>> r.device, r.t, r.values, r.time_from_arrival
('d1', 1704067200.0, {'temperature': 20.5}, False)
>>> dev = DeviceFeatures(cfg)
>>> _ = dev.update(r.t, r.values)
>>> f = dev.update(r.t + 60, {"temperature": 21.5})
>>> f["dt_s"], f["temperature_delta"], f["temperature_mean_120s"], f["temperature_max_120s"]
(60.0, 1.0, 21.0, 21.5)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import msgspec
import numpy as np

from features.defaults import LATENESS_S
from features.records import ValidationError, decode, format_time, parse_time
from features.windows import TILES, TiledWindows

# ``format_time`` and ``parse_time`` are imported for use here; they (and ``shard_of``)
# live in (and should be imported from) ``features.records``.
__all__ = [
    "FieldPresence",
    "DEFAULT_SENSORS",
    "SensorConfig",
    "Reading",
    "parse_reading",
    "parse_fields",
    "DeviceFeatures",
    "feature_names",
    "window_label",
]

DEFAULT_SENSORS: tuple[str, ...] = ("temperature", "humidity", "pressure")
_STATS = ("mean", "std", "min", "max")
_DELTA_LOOKBACK = 32  # events searched back for the previous value of a sensor


@dataclass(frozen=True)
class SensorConfig:
    """Field names and window sizes of the IoT features.

    Args:
        key_field: name of the device id field.
        time_field: name of the event-time field (ISO-8601 or epoch seconds).
        sensors: names of the numeric sensor fields, any number.
        windows_s: event-time window lengths in seconds for the rolling statistics.
        lateness_s: how far behind a device's newest reading a reading may arrive
            and still be put into the device's history.
        max_events: cap on the exact tail of newest readings kept per device (the
            previous reading for dt_s and deltas); windows are tiled and uncapped.

    >>> SensorConfig(sensors=("a",), windows_s=(60,)).retention_s
    660.0
    >>> SensorConfig(sensors=("device_id",))
    Traceback (most recent call last):
    ...
    ValueError: SensorConfig: sensor names must be non-empty strings other than the key and time fields, got ['device_id']
    """

    key_field: str = "device_id"
    time_field: str = "timestamp"
    sensors: tuple[str, ...] = DEFAULT_SENSORS
    windows_s: tuple[float, ...] = (300.0, 3600.0)
    lateness_s: float = LATENESS_S
    max_events: int = 512

    def __post_init__(self) -> None:
        sensors = tuple(self.sensors)
        windows = tuple(float(w) for w in self.windows_s)
        object.__setattr__(self, "sensors", sensors)
        object.__setattr__(self, "windows_s", windows)
        if not sensors:
            raise ValueError("SensorConfig: sensors must name at least one sensor field")
        if len(set(sensors)) != len(sensors):
            raise ValueError(f"SensorConfig: duplicate sensor names in {sensors!r}")
        reserved = {self.key_field, self.time_field}
        clash = [s for s in sensors if not isinstance(s, str) or not s or s in reserved]
        if clash:
            raise ValueError(
                f"SensorConfig: sensor names must be non-empty strings other than the key and "
                f"time fields, got {clash!r}"
            )
        if not windows or any(not w > 0 for w in windows):
            raise ValueError(f"SensorConfig: windows_s must be positive seconds, got {windows!r}")
        if self.lateness_s < 0:
            raise ValueError(f"SensorConfig: lateness_s must be >= 0, got {self.lateness_s!r}")
        if self.max_events < 2:
            raise ValueError(f"SensorConfig: max_events must be >= 2, got {self.max_events!r}")

    @property
    def retention_s(self) -> float:
        """History kept per device: the longest window plus the allowed lateness."""
        return max(self.windows_s) + self.lateness_s

    def to_dict(self) -> dict:
        """Plain-data form (for logs and the detector version digest)."""
        d = asdict(self)
        d["sensors"] = list(self.sensors)
        d["windows_s"] = list(self.windows_s)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "SensorConfig":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["sensors"] = tuple(d.get("sensors", DEFAULT_SENSORS))
        d["windows_s"] = tuple(d.get("windows_s", (300.0, 3600.0)))
        return cls(**d)


class Reading(msgspec.Struct, frozen=True):
    """One valid sensor reading.

    ``device``: the key; ``t``: event time (epoch s); ``values``: every configured
    sensor, ``None`` when missing; ``arrival``: when it was received (epoch s);
    ``time_from_arrival``: the input had no time, so ``t == arrival``; ``fields``:
    the input mapping as received, carried unchanged into the output record.
    """

    device: str
    t: float
    values: dict[str, float | None]
    arrival: float
    time_from_arrival: bool = False
    fields: dict[str, Any] = {}

    @property
    def timestamp(self) -> str:
        """The event time in the one output format (ISO-8601 UTC, ms, ``Z``)."""
        return format_time(self.t)


_INF = float("inf")
_NAN = float("nan")


def _sensor_value(fields: Mapping[str, Any], name: str) -> float | None:
    v = fields.get(name)
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValidationError(f"sensor {name!r} is a boolean ({v!r}), expected a number")
    if isinstance(v, (int, float)):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            raise ValidationError(f"sensor {name!r} is not a number: {v[:64]!r}") from None
    else:
        raise ValidationError(f"sensor {name!r} is not a number: {v!r:.64}")
    if f != f:
        return None
    if math.isinf(f):
        raise ValidationError(f"sensor {name!r} is infinite: {v!r}")
    return f


def parse_reading(raw: Any, config: SensorConfig = SensorConfig(), arrival: float | None = None,
                  max_future_s: float | None = None) -> Reading:
    """Decode and check one reading (JSON text or bytes, a mapping, or a
    :class:`~features.records.Raw`).

    Missing sensors (absent, None, empty string or NaN) are ``None``; numeric
    strings are accepted. A reading without the time field (absent, None or
    empty) is timed by ``arrival`` and flagged ``time_from_arrival``. Invalid
    (:class:`~features.records.ValidationError`, naming the field): no key, or a
    key that is a boolean, a list, an object or a non-finite number; a bad time
    (and, with ``max_future_s`` and ``arrival``, a time more than ``max_future_s``
    seconds after ``arrival``; the flow passes ``STREAMSCORE_STATE__MAX_FUTURE_S``); a boolean,
    non-numeric or infinite sensor value (``"Infinity"``; ``1e400`` is refused by
    :func:`~features.records.decode`); no sensor at all (a ``NaN`` sensor counts
    as missing). ``arrival`` is required when the reading has no time.

    >>> cfg = SensorConfig(key_field="id", time_field="ts", sensors=("a", "b"))
    >>> r = parse_reading({"id": 7, "a": None, "b": "2", "label": 1}, cfg, arrival=42.0)
    >>> r.device, r.t, r.values, r.time_from_arrival, r.fields["label"]
    ('7', 42.0, {'a': None, 'b': 2.0}, True, 1)
    >>> parse_reading({"id": "d1", "ts": 1, "a": "hot"}, cfg, arrival=0.0)
    Traceback (most recent call last):
    ...
    features.records.ValidationError: reading of id='d1': sensor 'a' is not a number: 'hot'
    >>> parse_reading({"ts": 1, "a": 1}, cfg, arrival=0.0)
    Traceback (most recent call last):
    ...
    features.records.ValidationError: reading has no 'id' field (fields: ['a', 'ts'])
    >>> parse_reading({"id": True, "ts": 1, "a": 1}, cfg, arrival=0.0)
    Traceback (most recent call last):
    ...
    features.records.ValidationError: field 'id': expected text or a number as the key, got True
    """
    return parse_fields(decode(raw), config, arrival, max_future_s)


def parse_fields(fields: dict[str, Any], config: SensorConfig = SensorConfig(), arrival: float | None = None,
                 max_future_s: float | None = None) -> Reading:
    """:func:`parse_reading` of a reading already decoded (:func:`~features.records.decode`'s
    dict, kept as the reading's ``fields``).

    >>> parse_fields({"device_id": "d1", "timestamp": 60, "temperature": 20}, arrival=0.0).values
    {'temperature': 20.0, 'humidity': None, 'pressure': None}
    """
    key = fields.get(config.key_field)
    if key is None or key == "":
        if config.key_field in fields:
            raise ValidationError(f"reading has no {config.key_field!r} field: it is {key!r}")
        raise ValidationError(f"reading has no {config.key_field!r} field (fields: {sorted(fields)[:20]!r})")
    if not isinstance(key, str) and (
            isinstance(key, bool) or not isinstance(key, (int, float)) or key != key or key in (_INF, -_INF)):
        raise ValidationError(f"field {config.key_field!r}: expected text or a number as the key, got {key!r:.64}")
    device = str(key)
    try:
        when = fields.get(config.time_field)
        if when is None or when == "":
            if arrival is None:
                raise ValidationError(f"field {config.time_field!r} is missing and no arrival time was given")
            t, time_from_arrival = float(arrival), True
        else:
            not_after = None if max_future_s is None or arrival is None else float(arrival) + max_future_s
            t, time_from_arrival = parse_time(when, config.time_field, not_after), False
        values: dict[str, float | None] = {}
        some = False
        for s in config.sensors:
            v = fields.get(s)
            if type(v) is float and v - v == 0.0:  # a finite float: the common case
                some = True
            else:
                v = _sensor_value(fields, s)
                some = some or v is not None
            values[s] = v
    except ValidationError as exc:
        raise ValidationError(f"reading of {config.key_field}={device!r}: {exc}") from None
    if not some:
        raise ValidationError(
            f"reading of {config.key_field}={device!r} has none of the sensor fields {list(config.sensors)!r}"
        )
    return Reading(device, t, values, t if arrival is None else float(arrival), time_from_arrival, fields)


class FieldPresence:
    """Which configured fields the events lack: :meth:`see` returns the fields an event
    does not have (absent, ``None`` or ``""``), and, once the first ``first_n`` events
    have been seen, the fields none of them had (each reported once; ``first_n`` 0: never).
    A field absent from every one of the first events is a misconfiguration (a typo in
    ``iot.sensor_fields``, ``iot.time_field`` on data whose time is in another field)
    rather than a sparse sensor.

    >>> p = FieldPresence(("ts", "temp", "vibraton"), first_n=2)
    >>> p.see({"ts": 1, "temp": 20.5})
    (['vibraton'], [])
    >>> p.see({"ts": 2, "temp": None})
    (['temp', 'vibraton'], ['vibraton'])
    >>> p.see({"ts": 3})
    (['temp', 'vibraton'], [])
    """

    __slots__ = ("fields", "first_n", "seen", "present")

    def __init__(self, fields: Iterable[str], first_n: int = 1000) -> None:
        self.fields = tuple(dict.fromkeys(fields))
        self.first_n = first_n
        self.seen = 0
        self.present: set[str] = set()

    def see(self, event: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """``(fields this event lacks, fields absent from all of the first first_n events)``;
        the second list is non-empty at most once."""
        missing = [f for f in self.fields if (v := event.get(f)) is None or v == ""]
        if self.seen >= self.first_n:
            return missing, []
        self.seen += 1
        if len(missing) < len(self.fields):
            self.present.update(f for f in self.fields if f not in missing)
        if self.seen < self.first_n:
            return missing, []
        return missing, [f for f in self.fields if f not in self.present]


def window_label(w: float) -> str:
    """Suffix of a window's feature names.

    >>> window_label(300.0), window_label(0.5)
    ('300s', '0.5s')
    """
    return f"{int(w)}s" if float(w).is_integer() else f"{w:g}s"


def feature_names(config: SensorConfig) -> list[str]:
    """Names of the features :meth:`DeviceFeatures.update` returns, in order.

    >>> feature_names(SensorConfig(sensors=("t",), windows_s=(60,)))
    ['dt_s', 'late_s', 't_delta', 't_mean_60s', 't_std_60s', 't_min_60s', 't_max_60s']
    """
    names = ["dt_s", "late_s"]
    names.extend(f"{s}_delta" for s in config.sensors)
    for s in config.sensors:
        for w in config.windows_s:
            names.extend(f"{s}_{stat}_{window_label(w)}" for stat in _STATS)
    return names


class DeviceFeatures:
    """Rolling features of one device (see the module docstring for the list),
    over tiled event-time windows (:class:`~features.windows.TiledWindows`):
    cost per reading and memory per device do not grow with the reading rate,
    and no window is capped.

    Each window ``W`` has ``tiles`` (60) tiles of ``W / tiles`` seconds; the
    statistics of the window of ``t`` are over ``(floor((t - W) / w) * w, t]``:
    at least ``W`` and less than ``W + w`` of event time, exactly ``(t - W, t]``
    when ``t`` is a multiple of ``w`` (full rule in :mod:`features.windows`).

    Out-of-order readings are placed by event time: a reading arriving up to
    ``lateness_s`` late lands in its tiles, so later windows are as in order,
    and its own windows end at its time while the exact tail still holds its
    tile. ``dt_s`` / deltas are relative to the reading just before it in event
    time, taken from the exact tail of recent readings (at most
    ``config.max_events`` readings, at least 33 for the delta lookback); a late
    reading older than everything in the tail gets ``None`` for them. A reading
    older than the retention (longest window + lateness) is not stored; its
    features are computed from what is kept.

    :meth:`snapshot` is plain data only; :meth:`load` puts it into features
    built from the current configuration (its windows, retention and sensors:
    see :meth:`~features.windows.TiledWindows.load`).

    >>> old = DeviceFeatures(SensorConfig(sensors=("x",), windows_s=(60,)))
    >>> for i in range(3):
    ...     _ = old.update(60.0 * i, {"x": float(i)})
    >>> new = DeviceFeatures(SensorConfig(sensors=("x",), windows_s=(600,)))
    >>> new.load(old.snapshot())
    >>> new.update(180.0, {"x": 3.0})["x_mean_600s"]
    1.5
    """

    __slots__ = ("config", "windows", "_all")

    def __init__(self, config: SensorConfig = SensorConfig(), tiles: int = TILES) -> None:
        self.config = config
        self.windows = TiledWindows(
            config.windows_s, config.sensors, config.lateness_s, tiles,
            max_tail=max(config.max_events, _DELTA_LOOKBACK + 1),
            min_tail=_DELTA_LOOKBACK + 1,
        )
        self._all = feature_names(config)

    def __len__(self) -> int:
        """Readings in the exact tail."""
        return len(self.windows)

    @property
    def watermark(self) -> float:
        """Newest event time seen (``-inf`` before the first reading)."""
        return self.windows.watermark

    def update(self, t: float, values: Mapping[str, float | None]) -> dict[str, float | None]:
        """Add the reading at event time ``t`` and return its features (``update_many`` of one reading)."""
        if not math.isfinite(t):
            raise ValueError(f"DeviceFeatures.update: event time must be finite, got {t!r}")
        V = np.array([[_NAN if (v := values.get(s)) is None else float(v) for s in self.config.sensors]])
        row = self.update_many(np.array([float(t)]), V)[0].tolist()
        return {n: None if v != v else v for n, v in zip(self.names, row)}

    def update_many(self, T: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Add the readings ``(T[j], V[j])`` (event times; sensor values in ``config.sensors``
        order, NaN = missing) in order and return their features: shape ``(n, len(names))``,
        columns :func:`feature_names`, NaN where a feature is undefined. One compiled call
        over the batch (:meth:`TiledWindows.insert_many <features.windows.TiledWindows.insert_many>`); a batch split anywhere
        gives the same features."""
        w = self.windows
        cfg = self.config
        T = np.asarray(T, dtype=np.float64)
        n, nf, nw = len(T), len(cfg.sensors), len(cfg.windows_s)
        out = np.empty((n, 2 + nf + 4 * nf * nw))
        if not n:
            return out
        V = np.asarray(V, dtype=np.float64).reshape(n, nf)
        # late_s: behind the newest event time before each reading (every reading moves it)
        before = np.maximum.accumulate(np.concatenate(([w.watermark], T[:-1])))
        from features.window_kernel import window_stats  # lazy: numba only where features are computed

        agg, prev_t, prev_v = w.insert_many(T, V, _DELTA_LOOKBACK)[:3]
        out[:, 0] = T - prev_t
        out[:, 1] = np.where(before > -np.inf, np.maximum(before - T, 0.0), 0.0)
        out[:, 2:2 + nf] = V - prev_v
        window_stats(agg, nw, nf, out, 2 + nf)  # per sensor, per window: mean, std, min, max
        return out

    @property
    def names(self) -> list[str]:
        """Feature names, the columns of :meth:`update_many`."""
        return self._all

    def snapshot(self) -> tuple:
        """The windows' state as plain data (no configuration)."""
        return self.windows.snapshot()

    def load(self, snap: tuple) -> None:
        """Put :meth:`snapshot` output into these features (see
        :meth:`~features.windows.TiledWindows.load`)."""
        self.windows.load(snap)
