"""IoT reading scoring (issue 4): per-device detectors, shard detector, combination.

Pure logic, no stream engine. The dataflow runs it in two keyed steps:

1. key = device id: one :class:`DeviceScorer` per device (plain-data snapshot)
   turns a reading into a *device result* (features, per-sensor scores, the
   scaled vector for the shard detector) plus zero or more *drift records*;
2. key = ``str(device_result["shard"])`` (``shard_of(device_id, n_shards)``):
   one :class:`~models.anomaly.ShardDetector` per shard scores the device
   result's ``shard_input``; :func:`finalize` (pure) then builds the output
   record. :func:`score_shard` does both.

:class:`IoTScorer` drives exactly these functions in a plain loop (benchmark,
tests, backfills).

Signatures::

    ScoringConfig(features=SensorConfig(), alpha=0.02, warmup=20, scale=4.0, clip=3.0, z_clip=8.0,
                  slow_alpha=0.002, slow_weight=0.7,
                  stuck_beta=0.01, stuck_weight=1.0, shard_weight=0.5, combine="max",
                  reason_floor=0.2, n_shards=4, shard_window=250, seed=42, shard_calib_warmup=50,
                  drift_on="slow", drift_threshold=20.0, drift_delta=0.02, drift_min_instances=30)
    StuckDetector(*, beta=0.01, warmup=20, scale=4.0).score_learn(value) -> (score, warming_up)
    DriftMonitor(*, threshold=20.0, delta=0.02, min_instances=30).update(score) -> bool
    DeviceScorer(device_id, config).update(t, values) -> (device_result: dict, drift_records: list[dict])
        .snapshot() -> dict (plain data) ;  DeviceScorer.restore(snap) -> DeviceScorer
    make_shard_detector(config, shard: int) -> ShardDetector
    finalize(device_result, shard_score, shard_warming, config) -> dict      # pure
    score_shard(detector, device_result, config) -> dict                     # step 2
    IoTScorer(config).process(reading: Mapping) -> list[dict]                # [reading, *drifts]

Scores (all in ``[0, 1]``, higher = more anomalous; see ``scores`` in the record):

* ``<sensor>``: :class:`~models.anomaly.KeyDetector` on the sensor value,
  deviation from the device's own *recent* level and spread (``alpha``,
  memory ~50 readings): spikes, sudden changes;
* ``<sensor>_slow``: the same on a long memory (``slow_alpha``, ~500
  readings): deviation from the device's *long-run* behaviour, which the fast
  detector forgets during a slow drift;
* ``<sensor>_stuck``: :class:`StuckDetector`, how improbable the current run of
  exactly repeated values is for this device and sensor;
* ``shard``: the shard's HalfSpaceTrees on the vector of the device's per-sensor
  z-scores (``shard_input``: signed, clipped to ``[-z_clip, z_clip]``), so one
  model serves devices with different levels and units; calibrated against its
  own recent scores.

Combination (:func:`finalize`): ``anomaly_score = max_i(w_i * s_i)`` over the
detectors that are not warming up (``combine="max"``, see
:func:`~models.anomaly.combine_scores`), with weights 1 for the value
detectors, ``slow_weight`` (0.7) for the long-memory ones, ``stuck_weight`` (1)
for the stuck detectors and ``shard_weight`` (0.5) for the shard detector: the
reading is as anomalous as its most convincing detector says, and the weights
cap the detectors that are noisier on normal data. (``combine="noisy_or"``,
``1 - prod(1 - w_i * s_i)``, ranked worse in the benchmark once the
long-memory detectors were added, and scores normal readings ~2x higher.)
If every detector is still warming up, all are used (best effort). ``warming_up`` is True when
any detector of the reading was warming up. Sensors missing from a reading are
left out: it is scored on the sensors present and lists the others in
``missing``; their detectors are not updated. A reading with no sensor at all
scores 0.0 with ``warming_up`` True (nothing to judge).

``reasons``: sensors behind the detectors whose weighted score is at least
``reason_floor`` and at least half the strongest; for the shard detector, the
sensors whose ``|z|`` is at least 2 and at least half the largest ``|z|``.
Ordered by strength, each sensor once.

>>> scorer = IoTScorer(ScoringConfig(warmup=5, shard_window=20, shard_calib_warmup=10))
>>> rows = [{"device_id": "d1", "timestamp": f"2024-01-01T00:{m:02d}:00Z",
...          "temperature": 20 + 0.1 * (m % 3), "humidity": 50.0 + 0.2 * (m % 2), "pressure": 1000.0 + 0.1 * (m % 4)}
...         for m in range(40)]
>>> out = [r for row in rows for r in scorer.process(row)]
>>> last = out[-1]
>>> last["kind"], last["warming_up"], last["anomaly_score"] < 0.5
('reading', False, True)
>>> spike = scorer.process({"device_id": "d1", "timestamp": "2024-01-01T00:40:00Z",
...                         "temperature": 25.0, "humidity": 50.0, "pressure": None})[0]
>>> spike["anomaly_score"] > 0.9, spike["reasons"], spike["missing"]
(True, ['temperature'], ['pressure'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

from river.drift import PageHinkley

from features.sensors import DeviceFeatures, SensorConfig, format_time, parse_reading, shard_of
from models.detectors import DriftMonitor, KeyDetector, ShardDetector, StuckDetector
from models.status import combine_scores

__all__ = [
    "ScoringConfig",
    "StuckDetector",
    "DriftMonitor",
    "DeviceScorer",
    "make_shard_detector",
    "finalize",
    "score_shard",
    "IoTScorer",
]

_NORMAL = NormalDist()


@dataclass(frozen=True)
class ScoringConfig:
    """Everything the IoT scoring needs; see the module docstring for the meaning.

    Args:
        features: field names, sensors and windows (``features.sensors.SensorConfig``).
        alpha, warmup, scale, clip: :class:`~models.anomaly.KeyDetector` settings
            of the per-sensor value detectors.
        slow_alpha, slow_weight: forgetting factor and combination weight of the
            long-memory value detectors (``slow_weight=0`` switches them off).
        z_clip: per-sensor z-scores are clipped to ``[-z_clip, z_clip]`` for the
            shard detector (its fixed input limits).
        stuck_beta: forgetting factor of the stuck detectors' repeat rate.
        stuck_weight, shard_weight: weights in the noisy-OR combination.
        combine: ``combine_scores`` method ("noisy_or", "max" or "mean").
        reason_floor: smallest weighted score that can be named as a reason.
        n_shards: number of shards (one ShardDetector each).
        shard_window, seed: HalfSpaceTrees window size; shard ``k`` uses ``seed + k``.
        shard_calib_warmup: readings after the first window while the shard
            detector's calibration warms up.
        drift_on: which score stream of each sensor the drift monitor watches:
            "slow" (default, the long-memory detector: catches slow drifts) or
            "fast" (the recent-behaviour detector, which adapts to slow drifts).
        drift_threshold, drift_delta, drift_min_instances: PageHinkley settings
            of the per-sensor drift monitors. A higher threshold means fewer,
            later drift records.
    """

    features: SensorConfig = field(default_factory=SensorConfig)
    alpha: float = 0.02
    warmup: int = 20
    scale: float = 4.0
    clip: float = 3.0
    z_clip: float = 8.0
    slow_alpha: float = 0.002
    slow_weight: float = 0.7
    stuck_beta: float = 0.01
    stuck_weight: float = 1.0
    shard_weight: float = 0.5
    combine: str = "max"
    reason_floor: float = 0.2
    n_shards: int = 4
    shard_window: int = 250
    seed: int = 42
    shard_calib_warmup: int = 50
    drift_on: str = "slow"
    drift_threshold: float = 20.0
    drift_delta: float = 0.02
    drift_min_instances: int = 30

    def __post_init__(self) -> None:
        if not isinstance(self.features, SensorConfig):
            raise ValueError(f"ScoringConfig: features must be a SensorConfig, got {type(self.features).__name__}")
        for name in ("slow_weight", "stuck_weight", "shard_weight", "reason_floor"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"ScoringConfig: {name} must be in [0, 1], got {v!r}")
        if self.combine not in ("noisy_or", "max", "mean"):
            raise ValueError(f"ScoringConfig: combine must be 'noisy_or', 'max' or 'mean', got {self.combine!r}")
        if self.drift_on not in ("slow", "fast"):
            raise ValueError(f"ScoringConfig: drift_on must be 'slow' or 'fast', got {self.drift_on!r}")
        if self.n_shards < 1:
            raise ValueError(f"ScoringConfig: n_shards must be >= 1, got {self.n_shards!r}")
        if not self.z_clip > 0:
            raise ValueError(f"ScoringConfig: z_clip must be > 0, got {self.z_clip!r}")
        if not 0.0 < self.stuck_beta < 1.0:
            raise ValueError(f"ScoringConfig: stuck_beta must be in (0, 1), got {self.stuck_beta!r}")
        names = ["shard"]
        for s in self.sensors:
            names += [s, f"{s}_slow", f"{s}_stuck"]
        if len(set(names)) != len(names):
            raise ValueError(
                f"ScoringConfig: sensor names {self.sensors!r} clash with detector names "
                f"('shard', '<sensor>_slow', '<sensor>_stuck')"
            )
        # KeyDetector validates alpha / warmup / scale / clip
        KeyDetector(alpha=self.alpha, warmup=self.warmup, scale=self.scale, clip=self.clip)
        KeyDetector(alpha=self.slow_alpha, warmup=self.warmup)

    @property
    def sensors(self) -> tuple[str, ...]:
        return self.features.sensors

    def weights(self) -> dict[str, float]:
        """Weight of every detector name in the combination."""
        w = {"shard": self.shard_weight}
        for s in self.sensors:
            w[s] = 1.0
            if self.slow_weight > 0:
                w[f"{s}_slow"] = self.slow_weight
            w[f"{s}_stuck"] = self.stuck_weight
        return w

    def detector_sensor(self, name: str) -> str:
        """Sensor behind a per-sensor detector name (``"humidity_slow"`` -> ``"humidity"``)."""
        for s in self.sensors:
            if name == s or name == f"{s}_slow" or name == f"{s}_stuck":
                return s
        raise KeyError(f"ScoringConfig: {name!r} is not a per-sensor detector of {self.sensors!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = self.features.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "ScoringConfig":
        d = dict(d)
        d["features"] = SensorConfig.from_dict(d.get("features", {}))
        return cls(**d)


class DeviceScorer:
    """Everything kept per device: rolling features, per-sensor value and stuck
    detectors, per-sensor drift monitors. One object, plain-data snapshot.

    :meth:`update` returns ``(device_result, drift_records)``. The device result
    is a plain dict (small enough to cross a keyed exchange):

    ``device_id``, ``timestamp`` (ISO-8601 UTC "Z"), ``t`` (epoch s), ``shard``,
    ``values`` ({sensor: value or None}), ``features`` (see ``features.sensors``),
    ``missing`` (sensors absent from the reading), ``scores`` ({detector: score}),
    ``warming`` (detectors still warming up), ``shard_input`` ({sensor: clipped z}).

    A drift record is ``{"kind": "drift", "id", "device_id", "timestamp",
    "sensor", "detector": <detector name, e.g. "temperature_slow">,
    "method": "PageHinkley", "score": <that detector's score>}``, emitted when
    the watched score stream of that sensor shifts up (see ``drift_on``;
    monitors are fed only once the watched detector is warm). After a
    detection the monitor restarts, so a lasting shift can fire again after
    ``drift_min_instances`` readings.
    """

    __slots__ = ("device_id", "config", "shard", "features", "level", "slow", "stuck", "drift")

    _VERSION = "DeviceScorer/1"

    def __init__(self, device_id: str, config: ScoringConfig = ScoringConfig()) -> None:
        self.device_id = str(device_id)
        self.config = config
        self.shard = shard_of(self.device_id, config.n_shards)
        self.features = DeviceFeatures(config.features)
        c = config
        self.level = {s: KeyDetector(alpha=c.alpha, warmup=c.warmup, scale=c.scale, clip=c.clip) for s in c.sensors}
        self.slow = (
            {s: KeyDetector(alpha=c.slow_alpha, warmup=c.warmup, scale=c.scale, clip=c.clip) for s in c.sensors}
            if c.slow_weight > 0
            else {}
        )
        self.stuck = {s: StuckDetector(beta=c.stuck_beta, warmup=c.warmup, scale=c.scale) for s in c.sensors}
        self.drift = {
            s: DriftMonitor(threshold=c.drift_threshold, delta=c.drift_delta, min_instances=c.drift_min_instances)
            for s in c.sensors
        }

    def update(self, t: float, values: Mapping[str, float | None]) -> tuple[dict, list[dict]]:
        """Score and learn the reading of this device at event time ``t``."""
        c = self.config
        feats = self.features.update(t, values)
        ts = format_time(t)
        scores: dict[str, float] = {}
        warming: list[str] = []
        shard_input: dict[str, float] = {}
        missing: list[str] = []
        clean: dict[str, float | None] = {}
        drifts: list[dict] = []
        zc = c.z_clip
        for s in c.sensors:
            v = values.get(s)
            if v is None or v != v:
                missing.append(s)
                clean[s] = None
                continue
            v = float(v)
            clean[s] = v
            kd = self.level[s]
            z = kd.z(v)
            shard_input[s] = zc if z > zc else -zc if z < -zc else z
            sc, w = kd.score_learn(v)
            scores[s] = sc
            if w:
                warming.append(s)
            slow = self.slow.get(s)
            if slow is not None:
                ss, sw = slow.score_learn(v)
                scores[f"{s}_slow"] = ss
                if sw:
                    warming.append(f"{s}_slow")
            st, sw = self.stuck[s].score_learn(v)
            scores[f"{s}_stuck"] = st
            if sw:
                warming.append(f"{s}_stuck")
            watched = f"{s}_slow" if c.drift_on == "slow" and slow is not None else s
            if watched not in warming and self.drift[s].update(scores[watched]):
                drifts.append(
                    {
                        "kind": "drift",
                        "id": f"{self.device_id}@{ts}#drift:{watched}",
                        "device_id": self.device_id,
                        "timestamp": ts,
                        "sensor": s,
                        "detector": watched,
                        "method": "PageHinkley",
                        "score": scores[watched],
                    }
                )
        result = {
            "device_id": self.device_id,
            "timestamp": ts,
            "t": t,
            "shard": self.shard,
            "values": clean,
            "features": feats,
            "missing": missing,
            "scores": scores,
            "warming": warming,
            "shard_input": shard_input,
        }
        return result, drifts

    def snapshot(self) -> dict:
        """Plain data (dicts, tuples, lists, numbers, strings)."""
        return {
            "version": self._VERSION,
            "device_id": self.device_id,
            "config": self.config.to_dict(),
            "features": self.features.snapshot(),
            "level": {s: d.snapshot() for s, d in self.level.items()},
            "slow": {s: d.snapshot() for s, d in self.slow.items()},
            "stuck": {s: d.snapshot() for s, d in self.stuck.items()},
            "drift": {s: d.snapshot() for s, d in self.drift.items()},
        }

    @classmethod
    def restore(cls, snap: Mapping) -> "DeviceScorer":
        if not isinstance(snap, Mapping) or snap.get("version") != cls._VERSION:
            raise ValueError(f"DeviceScorer.restore: expected a {cls._VERSION} snapshot dict, got {snap!r:.80}")
        ds = cls(snap["device_id"], ScoringConfig.from_dict(snap["config"]))
        ds.features = DeviceFeatures.restore(snap["features"])
        ds.level = {s: KeyDetector.restore(v) for s, v in snap["level"].items()}
        ds.slow = {s: KeyDetector.restore(v) for s, v in snap["slow"].items()}
        ds.stuck = {s: StuckDetector.restore(v) for s, v in snap["stuck"].items()}
        ds.drift = {s: DriftMonitor.restore(v) for s, v in snap["drift"].items()}
        return ds


def make_shard_detector(config: ScoringConfig, shard: int) -> ShardDetector:
    """The shard's multivariate detector over the per-sensor z-scores."""
    zc = config.z_clip
    return ShardDetector(
        config.sensors,
        seed=config.seed + int(shard),
        window_size=config.shard_window,
        limits={s: (-zc, zc) for s in config.sensors},
        scale=config.scale,
        calib_warmup=config.shard_calib_warmup,
    )


def _reasons(scores: Mapping[str, float], used: list[str], shard_input: Mapping[str, float],
             config: ScoringConfig) -> list[str]:
    weights = config.weights()
    weighted = sorted(((weights.get(n, 1.0) * scores[n], n) for n in used), reverse=True)
    if not weighted:
        return []
    top = weighted[0][0]
    out: list[str] = []
    for ws, name in weighted:
        if ws < config.reason_floor or ws < 0.5 * top:
            break
        if name == "shard":
            zs = sorted(((abs(z), s) for s, z in shard_input.items()), reverse=True)
            if zs:
                zmax = zs[0][0]
                names = [s for az, s in zs if az >= 2.0 and az >= 0.5 * zmax] or [zs[0][1]]
            else:
                names = []
        else:
            names = [config.detector_sensor(name)]
        for s in names:
            if s not in out:
                out.append(s)
    return out


def finalize(device_result: Mapping, shard_score: float, shard_warming: bool, config: ScoringConfig) -> dict:
    """Build the output reading record from a device result and its shard score (pure).

    See the module docstring for the combination rule, ``warming_up`` and ``reasons``.
    """
    scores = dict(device_result["scores"])
    warming = set(device_result["warming"])
    if device_result["shard_input"]:
        scores["shard"] = float(shard_score)
        if shard_warming:
            warming.add("shard")
    used = [n for n in scores if n not in warming]
    if not used:  # everything is warming up: best effort with all of them
        used = list(scores)
    score = combine_scores({n: scores[n] for n in used}, config.weights(), method=config.combine)
    warming_up = bool(warming) or not scores
    reasons = _reasons(scores, used, device_result["shard_input"], config)
    return {
        "kind": "reading",
        "id": f"{device_result['device_id']}@{device_result['timestamp']}",
        "device_id": device_result["device_id"],
        "timestamp": device_result["timestamp"],
        "shard": device_result["shard"],
        "anomaly_score": score,
        "warming_up": warming_up,
        "reasons": reasons,
        "scores": scores,
        "missing": list(device_result["missing"]),
        "values": dict(device_result["values"]),
        "features": dict(device_result["features"]),
    }


def score_shard(detector: ShardDetector, device_result: Mapping, config: ScoringConfig) -> dict:
    """Step 2 for one device result: shard score, then :func:`finalize`.

    A reading with no sensor present does not touch the shard detector."""
    if device_result["shard_input"]:
        s, w = detector.score_learn(device_result["shard_input"])
    else:
        s, w = 0.0, detector.warming_up
    return finalize(device_result, s, w, config)


class IoTScorer:
    """The two steps in a plain loop: per-device scorers and per-shard detectors.

    Readings are processed in arrival order; each reading yields its reading
    record followed by any drift records. Parse errors raise ``ValueError``
    naming the field and device (the dataflow routes those to its dead letters).
    """

    def __init__(self, config: ScoringConfig = ScoringConfig()) -> None:
        self.config = config
        self.devices: dict[str, DeviceScorer] = {}
        self.shards: dict[int, ShardDetector] = {}

    def process(self, reading: Mapping) -> list[dict]:
        device_id, t, values = parse_reading(reading, self.config.features)
        dev = self.devices.get(device_id)
        if dev is None:
            dev = self.devices[device_id] = DeviceScorer(device_id, self.config)
        result, drifts = dev.update(t, values)
        det = self.shards.get(result["shard"])
        if det is None:
            det = self.shards[result["shard"]] = make_shard_detector(self.config, result["shard"])
        return [score_shard(det, result, self.config), *drifts]
