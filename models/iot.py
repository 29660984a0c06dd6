"""IoT reading scoring: per-device state, per-shard state, the output records.

Pure logic, no stream engine. Two keyed steps, the same in the dataflow, the
benchmark and the tests:

1. key = device: one :class:`DeviceState` per device turns a
   :class:`~features.sensors.Reading` into a :class:`DeviceResult` (features,
   per-sensor scores, the z-score vector for the shard detector, drift records);
2. key = ``str(result.shard)``: one :class:`ShardState` per shard scores the
   result with the shard's :class:`~models.detectors.ShardDetector`, combines
   the scores and returns the output record (a JSON-ready ``dict``).

:class:`IoTScorer` calls exactly these two classes in a plain loop. State holds
state only: ``snapshot()`` is learned data, ``load(snap)`` puts it into a state
built from the *current* :class:`ScoringConfig`.

Scores (all in ``[0, 1]``, higher = more anomalous; ``scores`` in the record):

* ``<sensor>``: :class:`~models.detectors.KeyDetector` on the value, deviation
  from the device's *recent* level and spread (``alpha``, memory ~50 readings);
* ``<sensor>_slow``: the same with a long memory (``slow_alpha``, ~500
  readings): deviation from the *long-run* behaviour, which the fast detector
  forgets during a slow drift;
* ``<sensor>_stuck``: :class:`~models.detectors.StuckDetector`, how improbable
  the current run of exactly repeated values is;
* ``shard``: the shard's HalfSpaceTrees on the device's per-sensor z-scores
  (clipped to ``[-z_clip, z_clip]``), so one model serves devices with
  different levels and units.

``anomaly_score`` is :func:`models.status.anomaly_score` (the one warm-up rule)
with ``combine="max"`` by default: ``max_i(w_i * s_i)`` over the detectors that
are warm, weights 1 (value), ``slow_weight`` (long memory), ``stuck_weight``
and ``shard_weight``. While **every** detector of a reading is warming up it is
``None`` and the status NORMAL; ``warming_up`` is True when any detector of
the reading was warming up. Missing sensors are left out (listed in
``missing``; their detectors are not updated). ``reasons`` (non-NORMAL records
only): the sensors behind the detectors whose weighted score is at least
``reason_floor`` and half the strongest; for the shard detector, the sensors
with ``|z| >= 2`` and at least half the largest ``|z|``.

>>> scorer = IoTScorer(ScoringConfig(warmup=5, shard_window=20, shard_calib_warmup=10))
>>> first = scorer.process({"device_id": "d1", "timestamp": 0, "temperature": 20.0}, arrival=0.0)[0]
>>> first["anomaly_score"], first["status"], first["warming_up"], first["id"]
(None, 'NORMAL', True, 'd1@1970-01-01T00:00:00.000Z')
>>> for m in range(1, 40):
...     _ = scorer.process({"device_id": "d1", "timestamp": 60 * m, "temperature": 20 + 0.1 * (m % 3),
...                         "humidity": 50.0 + 0.2 * (m % 2), "pressure": 1000.0 + 0.1 * (m % 4)}, arrival=0.0)
>>> spike = scorer.process({"device_id": "d1", "timestamp": 2400, "temperature": 25.0, "humidity": 50.0},
...                        arrival=0.0)[0]
>>> spike["anomaly_score"] > 0.9, spike["status"], spike["reasons"], spike["missing"]
(True, 'CRITICAL', ['temperature'], ['pressure'])
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

from features.dedup import RecentIds
from features.records import DeadLetter, ValidationError, duplicate, format_time, shard_of
from features.sensors import DeviceFeatures, Reading, SensorConfig, feature_names, parse_reading
from models.detectors import DriftMonitor, KeyDetector, ShardDetector, StuckDetector, z_to_score
from models.inference_log import LogSpec
from models.status import NORMAL, Thresholds, anomaly_score

_INF = float("inf")

__all__ = ["ScoringConfig", "DeviceResult", "DeviceState", "ShardState", "IoTScorer", "detector_version", "log_spec"]


@dataclass(frozen=True)
class ScoringConfig:
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

    >>> ScoringConfig(features=SensorConfig(sensors=("a", "a_slow")))
    Traceback (most recent call last):
    ...
    ValueError: ScoringConfig: sensor names ('a', 'a_slow') clash with detector names ('shard', '<sensor>_slow', '<sensor>_stuck')
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
    dedup_horizon_s: float = 3600.0
    dedup_max_ids: int = 256
    idle_expiry_s: float = 7 * 86400.0

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
        if not (self.dedup_horizon_s >= 0 and self.dedup_max_ids >= 0 and self.idle_expiry_s >= 0):
            raise ValueError(
                "ScoringConfig: dedup_horizon_s, dedup_max_ids and idle_expiry_s must be >= 0, got "
                f"{self.dedup_horizon_s!r}, {self.dedup_max_ids!r}, {self.idle_expiry_s!r}"
            )
        if not self.z_clip > 0:
            raise ValueError(f"ScoringConfig: z_clip must be > 0, got {self.z_clip!r}")
        names = ["shard"]
        for s in self.sensors:
            names += [s, f"{s}_slow", f"{s}_stuck"]
        if len(set(names)) != len(names):
            raise ValueError(
                f"ScoringConfig: sensor names {self.sensors!r} clash with detector names "
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


@functools.lru_cache(maxsize=64)
def detector_version(config: ScoringConfig) -> str:
    """``iot-detectors/<12 hex>``: a digest of the configuration, so a record
    says exactly which settings scored it.

    >>> detector_version(ScoringConfig()) == detector_version(ScoringConfig())
    True
    >>> detector_version(ScoringConfig()) != detector_version(ScoringConfig(warmup=10))
    True
    """
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"iot-detectors/{digest[:12]}"


_values_json = msgspec.json.Encoder().encode


def log_spec(config: ScoringConfig) -> LogSpec:
    """What the inference log keeps of a scored reading: ids, the anomaly score, each
    sensor's value and its rolling features (:mod:`models.inference_log`)."""
    return LogSpec("iot", "id", config.features.key_field, ("anomaly_score",),
                   (*config.sensors, *feature_names(config.features)))


