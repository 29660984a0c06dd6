"""Per-key and per-shard state of the fraud flow: :class:`CustomerState` (streaming features and
the amount detector), :class:`ShardState` (the shared detector) and :class:`ScoreDrift`.
Snapshots are plain data, restored with ``load()`` into an object built from the current settings."""

from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

import numpy as np
import structlog

from features.dedup import RecentIds
from features.records import DeadLetter, duplicate, format_time
from features.transactions import (
    CustomerFeatures,
    Transaction,
    feature_dict,
)
from models.detectors import DriftMonitor, KeyDetector, ShardDetector
from models.fraud.config import FraudScoringConfig
from models.status import anomaly_scores

__all__ = ["CustomerState", "SHARD_FEATURES", "shard_row", "shard_vector", "ShardState", "ScoreDrift", "warm_up"]

log = structlog.get_logger("models.fraud")


_SCORE, _WARMING, _SHARD = 21, 22, 23  # columns of models.fraud.kernel.customer_kernel's rows after the features
_COLUMNS = 29
_PARAMS: tuple[Any, Any] = (None, None)  # the configuration last used and its kernel parameters (one tuple:
# replaced at once, so worker threads of one process never read one's parameters with another's configuration)


def _params(cfg: FraudScoringConfig, windows: Any, d: KeyDetector) -> np.ndarray:
    """The compiled step's configuration (:func:`models.fraud.kernel.customer_kernel`'s ``params``):
    the windows', the amount detector's, 2.0; one array per configuration."""
    global _PARAMS
    last, p = _PARAMS
    if last is not cfg:
        p = np.concatenate([windows.params, [d.alpha, d.warmup, d.scale, d.clip, d.min_std, 2.0]])
        _PARAMS = (cfg, p)
    return p


def _customer_kernel(*args: Any) -> int:
    """The compiled step (:func:`models.fraud.kernel.customer_kernel`, imported on first use);
    after the first call, that function."""
    global _customer_kernel
    from models.fraud.kernel import customer_kernel

    _customer_kernel = customer_kernel
    return customer_kernel(*args)


class CustomerState:
    """Everything kept per customer: streaming features, an amount detector and
    the ids seen lately.

    :meth:`update` fills ``tx.features``, ``tx.amount_score`` and ``tx.amount_warming``,
    or returns a :class:`~features.records.DeadLetter` (step ``dedup``) for a
    transaction id the customer already had within the dedup horizon: a
    re-delivered event is not counted twice. A customer idle for more than
    ``idle_expiry_s`` of event time starts afresh (the flow also drops such
    states between events: :attr:`last_event_time`).

    >>> s = CustomerState(FraudScoringConfig())
    >>> tx = s.update(Transaction("t1", "C1", "M1", "gas", 20.0, 40.7, -74.0, t=0.0))
    >>> tx.features["amount_count_24h"], tx.amount_warming
    (1, True)
    >>> s.update(Transaction("t1", "C1", "M1", "gas", 20.0, 40.7, -74.0, t=0.0)).step
    'dedup'
    >>> s.update(Transaction("t2", "C1", "M1", "gas", 20.0, 40.7, -74.0, t=60.0)).features["amount_count_24h"]
    2
    >>> late = s.update(Transaction("t3", "C1", "M1", "gas", 20.0, 40.7, -74.0, t=31 * 86400.0))
    >>> late.features["amount_count_24h"], late.features["time_since_last_transaction"]  # idle 31 days
    (1, None)
    """

    __slots__ = ("features", "amount_detector", "ids", "cfg")

    def __init__(self, cfg: FraudScoringConfig = FraudScoringConfig()) -> None:
        self.cfg = cfg
        self.features = CustomerFeatures(cfg.lateness_s, cfg.max_events)
        self.amount_detector = KeyDetector(warmup=cfg.amount_warmup, alpha=cfg.amount_alpha)
        self.ids = RecentIds(cfg.dedup_horizon_s, cfg.dedup_max_ids)

    @property
    def last_event_time(self) -> float | None:
        """The newest event time seen (``None`` before the first transaction)."""
        t = self.features.windows.watermark
        return None if t == -math.inf else t

    def update(self, tx: Transaction) -> Transaction | DeadLetter:
        """Add the transaction's streaming features and amount anomaly score to it
        (or refuse a duplicate: see the class docstring): ``update_many([tx])[0]``."""
        return self.update_many([tx])[0]

    def update_many(self, txs: Sequence[Transaction]) -> list[Transaction | DeadLetter]:
        """:meth:`update` for a batch of the customer's transactions, in order (the
        flow's step): the ids, the idle restart and the amount detector go event by
        event; the streaming features of the new transactions go through the windows'
        compiled kernel in one call (:meth:`CustomerFeatures.update_many`), split only
        where an idle gap restarts the state. Same results as :meth:`update` one by one."""
        cfg = self.cfg
        idle = cfg.idle_expiry_s
        check = self.ids.check
        out: list[Transaction | DeadLetter] = []
        pending: list[Transaction] = []  # new transactions whose features are not computed yet
        last = self.features.windows.watermark  # the newest event time seen, pending ones included
        for tx in txs:
            t = tx.t
            if idle and t - last > idle and last != -math.inf:
                self._features(pending)  # their features come from the state before the restart
                pending = []
                self.__init__(cfg)  # idle too long: start afresh, as if the state had been dropped
                check = self.ids.check
                last = -math.inf
            first = check(tx.transaction_id, t)
            if first is not None:
                out.append(duplicate(tx.fields, "transaction_id", tx.transaction_id, "customer", tx.customer_id,
                                     first, cfg.dedup_horizon_s))
                continue
            pending.append(tx)
            if t > last:
                last = t
            out.append(tx)
        self._features(pending)
        return out

    def _features(self, txs: list[Transaction]) -> None:
        """Fill the streaming features and the amount score of new transactions, in order:
        one compiled call (:func:`models.fraud.kernel.customer_kernel`) for the windows, the
        features and the amount detector."""
        if not txs:
            return
        det = self.amount_detector
        out = np.empty((len(txs) + 1, _COLUMNS))
        w = self.features.windows
        w.run(_customer_kernel, np.array([(tx.t, tx.amount, tx.latitude, tx.longitude) for tx in txs],
                                         dtype=np.float64), _params(self.cfg, w, det), det.n, det.mean, det.var, out)
        rows = out.tolist()
        n, det.mean, det.var = rows[-1][:3]
        det.n = int(n)
        for tx, row in zip(txs, rows):
            tx.features = feature_dict(*row)
            tx.amount_score = row[_SCORE]
            tx.amount_warming = row[_WARMING] == 1.0
            tx.shard_input = row[_SHARD:]

    def snapshot(self) -> dict[str, Any]:
        """The learned state, plain data: ``{"features": ..., "amount": ..., "ids": ...}``."""
        return {"features": self.features.snapshot(), "amount": self.amount_detector.snapshot(),
                "ids": self.ids.snapshot()}

    def load(self, snap: Mapping[str, Any]) -> None:
        """Put :meth:`snapshot` output into this state (built from the current configuration)."""
        if not isinstance(snap, Mapping) or not {"features", "amount"} <= snap.keys():
            raise ValueError(f"CustomerState.load: expected {{'features': ..., 'amount': ...}}, got {snap!r:.80}")
        self.features.load(snap["features"])
        self.amount_detector.load(snap["amount"])
        self.ids.load(snap.get("ids"))


