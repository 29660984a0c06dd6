"""Fraud scoring logic, free of any stream engine: the dataflow only wires it up.

Per event, in order:

1. :class:`CustomerState` (one per customer, in a keyed stateful step): streaming
   features plus a cheap per-customer River-style detector on the log amount.
2. :class:`ShardState` (one per shard of customers): a shared multivariate
   detector over :data:`SHARD_FEATURES`; never one heavy model per customer.
3. :class:`FraudScorer` (per batch): one Feast call per batch of distinct
   customers and merchants (cached), derived features, the static model scored
   as one matrix, combined risk, status and, for alerts, reasons.

The combined risk is ``1 - (1 - fraud_score) * (1 - w * anomaly_score)``
(:func:`models.status.combined_risk`); the status compares it with the
thresholds, so ``fraud_score > critical`` is always CRITICAL.
"""

from __future__ import annotations

import math
import time
import zlib
from typing import Any, Mapping, Sequence

from features.lookup import CachedLookup
from features.transactions import CustomerFeatures, derived_features
from features.validation import iso_utc
from models.anomaly import KeyDetector, ShardDetector, combine_scores
from models.fraud import FraudModel, feature_matrix
from models.status import NORMAL, Thresholds, combined_risk

__all__ = [
    "CustomerState",
    "ShardState",
    "SHARD_FEATURES",
    "shard_of",
    "FraudScorer",
    "INTERNAL_FIELDS",
]

#: Fields used inside the flow and dropped from output records.
INTERNAL_FIELDS = ("_t", "_arrival", "_amount_anomaly", "_amount_warming")


class CustomerState:
    """Everything kept per customer: streaming features and an amount detector.

    >>> s = CustomerState(lateness_s=600)
    >>> ev = {"_t": 0.0, "amount": 20.0, "latitude": 40.7, "longitude": -74.0}
    >>> out = s.update(dict(ev))
    >>> out["amount_count_24h"], out["_amount_warming"]
    (1, True)
    """

    __slots__ = ("features", "amount_detector")

    def __init__(self, lateness_s: float = 600.0) -> None:
        self.features = CustomerFeatures(lateness_s)
        self.amount_detector = KeyDetector(warmup=5)

    def update(self, event: dict[str, Any]) -> dict[str, Any]:
        """Add the event's streaming features and amount anomaly score to it."""
        event.update(self.features.update(event["_t"], event["amount"], event["latitude"], event["longitude"]))
        score, warming = self.amount_detector.score_learn(math.log1p(event["amount"]))
        event["_amount_anomaly"] = score
        event["_amount_warming"] = warming
        return event

    def snapshot(self) -> tuple:
        return (self.features.snapshot(), self.amount_detector.snapshot())

    @classmethod
    def restore(cls, snap: tuple) -> "CustomerState":
        obj = cls.__new__(cls)
        obj.features = CustomerFeatures.restore(snap[0])
        obj.amount_detector = KeyDetector.restore(snap[1])
        return obj


#: Inputs of the shared multivariate detector (log-scaled where heavy-tailed).
SHARD_FEATURES = ("log_amount", "log_gap", "count_1h", "log_distance", "log_speed", "amount_deviation")


def _log1p(v: float | None) -> float | None:
    return None if v is None else math.log1p(max(v, 0.0))


def shard_vector(event: Mapping[str, Any]) -> dict[str, float | None]:
    """The shard detector's input for one event."""
    dev = event.get("amount_deviation")
    return {
        "log_amount": math.log1p(event["amount"]),
        "log_gap": _log1p(event.get("time_since_last_transaction")),
        "count_1h": event.get("amount_count_1h"),
        "log_distance": _log1p(event.get("distance_from_previous_km")),
        "log_speed": _log1p(event.get("speed_kmh")),
        "amount_deviation": None if dev is None else max(-5.0, min(dev, 20.0)),
    }


def shard_of(key: str, shards: int) -> str:
    """A stable shard for ``key`` (the same on every worker and run).

    >>> shard_of("C000001", 4) == shard_of("C000001", 4)
    True
    """
    return f"shard-{zlib.crc32(key.encode()) % shards}"


