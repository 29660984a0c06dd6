"""Fraud scoring, free of any stream engine: the model and the steps the dataflow wires up.

Per transaction (a :class:`features.transactions.Transaction`), in order:

1. :class:`CustomerState`, one per customer (keyed by ``customer_id``): streaming
   features (:class:`~features.transactions.CustomerFeatures`) and a cheap
   per-customer :class:`~models.detectors.KeyDetector` on the log amount.
2. :class:`ShardState`, one per shard of customers (keyed by
   ``features.records.shard_of(customer_id, shards)``): one shared multivariate
   :class:`~models.detectors.ShardDetector` over :data:`SHARD_FEATURES` (never one
   heavy model per customer), and the anomaly score by the warm-up rule of
   :func:`models.status.anomaly_score`.
3. :class:`FraudScorer`, per batch: one (cached) Feast lookup per batch of distinct
   customers and merchants (:mod:`features.store`), derived features, the static
   :class:`FraudModel` on one matrix, the combined risk
   (:func:`models.status.combined_risk`), the status and, for alerts, reasons.

All three take one :class:`FraudScoringConfig`. State objects hold state only:
``snapshot()`` is plain data, restored with ``load()`` into an object built from
the *current* configuration. :class:`FraudPipeline` runs exactly these classes in
a plain loop (tests, benchmark, backfills).

The model: a LightGBM booster in LightGBM's text format (loading parses numbers,
never executes code), published in the :mod:`models.registry` with a manifest
naming its features in order; :meth:`FraudModel.load` refuses an artifact whose
sha256 or feature list does not match. :func:`feature_row` and
:func:`feature_matrix` build its input, for serving and for training alike.

>>> cfg = FraudScoringConfig(amount_warmup=2, shard_window=4, shard_calib_warmup=2)
>>> cust, shard = CustomerState(cfg), ShardState(cfg)
>>> for i in range(8):
...     tx = parse_transaction({"transaction_id": f"t{i}", "customer_id": "C1", "merchant_id": "M1",
...         "merchant_category": "gas", "amount": 20 + i, "latitude": 40.7, "longitude": -74.0,
...         "timestamp": 1.79e9 + 60 * i}, arrival=0.0)
...     tx = shard.update(cust.update(tx))
...     if i in (0, 7):
...         print(tx.features["amount_count_1h"], tx.anomaly_warming_up, tx.anomaly_score is None)
1 True True
8 False False
>>> fresh = CustomerState(cfg)
>>> fresh.load(cust.snapshot())
>>> fresh.snapshot() == cust.snapshot()
True
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import structlog

from features.dedup import RecentIds
from features.records import DeadLetter, Raw, ValidationError, dead_letter, duplicate, format_time, shard_of
from features.store import CachedLookup
from features.transactions import (
    DERIVED_FEATURES,
    STREAM_FEATURES,
    CustomerFeatures,
    Transaction,
    derived_features,
    parse_transaction,
)
from models.detectors import DriftMonitor, KeyDetector, ShardDetector
from models.inference_log import LogSpec
from models.registry import Registry, RegistryError
from models.serving import Assignment, ModelRouter
from models.status import CRITICAL, NORMAL, Thresholds, anomaly_score, combined_risk

__all__ = [
    "MODEL_NAME",
    "MODEL_FEATURES",
    "PROFILE_FEATURES",
    "MERCHANT_FEATURES",
    "CATEGORY_CODES",
    "feature_row",
    "feature_matrix",
    "FraudModel",
    "FraudScoringConfig",
    "CustomerState",
    "SHARD_FEATURES",
    "shard_vector",
    "ShardState",
    "FraudScorer",
    "FraudPipeline",
    "LOG_SPEC",
    "ScoreDrift",
]

log = structlog.get_logger(__name__)

# --- the model's input ------------------------------------------------------------------

MODEL_NAME = "fraud_model"

#: Feast features the model uses, per entity (their defaults: :mod:`features.store`).
PROFILE_FEATURES = ("avg_transaction_amount", "transaction_frequency")
MERCHANT_FEATURES = ("merchant_risk_score", "chargeback_rate")

#: Merchant categories the model knows; others encode as missing.
CATEGORY_CODES = (
    "grocery", "restaurant", "gas", "retail", "online", "electronics", "travel", "jewelry", "gambling",
)
_CODE = {c: float(i) for i, c in enumerate(CATEGORY_CODES)}

#: Model input, in order. Part of the manifest: a model trained on another list is refused.
MODEL_FEATURES: tuple[str, ...] = (
    *STREAM_FEATURES,
    *DERIVED_FEATURES,
    *PROFILE_FEATURES,
    *MERCHANT_FEATURES,
    "merchant_category_code",
    "customer_known",
    "merchant_known",
)
_N = len(MODEL_FEATURES)
_NUMERIC = MODEL_FEATURES[:-3]

#: What the inference log keeps of a scored record (:mod:`models.inference_log`): ids,
#: scores and the model's numeric inputs.
LOG_SPEC = LogSpec("fraud", "transaction_id", "customer_id", ("fraud_score", "risk_score", "anomaly_score"),
                   _NUMERIC)


def feature_row(
    tx: Transaction,
    profile: Mapping[str, Any],
    customer_known: bool,
    risk: Mapping[str, Any],
    merchant_known: bool,
) -> dict[str, Any]:
    """The record of one transaction with every model input: the input fields as
    received, the validated values over them (typed ids, amount, coordinates,
    label), the streaming features (``tx.features``), the Feast values with their
    ``*_known`` flags (see :func:`features.store.with_defaults`) and the derived
    features. The scorer and training both build rows with it.

    >>> tx = parse_transaction({"transaction_id": 1, "customer_id": "C1", "merchant_id": "M1",
    ...     "merchant_category": "gas", "amount": "20", "latitude": 0, "longitude": 0,
    ...     "timestamp": 0, "channel": "web"})
    >>> row = feature_row(tx, {"avg_transaction_amount": 10.0}, True, {"merchant_risk_score": 0.1}, False)
    >>> row["transaction_id"], row["amount"], row["channel"], row["amount_to_profile_ratio"], row["merchant_known"]
    ('1', 20.0, 'web', 2.0, False)
    """
    rec = {
        **tx.fields,
        "transaction_id": tx.transaction_id,
        "customer_id": tx.customer_id,
        "merchant_id": tx.merchant_id,
        "merchant_category": tx.merchant_category,
        "amount": tx.amount,
        "latitude": tx.latitude,
        "longitude": tx.longitude,
    }
    if "is_fraud" in rec:
        rec["is_fraud"] = tx.is_fraud
    rec.update(tx.features)
    rec.update(profile)
    rec.update(risk)
    rec["customer_known"] = customer_known
    rec["merchant_known"] = merchant_known
    rec.update(derived_features(rec, profile))
    return rec


def feature_matrix(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The ``(len(rows), len(MODEL_FEATURES))`` float matrix, NaN where a value is missing.

    Built once per batch (turning lists into arrays is most of the cost of
    batched scoring).

    >>> X = feature_matrix([{"amount_count_1h": 3, "merchant_category": "travel"}, {}])
    >>> X.shape == (2, len(MODEL_FEATURES))
    True
    >>> X[:, MODEL_FEATURES.index("amount_count_1h")].tolist()
    [3.0, nan]
    """
    code, nan, names = _CODE.get, math.nan, _NUMERIC
    X = np.array(
        [
            [*map(r.get, names), code(r.get("merchant_category"), nan),
             r.get("customer_known", True), r.get("merchant_known", True)]
            for r in rows
        ],
        dtype=float,
    )  # None becomes NaN
    return X.reshape(len(rows), _N)