class DeviceResult(msgspec.Struct):
    """What the device step hands to the shard step (small, picklable).

    ``reading``: the reading scored; ``id``: the record id (``device@time``, plus
    ``#seq`` for a reading timed by its arrival); ``shard``: the shard the result
    goes to; ``features``; ``missing``: sensors absent from the reading;
    ``scores``: {detector: score}; ``warming``: detectors still warming up;
    ``shard_input``: {sensor: clipped z} for the shard detector; ``drifts``:
    drift records (``kind: "drift"``) this reading raised.
    """

    reading: Reading
    id: str
    shard: int
    features: dict[str, float | None]
    missing: list[str]
    scores: dict[str, float]
    warming: list[str]
    shard_input: dict[str, float]
    drifts: list[dict[str, Any]] = []


class DeviceState:
    """Everything kept per device: rolling features, per-sensor value, slow and
    stuck detectors, per-sensor drift monitors, and the count of readings seen.

    A drift record (``kind: "drift"``, ``id``, ``device_id``, ``timestamp``,
    ``sensor``, ``detector`` e.g. ``"temperature_slow"``, ``method:
    "PageHinkley"``, ``score``, ``model_version``, ``scored_at``) is raised when
    the watched score stream of a sensor shifts up (see ``drift_on``; monitors
    are fed once the watched detector is warm, and restart after a detection).

    >>> cfg = ScoringConfig(warmup=3)
    >>> dev = DeviceState(cfg)
    >>> for i in range(5):
    ...     res = dev.update(parse_reading({"device_id": "d", "timestamp": i, "temperature": 20.0 + i % 2},
    ...                                    cfg.features, arrival=0.0))
    >>> res.id, res.missing, res.warming
    ('d@1970-01-01T00:00:04.000Z', ['humidity', 'pressure'], [])
    >>> again = DeviceState(cfg); again.load(dev.snapshot())
    >>> nxt = parse_reading({"device_id": "d", "timestamp": 5, "temperature": 25.0}, cfg.features, arrival=0.0)
    >>> again.update(nxt).scores == dev.update(nxt).scores
    True
    """

    __slots__ = ("config", "seq", "features", "level", "slow", "stuck", "drift", "ids", "_version", "_steps")

    def __init__(self, config: ScoringConfig = ScoringConfig()) -> None:
        c = self.config = config
        self.seq = 0  # readings seen: orders readings timed by their arrival
        self.features = DeviceFeatures(c.features)
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
        self.ids = RecentIds(c.dedup_horizon_s, c.dedup_max_ids)
        self._version = detector_version(c)
        self._steps: list[tuple] | None = None  # see _plan

    @property
    def last_event_time(self) -> float | None:
        """The newest event time seen (``None`` before the first reading)."""
        t = self.features.watermark
        return None if t == -_INF else t

    def update(self, reading: Reading) -> DeviceResult | DeadLetter:
        """Score, then learn, one reading of this device: ``update_many([reading])[0]``."""
        return self.update_many((reading,))[0]

    def update_many(self, readings: Sequence[Reading]) -> list[DeviceResult | DeadLetter]:
        """Score, then learn, a batch of this device's readings in order: one
        result per reading, equal to :meth:`update` on each in turn (the flow's
        ``step_many``; the per-sensor work is planned once in :meth:`_plan`).

        Per present sensor value ``v``: the value detector's z (before learning)
        is both the shard input (clipped) and the value score; each detector
        scores ``v`` against its state, then learns it; the drift monitor is fed
        the watched score once the watched detector is warm.

        A reading whose id the device had within the dedup horizon becomes a
        :class:`~features.records.DeadLetter` (step ``dedup``) and changes nothing;
        a reading more than ``idle_expiry_s`` after the device's newest starts
        the device afresh.
        """
        c = self.config
        plan = self._plan()
        zc = c.z_clip
        n_shards = c.n_shards
        version = self._version
        features_update = self.features.update
        seq = self.seq
        out: list[DeviceResult | DeadLetter] = []
        append = out.append
        last_device: str | None = None
        shard = 0
        idle, check_id = c.idle_expiry_s, self.ids.check
        for reading in readings:
            t = reading.t
            device = reading.device
            if idle:
                last = self.features.watermark
                if t - last > idle and last != -_INF:  # idle too long: start afresh
                    self.__init__(c)  # type: ignore[misc]
                    plan, features_update, check_id, seq = self._plan(), self.features.update, self.ids.check, 0
            ts = format_time(t)
            if reading.timed_by_arrival:
                rid = f"{device}@{ts}#{seq + 1}"
            else:
                rid = f"{device}@{ts}"
                # the same device, time and values: a re-delivery (another message at the
                # same time with other values is a reading of its own)
                first = check_id(f"{rid}|{zlib.crc32(_values_json(reading.values)):08x}", t)
                if first is not None:
                    append(duplicate(reading.fields, "id", rid, "device", device, first, c.dedup_horizon_s))
                    continue
            self.seq = seq = seq + 1
            values = reading.values
            feats = features_update(t, values)
            if device != last_device:
                shard = shard_of(device, n_shards)
                last_device = device
            scores: dict[str, float] = {}
            warming: list[str] = []
            shard_input: dict[str, float] = {}
            missing: list[str] = []
            drifts: list[dict[str, Any]] = []
            for s, kd, sk, st, dm, n_slow, n_stuck, slow_watched, drift_suffix in plan:
                v = values.get(s)
                if v is None or v != v:
                    missing.append(s)
                    continue
                z = kd.z(v)
                shard_input[s] = zc if z > zc else -zc if z < -zc else z
                if type(v) is float and -_INF < v < _INF:
                    # KeyDetector.score_learn without re-checking the value: score from
                    # the z above (same state), then learn (learn_many == learn_one)
                    w = kd.warming_up
                    score = scores[s] = z_to_score(z, kd.scale)
                    kd.learn_many((v,))
                    if w:
                        warming.append(s)
                    if sk is not None:
                        ws = sk.warming_up
                        slow_score = scores[n_slow] = z_to_score(sk.z(v), sk.scale)
                        sk.learn_many((v,))
                        if ws:
                            warming.append(n_slow)
                        if slow_watched:
                            score, w = slow_score, ws
                else:  # anything else: the detectors' own checks (ints, infinities raise as before)
                    score, w = kd.score_learn(v)
                    scores[s] = score
                    if w:
                        warming.append(s)
                    if sk is not None:
                        slow_score, ws = sk.score_learn(v)
                        scores[n_slow] = slow_score
                        if ws:
                            warming.append(n_slow)
                        if slow_watched:
                            score, w = slow_score, ws
                scores[n_stuck], w_stuck = st.score_learn(v)
                if w_stuck:
                    warming.append(n_stuck)
                if not w and dm.update(score):
                    watched = n_slow if slow_watched else s
                    drifts.append({
                        "kind": "drift",
                        "id": rid + drift_suffix,
                        "device_id": device,
                        "timestamp": ts,
                        "sensor": s,
                        "detector": watched,
                        "method": "PageHinkley",
                        "score": round(score, 6),
                        "model_version": version,
                        "scored_at": format_time(time.time()),
                    })
            append(DeviceResult(reading, rid, shard, feats, missing, scores, warming, shard_input, drifts))
        return out

    def _plan(self) -> list[tuple]:
        """Per sensor, in order: ``(sensor, value detector, slow detector or None,
        stuck detector, drift monitor, slow name, stuck name, drift watches the
        slow detector, drift id suffix)``. Built from the configuration and the
        detector objects (which :meth:`load` keeps), once."""
        plan = self._steps
        if plan is None:
            c = self.config
            plan = []
            for s in c.sensors:
                sk = self.slow.get(s)
                slow_watched = c.drift_on == "slow" and s in self.slow
                watched = f"{s}_slow" if slow_watched else s
                plan.append((s, self.level[s], sk, self.stuck[s], self.drift[s], f"{s}_slow", f"{s}_stuck",
                             slow_watched, f"#drift:{watched}"))
            self._steps = plan
        return plan

    def snapshot(self) -> dict[str, Any]:
        """The learned state as plain data (no configuration)."""
        return {
            "seq": self.seq,
            "features": self.features.snapshot(),
            "level": {s: d.snapshot() for s, d in self.level.items()},
            "slow": {s: d.snapshot() for s, d in self.slow.items()},
            "stuck": {s: d.snapshot() for s, d in self.stuck.items()},
            "drift": {s: d.snapshot() for s, d in self.drift.items()},
            "ids": self.ids.snapshot(),
        }

    def load(self, snap: Mapping[str, Any]) -> None:
        """Put :meth:`snapshot` output into this state. Detectors of sensors the
        current configuration has no more are dropped; new sensors start fresh;
        settings (windows, alphas, thresholds...) are the current configuration's."""
        if not isinstance(snap, Mapping) or not {"seq", "features", "level", "stuck", "drift"} <= set(snap):
            raise ValueError(f"DeviceState.load: expected a DeviceState snapshot, got {snap!r:.80}")
        self.seq = int(snap["seq"])
        self.features.load(snap["features"])
        self.ids.load(snap.get("ids"))
        for part in ("level", "slow", "stuck", "drift"):
            dets = getattr(self, part)
            for s, state in snap.get(part, {}).items():
                if s in dets:
                    dets[s].load(state)


