"""Glue between the dataflows and the scoring logic: lazy, per-worker scorers.

Models and Feast stores are loaded on a worker's first batch (never at import),
once per worker. A batch whose scoring raises becomes dead letters with the
error, so every event still ends in exactly one output.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol, Sequence

import structlog

from dataflows.config import FraudConfig, IoTConfig
from dataflows.logs import configure_logging
from dataflows.operators import dead_letter

__all__ = ["BatchScorer", "batch_scorer", "fraud_scorer_factory", "device_profile_enricher"]

log = structlog.get_logger("dataflows.scoring")


class BatchScorer(Protocol):
    def score_batch(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]: ...


def batch_scorer(factory: Callable[[], BatchScorer], flow: str = "fraud") -> Callable[[list], list]:
    """A ``flat_map_batch`` mapper that builds its scorer on first use."""
    holder: list[BatchScorer] = []

    def score(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not holder:
            configure_logging()
            t0 = time.perf_counter()
            holder.append(factory())
            log.info("scorer_ready", flow=flow, seconds=round(time.perf_counter() - t0, 2))
        try:
            out = holder[0].score_batch(events)
        except Exception as exc:  # never let one batch kill the flow: dead-letter it
            log.error("batch_scoring_failed", flow=flow, events=len(events), error=repr(exc))
            return [
                dead_letter({k: v for k, v in e.items() if not k.startswith("_")},
                            f"scoring failed: {type(exc).__name__}: {exc}")
                for e in events
            ]
        return out

    return score


def fraud_scorer_factory(cfg: FraudConfig) -> Callable[[], BatchScorer]:
    """Builds the fraud scorer: verified model from the registry, cached Feast lookups."""

    def build() -> BatchScorer:
        from features.lookup import CachedLookup, feast_fetcher
        from models.fraud import MERCHANT_DEFAULTS, PROFILE_DEFAULTS, FraudModel
        from models.fraud_scoring import FraudScorer
        from models.status import Thresholds

        model = FraudModel.load(cfg.model, cfg.model_registry)
        log.info("model_loaded", model=model.version, metrics=model.manifest.get("metrics"))
        repo, service, yaml = cfg.feature_repo, cfg.feature_service, cfg.feature_store_yaml
        customer_fetch = feast_fetcher(repo, service, "customer_profile", "customer_id", yaml)
        merchant_fetch = customer_fetch.for_view("merchant_risk", "merchant_id")  # same store
        customers = CachedLookup(customer_fetch, PROFILE_DEFAULTS, ttl_s=cfg.lookup_ttl_s, name="customer_profile")
        merchants = CachedLookup(merchant_fetch, MERCHANT_DEFAULTS, ttl_s=cfg.lookup_ttl_s, name="merchant_risk")
        return FraudScorer(model, customers, merchants, Thresholds(cfg.critical, cfg.warning), cfg.anomaly_weight)

    return build


def device_profile_enricher(cfg: IoTConfig) -> Callable[[list], list]:
    """A ``flat_map_batch`` mapper attaching Feast ``device_profile`` features to
    IoT records, when the repo defines the ``iot_scoring`` service; otherwise
    (no repo, no such view, lookup disabled) records pass through unchanged."""
    holder: list[Any] = []

    def build() -> Any:
        if not cfg.device_profile:
            return None
        from features.lookup import CachedLookup, feast_fetcher

        fetch = feast_fetcher(cfg.feature_repo, "iot_scoring", "device_profile", "device_id", cfg.feature_store_yaml)
        try:
            names = fetch.feature_names()  # opens the store once; the lookups reuse it
        except Exception as exc:
            log.info("device_profile_disabled", repo=str(cfg.feature_repo), reason=repr(exc)[:200])
            return None
        log.info("device_profile_enabled", repo=str(cfg.feature_repo), features=names)
        return CachedLookup(fetch, dict.fromkeys(names), ttl_s=cfg.lookup_ttl_s, name="device_profile")

    def enrich(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not holder:
            configure_logging()
            holder.append(build())
        lookup = holder[0]
        if lookup is None:
            return records
        found = lookup.get_many(str(r[cfg.key_field]) for r in records)
        for r in records:
            r["device_profile"], r["device_known"] = found[str(r[cfg.key_field])]
        return records

    return enrich
