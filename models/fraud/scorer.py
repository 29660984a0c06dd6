"""Batch scoring of transactions: Feast lookups, the model, the combined risk, status and reasons
(:class:`FraudScorer`)."""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import structlog

from features.records import format_time, format_times, rounded
from features.store import CachedLookup
from features.transactions import Transaction, derived_features_many
from models.fraud.artifact import FraudModel
from models.fraud.batch import ScoredBatch
from models.fraud.config import FraudScoringConfig
from models.fraud.inputs import model_matrix
from models.serving import Assignment, ModelRouter
from models.status import CRITICAL, NORMAL, combined_risks

__all__ = ["FraudScorer"]

log = structlog.get_logger("models.fraud")


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
        self.explain_method = cfg.explain_method
        self.explain_budget = cfg.explain_budget

    def prefetch(self, keys: Sequence[tuple[str, str | None]]) -> None:
        """Start the Feast lookups of these ``(customer, merchant)`` keys that are not cached,
        in the background (:meth:`~features.store.CachedLookup.prefetch`; a merchant of
        ``None`` is left out): the flow calls it as soon as a batch is read, before it is
        parsed, and :meth:`score_columns` then takes the answers instead of waiting for a
        store call of its own."""
        self.customers.prefetch([c for c, _ in keys])
        self.merchants.prefetch([m for _, m in keys if m is not None])

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
        (the event's time, ISO-8601 UTC), ``scored_at``, ``latency_ms`` (arrival to scoring) and, on alerts (not NORMAL), ``reasons``
        (and ``reasons_skipped`` when the batch's explanation budget was spent: see
        :class:`FraudScoringConfig`).
        Computed fields win over input fields of the same name.

        The models come from the router's current assignment, taken once per batch:
        a version switch happens between batches.
        """
        return self.score_columns(txs).records() if txs else []

    def score_columns(self, txs: Sequence[Transaction]) -> ScoredBatch:
        """Score a batch, kept as columns (:class:`~models.fraud.batch.ScoredBatch`): the
        flow's step. Its records are :meth:`score_batch`'s; the model matrix is built from
        the transactions and lookups (:func:`~models.fraud.inputs.model_matrix`), and
        records are only shaped when an output asks for them (JSON lines, dicts), except
        those of explained alerts, whose ``reasons`` read them."""
        profiles = self.customers.get_many([tx.customer_id for tx in txs])
        no_profile = getattr(self.customers, "last_fallback", ())
        merchants = self.merchants.get_many([tx.merchant_id for tx in txs])
        no_risk = getattr(self.merchants, "last_fallback", ())
        # per row: (profile, customer_known, merchant risk, merchant_known)
        lookups = [(*profiles[tx.customer_id], *merchants[tx.merchant_id]) for tx in txs]
        derived = derived_features_many(txs, [lk[0] for lk in lookups])
        # defaults because the store could not answer, not because it does not know the key
        fallback = ([tx.customer_id in no_profile or tx.merchant_id in no_risk for tx in txs]
                    if no_profile or no_risk else [False] * len(txs))
        X = model_matrix(txs, lookups, derived)
        models = self.models.current(event_time=max(tx.t for tx in txs))
        keys = [tx.customer_id for tx in txs]
        decider = models.decider_of(keys)
        fraud, versions = self._predict(X, models.deciders, decider)
        shadows: list[dict[str, float] | None] = [None] * len(txs)
        if models.shadows:
            self._shadow(X, models, keys, shadows, decider)
        scored_at = time.time()
        # the scores, statuses and times as columns: the per-event rules (combined_risk,
        # Thresholds.status, round, format_time) at once, the same values
        p = np.asarray(fraud, dtype=np.float64)
        risk = combined_risks(p, [tx.anomaly_score for tx in txs], self.anomaly_weight)
        statuses = self.thresholds.statuses(risk)
        fraud_scores, risk_scores = rounded(p, 6).tolist(), rounded(risk, 6).tolist()
        latency = rounded((scored_at - np.array([tx.arrival for tx in txs], dtype=np.float64)) * 1000.0, 3).tolist()
        event_times = format_times([tx.t for tx in txs])
        stamp = format_time(scored_at)
        alerts = [i for i, status in enumerate(statuses) if status != NORMAL]
        explained = [] if self.explain == "none" else (
            alerts if self.explain == "alerts" else [i for i in alerts if statuses[i] == CRITICAL])
        skipped: dict[int, str] = {}
        if len(explained) > self.explain_budget:  # an alert storm: the strongest alerts first
            explained.sort(key=lambda i: (statuses[i] != CRITICAL, -risk_scores[i]))
            why = (f"explanation budget: {self.explain_budget} of this batch's {len(explained)} "
                   "alerts got top features (fraud.explain_budget)")
            skipped = dict.fromkeys(explained[self.explain_budget:], why)
            explained = sorted(explained[: self.explain_budget])
        tops: dict[int, list[tuple[str, float]]] = {}
        for m, rows in _groups(explained, decider, len(models.deciders)):
            model = models.deciders[m]
            explain = model.explain_exact if self.explain_method == "treeshap" else model.explain
            tops.update(zip(rows, explain(X[rows])))
        batch = ScoredBatch(txs, lookups, derived, fallback, X, fraud_scores, risk_scores, statuses, versions,
                            shadows, event_times, stamp, latency, alerts, skipped)
        for i in alerts:
            rec = batch.record(i)
            rec["reasons"] = batch.reasons[i] = self.reasons(rec, tops.get(i, []))
        return batch

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
    def _shadow(X: np.ndarray, models: Assignment, keys: list[str], shadows: list[dict[str, float] | None],
                decider: list[int]) -> None:
        """``shadow_scores`` of the rows each shadow model scores (never used for the status)."""
        wanted = models.shadows_of(keys, decider)
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
                row = shadows[i]
                if row is None:
                    row = shadows[i] = {}
                row[model.version] = round(p, 6)

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