class ShardState:
    """The shard's multivariate detector and the output record.

    The detector is built on the first result (``seed + shard``). :meth:`update`
    returns the output record: every input field unchanged, then ``kind``,
    ``id``, ``anomaly_score``, ``status``, ``scores``, ``warming_up``,
    ``missing``, ``features``, ``model_version``, ``event_time``, ``scored_at``, ``latency_ms``;
    non-NORMAL records add ``reasons``; readings timed by their arrival add
    ``time_from_arrival: true`` (and their id ends with ``#seq``).

    A snapshot taken under another shard-detector configuration is discarded
    on :meth:`load` (the detector starts afresh; see ``ShardDetector.load``).

    >>> cfg = ScoringConfig(warmup=3, shard_window=5, shard_calib_warmup=2)
    >>> dev, shard = DeviceState(cfg), ShardState(cfg)
    >>> r = parse_reading({"device_id": "d1", "temperature": 20.0, "label": 0}, cfg.features, arrival=7.0)
    >>> rec = shard.update(dev.update(r))
    >>> rec["id"], rec["anomaly_score"], rec["status"], rec["warming_up"], rec["time_from_arrival"], rec["label"]
    ('d1@1970-01-01T00:00:07.000Z#1', None, 'NORMAL', True, True, 0)
    >>> batch = [dev.update(parse_reading({"device_id": "d1", "temperature": t}, cfg.features, arrival=8.0))
    ...          for t in (20.5, 21.0)]
    >>> [rec["warming_up"] for rec in shard.update_many(batch)]     # one record per result, in order
    [True, True]
    """

    __slots__ = ("config", "thresholds", "shard", "detector", "version")

    def __init__(self, config: ScoringConfig = ScoringConfig(), thresholds: Thresholds = Thresholds()) -> None:
        self.config = config
        self.thresholds = thresholds
        self.shard: int | None = None
        self.detector: ShardDetector | None = None
        self.version = detector_version(config)

    def _detector(self, shard: int) -> ShardDetector:
        if self.detector is None:
            c, zc = self.config, self.config.z_clip
            self.shard = int(shard)
            self.detector = ShardDetector(
                c.sensors,
                seed=c.seed + self.shard,
                window_size=c.shard_window,
                limits={s: (-zc, zc) for s in c.sensors},
                scale=c.scale,
                calib_warmup=c.shard_calib_warmup,
            )
        return self.detector

    def update(self, result: DeviceResult) -> dict[str, Any]:
        """Score the result with the shard detector (a reading with no sensor
        present does not touch it), combine, and return the output record:
        ``update_many([result])[0]``."""
        return self.update_many([result])[0]

    def update_many(self, results: list[DeviceResult]) -> list[dict[str, Any]]:
        """:meth:`update` for a batch of the shard's results: one record per
        result, in order. The shard detector scores the batch's inputs against
        its state before the batch, then learns them
        (:meth:`ShardDetector.score_learn_many`). The flow's vectorised step; a
        batch of one is :meth:`update`."""
        if not results:
            return []
        det = self._detector(results[0].shard)
        inputs = [r.shard_input for r in results if r.shard_input]
        if len(inputs) == 1:  # what score_learn_many does with one; any detector with score_learn works
            shard_out = [det.score_learn(inputs[0])]
        else:
            shard_out = det.score_learn_many(inputs) if inputs else []
        it = iter(shard_out)
        return [self._record(r, next(it) if r.shard_input else None) for r in results]

    def _record(self, result: DeviceResult, shard: tuple[float, bool] | None) -> dict[str, Any]:
        """The output record of one result given its shard detector output (None: not scored)."""
        c = self.config
        scores = dict(result.scores)
        warming = set(result.warming)
        if shard is not None:
            s, w = shard
            scores["shard"] = s
            if w:
                warming.add("shard")
        score = anomaly_score(scores, warming, c.weights, c.combine)
        if score is not None:
            score = round(score, 6)
        status = NORMAL if score is None else self.thresholds.status(score)
        reading = result.reading
        scored_at = time.time()
        rec = dict(reading.fields)
        rec.update(
            kind="reading",
            id=result.id,
            anomaly_score=score,
            status=status,
            scores={k: round(v, 6) for k, v in scores.items()},
            warming_up=bool(warming) or not scores,
            missing=list(result.missing),
            features=dict(result.features),
            model_version=self.version,
            event_time=reading.timestamp,
            scored_at=format_time(scored_at),
            latency_ms=round((scored_at - reading.arrival) * 1000.0, 3),
        )
        if reading.timed_by_arrival:
            rec["time_from_arrival"] = True
        if status != NORMAL:
            rec["reasons"] = _reasons(scores, warming, result.shard_input, c)
        return rec

    def snapshot(self) -> dict[str, Any] | None:
        """``{"shard": index, "detector": bytes}``, or None before the first result."""
        if self.detector is None:
            return None
        return {"shard": self.shard, "detector": self.detector.snapshot()}

    def load(self, snap: Mapping[str, Any] | None) -> None:
        """Put :meth:`snapshot` output into this state (built from the current configuration)."""
        if snap is None:
            return
        if not isinstance(snap, Mapping) or "shard" not in snap or "detector" not in snap:
            raise ValueError(f"ShardState.load: expected a ShardState snapshot, got {snap!r:.80}")
        self.detector = None
        self._detector(snap["shard"]).load(snap["detector"])


