"""Per-device and per-shard state of the IoT flow: :class:`DeviceState` (features, value, stuck
and drift detectors), :class:`ShardState` (the shared detector), :class:`DeviceBatch` (what the
first hands the second, as columns) and :class:`DeviceResult` (one row of it).
Snapshots are plain data, restored with ``load()`` into an object built from the current settings."""

from __future__ import annotations

import functools
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from features.dedup import RecentIds
from features.records import DeadLetter, duplicate, format_time, format_times, rounded, shard_of
from features.sensors import DeviceFeatures, Reading, feature_names
from models.detectors import DriftMonitor, KeyDetector, ShardDetector, StuckDetector
from models.detectors.kernel import score_learn_many
from models.iot.batch import ScoredReadings
from models.iot.config import IoTScoringConfig, _values_json, detector_version
from models.status import NORMAL, Thresholds, anomaly_scores

_INF = float("inf")

__all__ = ["DeviceBatch", "DeviceResult", "DeviceState", "ShardState", "warm_up"]


class DeviceResult(msgspec.Struct):
    """One reading's row of a :class:`DeviceBatch`, as mappings (what
    :meth:`DeviceState.update` returns; :meth:`ShardState.update` takes it).

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


class _Layout:
    """The column names of one configuration: sensors, the per-sensor detectors
    (``<s>``, ``<s>_slow`` when kept, ``<s>_stuck``, interleaved per sensor, as the
    records name them), the features, and the combination weight of each detector
    column followed by the shard detector's."""

    __slots__ = ("sensors", "per", "detectors", "features", "weights", "scored")

    def __init__(self, c: IoTScoringConfig) -> None:
        self.sensors = c.sensors
        has_slow = c.slow_weight > 0
        self.per = 3 if has_slow else 2
        self.detectors = [n for s in c.sensors for n in ((s, f"{s}_slow", f"{s}_stuck") if has_slow else (s, f"{s}_stuck"))]
        self.features = feature_names(c.features)
        self.scored = [*self.detectors, "shard"]
        self.weights = [c.weights.get(n, 1.0) for n in self.scored]


@functools.lru_cache(maxsize=64)
def _layout(c: IoTScoringConfig) -> _Layout:
    return _Layout(c)