def _whole_model_text(data: bytes, where: str) -> str:
    """The LightGBM model text, refused (:class:`RegistryError`) unless it is whole:
    LightGBM's parser crashes the process on some truncated texts, so its end
    markers are checked first."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RegistryError(f"{where}: the artifact is not a LightGBM model text (not UTF-8)") from None
    if not text.startswith("tree\n") or "\nend of trees\n" not in text or "\nend of parameters\n" not in text:
        raise RegistryError(f"{where}: the artifact is not a whole LightGBM model text (truncated or another "
                            "format: no 'end of trees' / 'end of parameters'); publish it again")
    return text


class FraudModel:
    """A loaded, verified fraud model. ``version`` is ``name/number``."""

    def __init__(self, model_text: bytes, manifest: Mapping[str, Any]) -> None:
        import lightgbm as lgb

        self.manifest = dict(manifest)
        self.version = f"{manifest['name']}/{manifest['version']}"
        self.feature_names = tuple(manifest.get("feature_names") or ())
        text = _whole_model_text(model_text, self.version)
        lgb.register_logger(logging.getLogger("lightgbm"))  # its messages join the JSON log, not stdout
        try:
            self._booster = lgb.Booster(model_str=text)
        except lgb.basic.LightGBMError as exc:
            raise RegistryError(f"{self.version}: LightGBM cannot read the artifact: {exc}") from None
        if self._booster.num_feature() != len(self.feature_names):
            raise RegistryError(
                f"{self.version}: booster has {self._booster.num_feature()} features, "
                f"manifest lists {len(self.feature_names)}"
            )

    @classmethod
    def load(
        cls, ref: str, registry: Registry | str | Path = "model_registry",
        expected_features: Sequence[str] = MODEL_FEATURES,
    ) -> "FraudModel":
        """Load ``ref`` from the registry; refuse a tampered artifact or another feature list."""
        reg = registry if isinstance(registry, Registry) else Registry(registry)
        data, manifest = reg.load(ref)
        names = tuple(manifest.get("feature_names", ()))
        if names != tuple(expected_features):
            missing = [f for f in expected_features if f not in names]
            extra = [f for f in names if f not in expected_features]
            raise RegistryError(
                f"{ref} ({reg.root}): manifest features differ from what the scorer computes "
                f"(missing {missing}, unexpected {extra}, or another order); retrain with `python -m models.train`"
            )
        try:
            return cls(data, manifest)
        except RegistryError as exc:  # name the file
            path = reg.root / str(manifest.get("name")) / str(manifest.get("version")) / str(
                manifest.get("artifact", "model.txt"))
            raise RegistryError(f"{path}: {exc}") from None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Fraud probability per row, vectorised, on one thread (stream workers share cores)."""
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected a (n, {len(self.feature_names)}) matrix, got shape {X.shape}")
        if len(X) == 0:
            return np.empty(0)
        return self._booster.predict(X, num_threads=1)

    def explain(self, X: np.ndarray, top: int = 3) -> list[list[tuple[str, float]]]:
        """The ``top`` features pushing each row's score up (TreeSHAP contributions)."""
        if len(X) == 0:
            return []
        contrib = self._booster.predict(X, pred_contrib=True, num_threads=1)[:, :-1]
        order = np.argsort(-contrib, axis=1)[:, :top]
        return [
            [(self.feature_names[j], float(contrib[i, j])) for j in order[i] if contrib[i, j] > 0]
            for i in range(len(X))
        ]


