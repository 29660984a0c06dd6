"""The IoT flow's two keyed steps and its output records, free of any stream engine.

:class:`DeviceStep` (key = device) wraps :class:`~models.sensor_scoring.DeviceScorer`;
:class:`ShardStep` (key = shard) wraps the shard's
:class:`~models.anomaly.ShardDetector` and turns a device result into the
output record: every input field unchanged, then ``kind``, ``anomaly_score``,
``status``, ``scores`` (per detector), ``warming_up``, ``missing``, ``features``,
``model_version``, ``scored_at``, ``latency_ms``; non-NORMAL records add
``reasons`` (the sensors that drove the score).

>>> from models.sensor_scoring import ScoringConfig
>>> cfg = ScoringConfig(warmup=3, shard_window=5, shard_calib_warmup=2)
>>> dev, shard = DeviceStep(cfg), ShardStep(cfg)
>>> ev = {"device_id": "d1", "_device": "d1", "_t": 0.0, "_arrival": 0.0,
...       "_values": {"temperature": 20.0, "humidity": 50.0, "pressure": 1000.0}}
>>> ev, result, drifts = dev.update(ev)
>>> rec = shard.update((ev, result))
>>> rec["kind"], rec["warming_up"], rec["anomaly_score"] is None
('reading', True, True)
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Mapping

from features.validation import iso_utc
from models.anomaly import ShardDetector
from models.sensor_scoring import DeviceScorer, ScoringConfig, make_shard_detector, score_shard
from models.status import NORMAL, Thresholds

__all__ = ["DeviceStep", "ShardStep", "detector_version", "to_record", "drift_record"]

_INTERNAL = ("_device", "_t", "_values", "_arrival", "_time_from_arrival", "_seq")


def detector_version(config: ScoringConfig) -> str:
    """``iot-detectors/<12 hex>``: a digest of the detector configuration, so a
    record says exactly which settings scored it."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"iot-detectors/{digest[:12]}"


class DeviceStep:
    """Per-device state: created on the device's first reading."""

    __slots__ = ("config", "scorer", "seq")

    def __init__(self, config: ScoringConfig, scorer: DeviceScorer | None = None, seq: int = 0) -> None:
        self.config = config
        self.scorer = scorer
        self.seq = seq  # readings seen: orders readings timed by their arrival

    def update(self, event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """``(event, device result, drift records)`` for one validated reading."""
        if self.scorer is None:
            self.scorer = DeviceScorer(event["_device"], self.config)
        self.seq += 1
        event["_seq"] = self.seq
        result, drifts = self.scorer.update(event["_t"], event["_values"])
        return event, result, drifts

    def snapshot(self) -> tuple | None:
        return None if self.scorer is None else (self.seq, self.scorer.snapshot())

    @classmethod
    def restore(cls, snap: tuple | None, config: ScoringConfig) -> "DeviceStep":
        if snap is None:
            return cls(config)
        return cls(config, DeviceScorer.restore(snap[1]), snap[0])


class ShardStep:
    """Per-shard state: one multivariate detector shared by the shard's devices."""

    __slots__ = ("config", "detector", "thresholds", "version")

    def __init__(self, config: ScoringConfig, detector: ShardDetector | None = None,
                 thresholds: Thresholds = Thresholds()) -> None:
        self.config = config
        self.detector = detector
        self.thresholds = thresholds
        self.version = detector_version(config)

    def update(self, item: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        event, result = item
        if self.detector is None:
            self.detector = make_shard_detector(self.config, result["shard"])
        scored = score_shard(self.detector, result, self.config)
        device_warm = set(result["scores"]) - set(result["warming"])
        shard_warm = bool(result["shard_input"]) and not self.detector.warming_up
        return to_record(event, scored, self.thresholds, self.version, not device_warm and not shard_warm)

    def snapshot(self) -> bytes | None:
        return None if self.detector is None else self.detector.snapshot()

    @classmethod
    def restore(cls, snap: bytes | None, config: ScoringConfig, thresholds: Thresholds = Thresholds()) -> "ShardStep":
        return cls(config, None if snap is None else ShardDetector.restore(snap), thresholds)


def to_record(
    event: dict[str, Any], scored: Mapping[str, Any], thresholds: Thresholds, version: str, all_warming: bool
) -> dict[str, Any]:
    """The output record: the input fields unchanged, then the scoring fields.

    While every detector of the reading is warming up, ``anomaly_score`` is
    ``null`` and the status NORMAL: the record says so rather than reporting a
    confident score.
    """
    scored_at = time.time()
    arrival = event["_arrival"]
    rec = {k: v for k, v in event.items() if k not in _INTERNAL}
    score = None if all_warming else round(float(scored["anomaly_score"]), 6)
    status = NORMAL if score is None else thresholds.status(score)
    rec.update(
        kind="reading",
        id=scored["id"],
        anomaly_score=score,
        status=status,
        scores={k: round(float(v), 6) for k, v in scored["scores"].items()},
        warming_up=bool(scored["warming_up"]),
        missing=list(scored["missing"]),
        features=scored["features"],
        model_version=version,
        scored_at=iso_utc(scored_at),
        latency_ms=round((scored_at - arrival) * 1000.0, 3),
    )
    if event.get("_time_from_arrival"):
        rec["time_from_arrival"] = True
        rec["id"] = f"{rec['id']}#{event['_seq']}"  # several readings may arrive in one millisecond
    if status != NORMAL:
        rec["reasons"] = list(scored["reasons"])
    return rec


def drift_record(drift: Mapping[str, Any], version: str) -> dict[str, Any]:
    """A drift record for the alert output (``kind: "drift"``)."""
    return {**drift, "model_version": version, "scored_at": iso_utc(time.time())}
