"""Train, evaluate and publish the fraud model.

    python -m models.train [--history data/history.parquet] [--feature-repo feature_repo]
                           [--registry model_registry] [--eval-fraction 0.3] [--no-promote]

1. Replays the labelled history through :class:`features.transactions.CustomerFeatures`
   in event-time order: the exact code the stream runs, so training and serving
   features cannot diverge.
2. Joins Feast features point-in-time correctly with ``get_historical_features``
   over the ``fraud_scoring`` feature service: each transaction sees the profile
   snapshot published before it, never a later one.
3. Trains a LightGBM classifier on the earlier part of the history and evaluates
   it on the later time window (ROC AUC, PR AUC, recall and precision at the
   WARNING and CRITICAL thresholds).
4. Publishes the model text and a manifest to the registry and, unless
   ``--no-promote``, points the ``production`` alias at it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog

from features.transactions import CustomerFeatures, derived_features
from models.fraud import (
    MERCHANT_DEFAULTS,
    MERCHANT_FEATURES,
    MODEL_FEATURES,
    MODEL_NAME,
    PROFILE_DEFAULTS,
    PROFILE_FEATURES,
    feature_matrix,
)
from models.registry import Registry

log = structlog.get_logger(__name__)

LGB_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 42,
    "deterministic": True,
    "num_threads": 2,
    "verbosity": -1,
}
NUM_ROUNDS = 300


def replay_stream_features(events: pd.DataFrame, lateness_s: float = 600.0) -> list[dict[str, Any]]:
    """Streaming features of every event, computed in event-time order per customer."""
    states: dict[str, CustomerFeatures] = {}
    out: list[dict[str, Any]] = []
    for cid, t, amount, lat, lon in zip(
        events["customer_id"], events["_t"], events["amount"], events["latitude"], events["longitude"]
    ):
        state = states.get(cid)
        if state is None:
            state = states[cid] = CustomerFeatures(lateness_s)
        out.append(state.update(t, amount, lat, lon))
    return out


def point_in_time_features(events: pd.DataFrame, repo_path: Path, service: str = "fraud_scoring") -> pd.DataFrame:
    """Feast features as of each event's time, one row per event in ``events`` order."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo_path))
    entity_df = pd.DataFrame(
        {
            "transaction_id": events["transaction_id"].to_numpy(),
            "customer_id": events["customer_id"].to_numpy(),
            "merchant_id": events["merchant_id"].to_numpy(),
            "event_timestamp": pd.to_datetime(events["_t"], unit="s", utc=True),
        }
    )
    job = store.get_historical_features(entity_df=entity_df, features=store.get_feature_service(service))
    df = job.to_df().set_index("transaction_id")
    return df.loc[events["transaction_id"].to_numpy()].reset_index()


def build_training_rows(events: pd.DataFrame, pit: pd.DataFrame) -> list[dict[str, Any]]:
    """Streaming + Feast + derived features per event, with the lookup's defaults."""
    stream = replay_stream_features(events)
    rows: list[dict[str, Any]] = []
    prof_cols = list(PROFILE_DEFAULTS)
    merch_cols = list(MERCHANT_DEFAULTS)
    prof = pit[prof_cols].astype(object).where(pit[prof_cols].notna(), None).to_dict("records")
    merch = pit[merch_cols].astype(object).where(pit[merch_cols].notna(), None).to_dict("records")
    for ev, feats, p, m in zip(events.to_dict("records"), stream, prof, merch):
        customer_known = any(v is not None for v in p.values())
        merchant_known = any(v is not None for v in m.values())
        p = {k: (v if v is not None else PROFILE_DEFAULTS[k]) for k, v in p.items()}
        m = {k: (v if v is not None else MERCHANT_DEFAULTS[k]) for k, v in m.items()}
        rows.append(
            {
                **ev,
                **feats,
                **p,
                **m,
                **derived_features(ev, p),
                "customer_known": customer_known,
                "merchant_known": merchant_known,
            }
        )
    return rows


