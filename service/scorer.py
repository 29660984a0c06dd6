"""The endpoint's scorer, free of HTTP: a batch of raw transactions to scored records, with the
fraud flow's own parser, Feast lookups (plus the customer's live row) and model router."""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Mapping, Sequence

from dataflows.resources import feature_store, fraud_router
from dataflows.scoring import fraud_scoring_config
from features.live import CUSTOMER_LIVE_VIEW, live_features
from features.records import ValidationError
from features.store import CachedLookup, CircuitBreaker, FeastFetcher, fraud_lookups
from models.fraud import FraudScorer
from settings.config import ServeConfig

__all__ = ["LIVE_VIEWS", "ANSWER_FIELDS", "InvalidItems", "EndpointScorer", "answer", "item_error"]



#: Views the endpoint reads, by join key.
LIVE_VIEWS = {"customer_profile": "customer_id", "merchant_risk": "merchant_id", "customer_live": "customer_id"}


#: Fields of the compact answer (``?verbose=true``: the whole record).
ANSWER_FIELDS = ("transaction_id", "fraud_score", "risk_score", "status", "reasons", "model_version")


class InvalidItems(ValueError):
    """Refused transactions of a request: ``errors`` is ``[{"index", "field", "error"}]``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"[{e['index']}] {e['error']}" for e in errors))
        self.errors = errors


_FIELD = re.compile(r"^field '([^']+)'")


def item_error(index: int | None, message: str) -> dict[str, Any]:
    m = _FIELD.match(message)
    return {"index": index, "field": m.group(1) if m else None, "error": message}


class EndpointScorer:
    """Validation, live features and the flow's :class:`~models.fraud.FraudScorer`, for
    requests (thread-safe: scoring runs one request at a time; parsing does not).

    Args:
        cfg: the settings.
        store: an open Feast ``FeatureStore`` (default: the repo's, opened once per process).
        router: a :class:`~models.serving.ModelRouter` (default: the flow's, from the settings).
    """

    def __init__(self, cfg: ServeConfig, store: Any = None, router: Any = None) -> None:
        fc = cfg.fraud
        self.cfg = cfg
        self.sc = fraud_scoring_config(fc)
        self.parse = self.sc.parse  # the flow's parser, with its bounds
        store = store if store is not None else feature_store(fc.feature_repo, fc.feature_store_yaml)
        self.router = router if router is not None else fraud_router(fc)
        # one breaker for the three lookups of the one store (the flow's two, and the live row)
        breaker = CircuitBreaker(fc.lookup_failures, fc.lookup_retry_s, name=cfg.live_service)
        opts = dict(timeout_s=fc.lookup_timeout_s, breaker=breaker)
        customers, merchants = fraud_lookups(store, fc.feature_service, fc.lookup_ttl_s, **opts)
        live_fetch = FeastFetcher(store, cfg.live_service, CUSTOMER_LIVE_VIEW, "customer_id")
        # never cached (ttl 0): a live row moves with every batch of the stream; an expired
        # entry is still served while the store is down (stale beats nothing)
        self.live = CachedLookup(live_fetch, dict.fromkeys(live_fetch.feature_names()), ttl_s=0.0,
                                 name=CUSTOMER_LIVE_VIEW, **opts)
        self.scorer = FraudScorer(self.router, customers, merchants, self.sc)
        self._lock = threading.Lock()

    def parse_items(self, items: Sequence[Any], arrival: float | None = None) -> list[Any]:
        """Transactions of ``items`` (JSON bytes or mappings); raises :class:`InvalidItems`
        naming every refused one by index and field."""
        arrival = time.time() if arrival is None else arrival
        txs, errors = [], []
        for i, item in enumerate(items):
            try:
                txs.append(self.parse(item, arrival))
            except ValidationError as exc:
                errors.append(item_error(i, str(exc)))
            except Exception as exc:  # a parser bug is still the item's refusal, never a 500
                errors.append(item_error(i, f"{type(exc).__name__}: {exc}"[:500]))
        if errors:
            raise InvalidItems(errors)
        return txs

    def score(self, items: Sequence[Any]) -> list[dict[str, Any]]:
        """Full scored records of ``items``, in order (see :meth:`score_transactions`)."""
        return self.score_transactions(self.parse_items(items))

    def score_transactions(self, txs: list[Any]) -> list[dict[str, Any]]:
        """Scored records, as the flow's (:meth:`FraudScorer.score_batch`), plus ``live_known``;
        the streaming features come from the live rows (:func:`features.live.live_features`)."""

        if not txs:
            return []
        sc = self.sc
        with self._lock:
            live = self.live.get_many([tx.customer_id for tx in txs])
            live_fallback = set(self.live.last_fallback)
            for tx in txs:
                values, known = live[tx.customer_id]
                tx.features = live_features(values if known else None, tx.t, tx.amount, tx.latitude, tx.longitude,
                                            lateness_s=sc.lateness_s, idle_expiry_s=sc.idle_expiry_s)
                tx.amount_score, tx.amount_warming = None, True  # the detectors are the stream's
                tx.anomaly_scores = {"amount": None, "multivariate": None}
                tx.anomaly_score, tx.anomaly_warming_up = None, True
            records = self.scorer.score_batch(txs)
        for tx, rec in zip(txs, records):
            rec["live_known"] = live[tx.customer_id][1]
            if tx.customer_id in live_fallback:
                rec["feature_fallback"] = True
        return records


def answer(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The compact answer of one scored record."""
    out = {k: rec.get(k) for k in ANSWER_FIELDS}
    out["reasons"] = rec.get("reasons") or []
    if "shadow_scores" in rec:
        out["shadow_scores"] = rec["shadow_scores"]
    out["live_known"] = rec.get("live_known", False)
    out["feature_fallback"] = rec.get("feature_fallback", False)
    return out
