"""Transaction fraud scoring: ``python -m bytewax.run dataflows.fraud:flow``.

    input -> validate --(bad)--------------------------------------> dead_letter
               |
               +-> key by customer -> customer_features (streaming features, amount detector)
                   -> key by shard -> shard_detector (shared multivariate River detector)
                   -> score (Feast lookup per batch, static model, combined risk, status)
                   -> scored; the non-NORMAL ones also -> alerts

Configuration comes from ``SCORING_*`` environment variables (see
:class:`dataflows.config.FraudConfig` and the README).
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows.config import FraudConfig, main_flow
from dataflows.io import make_source
from dataflows.operators import dead_letter_key, stateful_object, validate, write
from dataflows.scoring import batch_scorer, fraud_scorer_factory
from datagen.transactions import iter_stream
from features.transactions import validate_transaction
from models.fraud_scoring import CustomerState, ShardState, shard_of
from models.status import NORMAL


def build_flow(cfg: FraudConfig) -> Dataflow:
    """The fraud scoring dataflow for ``cfg``; nothing is opened until it runs."""
    flow = Dataflow("fraud_scoring")
    io = cfg.io
    raw = op.input("input", flow, make_source(io, lambda: iter_stream(io.generator_events, io.seed, io.bad_rate)))
    events = validate("validate", raw, validate_transaction)

    by_customer = op.key_on("by_customer", events.oks, lambda e: e["customer_id"])
    featured = stateful_object(
        "customer_features", by_customer,
        lambda: CustomerState(cfg.lateness_s), CustomerState.restore, CustomerState.update,
    )
    by_shard = op.key_on("by_shard", op.key_rm("unkey_customer", featured),
                         lambda e: shard_of(e["customer_id"], cfg.shards))
    detected = op.key_rm("unkey_shard", stateful_object(
        "shard_detector", by_shard, ShardState, ShardState.restore, ShardState.update,
    ))

    results = op.flat_map_batch("score", detected, batch_scorer(fraud_scorer_factory(cfg)))
    split = op.branch("scored_or_failed", results, lambda r: "error" not in r)
    scored = split.trues
    alerts = op.filter("alerts_only", scored, lambda r: r["status"] != NORMAL)

    tx_id = lambda r: r["transaction_id"]  # noqa: E731
    write("scored_out", scored, io, "scored", tx_id)
    write("alerts_out", alerts, io, "alerts", tx_id)
    write("dead_letter_out", op.merge("dead_letters", events.errs, split.falses), io, "dead_letter",
          dead_letter_key(tx_id))
    return flow


flow = main_flow(build_flow, FraudConfig.from_env)