#: Inputs of the shared multivariate detector (log-scaled where heavy-tailed).
SHARD_FEATURES = ("log_amount", "log_gap", "count_1h", "log_distance", "log_speed", "amount_deviation")


def _log1p(v: float | None) -> float | None:
    return None if v is None else math.log1p(max(v, 0.0))


def shard_row(tx: Transaction) -> tuple[float | None, ...]:
    """The shared detector's input for one transaction (after :class:`CustomerState`),
    in :data:`SHARD_FEATURES` order (``None``: missing)."""
    f = tx.features
    dev = f.get("amount_deviation")
    return (
        math.log1p(tx.amount),
        _log1p(f.get("time_since_last_transaction")),
        f.get("amount_count_1h"),
        _log1p(f.get("distance_from_previous_km")),
        _log1p(f.get("speed_kmh")),
        None if dev is None else max(-5.0, min(dev, 20.0)),
    )


def shard_vector(tx: Transaction) -> dict[str, float | None]:
    """:func:`shard_row` as ``{feature: value}``."""
    return dict(zip(SHARD_FEATURES, shard_row(tx)))


class ShardState:
    """One shared multivariate detector for all customers of a shard.

    :meth:`update` fills ``tx.anomaly_scores`` (``None`` for a detector warming
    up), ``tx.anomaly_score`` (the warm detectors combined, ``None`` when none is
    warm: :func:`models.status.anomaly_score`) and ``tx.anomaly_warming_up``.
    """

    __slots__ = ("detector", "method")

    def __init__(self, cfg: FraudScoringConfig = FraudScoringConfig()) -> None:
        self.detector = ShardDetector(SHARD_FEATURES, seed=cfg.shard_seed, window_size=cfg.shard_window,
                                      calib_warmup=cfg.shard_calib_warmup)
        self.method = cfg.anomaly_method

    def update(self, tx: Transaction) -> Transaction:
        """Score the transaction with the shared detector, learn from it, and
        combine with the customer's amount detector: ``update_many([tx])[0]``."""
        return self.update_many([tx])[0]

    def update_many(self, txs: list[Transaction]) -> list[Transaction]:
        """:meth:`update` for a batch of the shard's transactions, in order: the
        shared detector scores the batch against its state before the batch,
        then learns it (:meth:`ShardDetector.score_learn_many`). The flow's
        vectorised step; a batch of one is :meth:`update`."""
        if not txs:
            return txs
        # the customer step's compiled call worked the rows out (shard_input); else from the features
        V = np.array([tx.shard_input or shard_row(tx) for tx in txs], dtype=np.float64).reshape(
            len(txs), len(SHARD_FEATURES))
        scores, warming = self.detector.score_learn_columns(V)  # None -> NaN: missing
        amount = np.array([tx.amount_score for tx in txs], dtype=np.float64)  # None -> NaN
        a_warm = np.array([tx.amount_warming for tx in txs], dtype=np.bool_)
        # the warm detectors combined (models.status.anomaly_score's rule, as columns)
        combined = anomaly_scores(np.column_stack((amount, scores)), np.column_stack((a_warm, warming)), (1.0, 1.0),
                                  self.method)
        for tx, a, aw, score, w, c in zip(txs, amount.tolist(), a_warm.tolist(), scores.tolist(), warming.tolist(),
                                          combined):
            tx.anomaly_scores = {"amount": None if aw or a != a else round(a, 4),
                                 "multivariate": None if w else round(score, 4)}
            tx.anomaly_score = None if c is None else round(c, 4)
            tx.anomaly_warming_up = aw or w
        return txs

    def snapshot(self) -> bytes:
        """The learned state of the shared detector (see :meth:`ShardDetector.snapshot`)."""
        return self.detector.snapshot()

    def load(self, snap: bytes) -> bool:
        """Put :meth:`snapshot` output into this state. False (and a fresh detector)
        when the detector's configuration changed since the snapshot."""
        return self.detector.load(snap)