class ShardState:
    """One shared multivariate detector for all customers of a shard."""

    __slots__ = ("detector",)

    def __init__(self, detector: ShardDetector | None = None) -> None:
        self.detector = detector or ShardDetector(SHARD_FEATURES, seed=42)

    def update(self, event: dict[str, Any]) -> dict[str, Any]:
        """Score the event with the shared detector, learn from it, and combine
        with the customer's amount detector into ``anomaly_score``."""
        score, warming = self.detector.score_learn(shard_vector(event))
        scores = {"amount": event["_amount_anomaly"], "multivariate": score}
        warm = {name for name, w in (("amount", event["_amount_warming"]), ("multivariate", warming)) if w}
        event["anomaly_scores"] = {k: (None if k in warm else round(v, 4)) for k, v in scores.items()}
        if len(warm) == len(scores):
            event["anomaly_score"] = None
        else:
            event["anomaly_score"] = round(combine_scores(scores, method="noisy_or", warming=warm), 4)
        event["anomaly_warming_up"] = bool(warm)
        return event

    def snapshot(self) -> bytes:
        return self.detector.snapshot()

    @classmethod
    def restore(cls, snap: bytes) -> "ShardState":
        return cls(ShardDetector.restore(snap))


class FraudScorer:
    """Scores a batch of events that carry their streaming features and anomaly scores.

    Args:
        model: the loaded static model.
        customers, merchants: cached Feast lookups (``customer_profile``, ``merchant_risk``).
        thresholds: status thresholds on the combined risk.
        anomaly_weight: how much the anomaly score may add to the risk.
    """

    def __init__(
        self,
        model: FraudModel,
        customers: CachedLookup,
        merchants: CachedLookup,
        thresholds: Thresholds = Thresholds(),
        anomaly_weight: float = 0.4,
    ) -> None:
        self.model = model
        self.customers = customers
        self.merchants = merchants
        self.thresholds = thresholds
        self.anomaly_weight = anomaly_weight

    def score_batch(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Scored records, in input order; alerts (non-NORMAL) carry ``reasons``."""
        if not events:
            return []
        profiles = self.customers.get_many(e["customer_id"] for e in events)
        merchants = self.merchants.get_many(e["merchant_id"] for e in events)
        for e in events:
            profile, e["customer_known"] = profiles[e["customer_id"]]
            risk, e["merchant_known"] = merchants[e["merchant_id"]]
            e.update(profile)
            e.update(risk)
            e.update(derived_features(e, profile))
        X = feature_matrix(events)
        fraud = self.model.predict(X)
        scored_at = time.time()
        stamp = iso_utc(scored_at)
        alerts: list[int] = []
        out: list[dict[str, Any]] = []
        for i, e in enumerate(events):
            p = float(fraud[i])
            risk = combined_risk(p, e.get("anomaly_score"), self.anomaly_weight)
            status = self.thresholds.status(risk)
            arrival = e["_arrival"]
            for k in INTERNAL_FIELDS:
                e.pop(k, None)
            rec = e  # the event becomes its scored record (no copy per event)
            rec["fraud_score"] = round(p, 6)
            rec["risk_score"] = round(risk, 6)
            rec["status"] = status
            rec["model_version"] = self.model.version
            rec["scored_at"] = stamp
            rec["latency_ms"] = round((scored_at - arrival) * 1000.0, 3)
            if status != NORMAL:
                alerts.append(i)
            out.append(rec)
        if alerts:
            explained = self.model.explain(X[alerts])
            for i, top in zip(alerts, explained):
                out[i]["reasons"] = self.reasons(out[i], top)
        return out

    def reasons(self, rec: Mapping[str, Any], top: list[tuple[str, float]]) -> list[str]:
        """Why an alert fired: the scores over their thresholds, then the model's
        top features (``name=value``, largest TreeSHAP contribution first)."""
        t = self.thresholds
        out = []
        if rec["fraud_score"] > t.warning:
            out.append(f"fraud_score={rec['fraud_score']:.3f}")
        anomaly = rec.get("anomaly_score")
        if anomaly is not None and anomaly * self.anomaly_weight > 0.1:
            detectors = [k for k, v in rec["anomaly_scores"].items() if v is not None and v > 0.5]
            out.append(f"anomaly_score={anomaly:.3f}" + (f" ({', '.join(detectors)})" if detectors else ""))
        for name, _ in top:
            v = rec.get("merchant_category") if name == "merchant_category_code" else rec.get(name)
            out.append(f"{name}={v:.4g}" if isinstance(v, float) else f"{name}={v}")
        return out
