"""Per-device and per-shard state of the IoT flow: :class:`DeviceState` (features, value, stuck
and drift detectors), :class:`ShardState` (the shared detector) and :class:`DeviceResult`.
Snapshots are plain data, restored with ``load()`` into an object built from the current settings."""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from features.dedup import RecentIds
from features.records import DeadLetter, duplicate, format_time, shard_of
from features.sensors import DeviceFeatures, Reading
from models.detectors import DriftMonitor, KeyDetector, ShardDetector, StuckDetector
from models.detectors.kernel import score_learn_many
from models.iot.config import IoTScoringConfig, _values_json, detector_version
from models.status import NORMAL, Thresholds, anomaly_score

_INF = float("inf")

__all__ = ["DeviceResult", "DeviceState", "ShardState", "warm_up"]


class DeviceResult(msgspec.Struct):
    """What the device step hands to the shard step (small, picklable).

    ``reading``: the reading scored; ``id``: the record id (``device@time``, plus
    ``#seq`` for a reading timed by its arrival); ``shard``: the shard the result
    goes to; ``features``; ``missing``: sensors absent from the reading;
    ``scores``: {detector: score}; ``warming``: detectors still warming up;
    ``shard_input``: {sensor: clipped z} for the shard detector; ``drifts``:
    drift records (``kind: "drift"``) this reading raised; ``timestamp``: the
    reading's event time as the records give it (formatted once, here).
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
    timestamp: str = ""


class DeviceState:
    """Everything kept per device: rolling features, per-sensor value, slow and
    stuck detectors, per-sensor drift monitors, and the count of readings seen.

    A drift record (``kind: "drift"``, ``id``, ``device_id``, ``timestamp``,
    ``sensor``, ``detector`` e.g. ``"temperature_slow"``, ``method:
    "PageHinkley"``, ``score``, ``model_version``, ``scored_at``) is raised when
    the watched score stream of a sensor shifts up (see ``drift_on``; monitors
    are fed once the watched detector is warm, and restart after a detection).

    >>> from features.sensors import parse_reading
    >>> cfg = IoTScoringConfig(warmup=3)
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

    def __init__(self, config: IoTScoringConfig = IoTScoringConfig()) -> None:
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
        self._steps: tuple | None = None  # see _detectors

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
        ``step_many``).

        Per present sensor value ``v``: the value detector's z (before learning)
        is both the shard input (clipped) and the value score; each detector
        scores ``v`` against its state, then learns it; the drift monitor is fed
        the watched score once the watched detector is warm.

        The batch's windows and detectors run as two compiled calls over its
        columns (:meth:`DeviceFeatures.update_many
        <features.sensors.DeviceFeatures.update_many>`,
        :func:`models.detectors.kernel.score_learn_many`); only ids, the dedup
        check and the results are per reading.

        A reading whose id the device had within the dedup horizon becomes a
        :class:`~features.records.DeadLetter` (step ``dedup``) and changes nothing;
        a reading more than ``idle_expiry_s`` after the device's newest starts
        the device afresh.
        """
        c = self.config
        out: list[DeviceResult | DeadLetter | None] = [None] * len(readings)
        pending: list[tuple[int, Reading, str, str]] = []  # (position, reading, id, time) to score
        idle = c.idle_expiry_s
        wm = self.features.watermark
        seq, check_id = self.seq, self.ids.check
        for i, reading in enumerate(readings):
            t = reading.t
            device = reading.device
            if idle and t - wm > idle and wm != -_INF:  # idle too long: start afresh
                self._score(pending, out)
                pending = []
                self.__init__(c)  # type: ignore[misc]
                wm, seq, check_id = -_INF, 0, self.ids.check
            ts = format_time(t)
            if reading.time_from_arrival:
                rid = f"{device}@{ts}#{seq + 1}"
            else:
                rid = f"{device}@{ts}"
                # the same device, time and values: a re-delivery (another message at the
                # same time with other values is a reading of its own)
                first = check_id(f"{rid}|{zlib.crc32(_values_json(reading.values)):08x}", t)
                if first is not None:
                    out[i] = duplicate(reading.fields, "id", rid, "device", device, first, c.dedup_horizon_s)
                    continue
            self.seq = seq = seq + 1
            if t > wm:
                wm = t
            pending.append((i, reading, rid, ts))
        self._score(pending, out)
        return out  # type: ignore[return-value]

    def _score(self, pending: list[tuple[int, Reading, str, str]], out: list) -> None:
        """Features and detectors of the accepted readings ``pending``, as columns; their
        results into ``out`` at their positions."""
        if not pending:
            return
        c = self.config
        sensors = c.sensors
        nf = len(sensors)
        T = np.array([p[1].t for p in pending])
        V = np.array([[*map(p[1].values.get, sensors)] for p in pending], dtype=np.float64).reshape(len(T), nf)
        F = self.features.update_many(T, V)
        levels, slows, stucks, drifts = self._detectors()
        B = score_learn_many(V, levels, slows, stucks, drifts, c.drift_on == "slow")  # ValueError on infinities
        # back to Python objects once per batch: NaN -> None in the features
        n = len(T)
        Fo = F.astype(object)
        Fo[np.isnan(F)] = None
        feature_rows = Fo.tolist()
        names = self.features.names
        has_slow = bool(self.slow)
        # per reading, the detector columns interleaved as the records name them:
        # <s>, <s>_slow (when kept), <s>_stuck for each sensor s
        per = 3 if has_slow else 2
        S = np.empty((n, per * nf))
        W = np.empty((n, per * nf), dtype=np.bool_)
        S[:, 0::per], W[:, 0::per] = B.score, B.warming
        if has_slow:
            S[:, 1::per], W[:, 1::per] = B.slow, B.slow_warming
        S[:, per - 1::per], W[:, per - 1::per] = B.stuck, B.stuck_warming
        det_names = [n_ for s in sensors for n_ in ((s, f"{s}_slow", f"{s}_stuck") if has_slow else (s, f"{s}_stuck"))]
        present = ~np.isnan(V)
        complete = present.all(axis=1).tolist()
        any_warm = W.any(axis=1).tolist()
        score_rows, warm_rows, present_rows = S.tolist(), W.tolist(), present.tolist()
        z_rows = np.clip(B.z, -c.z_clip, c.z_clip).tolist()
        fired = B.drift.any(axis=1).tolist()
        slow_watched = c.drift_on == "slow" and has_slow
        n_shards = c.n_shards
        shard = shard_of(pending[0][1].device, n_shards)
        last_device = pending[0][1].device
        for j, (i, reading, rid, ts) in enumerate(pending):
            if reading.device != last_device:
                last_device = reading.device
                shard = shard_of(last_device, n_shards)
            if complete[j]:  # every sensor present: whole rows
                scores = dict(zip(det_names, score_rows[j]))
                warming = [n_ for n_, w in zip(det_names, warm_rows[j]) if w] if any_warm[j] else []
                shard_input = dict(zip(sensors, z_rows[j]))
                missing: list[str] = []
            else:
                pj, sj, wj, zj = present_rows[j], score_rows[j], warm_rows[j], z_rows[j]
                scores, warming, shard_input, missing = {}, [], {}, []
                for f, s in enumerate(sensors):
                    if not pj[f]:
                        missing.append(s)
                        continue
                    shard_input[s] = zj[f]
                    for q in range(per * f, per * f + per):
                        scores[det_names[q]] = sj[q]
                        if wj[q]:
                            warming.append(det_names[q])
            drift_records: list[dict[str, Any]] = []
            if fired[j]:
                for f, s in enumerate(sensors):
                    if B.drift[j, f]:
                        watched = f"{s}_slow" if slow_watched else s
                        drift_records.append({
                            "kind": "drift",
                            "id": f"{rid}#drift:{watched}",
                            "device_id": reading.device,
                            "timestamp": ts,
                            "sensor": s,
                            "detector": watched,
                            "method": "PageHinkley",
                            "score": round(float(B.watched[j, f]), 6),
                            "model_version": self._version,
                            "scored_at": format_time(time.time()),
                        })
            out[i] = DeviceResult(reading, rid, shard, dict(zip(names, feature_rows[j])), missing, scores, warming,
                                  shard_input, drift_records, ts)

    def _detectors(self) -> tuple[list, list | None, list, list]:
        """Per sensor, in order: value, slow (None: none), stuck detectors and drift monitors."""
        plan = self._steps
        if plan is None:
            c = self.config
            plan = self._steps = ([self.level[s] for s in c.sensors],
                                  [self.slow[s] for s in c.sensors] if self.slow else None,
                                  [self.stuck[s] for s in c.sensors], [self.drift[s] for s in c.sensors])
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

    >>> from features.sensors import parse_reading
    >>> cfg = IoTScoringConfig(warmup=3, shard_window=5, shard_calib_warmup=2)
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

    def __init__(self, config: IoTScoringConfig = IoTScoringConfig(), thresholds: Thresholds = Thresholds()) -> None:
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
        scored_at = time.time()  # the batch is scored at once
        at = format_time(scored_at)
        return [self._record(r, next(it) if r.shard_input else None, scored_at, at) for r in results]

    def _record(self, result: DeviceResult, shard: tuple[float, bool] | None, scored_at: float,
                at: str) -> dict[str, Any]:
        """The output record of one result given its shard detector output (None: not
        scored), scored at ``scored_at`` (epoch s; ``at`` formatted)."""
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
        rec = dict(reading.fields)
        rec.update(
            kind="reading",
            id=result.id,
            anomaly_score=score,
            status=status,
            scores={k: round(v, 6) for k, v in scores.items()},
            warming_up=bool(warming) or not scores,
            missing=result.missing,
            features=result.features,
            model_version=self.version,
            event_time=result.timestamp or reading.timestamp,
            scored_at=at,
            latency_ms=round((scored_at - reading.arrival) * 1000.0, 3),
        )
        if reading.time_from_arrival:
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
             config: IoTScoringConfig) -> list[str]:
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


def warm_up() -> None:
    """Load (or, the first time on a machine, compile) the device step's kernels: one
    reading through a throwaway :class:`DeviceState`, so a flow's first batch does not
    wait for it (~0.5 s from numba's cache, several seconds to compile)."""
    from features.sensors import parse_reading

    c = IoTScoringConfig()
    DeviceState(c).update(parse_reading({"device_id": "warm-up", "timestamp": 0, c.sensors[0]: 0.0}, c.features, 0.0))