class DeviceBatch(msgspec.Struct):
    """What the device step hands to the shard step: one device's accepted readings of
    one upstream batch, as columns (one row per reading, in order; small and picklable:
    it crosses the keyed exchange to the shard as one item).

    ``readings``, ``ids`` (record ids) and ``timestamps`` (event times as the records give
    them) per row; ``features``: rows x :func:`~features.sensors.feature_names` (NaN:
    undefined); ``scores`` / ``warming``: rows x detector columns (``<s>``, ``<s>_slow``,
    ``<s>_stuck`` per sensor; NaN / False where the sensor is missing); ``z``: rows x
    sensors, the value detectors' z-scores clipped to ``z_clip`` (the shard detector's
    input; NaN where missing); ``drifts``: the drift records the rows raised, with
    ``drift_rows`` their row numbers.
    """

    device: str
    shard: int
    readings: list[Reading]
    ids: list[str]
    timestamps: list[str]
    features: Any
    scores: Any
    warming: Any
    z: Any
    drifts: list[dict[str, Any]] = []
    drift_rows: list[int] = []

    def __len__(self) -> int:
        return len(self.readings)

    def results(self, config: IoTScoringConfig) -> list[DeviceResult]:
        """The rows as :class:`DeviceResult` (``config``: the one that scored them)."""
        lay = _layout(config)
        names, sensors, det, per = lay.features, lay.sensors, lay.detectors, lay.per
        F = self.features.astype(object)
        F[np.isnan(self.features)] = None
        drifts: dict[int, list[dict[str, Any]]] = {}
        for j, d in zip(self.drift_rows, self.drifts):
            drifts.setdefault(j, []).append(d)
        out = []
        for j, (reading, rid, ts, f, srow, wrow, zrow) in enumerate(zip(
                self.readings, self.ids, self.timestamps, F.tolist(), self.scores.tolist(), self.warming.tolist(),
                self.z.tolist())):
            missing: list[str] = []
            scores: dict[str, float] = {}
            warming: list[str] = []
            shard_input: dict[str, float] = {}
            for i, s in enumerate(sensors):
                if zrow[i] != zrow[i]:
                    missing.append(s)
                    continue
                shard_input[s] = zrow[i]
                for q in range(per * i, per * i + per):
                    scores[det[q]] = srow[q]
                    if wrow[q]:
                        warming.append(det[q])
            out.append(DeviceResult(reading, rid, self.shard, dict(zip(names, f)), missing, scores, warming,
                                    shard_input, drifts.get(j, []), ts))
        return out

    @classmethod
    def of(cls, results: Sequence[DeviceResult], config: IoTScoringConfig) -> "DeviceBatch":
        """The inverse of :meth:`results` (results of any devices; the first one's shard)."""
        lay = _layout(config)
        nan = float("nan")
        Z = np.array([[r.shard_input.get(s, nan) for s in lay.sensors] for r in results], dtype=np.float64)
        S = np.array([[r.scores.get(n, nan) for n in lay.detectors] for r in results], dtype=np.float64)
        W = np.array([[n in r.warming for n in lay.detectors] for r in results], dtype=np.bool_)
        F = np.array([[nan if (v := r.features.get(n)) is None else v for n in lay.features] for r in results],
                     dtype=np.float64)
        n = len(results)
        rows = [j for j, r in enumerate(results) for _ in r.drifts]
        return cls(results[0].reading.device if n else "", results[0].shard if n else 0,
                   [r.reading for r in results], [r.id for r in results],
                   [r.timestamp or r.reading.timestamp for r in results], F.reshape(n, len(lay.features)),
                   S.reshape(n, len(lay.detectors)), W.reshape(n, len(lay.detectors)),
                   Z.reshape(n, len(lay.sensors)), [d for r in results for d in r.drifts], rows)


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
        """:meth:`score_batch` with one result per reading, in order: a
        :class:`DeviceResult` (the reading's row of its batch) or the reading's
        :class:`~features.records.DeadLetter`; equal to :meth:`update` on each in turn."""
        items, where = self._run(readings)
        rows: dict[int, list[DeviceResult]] = {}
        out: list[DeviceResult | DeadLetter] = []
        for k, j in where:
            item = items[k]
            if isinstance(item, DeadLetter):
                out.append(item)
                continue
            if k not in rows:
                rows[k] = item.results(self.config)
            out.append(rows[k][j])
        return out

    def score_batch(self, readings: Sequence[Reading]) -> list[DeviceBatch | DeadLetter]:
        """Score, then learn, a batch of this device's readings in order (the flow's
        ``step_many``): the accepted readings as one :class:`DeviceBatch` (two or more
        when an idle gap starts the device afresh, or the readings are of several
        devices), and a :class:`~features.records.DeadLetter` per duplicate.

        Per present sensor value ``v``: the value detector's z (before learning)
        is both the shard input (clipped) and the value score; each detector
        scores ``v`` against its state, then learns it; the drift monitor is fed
        the watched score once the watched detector is warm.

        The batch's windows and detectors run as two compiled calls over its
        columns (:meth:`DeviceFeatures.update_many
        <features.sensors.DeviceFeatures.update_many>`,
        :func:`models.detectors.kernel.score_learn_many`), and their outputs stay
        columns; only ids and the dedup check are per reading.

        A reading whose id the device had within the dedup horizon becomes a
        :class:`~features.records.DeadLetter` (step ``dedup``) and changes nothing;
        a reading more than ``idle_expiry_s`` after the device's newest starts
        the device afresh.
        """
        return self._run(readings)[0]

    def _run(self, readings: Sequence[Reading]) -> tuple[list[DeviceBatch | DeadLetter], list[tuple[int, int]]]:
        """``(items, where)``: what :meth:`score_batch` returns, and per reading
        ``(index of its item, its row in it)`` (row 0 for a dead letter)."""
        c = self.config
        items: list[DeviceBatch | DeadLetter] = []
        where: list[tuple[int, int]] = []
        pending: list[tuple[Reading, str, str]] = []  # (reading, id, time) to score
        slots: list[int] = []  # positions in `where` of the pending readings
        idle = c.idle_expiry_s
        wm = self.features.watermark
        seq, check_id = self.seq, self.ids.check
        device = readings[0].device if readings else ""

        def close() -> None:
            self.seq = seq
            if pending:
                k = len(items)
                items.append(self._score(pending))
                for j, w in enumerate(slots):
                    where[w] = (k, j)
                pending.clear()
                slots.clear()

        for reading, ts in zip(readings, format_times([r.t for r in readings])):
            t = reading.t
            if reading.device != device:  # one batch per device
                close()
                device = reading.device
            if idle and t - wm > idle and wm != -_INF:  # idle too long: start afresh
                close()
                self.__init__(c)  # type: ignore[misc]
                wm, seq, check_id = -_INF, 0, self.ids.check
            if reading.time_from_arrival:
                rid = f"{device}@{ts}#{seq + 1}"
            else:
                rid = f"{device}@{ts}"
                # the same device, time and values: a re-delivery (another message at the
                # same time with other values is a reading of its own)
                first = check_id(f"{rid}|{zlib.crc32(_values_json(reading.values)):08x}", t)
                if first is not None:
                    where.append((len(items), 0))
                    items.append(duplicate(reading.fields, "id", rid, "device", device, first, c.dedup_horizon_s))
                    continue
            seq += 1
            if t > wm:
                wm = t
            slots.append(len(where))
            where.append((-1, -1))
            pending.append((reading, rid, ts))
        close()
        return items, where

    def _score(self, pending: list[tuple[Reading, str, str]]) -> DeviceBatch:
        """Features and detectors of the accepted readings ``pending`` (one device's), as columns."""
        c = self.config
        lay = _layout(c)
        sensors = lay.sensors
        nf, per = len(sensors), lay.per
        readings = [p[0] for p in pending]
        n = len(readings)
        T = np.array([r.t for r in readings])
        V = np.array([[*map(r.values.get, sensors)] for r in readings], dtype=np.float64).reshape(n, nf)
        F = self.features.update_many(T, V)
        levels, slows, stucks, drifts = self._detectors()
        B = score_learn_many(V, levels, slows, stucks, drifts, c.drift_on == "slow")  # ValueError on infinities
        S = np.empty((n, per * nf))
        W = np.empty((n, per * nf), dtype=np.bool_)
        S[:, 0::per], W[:, 0::per] = B.score, B.warming
        if per == 3:
            S[:, 1::per], W[:, 1::per] = B.slow, B.slow_warming
        S[:, per - 1::per], W[:, per - 1::per] = B.stuck, B.stuck_warming
        Z = np.clip(B.z, -c.z_clip, c.z_clip)
        device = readings[0].device
        drift_records: list[dict[str, Any]] = []
        drift_rows: list[int] = []
        if B.drift.any():
            slow_watched = c.drift_on == "slow" and per == 3
            for j, f in np.argwhere(B.drift).tolist():  # row-major: by reading, then sensor
                s = sensors[f]
                watched = f"{s}_slow" if slow_watched else s
                rid, ts = pending[j][1], pending[j][2]
                drift_rows.append(j)
                drift_records.append({
                    "kind": "drift",
                    "id": f"{rid}#drift:{watched}",
                    "device_id": device,
                    "timestamp": ts,
                    "sensor": s,
                    "detector": watched,
                    "method": "PageHinkley",
                    "score": round(float(B.watched[j, f]), 6),
                    "model_version": self._version,
                    "scored_at": format_time(time.time()),
                })
        return DeviceBatch(device, shard_of(device, c.n_shards), readings, [p[1] for p in pending],
                           [p[2] for p in pending], F, S, W, Z, drift_records, drift_rows)

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
        """:meth:`update_batches` of results (as one batch; the shard of the first)."""
        return self.update_batches([DeviceBatch.of(results, self.config)]) if results else []

    def update_batches(self, batches: Sequence[DeviceBatch]) -> list[dict[str, Any]]:
        """The output records of a batch of the shard's device batches, one per row, in
        order: the records of :meth:`score_batches`."""
        return [rec for b in self.score_batches(batches) for rec in b.records()]

    def score_batches(self, batches: Sequence[DeviceBatch]) -> list[ScoredReadings]:
        """Score a batch of the shard's device batches (the flow's vectorised step): one
        :class:`~models.iot.batch.ScoredReadings` of all their rows, in order (none when
        they have no rows). The shard detector scores the rows' inputs against its
        state before the batch, then learns them (:meth:`ShardDetector.score_learn_matrix
        <models.detectors.ShardDetector.score_learn_matrix>`); the scores are combined
        by :func:`models.status.anomaly_scores` over the batch's columns; the records
        are shaped from the columns when asked for (:meth:`ScoredReadings.record
        <models.iot.batch.ScoredReadings.record>`)."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return []
        c = self.config
        lay = _layout(c)
        det = self._detector(batches[0].shard)
        one = len(batches) == 1
        Z = batches[0].z if one else np.concatenate([b.z for b in batches])
        S = batches[0].scores if one else np.concatenate([b.scores for b in batches])
        W = batches[0].warming if one else np.concatenate([b.warming for b in batches])
        F = batches[0].features if one else np.concatenate([b.features for b in batches])
        readings = batches[0].readings if one else [r for b in batches for r in b.readings]
        n, nf = Z.shape
        present = ~np.isnan(Z)
        has_input = present.any(axis=1)
        shard_s = np.full((n, 1), np.nan)
        shard_w = np.zeros((n, 1), dtype=np.bool_)
        rows = np.flatnonzero(has_input)
        if len(rows) == 1:  # what score_learn_matrix does with one; any detector with score_learn works
            j = int(rows[0])
            shard_s[j, 0], shard_w[j, 0] = det.score_learn(
                {s: z for s, z, p in zip(lay.sensors, Z[j].tolist(), present[j].tolist()) if p})
        elif len(rows):
            out = det.score_learn_matrix(Z if len(rows) == n else Z[rows])
            shard_s[rows, 0] = [x[0] for x in out]
            shard_w[rows, 0] = [x[1] for x in out]
        S_all = np.hstack((S, shard_s))
        W_all = np.hstack((W, shard_w))
        scored = ~np.isnan(S_all)
        anomaly = anomaly_scores(S_all, W_all, lay.weights, c.combine)
        has_score = [a is not None for a in anomaly]
        A = rounded(np.array([np.nan if a is None else a for a in anomaly]), 6)
        anomaly = [a if h else None for a, h in zip(A.tolist(), has_score)]
        scored_at = time.time()  # the batch is scored at once
        arrival = np.array([r.arrival for r in readings])
        L = rounded((scored_at - arrival) * 1000.0, 3)
        latency = L.tolist()
        status_of = self.thresholds.status
        statuses = [NORMAL if a is None else status_of(a) for a in anomaly]
        reasons: dict[int, list[str]] = {}
        names = lay.scored
        for j, status in enumerate(statuses):
            if status != NORMAL:
                reasons[j] = _reasons(
                    {k: v for k, v in zip(names, S_all[j].tolist()) if v == v},
                    {k for k, w in zip(names, W_all[j].tolist()) if w},
                    {s: z for s, z, p in zip(lay.sensors, Z[j].tolist(), present[j].tolist()) if p}, c)
        ids = batches[0].ids if one else [i for b in batches for i in b.ids]
        times = batches[0].timestamps if one else [t for b in batches for t in b.timestamps]
        return [ScoredReadings(
            readings, ids, times, np.hstack((A.reshape(n, 1), rounded(S_all, 6), F, L.reshape(n, 1))),
            scored.all(axis=1).tolist(), present, anomaly, statuses, (W_all.any(axis=1) | ~scored.any(axis=1)).tolist(),
            latency, format_time(scored_at), self.version, lay.features, names, lay.sensors, reasons)]

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
    """Load (or, the first time on a machine, compile) the kernels of the device step and
    of the JSON lines: one reading through a throwaway :class:`DeviceState` and
    :class:`ShardState` to its line, so a flow's first batch does not wait for them (~0.5 s
    from numba's cache, several seconds to compile)."""
    from features.sensors import parse_reading

    c = IoTScoringConfig()
    reading = parse_reading({"device_id": "warm-up", "timestamp": 0, **dict.fromkeys(c.sensors, 0.0)}, c.features, 0.0)
    for scored in ShardState(c).score_batches(DeviceState(c).score_batch([reading])):  # type: ignore[arg-type]
        scored.text("scored")
    # a batch this small is written record by record: the columns' layout kernel is warmed apart
    from features.json_columns import NUMBER, LineTemplate, string_texts

    LineTemplate([b'{"id":"', 0, b'","x":', NUMBER, b"}\n"]).render(
        np.zeros((2, 1)), [string_texts(["a", "b"])], whole={1: b"{}\n"})