# --- configuration and state --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FraudScoringConfig:
    """Settings of the fraud scoring steps; the builder gives them to every state
    object (state snapshots never carry them, so a new value applies on restart).

    Args:
        lateness_s: how late an event may arrive and still get exact windows.
        max_events: cap on the exact tail of newest events kept per customer (the
            previous event for time/distance/speed); windows are tiled and uncapped.
        shards: number of shards of customers, one shared detector each.
        amount_warmup, amount_alpha: the per-customer amount detector
            (:class:`~models.detectors.KeyDetector`).
        shard_window, shard_calib_warmup, shard_seed: the shared detector
            (:class:`~models.detectors.ShardDetector`).
        anomaly_method: how detector scores combine (:func:`models.status.combine_scores`).
        anomaly_weight: how much the anomaly score may add to the risk
            (:func:`models.status.combined_risk`).
        explain: which alerts get the model's top features (TreeSHAP, ~1.5 ms per
            alert) in their ``reasons``: ``"alerts"`` (every non-NORMAL record),
            ``"critical"`` (CRITICAL only) or ``"none"`` (reasons name the scores only).
        thresholds: status thresholds on the risk.
        dedup_horizon_s, dedup_max_ids: a transaction id seen again for the same
            customer within this much event time (and among the customer's last
            ``dedup_max_ids`` ids) is a duplicate: a dead letter (step ``dedup``),
            never counted twice (:class:`~features.dedup.RecentIds`). ``0`` turns it off.
        idle_expiry_s: a customer idle this long in event time starts afresh (its
            state is dropped, so memory follows active customers); ``0`` keeps
            every customer forever.
    """

    lateness_s: float = 600.0
    max_events: int = 512
    shards: int = 4
    amount_warmup: int = 5
    amount_alpha: float = 0.02
    shard_window: int = 250
    shard_calib_warmup: int = 50
    shard_seed: int = 42
    anomaly_method: str = "noisy_or"
    anomaly_weight: float = 0.4
    thresholds: Thresholds = Thresholds()
    explain: str = "alerts"
    dedup_horizon_s: float = 3600.0
    dedup_max_ids: int = 256
    idle_expiry_s: float = 30 * 86400.0

    def __post_init__(self) -> None:
        if self.explain not in ("alerts", "critical", "none"):
            raise ValueError(f"FraudScoringConfig: explain must be 'alerts', 'critical' or 'none', got {self.explain!r}")
        if not self.lateness_s >= 0:
            raise ValueError(f"FraudScoringConfig: lateness_s must be >= 0, got {self.lateness_s!r}")
        if self.shards < 1:
            raise ValueError(f"FraudScoringConfig: shards must be >= 1, got {self.shards!r}")
        if not 0.0 <= self.anomaly_weight <= 1.0:
            raise ValueError(f"FraudScoringConfig: anomaly_weight must be in [0, 1], got {self.anomaly_weight!r}")
        if self.anomaly_method not in ("noisy_or", "max", "mean"):
            raise ValueError(f"FraudScoringConfig: unknown anomaly_method {self.anomaly_method!r}")
        if not (self.dedup_horizon_s >= 0 and self.dedup_max_ids >= 0 and self.idle_expiry_s >= 0):
            raise ValueError(
                "FraudScoringConfig: dedup_horizon_s, dedup_max_ids and idle_expiry_s must be >= 0, got "
                f"{self.dedup_horizon_s!r}, {self.dedup_max_ids!r}, {self.idle_expiry_s!r}"
            )


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
        (or refuse a duplicate: see the class docstring)."""
        cfg = self.cfg
        last = self.features.windows.watermark
        if cfg.idle_expiry_s and tx.t - last > cfg.idle_expiry_s and last != -math.inf:
            self.__init__(cfg)  # idle too long: start afresh, as if the state had been dropped
        first = self.ids.check(tx.transaction_id, tx.t)
        if first is not None:
            return duplicate(tx.fields, "transaction_id", tx.transaction_id, "customer", tx.customer_id, first,
                             cfg.dedup_horizon_s)
        tx.features = self.features.update(tx.t, tx.amount, tx.latitude, tx.longitude)
        tx.amount_score, tx.amount_warming = self.amount_detector.score_learn(math.log1p(tx.amount))
        return tx

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


def shard_vector(tx: Transaction) -> dict[str, float | None]:
    """The shared detector's input for one transaction (after :class:`CustomerState`)."""
    f = tx.features
    dev = f.get("amount_deviation")
    return {
        "log_amount": math.log1p(tx.amount),
        "log_gap": _log1p(f.get("time_since_last_transaction")),
        "count_1h": f.get("amount_count_1h"),
        "log_distance": _log1p(f.get("distance_from_previous_km")),
        "log_speed": _log1p(f.get("speed_kmh")),
        "amount_deviation": None if dev is None else max(-5.0, min(dev, 20.0)),
    }


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
        results = self.detector.score_learn_many([shard_vector(tx) for tx in txs])
        method = self.method
        for tx, (score, warming) in zip(txs, results):
            scores = {"amount": tx.amount_score, "multivariate": score}
            warm = [name for name, w in (("amount", tx.amount_warming), ("multivariate", warming)) if w]
            tx.anomaly_scores = {k: None if k in warm or v is None else round(v, 4) for k, v in scores.items()}
            combined = anomaly_score(scores, warm, method=method)
            tx.anomaly_score = None if combined is None else round(combined, 4)
            tx.anomaly_warming_up = bool(warm)
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
        update = self.monitor.update
        for r in records:
            if update(r["fraud_score"]):
                ph = self.monitor.ph
                out.append({
                    "kind": "drift",
                    "id": f"drift:{r['model_version']}:{r['transaction_id']}",
                    "model_version": r["model_version"],
                    "detector": "fraud_score",
                    "method": "PageHinkley",
                    "direction": "up",
                    "score_mean_before": round(ph._x_mean.get(), 6) if ph._x_mean.n else None,
                    "transaction_id": r["transaction_id"],
                    "event_time": r.get("event_time"),
                    "scored_at": format_time(time.time()),
                })
        return out

    def snapshot(self) -> tuple:
        return self.monitor.snapshot()

    def load(self, snap: tuple) -> None:
        self.monitor.load(snap)


