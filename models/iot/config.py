"""Settings of the IoT scoring steps (:class:`IoTScoringConfig`), the detectors' version and the
inference log's spec."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import msgspec

from features.defaults import DEDUP_HORIZON_S, DEDUP_MAX_IDS
from features.sensors import SensorConfig, feature_names
from models.detectors import KeyDetector, ShardDetector, StuckDetector
from models.inference_log import LogSpec

__all__ = ["IoTScoringConfig", "detector_version", "log_spec"]



@dataclass(frozen=True)
class IoTScoringConfig:
    """Everything the IoT scoring needs; see the module docstring for the meaning.

    Args:
        features: field names, sensors and windows (:class:`~features.sensors.SensorConfig`).
        alpha, warmup, scale, clip: :class:`~models.detectors.KeyDetector` settings
            of the per-sensor value detectors.
        slow_alpha, slow_weight: forgetting factor and combination weight of the
            long-memory value detectors (``slow_weight=0`` switches them off).
        z_clip: per-sensor z-scores are clipped to ``[-z_clip, z_clip]`` for the
            shard detector (its fixed input limits).
        stuck_beta: forgetting factor of the stuck detectors' repeat rate.
        stuck_weight, shard_weight: combination weights.
        combine: ``combine_scores`` method ("noisy_or", "max" or "mean").
        reason_floor: smallest weighted score that can be named as a reason.
        n_shards: number of shards (one ShardDetector each).
        shard_window, seed: HalfSpaceTrees window size; shard ``k`` uses ``seed + k``.
        shard_calib_warmup: readings after the first window while the shard
            detector's calibration warms up.
        drift_on: the score stream of each sensor the drift monitor watches:
            "slow" (the long-memory detector: catches slow drifts) or "fast".
        drift_threshold, drift_delta, drift_min_instances: PageHinkley settings.
        dedup_horizon_s, dedup_max_ids: a reading with the same device, time and
            sensor values as one the device had within this much event time (among
            its last ``dedup_max_ids``) is a duplicate: a dead letter, not scored twice.
            ``0`` turns it off.
        idle_expiry_s: a device idle this long in event time starts afresh (``0``: never).

    >>> IoTScoringConfig(features=SensorConfig(sensors=("a", "a_slow")))
    Traceback (most recent call last):
    ...
    ValueError: IoTScoringConfig: sensor names ('a', 'a_slow') clash with detector names ('shard', '<sensor>_slow', '<sensor>_stuck')
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
    dedup_horizon_s: float = DEDUP_HORIZON_S
    dedup_max_ids: int = DEDUP_MAX_IDS
    idle_expiry_s: float = 7 * 86400.0

    def __post_init__(self) -> None:
        if not isinstance(self.features, SensorConfig):
            raise ValueError(f"IoTScoringConfig: features must be a SensorConfig, got {type(self.features).__name__}")
        for name in ("slow_weight", "stuck_weight", "shard_weight", "reason_floor"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"IoTScoringConfig: {name} must be in [0, 1], got {v!r}")
        if self.combine not in ("noisy_or", "max", "mean"):
            raise ValueError(f"IoTScoringConfig: combine must be 'noisy_or', 'max' or 'mean', got {self.combine!r}")
        if self.drift_on not in ("slow", "fast"):
            raise ValueError(f"IoTScoringConfig: drift_on must be 'slow' or 'fast', got {self.drift_on!r}")
        if self.n_shards < 1:
            raise ValueError(f"IoTScoringConfig: n_shards must be >= 1, got {self.n_shards!r}")
        if not (self.dedup_horizon_s >= 0 and self.dedup_max_ids >= 0 and self.idle_expiry_s >= 0):
            raise ValueError(
                "IoTScoringConfig: dedup_horizon_s, dedup_max_ids and idle_expiry_s must be >= 0, got "
                f"{self.dedup_horizon_s!r}, {self.dedup_max_ids!r}, {self.idle_expiry_s!r}"
            )
        if not self.z_clip > 0:
            raise ValueError(f"IoTScoringConfig: z_clip must be > 0, got {self.z_clip!r}")
        names = ["shard"]
        for s in self.sensors:
            names += [s, f"{s}_slow", f"{s}_stuck"]
        if len(set(names)) != len(names):
            raise ValueError(
                f"IoTScoringConfig: sensor names {self.sensors!r} clash with detector names "
                f"('shard', '<sensor>_slow', '<sensor>_stuck')"
            )
        # the detectors validate their own settings
        KeyDetector(alpha=self.alpha, warmup=self.warmup, scale=self.scale, clip=self.clip)
        KeyDetector(alpha=self.slow_alpha, warmup=self.warmup)
        StuckDetector(beta=self.stuck_beta, warmup=self.warmup, scale=self.scale)
        ShardDetector(self.sensors, window_size=self.shard_window, calib_warmup=self.shard_calib_warmup)

    @property
    def sensors(self) -> tuple[str, ...]:
        return self.features.sensors

    @functools.cached_property
    def weights(self) -> dict[str, float]:
        """Weight of every detector name in the combination (do not mutate)."""
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
            if name in (s, f"{s}_slow", f"{s}_stuck"):
                return s
        raise KeyError(f"IoTScoringConfig: {name!r} is not a per-sensor detector of {self.sensors!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = self.features.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "IoTScoringConfig":
        d = dict(d)
        d["features"] = SensorConfig.from_dict(d.get("features", {}))
        return cls(**d)


@functools.lru_cache(maxsize=64)
def detector_version(config: IoTScoringConfig) -> str:
    """``iot-detectors/<12 hex>``: a digest of the configuration, so a record
    says exactly which settings scored it.

    >>> detector_version(IoTScoringConfig()) == detector_version(IoTScoringConfig())
    True
    >>> detector_version(IoTScoringConfig()) != detector_version(IoTScoringConfig(warmup=10))
    True
    """
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"iot-detectors/{digest[:12]}"


_values_json = msgspec.json.Encoder().encode


def log_spec(config: IoTScoringConfig) -> LogSpec:
    """What the inference log keeps of a scored reading: ids, the anomaly score, each
    sensor's value and its rolling features (:mod:`models.inference_log`)."""
    return LogSpec("iot", "id", config.features.key_field, ("anomaly_score",),
                   (*config.sensors, *feature_names(config.features)))
