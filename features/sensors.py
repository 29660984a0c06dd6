"""Per-device streaming features for sensor readings (IoT flow, issue 4).

Pure logic, no stream engine: the dataflow keys readings by device and keeps one
:class:`DeviceFeatures` per device (inside the per-device scorer of
``models.sensor_scoring``). State is an :class:`~features.windows.EventTimeHistory`
(plain lists of floats), so snapshots are cheap plain data.

Signatures::

    SensorConfig(key_field="device_id", time_field="timestamp",
                 sensors=("temperature", "humidity", "pressure"),
                 windows_s=(300.0, 3600.0), lateness_s=600.0, max_events=512)
        .to_dict() -> dict ;  SensorConfig.from_dict(d) -> SensorConfig
    parse_time(value: str | int | float | datetime) -> float          # epoch seconds, UTC
    format_time(t: float) -> str                                      # ISO-8601 UTC with "Z"
    parse_reading(record: Mapping, config) -> (device_id: str, t: float, values: dict[str, float | None])
    shard_of(device_id: str, n_shards: int) -> int                    # stable across processes/runs
    feature_names(config) -> list[str]
    DeviceFeatures(config).update(t: float, values) -> dict[str, float | None]
        .snapshot() -> tuple ;  DeviceFeatures.restore(snap) -> DeviceFeatures

Features of one reading (``None`` where undefined, so records stay JSON-safe):

* ``dt_s``: seconds since the device's previous reading in event time;
* ``late_s``: how far behind the device's newest event time the reading is
  (0.0 when in order);
* per sensor ``s``: ``s_delta`` (change since the previous reading that had ``s``)
  and ``s_{mean,std,min,max}_{W}s`` over the event-time window ``(t - W, t]``
  (population std), for every window ``W`` in ``windows_s``.

Readings missing some sensors (absent, None or NaN) are kept: the missing sensors
get ``None`` for ``s_delta`` and are skipped by the window statistics, the sensors
present are used as usual (and scored on their own by the scoring step).

>>> cfg = SensorConfig(sensors=("temperature",), windows_s=(120.0,))
>>> dev = DeviceFeatures(cfg)
>>> _ = dev.update(parse_time("2024-01-01T00:00:00Z"), {"temperature": 20.0})
>>> f = dev.update(parse_time("2024-01-01T00:01:00Z"), {"temperature": 21.0})
>>> f["dt_s"], f["temperature_delta"], f["temperature_mean_120s"], f["temperature_max_120s"]
(60.0, 1.0, 20.5, 21.0)
>>> f = dev.update(parse_time("2024-01-01T00:02:00Z"), {"temperature": None})
>>> f["temperature_delta"] is None, f["temperature_mean_120s"]
(True, 21.0)
>>> parse_reading({"device_id": "d1", "timestamp": "2024-01-01T00:00:00Z", "temperature": "20.5"}, cfg)
('d1', 1704067200.0, {'temperature': 20.5})
"""

from __future__ import annotations

import math
import zlib
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from features.windows import EventTimeHistory

