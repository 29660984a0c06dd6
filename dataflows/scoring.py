"""From the flows' settings to the scoring objects of :mod:`models` and :mod:`features`.

The per-worker scorers are built on a worker's first batch (never at import),
from resources the start checks already opened in this process
(:func:`dataflows.resources.feature_store`, :func:`dataflows.resources.fraud_model`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import structlog

from dataflows.resources import feature_store, fraud_router
from features.records import DeadLetter, decode
from features.sensors import FieldPresence, SensorConfig, parse_fields
from features.store import CachedLookup, FeastFetcher, fraud_lookups
from models.status import Thresholds
from settings.config import FraudConfig, IoTConfig

__all__ = [
    "fraud_scoring_config",
    "fraud_scorer",
    "transaction_parser",
    "reading_parser",
    "iot_scoring_config",
    "device_profile_enricher",
    "iot_dead_letter_key",
]

log = structlog.get_logger("dataflows.scoring")


def fraud_scoring_config(cfg: FraudConfig) -> Any:
    """The fraud scoring settings the flow's configuration describes: every configured
    value is passed on (the settings' defaults are the only defaults that apply)."""
    from models.fraud import FraudScoringConfig

    return FraudScoringConfig(
        lateness_s=cfg.lateness_s,
        shards=cfg.shards,
        thresholds=Thresholds(cfg.critical, cfg.warning),
        anomaly_weight=cfg.anomaly_weight,
        explain=cfg.explain,
        explain_method=cfg.explain_method,
        explain_budget=cfg.explain_budget,
        dedup_horizon_s=cfg.dedup_horizon_s,
        dedup_max_ids=cfg.dedup_max_ids,
        idle_expiry_s=cfg.idle_expiry_s,
        min_amount=cfg.min_amount,
        max_amount=cfg.max_amount,
        max_future_s=cfg.max_future_s,
    )


def transaction_parser(cfg: FraudConfig) -> Callable[[Any, float], Any]:
    """``parse(raw, arrival)`` for :func:`dataflows.operators.key_raw` and the keyed step's parse:
    :meth:`~models.fraud.FraudScoringConfig.parse` with the configured bounds
    (``fraud.min_amount``, ``fraud.max_amount``, ``state.max_future_s``), the same
    parser :class:`~models.fraud.FraudPipeline` runs."""
    return fraud_scoring_config(cfg).parse


def reading_parser(cfg: IoTConfig) -> Callable[[Any, float], Any]:
    """``parse(raw, arrival)`` for :func:`dataflows.operators.key_raw` and the keyed step's parse: ``parse_reading``
    with the configured fields and ``state.max_future_s``. Events without a configured
    key, time or sensor field are counted (``scoring_events_missing_field_total``), and
    a field absent from all of the first ``iot.field_check_events`` events is logged
    once (``configured_field_absent``, naming the setting): a typo in a field name
    would otherwise only show as ``missing`` in every record, or readings timed by arrival."""
    from dataflows.metrics import METRICS

    features, max_future_s = iot_scoring_config(cfg).features, cfg.max_future_s
    settings = {cfg.key_field: "key_field", cfg.time_field: "time_field", **{f: "sensors" for f in cfg.sensors}}
    presence = FieldPresence(settings, cfg.field_check_events)  # one per process: its worker threads share it

    def absent(fields: list[str]) -> None:
        for f in fields:
            setting = cfg.name_of(settings[f])
            effect = {"key_field": "every such event is a dead letter",
                      "time_field": "every such reading is timed by its arrival",
                      "sensors": "every such record lists it under missing"}[settings[f]]
            log.warning("configured_field_absent", field=f, setting=setting, events=cfg.field_check_events,
                        detail=f"{setting}: field {f!r} is absent from all of the first {cfg.field_check_events} "
                               f"events ({effect}); a typo, or data with another field name?")

    def parse(raw: Any, arrival: float) -> Any:
        fields = decode(raw)
        missing, never = presence.see(fields)
        if missing:
            METRICS.missing_fields("iot", missing)
            if never:
                absent(never)
        return parse_fields(fields, features, arrival, max_future_s)

    return parse


class _Columns:
    """A fraud scorer whose ``score_batch`` makes one :class:`~models.fraud.batch.ScoredBatch`
    of a batch (the flow's item downstream of scoring), none of an empty one."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer

    def score_batch(self, txs: list[Any]) -> list[Any]:
        return [self.scorer.score_columns(txs)] if txs else []

    def prefetch(self, keys: list[Any]) -> None:
        self.scorer.prefetch(keys)


def fraud_scorer(cfg: FraudConfig) -> Callable[[], Any]:
    """Builds the worker's fraud scorer: its model router (versions, split, shadow,
    following the registry) and cached Feast lookups; its ``score_batch`` gives one
    :class:`~models.fraud.batch.ScoredBatch` per batch (the flow's item downstream)."""

    def build() -> Any:
        from models.fraud import FraudScorer

        router = fraud_router(cfg)
        store = feature_store(cfg.feature_repo, cfg.feature_store_yaml)
        customers, merchants = fraud_lookups(store, cfg.feature_service, cfg.lookup_ttl_s,
                                             timeout_s=cfg.lookup_timeout_s, failures=cfg.lookup_failures,
                                             retry_s=cfg.lookup_retry_s)
        a = router.assignment
        log.info("model_loaded", model=a.label, poll_s=router.poll_s,
                 metrics={m.version: m.manifest.get("metrics") for m in (*a.deciders, *a.shadows.values())})
        scorer = FraudScorer(router, customers, merchants, fraud_scoring_config(cfg))
        return _Columns(scorer)

    return build


def iot_scoring_config(cfg: IoTConfig) -> Any:
    """The detector settings the IoT flow's configuration describes."""
    from models.iot import IoTScoringConfig

    features = SensorConfig(key_field=cfg.key_field, time_field=cfg.time_field, sensors=cfg.sensors,
                            windows_s=cfg.windows_s, lateness_s=cfg.lateness_s)
    return IoTScoringConfig(features=features, n_shards=cfg.shards, dedup_horizon_s=cfg.dedup_horizon_s,
                         dedup_max_ids=cfg.dedup_max_ids, idle_expiry_s=cfg.idle_expiry_s)


class _PassThrough:
    def score_batch(self, batches: list[Any]) -> list[Any]:
        return batches


class _DeviceProfiles:
    """Adds Feast ``device_profile`` features and ``device_known`` to the records of
    scored batches (:class:`models.iot.ScoredReadings`), one lookup for all of them."""

    def __init__(self, lookup: Any, key_field: str) -> None:
        self.lookup = lookup
        self.key_field = key_field

    def score_batch(self, batches: list[Any]) -> list[Any]:
        keys = [[str(k) for k in b.field_values(self.key_field)] for b in batches]
        found = self.lookup.get_many(k for ks in keys for k in ks)
        for b, ks in zip(batches, keys):
            b.set_profiles([found[k] for k in ks])
        return batches


def device_profile_enricher(cfg: IoTConfig) -> Callable[[], Any]:
    """Builds the worker's device-profile step (a pass-through with ``iot.device_profile = false``)."""

    def build() -> Any:
        if not cfg.device_profile:
            return _PassThrough()

        store = feature_store(cfg.feature_repo, cfg.feature_store_yaml)
        fetch = FeastFetcher(store, "iot_scoring", "device_profile", "device_id")
        lookup = CachedLookup(fetch, dict.fromkeys(fetch.feature_names()), ttl_s=cfg.lookup_ttl_s,
                              name="device_profile", timeout_s=cfg.lookup_timeout_s,
                              failures=cfg.lookup_failures, retry_s=cfg.lookup_retry_s)
        return _DeviceProfiles(lookup, cfg.key_field)

    return build


def iot_dead_letter_key(cfg: IoTConfig) -> Callable[[DeadLetter], str]:
    """Message key of an IoT dead letter: ``device@time`` when the raw input has
    them, else ``topic:partition:offset``."""

    def key(d: DeadLetter) -> str:
        raw = d.raw
        if isinstance(raw, Mapping) and raw.get(cfg.key_field) not in (None, ""):
            return f"{raw.get(cfg.key_field)}@{raw.get(cfg.time_field, '')}"
        return d.key()

    return key