def evaluate(y: np.ndarray, p: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """ROC AUC, PR AUC (average precision), and recall / precision at each threshold."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    out: dict[str, Any] = {
        "roc_auc": round(float(roc_auc_score(y, p)), 4),
        "pr_auc": round(float(average_precision_score(y, p)), 4),
        "positives": int(y.sum()),
        "events": int(len(y)),
    }
    for name, thr in thresholds.items():
        flagged = p > thr
        tp = int((flagged & (y == 1)).sum())
        out[f"recall_at_{name}"] = round(tp / max(int(y.sum()), 1), 4)
        out[f"precision_at_{name}"] = round(tp / max(int(flagged.sum()), 1), 4)
        out[f"threshold_{name}"] = thr
    return out


def train(
    history: Path,
    repo_path: Path,
    registry: Path,
    eval_fraction: float = 0.3,
    promote: bool = True,
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline; returns the published manifest."""
    import lightgbm as lgb

    thresholds = thresholds or {"critical": 0.8, "warning": 0.5}
    t0 = time.perf_counter()
    if not history.is_file():
        raise FileNotFoundError(
            f"{history}: no training history; create it with `python -m datagen.transactions dataset`"
        )
    events = pd.read_parquet(history) if history.suffix == ".parquet" else pd.read_json(history, lines=True)
    events["_t"] = pd.to_datetime(events["timestamp"], utc=True, format="ISO8601").astype("int64") / 1e9
    events = events.sort_values("_t", kind="stable", ignore_index=True)
    pit = point_in_time_features(events, repo_path)
    rows = build_training_rows(events, pit)
    X = feature_matrix(rows)
    y = events["is_fraud"].to_numpy().astype(int)
    t = events["_t"].to_numpy()
    split = t.min() + (t.max() - t.min()) * (1 - eval_fraction)
    train_mask, eval_mask = t < split, t >= split
    log.info("training_set", events=len(events), train=int(train_mask.sum()), eval=int(eval_mask.sum()),
             fraud_rate=round(float(y.mean()), 4), seconds=round(time.perf_counter() - t0, 1))
    dtrain = lgb.Dataset(X[train_mask], y[train_mask], feature_name=list(MODEL_FEATURES), free_raw_data=False)
    booster = lgb.train(LGB_PARAMS, dtrain, num_boost_round=NUM_ROUNDS)
    p_eval = booster.predict(X[eval_mask])
    metrics = evaluate(y[eval_mask], p_eval, thresholds)
    iso = lambda s: pd.Timestamp(s, unit="s", tz="UTC").isoformat()  # noqa: E731
    manifest = {
        "format": "lightgbm-text",
        "feature_names": list(MODEL_FEATURES),
        "metrics": metrics,
        "training_window": {"start": iso(t.min()), "end": iso(split), "events": int(train_mask.sum())},
        "evaluation_window": {"start": iso(split), "end": iso(t.max()), "events": int(eval_mask.sum())},
        "params": {**LGB_PARAMS, "num_boost_round": NUM_ROUNDS},
        "feast": {"feature_service": "fraud_scoring", "profile": list(PROFILE_FEATURES),
                  "merchant": list(MERCHANT_FEATURES)},
        "defaults": {"customer_profile": PROFILE_DEFAULTS, "merchant_risk": MERCHANT_DEFAULTS},
    }
    reg = Registry(registry)
    version = reg.publish(MODEL_NAME, booster.model_to_string().encode(), manifest,
                          alias="production" if promote else None)
    log.info("model_published", model=f"{MODEL_NAME}/{version}", promoted=promote, **metrics,
             seconds=round(time.perf_counter() - t0, 1))
    return reg.load(f"{MODEL_NAME}/{version}")[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train, evaluate and publish the fraud model.")
    p.add_argument("--history", type=Path, default=Path("data/history.parquet"))
    p.add_argument("--feature-repo", type=Path, default=Path("feature_repo"))
    p.add_argument("--registry", type=Path, default=Path("model_registry"))
    p.add_argument("--eval-fraction", type=float, default=0.3)
    p.add_argument("--no-promote", action="store_true", help="publish without moving the production alias")
    p.add_argument("--if-missing", action="store_true", help="do nothing when a production model exists")
    a = p.parse_args(argv)
    if a.if_missing and "production" in Registry(a.registry).aliases(MODEL_NAME):
        print(f"{MODEL_NAME}@production exists in {a.registry}; not retraining")
        return
    manifest = train(a.history, a.feature_repo, a.registry, a.eval_fraction, not a.no_promote)
    m = manifest["metrics"]
    print(
        f"published {manifest['name']}/{manifest['version']}: ROC AUC {m['roc_auc']}, PR AUC {m['pr_auc']}, "
        f"CRITICAL recall {m['recall_at_critical']} precision {m['precision_at_critical']} "
        f"on {manifest['evaluation_window']['events']} later events"
    )


if __name__ == "__main__":
    main()