# --- scoring ------------------------------------------------------------------------------


class FraudScorer:
    """Scores batches of transactions that went through :class:`CustomerState`
    and :class:`ShardState`.

    Args:
        model: the loaded static model, or a :class:`~models.serving.ModelRouter`
            (versions followed in the registry, traffic split by customer, shadows).
        customers, merchants: cached Feast lookups of ``customer_profile`` (with
            :data:`~features.store.PROFILE_DEFAULTS`) and ``merchant_risk`` (with
            :data:`~features.store.MERCHANT_DEFAULTS`); see :func:`features.store.fraud_lookups`.
        cfg: the anomaly weight and thresholds are read from it.
    """

    def __init__(
        self,
        model: FraudModel | ModelRouter,
        customers: CachedLookup,
        merchants: CachedLookup,
        cfg: FraudScoringConfig = FraudScoringConfig(),
    ) -> None:
        self.models = model if isinstance(model, ModelRouter) else ModelRouter.fixed(model)
        self.customers = customers
        self.merchants = merchants
        self.thresholds = cfg.thresholds
        self.anomaly_weight = cfg.anomaly_weight
        self.explain = cfg.explain

    def score_batch(self, txs: Sequence[Transaction]) -> list[dict[str, Any]]:
        """JSON-ready scored records, in input order.

        A record is :func:`feature_row` (every input field, typed values, streaming,
        Feast and derived features, ``customer_known``/``merchant_known``) plus
        ``feature_fallback`` (true when some Feast values are defaults because the
        store failed, timed out or its circuit breaker was open), ``anomaly_scores``,
        ``anomaly_score``, ``anomaly_warming_up``, ``fraud_score``,
        ``risk_score``, ``status``, ``model_version`` (the version that decided),
        ``shadow_scores`` (``{version: fraud_score}`` of the shadow versions that
        scored this customer, only then; never used for the status), ``event_time``
        (the event's time, ISO-8601 UTC), ``scored_at``, ``latency_ms`` (arrival to scoring) and, on alerts (not NORMAL), ``reasons``.
        Computed fields win over input fields of the same name.

        The models come from the router's current assignment, taken once per batch:
        a version switch happens between batches.
        """
        if not txs:
            return []
        profiles = self.customers.get_many([tx.customer_id for tx in txs])
        no_profile = getattr(self.customers, "last_fallback", ())
        merchants = self.merchants.get_many([tx.merchant_id for tx in txs])
        no_risk = getattr(self.merchants, "last_fallback", ())
        records: list[dict[str, Any]] = []
        for tx in txs:
            profile, customer_known = profiles[tx.customer_id]
            risk, merchant_known = merchants[tx.merchant_id]
            rec = feature_row(tx, profile, customer_known, risk, merchant_known)
            # defaults because the store could not answer, not because it does not know the key
            rec["feature_fallback"] = tx.customer_id in no_profile or tx.merchant_id in no_risk
            rec["anomaly_scores"] = tx.anomaly_scores
            rec["anomaly_score"] = tx.anomaly_score
            rec["anomaly_warming_up"] = tx.anomaly_warming_up
            records.append(rec)
        X = feature_matrix(records)
        models = self.models.current(event_time=max(tx.t for tx in txs))
        keys = [tx.customer_id for tx in txs]
        decider = models.decider_of(keys)
        fraud, versions = self._predict(X, models.deciders, decider)
        if models.shadows:
            self._shadow(X, models, keys, records)
        scored_at = time.time()
        stamp = format_time(scored_at)
        status_of, weight = self.thresholds.status, self.anomaly_weight
        alerts: list[int] = []
        for i, (tx, rec, p) in enumerate(zip(txs, records, fraud)):
            risk_score = combined_risk(p, tx.anomaly_score, weight)
            status = status_of(risk_score)
            rec["fraud_score"] = round(p, 6)
            rec["risk_score"] = round(risk_score, 6)
            rec["status"] = status
            rec["model_version"] = versions[i]
            rec["event_time"] = format_time(tx.t)
            rec["scored_at"] = stamp
            rec["latency_ms"] = round((scored_at - tx.arrival) * 1000.0, 3)
            if status != NORMAL:
                alerts.append(i)
        explained = [] if self.explain == "none" else (
            alerts if self.explain == "alerts" else [i for i in alerts if records[i]["status"] == CRITICAL])
        tops: dict[int, list[tuple[str, float]]] = {}
        for m, rows in _groups(explained, decider, len(models.deciders)):
            tops.update(zip(rows, models.deciders[m].explain(X[rows])))
        for i in alerts:
            records[i]["reasons"] = self.reasons(records[i], tops.get(i, []))
        return records

    @staticmethod
    def _predict(X: np.ndarray, deciders: Sequence[Any], decider: list[int]) -> tuple[list[float], list[str]]:
        """Each row's fraud probability by its deciding model, and that model's version."""
        if len(deciders) == 1:
            return deciders[0].predict(X).tolist(), [deciders[0].version] * len(X)
        fraud, versions = [0.0] * len(X), [""] * len(X)
        for m, rows in _groups(range(len(X)), decider, len(deciders)):
            model = deciders[m]
            for i, p in zip(rows, model.predict(X[rows]).tolist()):
                fraud[i], versions[i] = p, model.version
        return fraud, versions

    @staticmethod
    def _shadow(X: np.ndarray, models: Assignment, keys: list[str], records: list[dict[str, Any]]) -> None:
        """``shadow_scores`` of the rows each shadow model scores (never used for the status)."""
        wanted = models.shadows_of(keys)
        for ref, model in models.shadows.items():
            rows = [i for i, refs in enumerate(wanted) if ref in refs]
            if not rows:
                continue
            try:
                scores = model.predict(X[rows]).tolist()
            except Exception as exc:  # a shadow never costs the decision: its scores are left out
                log.error("shadow_scoring_failed", model=model.version, events=len(rows), error=repr(exc)[:300])
                continue
            for i, p in zip(rows, scores):
                records[i].setdefault("shadow_scores", {})[model.version] = round(p, 6)

    def reasons(self, rec: Mapping[str, Any], top: list[tuple[str, float]]) -> list[str]:
        """Why an alert fired: the scores over their thresholds, then the model's
        top features (``name=value``, largest TreeSHAP contribution first)."""
        out = []
        if rec["fraud_score"] > self.thresholds.warning:
            out.append(f"fraud_score={rec['fraud_score']:.3f}")
        anomaly = rec.get("anomaly_score")
        if anomaly is not None and anomaly * self.anomaly_weight > 0.1:
            detectors = [k for k, v in rec["anomaly_scores"].items() if v is not None and v > 0.5]
            out.append(f"anomaly_score={anomaly:.3f}" + (f" ({', '.join(detectors)})" if detectors else ""))
        for name, _ in top:
            v = rec.get("merchant_category") if name == "merchant_category_code" else rec.get(name)
            out.append(f"{name}={v:.4g}" if isinstance(v, float) else f"{name}={v}")
        return out