def _reasons(scores: Mapping[str, float], warming: set[str], shard_input: Mapping[str, float],
             config: ScoringConfig) -> list[str]:
    """Sensors behind the strongest warm detectors (see the module docstring)."""
    weights = config.weights
    weighted = sorted(((weights.get(n, 1.0) * s, n) for n, s in scores.items() if n not in warming), reverse=True)
    out: list[str] = []
    if not weighted:
        return out
    top = weighted[0][0]
    for ws, name in weighted:
        if ws < config.reason_floor or ws < 0.5 * top:
            break
        if name == "shard":
            zs = sorted(((abs(z), s) for s, z in shard_input.items()), reverse=True)
            names = []
            if zs:
                names = [s for az, s in zs if az >= 2.0 and az >= 0.5 * zs[0][0]] or [zs[0][1]]
        else:
            names = [config.detector_sensor(name)]
        for s in names:
            if s not in out:
                out.append(s)
    return out


class IoTScorer:
    """The two steps in a plain loop: one :class:`DeviceState` per device, one
    :class:`ShardState` per shard, exactly as the dataflow keys them.

    :meth:`process` returns ``[reading record, *drift records]``; invalid input
    (and a duplicate reading) raises :class:`~features.records.ValidationError` naming why.
    """

    def __init__(self, config: ScoringConfig = ScoringConfig(), thresholds: Thresholds = Thresholds()) -> None:
        self.config = config
        self.thresholds = thresholds
        self.devices: dict[str, DeviceState] = {}
        self.shards: dict[str, ShardState] = {}

    def process(self, raw: Any, arrival: float | None = None) -> list[dict[str, Any]]:
        """Score one raw reading (JSON text or bytes, or a mapping) received at
        ``arrival`` (epoch s; now by default)."""
        reading = parse_reading(raw, self.config.features, time.time() if arrival is None else arrival)
        dev = self.devices.get(reading.device)
        if dev is None:
            dev = self.devices[reading.device] = DeviceState(self.config)
        result = dev.update(reading)
        if isinstance(result, DeadLetter):
            raise ValidationError(result.error)
        key = str(result.shard)
        shard = self.shards.get(key)
        if shard is None:
            shard = self.shards[key] = ShardState(self.config, self.thresholds)
        return [shard.update(result), *result.drifts]
