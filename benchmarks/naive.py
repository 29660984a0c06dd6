"""Naive baseline: what a per-event call to a scoring endpoint does.

Per event, with nothing batched and nothing cached: decode the JSON, the
customer's streaming features (the project's :class:`models.fraud.CustomerState`,
so the model sees the same input), ONE Feast ``get_online_features`` call for the
customer and ONE for the merchant, ONE ``model.predict`` on a 1-row matrix, and
the JSON response. Timed on a sample (default 2,000 events) after one warm-up
event; model load and Feast start-up are timed apart (``setup_s``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import orjson

from features.store import MERCHANT_DEFAULTS, PROFILE_DEFAULTS, open_store, with_defaults
from features.transactions import parse_transaction
from models.fraud import CustomerState, FraudModel, FraudScoringConfig, feature_matrix, feature_row

__all__ = ["run"]


def run(events: Sequence[dict], feature_repo: Path = Path("feature_repo"),
        registry: Path = Path("model_registry"), model_ref: str = "fraud_model@production") -> dict[str, Any]:
    t = time.perf_counter()
    model = FraudModel.load(model_ref, registry)
    store = open_store(feature_repo)
    profile_refs = [f"customer_profile:{n}" for n in PROFILE_DEFAULTS]
    merchant_refs = [f"merchant_risk:{n}" for n in MERCHANT_DEFAULTS]

    def lookup(refs: list[str], key: str, value: str, defaults: dict) -> tuple[dict, bool]:
        resp = store.get_online_features(features=refs, entity_rows=[{key: value}]).to_dict()
        return with_defaults({n: resp[n][0] for n in defaults}, defaults)

    lookup(profile_refs, "customer_id", "warm-up", PROFILE_DEFAULTS)
    setup_s = time.perf_counter() - t

    cfg = FraudScoringConfig()
    states: dict[str, CustomerState] = {}
    raws = [orjson.dumps(e) for e in events]
    t0 = time.perf_counter()
    for raw in raws:
        tx = parse_transaction(orjson.loads(raw), time.time())
        state = states.get(tx.customer_id)
        if state is None:
            state = states[tx.customer_id] = CustomerState(cfg)
        state.update(tx)
        profile, ck = lookup(profile_refs, "customer_id", tx.customer_id, PROFILE_DEFAULTS)
        merchant, mk = lookup(merchant_refs, "merchant_id", tx.merchant_id, MERCHANT_DEFAULTS)
        row = feature_row(tx, profile, ck, merchant, mk)  # streaming + Feast + derived features
        row["fraud_score"] = float(model.predict(feature_matrix([row]))[0])
        row["model_version"] = model.version
        orjson.dumps(row)
    seconds = time.perf_counter() - t0
    n = len(raws)
    return {"events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds, 1) if seconds else None,
            "feast_calls": 2 * n, "predict_calls": n, "setup_s": round(setup_s, 3)}