def _groups(rows: Iterable[int], group_of: Sequence[int], n: int) -> list[tuple[int, list[int]]]:
    """``[(group, rows of it), ...]`` for the non-empty groups, rows in order."""
    if n == 1:
        rows = list(rows)
        return [(0, rows)] if rows else []
    out: list[list[int]] = [[] for _ in range(n)]
    for i in rows:
        out[group_of[i]].append(i)
    return [(g, r) for g, r in enumerate(out) if r]


class FraudPipeline:
    """The fraud flow in a plain loop: the same steps, classes and order as
    ``dataflows.fraud``, for tests, benchmarks and backfills (one process, no engine).

    ``parse`` -> ``customer_step`` (:class:`CustomerState` per customer) ->
    ``shard_step`` (:class:`ShardState` per ``shard_of(customer_id, cfg.shards)``)
    -> ``score`` (:meth:`FraudScorer.score_batch`). :meth:`process` runs them on a
    batch; refused inputs and batches whose scoring raised become
    :class:`~features.records.DeadLetter` in place, as in the flow.
    :meth:`snapshot` / :meth:`load` save and restore every state object.

    >>> import numpy as np
    >>> from features.store import MERCHANT_DEFAULTS, PROFILE_DEFAULTS
    >>> class Model:  # anything with a version, predict and explain
    ...     version = "demo/1"
    ...     def predict(self, X): return np.full(len(X), 0.1)
    ...     def explain(self, X, top=3): return [[] for _ in X]
    >>> nowhere = lambda keys: {}   # a feature store that knows nobody
    >>> pipe = FraudPipeline(FraudScoringConfig(), Model(),
    ...                      CachedLookup(nowhere, PROFILE_DEFAULTS), CachedLookup(nowhere, MERCHANT_DEFAULTS))
    >>> out = pipe.process([b'{"transaction_id": "t1", "customer_id": "C1", "merchant_id": "M1", "error": "none",'
    ...     b' "merchant_category": "gas", "amount": 12, "latitude": 1, "longitude": 2, "timestamp": 0}',
    ...     b'{"transaction_id": "t2"}'])
    >>> rec, dead = out
    >>> rec["status"], rec["fraud_score"], rec["customer_known"], rec["error"], rec["anomaly_score"]
    ('NORMAL', 0.1, False, 'none', None)
    >>> dead.error
    "field 'customer_id': missing"
    """

    def __init__(
        self,
        cfg: FraudScoringConfig,
        model: FraudModel | ModelRouter | None = None,
        customers: CachedLookup | None = None,
        merchants: CachedLookup | None = None,
    ) -> None:
        self.cfg = cfg
        # without a model (and lookups): the stateful steps only (:meth:`steps`)
        self.scorer = None if model is None else FraudScorer(model, customers, merchants, cfg)
        self.customer_states: dict[str, CustomerState] = {}
        self.shard_states: dict[int, ShardState] = {}

    def parse(self, raw: Any, arrival: float) -> Transaction | DeadLetter:
        """:func:`~features.transactions.parse_transaction`, or a dead letter naming why not."""
        origin = raw if isinstance(raw, Raw) else None
        value = raw.value if origin is not None else raw
        try:
            return parse_transaction(value, arrival)
        except ValidationError as exc:
            return dead_letter(value, str(exc), "validate", origin)
        except Exception as exc:  # a parser bug must not stop the run either
            return dead_letter(value, f"{type(exc).__name__}: {exc}", "validate", origin)

    def customer_step(self, tx: Transaction) -> Transaction | DeadLetter:
        state = self.customer_states.get(tx.customer_id)
        if state is None:
            state = self.customer_states[tx.customer_id] = CustomerState(self.cfg)
        return state.update(tx)

    def shard_step(self, tx: Transaction) -> Transaction:
        shard = shard_of(tx.customer_id, self.cfg.shards)
        state = self.shard_states.get(shard)
        if state is None:
            state = self.shard_states[shard] = ShardState(self.cfg)
        return state.update(tx)

    def shard_step_many(self, txs: Sequence[Transaction]) -> list[Transaction]:
        """The shard step as the flow runs it: each shard's transactions of the batch,
        in order, through :meth:`ShardState.update_many` at once."""
        by_shard: dict[int, list[Transaction]] = {}
        for tx in txs:
            by_shard.setdefault(shard_of(tx.customer_id, self.cfg.shards), []).append(tx)
        for shard, group in by_shard.items():
            state = self.shard_states.get(shard)
            if state is None:
                state = self.shard_states[shard] = ShardState(self.cfg)
            state.update_many(group)
        return list(txs)

    def score(self, txs: Sequence[Transaction]) -> list[dict[str, Any] | DeadLetter]:
        if self.scorer is None:
            raise ValueError("FraudPipeline built without a model scores nothing: use steps()")
        try:
            return list(self.scorer.score_batch(txs))
        except Exception as exc:  # as the flow does: the batch becomes dead letters
            log.error("batch_scoring_failed", events=len(txs), error=repr(exc)[:500])
            reason = f"scoring failed: {type(exc).__name__}: {exc}"
            return [dead_letter(tx.fields, reason, "score") for tx in txs]

    def steps(self, batch: Iterable[Any], arrival: float | None = None) -> list[Transaction | DeadLetter]:
        """The stateful steps on a batch of raw inputs (parse, customer, shard), no
        scoring: the transactions with their features and anomaly scores, or dead
        letters, one per input, in input order."""
        arrival = time.time() if arrival is None else arrival
        parsed = [self.parse(raw, arrival) for raw in batch]
        featured = [x if isinstance(x, DeadLetter) else self.customer_step(x) for x in parsed]
        self.shard_step_many([x for x in featured if not isinstance(x, DeadLetter)])
        return featured

    def process(self, batch: Iterable[Any], arrival: float | None = None) -> list[dict[str, Any] | DeadLetter]:
        """Score a batch of raw inputs; one output per input, in input order."""
        featured = self.steps(batch, arrival)
        scored = iter(self.score([x for x in featured if not isinstance(x, DeadLetter)]))
        return [x if isinstance(x, DeadLetter) else next(scored) for x in featured]

    def snapshot(self) -> dict[str, Any]:
        """Every state's snapshot: ``{"customers": {id: ...}, "shards": {n: ...}}``."""
        return {
            "customers": {k: s.snapshot() for k, s in self.customer_states.items()},
            "shards": {k: s.snapshot() for k, s in self.shard_states.items()},
        }

    def load(self, snap: Mapping[str, Any]) -> None:
        """Restore :meth:`snapshot` output into states built from this pipeline's configuration."""
        self.customer_states = {}
        for key, s in snap["customers"].items():
            state = self.customer_states[key] = CustomerState(self.cfg)
            state.load(s)
        self.shard_states = {}
        for key, s in snap["shards"].items():
            shard = self.shard_states[key] = ShardState(self.cfg)
            shard.load(s)