class ScoreDrift:
    """Drift of one model version's score stream: River ``PageHinkley`` (mode "up",
    :class:`~models.detectors.DriftMonitor`) on ``fraud_score``, fed in scoring order.

    It fires when the level of the scores rises and stays up (more customers scored
    high than the version's own history says: a new fraud wave, a broken upstream
    feature, a model that no longer fits). :meth:`update_many` returns a drift record
    (``kind: "drift"``) per detection, for the alerts output; after a detection the
    test starts afresh. On the demo stream (19,967 scores) the defaults fire never;
    with every score raised by 0.1 they fire after about 280 events.

    >>> d = ScoreDrift(threshold=5.0, min_instances=20)
    >>> calm = [{"fraud_score": 0.01, "model_version": "m/1", "transaction_id": f"t{i}",
    ...          "event_time": "2026-11-26T00:00:00.000Z"} for i in range(100)]
    >>> d.update_many(calm)
    []
    >>> [r["id"] for r in d.update_many([dict(r, fraud_score=0.5) for r in calm])]
    ['drift:m/1:t11']
    """

    __slots__ = ("monitor",)

    def __init__(self, threshold: float = 20.0, delta: float = 0.02, min_instances: int = 200) -> None:
        self.monitor = DriftMonitor(threshold=threshold, delta=delta, min_instances=min_instances)

    def update_many(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Feed the records' ``fraud_score``s in order; one drift record per detection."""
        out: list[dict[str, Any]] = []
        for r in records:
            out += self.update_rows(r["model_version"], [(r["fraud_score"], r["transaction_id"], r.get("event_time"))])
        return out

    def update_rows(self, version: str, rows: Sequence[tuple[float, str, str | None]]) -> list[dict[str, Any]]:
        """:meth:`update_many` of one version's ``(fraud_score, transaction_id, event_time)``
        rows, in order (a scored batch's :meth:`~models.fraud.batch.ScoredBatch.drift_columns`)."""
        out: list[dict[str, Any]] = []
        update = self.monitor.update
        for score, tid, event_time in rows:
            if update(score):
                ph = self.monitor.ph
                out.append({
                    "kind": "drift",
                    "id": f"drift:{version}:{tid}",
                    "model_version": version,
                    "detector": "fraud_score",
                    "method": "PageHinkley",
                    "direction": "up",
                    "score_mean_before": round(ph._x_mean.get(), 6) if ph._x_mean.n else None,
                    "transaction_id": tid,
                    "event_time": event_time,
                    "scored_at": format_time(time.time()),
                })
        return out

    def snapshot(self) -> tuple:
        return self.monitor.snapshot()

    def load(self, snap: tuple) -> None:
        self.monitor.load(snap)


def warm_up() -> None:
    """Load (or, the first time on a machine, compile) the windows' kernels: one
    transaction through a throwaway :class:`CustomerState`, so a flow's first batch does
    not wait for it."""
    CustomerState(FraudScoringConfig()).update(Transaction("warm-up", "warm-up", "M", "c", 1.0, 0.0, 0.0, t=0.0))
