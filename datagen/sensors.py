"""Synthetic sensor readings with labelled faults, deterministic by seed.

Many devices report readings at their own cadence (30-90 s apart, with jitter);
the stream is in event-time order. Each sensor of each device is a level plus a
daily cycle, a slow AR(1) wander and white noise, rounded to the sensor's
resolution. Faults are injected per device, one episode at a time:

=========  ==========================================================  ===========
fault      what happens                                                is_anomaly
=========  ==========================================================  ===========
spike      1-3 readings; 1-2 sensors jump by 3-10x the sensor's noise     1
drift      60-200 readings; one sensor's offset ramps linearly to         1 once the
           5-20x its noise, then the sensor is recalibrated (offset 0)    offset >= 2x noise
stuck      10-60 readings; one sensor (30 %: all) repeats its last        1
           reported value exactly
dropout    1-10 readings; one sensor (40 %: all) is missing (None)        0
=========  ==========================================================  ===========

Labels: ``fault`` names the episode the reading is in ("" when none);
``is_anomaly`` says whether a reported value is *wrong* by more than the
sensor's noise. A dropout carries ``fault="dropout"`` but ``is_anomaly=0``:
nothing present is wrong and the gap is plainly visible in the data (the
scoring lists it in ``missing``); counting it as an anomaly would reward
scoring missingness rather than detecting bad values. The first readings of a
drift, while the offset is under twice the noise, have ``fault="drift"`` and
``is_anomaly=0``. Missing values are written as None (JSON null, empty CSV cell,
Parquet null), never as absent keys, so every format has the same columns.

Signatures::

    generate_readings(devices=50, readings=20000, seed=7, *, sensors=DEFAULT_SENSORS,
                      start="2024-01-01T00:00:00Z", faults=FaultConfig()) -> Iterator[dict]
    main(argv=None)   # python -m datagen.sensors --devices 50 --readings 20000 --seed 7 --out data/readings.jsonl

Files are written and read with :mod:`features.formats` (``write_rows``, ``read_rows``,
``iter_raw``): JSON Lines, CSV or Parquet by suffix.

>>> rows = list(generate_readings(devices=3, readings=5, seed=1))
>>> sorted(rows[0])
['device_id', 'fault', 'humidity', 'is_anomaly', 'pressure', 'temperature', 'timestamp']
>>> rows[0]["timestamp"].endswith("Z"), len(rows), rows == list(generate_readings(devices=3, readings=5, seed=1))
(True, 5, True)
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from features.formats import FORMATS, format_of, write_rows
from features.sensors import DEFAULT_SENSORS, format_time, parse_time

__all__ = [
    "FAULTS",
    "FaultConfig",
    "SensorProfile",
    "PROFILES",
    "generate_readings",
    "main",
]

FAULTS = ("spike", "drift", "stuck", "dropout")


@dataclass(frozen=True)
class SensorProfile:
    """How one kind of sensor behaves; each device draws its own parameters.

    Ranges are ``(low, high)`` for a uniform draw per device.
    """

    level: tuple[float, float]
    noise: tuple[float, float]  # white-noise std
    daily: tuple[float, float]  # amplitude of the daily cycle
    wander: float  # std of the AR(1) innovation, as a fraction of the noise std
    decimals: int  # resolution of the reported value
    bounds: tuple[float, float] = (-math.inf, math.inf)
    daily_phase: float = 0.0  # radians; humidity runs opposite to temperature


PROFILES: dict[str, SensorProfile] = {
    "temperature": SensorProfile((15.0, 30.0), (0.1, 0.4), (0.5, 3.0), 0.3, 2),
    "humidity": SensorProfile((30.0, 70.0), (0.4, 1.5), (2.0, 8.0), 0.3, 1, (0.0, 100.0), math.pi),
    "pressure": SensorProfile((995.0, 1025.0), (0.1, 0.4), (0.3, 1.0), 0.5, 1),
}
GENERIC_PROFILE = SensorProfile((0.0, 100.0), (0.5, 2.0), (0.0, 5.0), 0.3, 2)


@dataclass(frozen=True)
class FaultConfig:
    """Per-reading probability that a fault episode starts (when none is running),
    and the episode shapes. ``scale`` multiplies every rate."""

    spike_rate: float = 0.004
    drift_rate: float = 0.0002
    stuck_rate: float = 0.0004
    dropout_rate: float = 0.001
    scale: float = 1.0
    spike_len: tuple[int, int] = (1, 3)
    spike_size: tuple[float, float] = (3.0, 10.0)  # x noise std
    drift_len: tuple[int, int] = (60, 200)
    drift_size: tuple[float, float] = (5.0, 20.0)  # final offset, x noise std
    drift_label_at: float = 2.0  # label once |offset| >= this x noise std
    stuck_len: tuple[int, int] = (10, 60)
    dropout_len: tuple[int, int] = (1, 10)

    def __post_init__(self) -> None:
        for name in ("spike_rate", "drift_rate", "stuck_rate", "dropout_rate", "scale"):
            v = getattr(self, name)
            if not 0.0 <= v:
                raise ValueError(f"FaultConfig: {name} must be >= 0, got {v!r}")
        if self.total_rate >= 1.0:
            raise ValueError(f"FaultConfig: total fault rate must be < 1, got {self.total_rate!r}")

    @property
    def total_rate(self) -> float:
        return self.scale * (self.spike_rate + self.drift_rate + self.stuck_rate + self.dropout_rate)


@dataclass
class _Fault:
    kind: str
    left: int  # readings still affected, this one included
    sensors: tuple[str, ...]
    size: float = 0.0  # spike size / final drift offset, in noise std units
    total: int = 1


@dataclass
class _Device:
    device_id: str
    rng: random.Random
    interval: float
    level: dict[str, float]
    noise: dict[str, float]
    daily: dict[str, float]
    phase: dict[str, float]
    wander: dict[str, float] = field(default_factory=dict)
    ar: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)  # last reported values
    fault: _Fault | None = None


def _profile(sensor: str) -> SensorProfile:
    return PROFILES.get(sensor, GENERIC_PROFILE)


def _make_device(i: int, seed: int, sensors: Sequence[str]) -> _Device:
    rng = random.Random(f"datagen.sensors:{seed}:{i}")
    dev = _Device(
        device_id=f"dev-{i:04d}",
        rng=rng,
        interval=rng.uniform(30.0, 90.0),
        level={},
        noise={},
        daily={},
        phase={},
    )
    phase0 = rng.uniform(0.0, 2 * math.pi)  # the device's local time of day
    for s in sensors:
        p = _profile(s)
        dev.level[s] = rng.uniform(*p.level)
        dev.noise[s] = rng.uniform(*p.noise)
        dev.daily[s] = rng.uniform(*p.daily)
        dev.phase[s] = phase0 + p.daily_phase
        dev.wander[s] = p.wander * dev.noise[s]
        dev.ar[s] = 0.0
    return dev


def _start_fault(dev: _Device, sensors: Sequence[str], faults: FaultConfig) -> _Fault | None:
    rng = dev.rng
    u = rng.random()
    sc = faults.scale
    edges = [
        ("spike", sc * faults.spike_rate),
        ("drift", sc * faults.drift_rate),
        ("stuck", sc * faults.stuck_rate),
        ("dropout", sc * faults.dropout_rate),
    ]
    acc = 0.0
    kind = None
    for name, rate in edges:
        acc += rate
        if u < acc:
            kind = name
            break
    if kind is None:
        return None
    if kind == "spike":
        n = 2 if len(sensors) > 1 and rng.random() < 0.2 else 1
        length = rng.randint(*faults.spike_len) if rng.random() < 0.3 else 1
        size = rng.uniform(*faults.spike_size) * rng.choice((-1.0, 1.0))
        return _Fault(kind, length, tuple(rng.sample(list(sensors), n)), size, length)
    if kind == "drift":
        length = rng.randint(*faults.drift_len)
        size = rng.uniform(*faults.drift_size) * rng.choice((-1.0, 1.0))
        return _Fault(kind, length, (rng.choice(list(sensors)),), size, length)
    if kind == "stuck":
        length = rng.randint(*faults.stuck_len)
        chosen = tuple(sensors) if rng.random() < 0.3 else (rng.choice(list(sensors)),)
        return _Fault(kind, length, chosen, 0.0, length)
    length = rng.randint(*faults.dropout_len)
    chosen = tuple(sensors) if rng.random() < 0.4 else (rng.choice(list(sensors)),)
    return _Fault(kind, length, chosen, 0.0, length)


def _reading(dev: _Device, t: float, sensors: Sequence[str], faults: FaultConfig) -> dict:
    rng = dev.rng
    row: dict = {"device_id": dev.device_id, "timestamp": format_time(t)}
    if dev.fault is None:
        dev.fault = _start_fault(dev, sensors, faults)
    f = dev.fault
    is_anomaly = 0
    day = 2 * math.pi * (t / 86400.0)
    for s in sensors:
        p = _profile(s)
        dev.ar[s] = 0.98 * dev.ar[s] + rng.gauss(0.0, dev.wander[s])
        true = dev.level[s] + dev.daily[s] * math.sin(day + dev.phase[s]) + dev.ar[s]
        value = true + rng.gauss(0.0, dev.noise[s])
        if f is not None and s in f.sensors:
            if f.kind == "spike":
                value += f.size * dev.noise[s]
                is_anomaly = 1
            elif f.kind == "drift":
                done = f.total - f.left + 1
                offset = f.size * done / f.total
                value += offset * dev.noise[s]
                if abs(offset) >= faults.drift_label_at:
                    is_anomaly = 1
            elif f.kind == "stuck":
                if s in dev.last:
                    row[s] = dev.last[s]
                    is_anomaly = 1
                    continue
            elif f.kind == "dropout":
                row[s] = None
                continue
        lo, hi = p.bounds
        value = min(max(value, lo), hi)
        value = round(value, p.decimals)
        row[s] = value
        dev.last[s] = value
    row["is_anomaly"] = is_anomaly
    row["fault"] = f.kind if f is not None else ""
    if f is not None:
        f.left -= 1
        if f.left <= 0:
            dev.fault = None
    return row


def generate_readings(
    devices: int = 50,
    readings: int = 20000,
    seed: int = 7,
    *,
    sensors: Sequence[str] = DEFAULT_SENSORS,
    start: str = "2024-01-01T00:00:00Z",
    faults: FaultConfig = FaultConfig(),
) -> Iterator[dict]:
    """Yield ``readings`` reading dicts from ``devices`` devices in event-time order.

    Deterministic for a given ``(devices, seed, sensors, start, faults)``: the
    first ``n`` readings do not depend on ``readings``. Each device has its own
    random stream, so devices are independent of one another. Sensors with no
    built-in profile get a generic one (level 0-100, noise 0.5-2).
    """
    if devices < 1:
        raise ValueError(f"generate_readings: devices must be >= 1, got {devices!r}")
    if readings < 0:
        raise ValueError(f"generate_readings: readings must be >= 0, got {readings!r}")
    sensors = tuple(sensors)
    if not sensors or len(set(sensors)) != len(sensors):
        raise ValueError(f"generate_readings: sensors must be distinct names, got {sensors!r}")
    clash = {"device_id", "timestamp", "is_anomaly", "fault"} & set(sensors)
    if clash:
        raise ValueError(f"generate_readings: sensor names clash with reading fields: {sorted(clash)!r}")
    t0 = parse_time(start)
    devs = [_make_device(i, seed, sensors) for i in range(devices)]
    heap = [(t0 + float(round(d.rng.uniform(0.0, d.interval))), i) for i, d in enumerate(devs)]
    heapq.heapify(heap)
    for _ in range(readings):
        t, i = heapq.heappop(heap)
        dev = devs[i]
        yield _reading(dev, t, sensors, faults)
        step = max(1.0, round(dev.interval * dev.rng.uniform(0.9, 1.1)))
        heapq.heappush(heap, (t + step, i))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write a generated stream and print a one-line summary."""
    ap = argparse.ArgumentParser(
        prog="python -m datagen.sensors",
        description="Generate synthetic sensor readings with labelled faults.",
    )
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--readings", type=int, default=20000, help="total readings over all devices")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sensors", default=",".join(DEFAULT_SENSORS), help="comma-separated sensor names")
    ap.add_argument("--start", default="2024-01-01T00:00:00Z", help="ISO-8601 UTC start time")
    ap.add_argument("--fault-scale", type=float, default=1.0, help="multiplies every fault rate")
    ap.add_argument("--out", default="data/readings.jsonl", help=".jsonl, .csv or .parquet")
    ap.add_argument("--format", choices=FORMATS, default=None, help="default: from the --out suffix")
    args = ap.parse_args(argv)
    sensors = tuple(s.strip() for s in args.sensors.split(",") if s.strip())
    try:
        rows = generate_readings(
            args.devices,
            args.readings,
            args.seed,
            sensors=sensors,
            start=args.start,
            faults=FaultConfig(scale=args.fault_scale),
        )
        counts = {k: 0 for k in ("", *FAULTS)}
        anomalies = 0

        def counted(it: Iterable[dict]) -> Iterator[dict]:
            nonlocal anomalies
            for row in it:
                counts[row["fault"]] += 1
                anomalies += row["is_anomaly"]
                yield row

        fmt = format_of(args.out, args.format)  # a bad name fails before generating
        n = write_rows(counted(rows), args.out, fmt)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    faults = ", ".join(f"{k}={counts[k]}" for k in FAULTS)
    print(f"wrote {n} readings from {args.devices} devices to {args.out}: "
          f"{anomalies} anomalous ({anomalies / max(n, 1):.2%}); fault readings {faults}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


SITES = ("plant-north", "plant-south", "warehouse-east", "lab-west")
MODELS = ("TH-100", "TH-200", "ENV-9")


def device_profiles(devices: int = 200, start: str = "2024-01-01T00:00:00Z") -> "pd.DataFrame":
    """Feast source rows for the ``device_profile`` view: site, hardware model and
    firmware of ``dev-0000`` .. ``dev-<devices-1>``, valid from ``start``.

    >>> device_profiles(2)[["device_id", "site", "model"]].to_dict("records")[0]
    {'device_id': 'dev-0000', 'site': 'plant-north', 'model': 'TH-100'}
    """
    import pandas as pd

    ts = pd.Timestamp(start)
    ids = [f"dev-{i:04d}" for i in range(devices)]
    return pd.DataFrame(
        {
            "device_id": ids,
            "site": [SITES[i % len(SITES)] for i in range(devices)],
            "model": [MODELS[(i // 3) % len(MODELS)] for i in range(devices)],
            "firmware_version": [f"1.{i % 5}.0" for i in range(devices)],
            "event_timestamp": ts,
            "created": ts,
        }
    )