__all__ = [
    "DEFAULT_SENSORS",
    "SensorConfig",
    "DeviceFeatures",
    "feature_names",
    "format_time",
    "parse_reading",
    "parse_time",
    "shard_of",
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
        time_field: name of the event-time field (ISO-8601 string or epoch seconds).
        sensors: names of the numeric sensor fields, any number.
        windows_s: event-time window lengths in seconds for the rolling statistics.
        lateness_s: how far behind a device's newest reading a reading may arrive
            and still be put into the device's history.
        max_events: cap on the readings kept per device.
    """

    key_field: str = "device_id"
    time_field: str = "timestamp"
    sensors: tuple[str, ...] = DEFAULT_SENSORS
    windows_s: tuple[float, ...] = (300.0, 3600.0)
    lateness_s: float = 600.0
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
        clash = [s for s in sensors if s in reserved or not isinstance(s, str) or not s]
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
        """Plain-data form (for snapshots and logs)."""
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


def window_label(w: float) -> str:
    """Suffix of a window's feature names: ``300.0 -> '300s'``, ``0.5 -> '0.5s'``."""
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


def parse_time(value: str | int | float | datetime) -> float:
    """Event time as float seconds since the epoch (UTC).

    Accepts ISO-8601 strings with ``Z`` or an explicit offset, timezone-aware
    datetimes, and numbers (already epoch seconds). Naive times are refused:
    their zone is unknown.

    >>> parse_time("2024-01-01T00:00:30Z"), parse_time("2024-01-01T01:00:30+01:00"), parse_time(5)
    (1704067230.0, 1704067230.0, 5.0)
    >>> parse_time("2024-01-01T00:00:30")
    Traceback (most recent call last):
    ...
    ValueError: timestamp '2024-01-01T00:00:30' has no time zone (add 'Z' or an offset)
    """
    if isinstance(value, bool):
        raise ValueError(f"timestamp must be an ISO-8601 string or epoch seconds, got {value!r}")
    if isinstance(value, (int, float)):
        t = float(value)
        if not math.isfinite(t):
            raise ValueError(f"timestamp {value!r} is not a finite number")
        return t
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not ISO-8601") from None
    elif isinstance(value, datetime):
        dt = value
    else:
        raise ValueError(
            f"timestamp must be an ISO-8601 string, a datetime or epoch seconds, "
            f"got {type(value).__name__}"
        )
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone (add 'Z' or an offset)")
    return dt.timestamp()


def format_time(t: float) -> str:
    """ISO-8601 UTC with ``Z``; milliseconds only when ``t`` has a fraction.

    >>> format_time(1704067230.0), format_time(1704067230.25)
    ('2024-01-01T00:00:30Z', '2024-01-01T00:00:30.250Z')
    """
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _sensor_value(record: Mapping, name: str) -> float | None:
    v = record.get(name)
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError(f"sensor {name!r} is a boolean ({v!r}), expected a number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"sensor {name!r} is not a number: {v!r}") from None
    if f != f:
        return None
    if math.isinf(f):
        raise ValueError(f"sensor {name!r} is infinite: {v!r}")
    return f


def parse_reading(
    record: Mapping, config: SensorConfig = SensorConfig()
) -> tuple[str, float, dict[str, float | None]]:
    """Split a reading into ``(device_id, event time in s, {sensor: value or None})``.

    Missing sensors (absent, None, empty string or NaN) come back as None.
    Numeric strings are accepted. Errors name the field and the device.

    >>> parse_reading({"id": 7, "ts": 10, "x": None}, SensorConfig(key_field="id", time_field="ts", sensors=("x",)))
    ('7', 10.0, {'x': None})
    >>> parse_reading({"timestamp": 1}, SensorConfig())
    Traceback (most recent call last):
    ...
    ValueError: reading has no 'device_id' field (fields: ['timestamp'])
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"reading must be a mapping, got {type(record).__name__}")
    key = record.get(config.key_field)
    if key is None or key == "":
        raise ValueError(f"reading has no {config.key_field!r} field (fields: {sorted(record)!r})")
    key = str(key)
    if config.time_field not in record or record[config.time_field] is None:
        raise ValueError(f"reading of {config.key_field}={key!r} has no {config.time_field!r} field")
    try:
        t = parse_time(record[config.time_field])
    except ValueError as e:
        raise ValueError(f"reading of {config.key_field}={key!r}: {e}") from None
    try:
        values = {s: _sensor_value(record, s) for s in config.sensors}
    except ValueError as e:
        raise ValueError(f"reading of {config.key_field}={key!r} at {record[config.time_field]!r}: {e}") from None
    return key, t, values


def shard_of(device_id: str, n_shards: int) -> int:
    """Shard of a device: ``crc32(utf-8 id) % n_shards``.

    Stable across processes and restarts (unlike ``hash()``, which is salted).

    >>> shard_of("dev-0001", 4), shard_of("dev-0001", 4) == shard_of("dev-0001", 4)
    (3, True)
    """
    if n_shards < 1:
        raise ValueError(f"shard_of: n_shards must be >= 1, got {n_shards!r}")
    return zlib.crc32(str(device_id).encode("utf-8")) % n_shards


def _none_if_nan(v: float) -> float | None:
    return None if v != v else v


class DeviceFeatures:
    """Rolling features of one device (see the module docstring for the list).

    Out-of-order readings are placed by event time: a reading arriving up to
    ``lateness_s`` late gets the windows it would have had in order, and its
    ``dt_s`` / deltas are relative to the reading just before it in event time.
    A reading older than the retention is not stored; its features are computed
    from what is kept.
    """

    __slots__ = ("config", "history", "_names")

    def __init__(self, config: SensorConfig = SensorConfig()) -> None:
        self.config = config
        self.history = EventTimeHistory(config.retention_s, config.sensors, config.max_events)
        self._names = [
            (s, w, tuple(f"{s}_{stat}_{window_label(w)}" for stat in _STATS))
            for s in config.sensors
            for w in config.windows_s
        ]

    def __len__(self) -> int:
        return len(self.history)

    @property
    def watermark(self) -> float:
        """Newest event time seen (``-inf`` before the first reading)."""
        return self.history.watermark

    def update(self, t: float, values: Mapping[str, float | None]) -> dict[str, float | None]:
        """Add the reading at event time ``t`` and return its features."""
        if not math.isfinite(t):
            raise ValueError(f"DeviceFeatures.update: event time must be finite, got {t!r}")
        h = self.history
        late_s = max(0.0, h.watermark - t) if h.watermark > -math.inf else 0.0
        idx = h.insert(t, values)
        feats: dict[str, float | None] = {}
        if idx >= 0:
            prev = idx - 1 if idx > 0 else None
        else:  # out of retention: not stored; look at what is kept
            pos = bisect_right(h.times, t)
            prev = pos - 1 if pos > 0 else None
        feats["dt_s"] = t - h.times[prev] if prev is not None else None
        feats["late_s"] = late_s
        for s in self.config.sensors:
            v = values.get(s)
            delta = None
            if v is not None and v == v and prev is not None:
                col = h.columns[s]
                stop = max(-1, prev - _DELTA_LOOKBACK)
                for j in range(prev, stop, -1):
                    pv = col[j]
                    if pv == pv:
                        delta = float(v) - pv
                        break
            feats[f"{s}_delta"] = delta
        for s, w, (n_mean, n_std, n_min, n_max) in self._names:
            st = h.stats(s, t, w)
            feats[n_mean] = _none_if_nan(st.mean)
            feats[n_std] = _none_if_nan(st.std)
            feats[n_min] = _none_if_nan(st.min)
            feats[n_max] = _none_if_nan(st.max)
        return feats

    def snapshot(self) -> tuple:
        """Plain data: ``(config dict, history snapshot)``."""
        return (self.config.to_dict(), self.history.snapshot())

    @classmethod
    def restore(cls, snap: tuple) -> "DeviceFeatures":
        """Rebuild from :meth:`snapshot` output."""
        if not isinstance(snap, tuple) or len(snap) != 2:
            raise ValueError(f"DeviceFeatures.restore: expected a (config, history) tuple, got {snap!r:.80}")
        cfg, hist = snap
        dev = cls(SensorConfig.from_dict(cfg))
        dev.history = EventTimeHistory.restore(hist)
        return dev
