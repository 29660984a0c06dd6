"""Transaction fraud scoring: ``python -m bytewax.run dataflows.fraud:flow``.

    input -> key by customer (read from the raw message) --(none: bad)-----------> dead_letter
               |                                                                   ^  ^  ^
               +-> customer_features, on the customer's worker --(bad, duplicate)--+  |  |
                   (parse and validate; windows, amount detector, recent ids;         |  |
                   idle customers expire)                                             |  |
                   -> key by shard -> shard_detector (shared multivariate detector)   |  |
                   -> score (Feast lookup per batch, model, risk, status) --(failed)--+--+
                   -> scored; the non-NORMAL ones (and updates of repeats after a resume) also -> alerts
                   -> inference log (Parquet by date)
                   -> live features to Feast (writeback.enabled)
                   -> key by model version -> score_drift --(drift records)-------------> alerts

Each step is a class or function of :mod:`features.transactions` and
:mod:`models.fraud`; this file only wires them. Configuration comes from
the settings (:class:`settings.config.FraudConfig`: ``streamscore.toml`` and ``STREAMSCORE_*``).
Importing this module opens nothing: ``flow`` (or ``get_flow()``) reads the
configuration, checks everything the run depends on, then builds the flow.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows.connectors import registry as wire
from dataflows.connectors.inputs import read_input
from dataflows.connectors.inference_log import log_inference
from dataflows.connectors.outputs import write
from dataflows.connectors.writeback import fraud_writeback, write_back
from dataflows.operators import Scorers, key_raw, prefetch_batches, score_batches, split_dead_letters, stateful_object
from dataflows.placement import enough_shards, owned_keys, shard_keys, total_workers
from dataflows.scoring import fraud_scorer, fraud_scoring_config
from dataflows.startup import check_fraud, start
from features.keyhash import entity_reader
from features.records import shard_of
from settings.config import FraudConfig

__all__ = ["build_flow", "get_flow"]



def _generated(cfg: FraudConfig) -> Iterable[Any]:
    from datagen.transactions import iter_stream  # lazy: pulls pandas (~1.4 s)

    return iter_stream(cfg.io.generator_events, cfg.io.seed, cfg.io.bad_rate)


def build_flow(cfg: FraudConfig) -> Dataflow:
    """The fraud scoring dataflow for ``cfg``; nothing is opened until it runs."""
    from models.fraud import LOG_SPEC, CustomerState, ScoreDrift, ShardState  # lazy: pulls river (~6 s)

    sc = fraud_scoring_config(cfg)
    flow = Dataflow("fraud_scoring")
    raw = read_input("input", flow, cfg.io, lambda: _generated(cfg), lambda: wire.input_decoder(cfg))
    # Keyed by customer before parsing: the message crosses to the customer's worker, which
    # parses it (sc.parse, the parser FraudPipeline runs too) in its customer step.
    by_customer = key_raw("validate", raw, entity_reader("customer_id"), sc.parse,
                          entity=lambda tx: tx.customer_id, entity_name="customer_id")
    scorers = Scorers(fraud_scorer(cfg))
    keyed = by_customer.oks
    owned = owned_keys(sys.argv)  # this worker's customers (None: not known here, no prefetch)
    if owned is not None:  # Feast lookups of new keys start now, in the background, not at scoring
        keyed = prefetch_batches("prefetch", keyed, scorers, lambda kv: owned(kv[0]), _lookup_keys())
    featured = split_dead_letters("new_or_duplicate", op.key_rm("unkey_customer", stateful_object(
        "customer_features", keyed, lambda: CustomerState(sc), CustomerState.update,
        CustomerState.update_many, expire_after_s=sc.idle_expiry_s or None, check_every_s=cfg.idle_check_s,
        parse=sc.parse)))
    keys = shard_keys(sc.shards)  # one per shard, spread over the workers (dataflows/placement.py)
    by_shard = op.key_on("by_shard", featured.oks, lambda tx: keys[shard_of(tx.customer_id, sc.shards)])
    detected = op.key_rm("unkey_shard", stateful_object(
        "shard_detector", by_shard, lambda: ShardState(sc), ShardState.update, ShardState.update_many))

    # Downstream of scoring an item is a whole scored batch (models.fraud.batch.ScoredBatch): outputs,
    # metrics, the inference log and the drift step work on its columns, per batch.
    results = split_dead_letters("scored_or_failed",
                                 score_batches("score", detected, scorers, lambda tx: tx.fields))
    scored = results.oks
    alerts = op.filter("alerts_only", scored, _has_alerts)  # non-NORMAL, and updates of possible repeats
    if cfg.writeback:  # each customer's latest streaming features -> Feast customer_live
        write_back("live_out", op.flat_map("records", scored, _records), fraud_writeback(
            cfg.feature_repo, cfg.feature_store_yaml, cfg.writeback_min_interval_s))
    if cfg.score_drift_threshold > 0:  # drift of each version's score stream -> drift records on alerts
        scores = op.key_on("by_version", op.flat_map("score_rows", scored, _drift_rows), lambda vr: vr[0])
        drifts = op.key_rm("unkey_version", stateful_object(
            "score_drift", scores,
            lambda: ScoreDrift(cfg.score_drift_threshold, cfg.score_drift_delta, cfg.score_drift_min_instances),
            lambda d, vr: d.update_rows(*vr), _drift_many))
        alerts = op.merge("alerts_and_drift", alerts, op.flat_map("drift_records", drifts, lambda d: [d]))
    if cfg.io.log_enabled:
        log_inference("inference_log", scored, cfg.io.log_dir, LOG_SPEC, parts=total_workers(sys.argv) or 1,
                      max_rows=cfg.io.inference_log_max_rows, flush_s=cfg.io.inference_log_flush_s)

    letters = wire.encoder_of(cfg, "dead_letter")  # None: JSON
    write("scored_out", scored, cfg.io, "scored", lambda r: r["transaction_id"], wire.encoder_of(cfg, "scored"), letters)
    write("alerts_out", alerts, cfg.io, "alerts", lambda r: r["id"] if r.get("kind") == "drift" else r["transaction_id"],
          wire.encoder_of(cfg, "alerts"))
    write("dead_letter_out", op.merge("dead_letters", by_customer.errs, featured.errs, results.errs), cfg.io, "dead_letter",
          lambda d: d.key("transaction_id"), letters, letters)
    return flow


def _lookup_keys() -> Callable[[tuple[str, Any]], tuple[str, str | None]]:
    """``(customer, merchant)`` of a keyed message, read before it is parsed (the merchant
    with the same quick read as the customer; ``None`` if it cannot be read)."""
    merchant_of = entity_reader("merchant_id")

    def keys(kv: tuple[str, Any]) -> tuple[str, str | None]:
        customer, item = kv
        if type(item) is tuple:  # an arrived message: (value, arrival, ...)
            return customer, merchant_of(item[0])
        return customer, getattr(item, "merchant_id", None)  # parsed where it was read

    return keys


def _has_alerts(batch: Any) -> bool:
    return bool(batch.alert_rows())


def _records(batch: Any) -> list[dict]:
    return batch.records()


def _drift_rows(batch: Any) -> list[tuple[str, list]]:
    """What the score-drift step needs of a scored batch, per model version (small: it crosses workers)."""
    return list(batch.drift_columns())


def _drift_many(drift: Any, chunks: list[tuple[str, list]]) -> list[dict]:
    return [d for version, rows in chunks for d in drift.update_rows(version, rows)]


def _warm_up() -> None:
    from models.fraud import warm_up  # lazy: pulls river (~6 s)

    warm_up()


def get_flow() -> Dataflow:
    """Read the settings, check what the run needs, build the flow, then load the windows'
    compiled kernels (``python -m bytewax.run "dataflows.fraud:get_flow()"``)."""
    return start("fraud", lambda: enough_shards(FraudConfig.from_env()), check_fraud, build_flow, warm=(_warm_up,))


def __getattr__(name: str) -> Any:
    if name == "flow":  # `python -m bytewax.run dataflows.fraud:flow` builds it on demand
        return get_flow()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
