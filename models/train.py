"""Train, evaluate and publish the fraud model.

    python -m cli.train [--history data/history.parquet] [--feature-repo feature_repo]
                           [--registry model_registry] [--eval-fraction 0.3] [--no-promote]

1. Reads the labelled history with :func:`features.transactions.parse_transaction`
   (the stream's parser and time policy) and replays it through
   :class:`models.fraud.CustomerState` in event-time order: the exact code the
   stream runs, so training and serving features cannot diverge.
2. Joins Feast features point-in-time correctly with ``get_historical_features``
   over the ``fraud_scoring`` feature service: each transaction sees the profile
   snapshot published before it, never a later one. Unknown keys get the same
   defaults and ``*_known`` flags as online (:func:`features.store.with_defaults`),
   and rows are built by the scorer's :func:`models.fraud.feature_row`.
3. Trains a LightGBM classifier on the earlier part of the history and evaluates
   it on the later time window (ROC AUC, PR AUC, recall and precision at the
   WARNING and CRITICAL thresholds).
4. Evaluates the model ``production`` points at (if any) on the same evaluation
   rows, stored as the manifest's ``baseline``: a like-for-like comparison.
5. Publishes the model text and a manifest to the registry and, unless
   ``--no-promote``, points the ``production`` alias at it; prints how the new
   version compares with the baseline (``streamscore train`` does the same).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import structlog

from features.dedup import RecentIds
from features.records import ValidationError, format_time
from features.store import MERCHANT_DEFAULTS, PROFILE_DEFAULTS, with_defaults
from features.transactions import Transaction, parse_transaction
from models.fraud import (
    MERCHANT_FEATURES,
    MODEL_FEATURES,
    MODEL_NAME,
    PROFILE_FEATURES,
    CustomerState,
    FraudModel,
    FraudScoringConfig,
    feature_matrix,
    feature_row,
)
from models.registry import Registry, RegistryError, compare_metrics, format_ref, parse_ref, render_comparison

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


def load_history(path: Path) -> list[Transaction]:
    """The labelled history (Parquet or JSON lines), parsed by
    :func:`~features.transactions.parse_transaction` and sorted by event time
    (stable). Rows it refuses, rows without a label and copies of an id the stream
    would refuse as duplicates are left out and logged."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training history; create it with `python -m datagen.transactions dataset`")
    if path.suffix == ".parquet":
        rows: Sequence[Any] = pd.read_parquet(path).to_dict("records")
    else:
        rows = [line for line in path.read_bytes().splitlines() if line.strip()]
    txs: list[Transaction] = []
    refused: list[str] = []
    unlabelled = 0
    for row in rows:
        try:
            tx = parse_transaction(row)
        except ValidationError as exc:
            refused.append(str(exc))
            continue
        if tx.is_fraud is None:
            unlabelled += 1
            continue
        txs.append(tx)
    txs.sort(key=lambda tx: tx.t)
    # copies of an id the stream would refuse as duplicates (features.dedup.RecentIds, the stream's settings)
    cfg, recent = FraudScoringConfig(), {}
    unique: list[Transaction] = []
    for tx in txs:
        ids = recent.get(tx.customer_id)
        if ids is None:
            ids = recent[tx.customer_id] = RecentIds(cfg.dedup_horizon_s, cfg.dedup_max_ids)
        if ids.check(tx.transaction_id, tx.t) is None:
            unique.append(tx)
    duplicates = len(txs) - len(unique)
    if refused or unlabelled or duplicates:
        log.warning("history_rows_left_out", path=str(path), refused=len(refused), unlabelled=unlabelled,
                    duplicates=duplicates, first_error=refused[0] if refused else None)
    return unique


def replay_stream_features(
    txs: Sequence[Transaction], cfg: FraudScoringConfig = FraudScoringConfig()
) -> list[Transaction]:
    """Fill every transaction's streaming features (``tx.features``), one
    :class:`~models.fraud.CustomerState` per customer, in the given order (event
    time; each customer's history through :meth:`CustomerState.update_many
    <models.fraud.CustomerState.update_many>` at once). Returns the transactions the stream would score: the copies it refuses
    as duplicates (the same id for the same customer, within the dedup horizon) are
    left out, as the stream leaves them out of scoring."""
    by_customer: dict[str, list[Transaction]] = {}
    for tx in txs:
        by_customer.setdefault(tx.customer_id, []).append(tx)
    refused: set[int] = set()
    for group in by_customer.values():  # customers are independent: each one's history in one batch
        refused.update(id(tx) for tx, r in zip(group, CustomerState(cfg).update_many(group)) if r is not tx)
    kept = [tx for tx in txs if id(tx) not in refused]
    if len(kept) < len(txs):
        log.warning("history_duplicates_left_out", duplicates=len(txs) - len(kept))
    return kept


def point_in_time_features(
    txs: Sequence[Transaction], repo_path: Path, service: str = "fraud_scoring"
) -> pd.DataFrame:
    """Feast features as of each transaction's time, one row per transaction in
    ``txs`` order; NaN where Feast has no value."""
    from features.store import import_feast

    store = import_feast().FeatureStore(repo_path=str(repo_path))
    ids = [tx.transaction_id for tx in txs]
    entity_df = pd.DataFrame(
        {
            "transaction_id": ids,
            "customer_id": [tx.customer_id for tx in txs],
            "merchant_id": [tx.merchant_id for tx in txs],
            # whole microseconds: Feast drops finer parts (with a warning)
            "event_timestamp": pd.to_datetime(
                np.round(np.array([tx.t for tx in txs], dtype=float) * 1e6).astype("int64"), unit="us", utc=True
            ),
        }
    )
    job = store.get_historical_features(entity_df=entity_df, features=store.get_feature_service(service))
    df = job.to_df().set_index("transaction_id")
    return df.loc[ids].reset_index()


def build_training_rows(
    txs: Sequence[Transaction], pit: pd.DataFrame, cfg: FraudScoringConfig = FraudScoringConfig()
) -> list[dict[str, Any]]:
    """Model rows (:func:`~models.fraud.feature_row`), one per transaction: streaming
    features replayed in ``txs`` order, Feast values from ``pit`` with the online defaults."""
    kept = {id(tx) for tx in replay_stream_features(txs, cfg)}
    if len(kept) < len(txs):
        raise ValueError("build_training_rows: the history holds duplicate ids; read it with load_history")
    prof = pit[list(PROFILE_DEFAULTS)].to_dict("records")
    merch = pit[list(MERCHANT_DEFAULTS)].to_dict("records")
    rows: list[dict[str, Any]] = []
    for tx, p, m in zip(txs, prof, merch):
        profile, customer_known = with_defaults(p, PROFILE_DEFAULTS)
        risk, merchant_known = with_defaults(m, MERCHANT_DEFAULTS)
        rows.append(feature_row(tx, profile, customer_known, risk, merchant_known))
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
    baseline: str | None = f"{MODEL_NAME}@production",
) -> dict[str, Any]:
    """Run the whole pipeline; returns the published manifest.

    When ``baseline`` resolves (by default the ``production`` alias, before it moves), that
    model is also evaluated on this candidate's evaluation rows and the result stored
    in the manifest's ``baseline`` (see :func:`evaluate_baseline`): a like-for-like comparison."""
    import lightgbm as lgb

    thresholds = thresholds or {"critical": 0.8, "warning": 0.5}
    t0 = time.perf_counter()
    txs = load_history(history)
    pit = point_in_time_features(txs, repo_path)
    rows = build_training_rows(txs, pit)
    X = feature_matrix(rows)
    y = np.array([tx.is_fraud for tx in txs], dtype=int)
    t = np.array([tx.t for tx in txs], dtype=float)
    split = t.min() + (t.max() - t.min()) * (1 - eval_fraction)
    train_mask, eval_mask = t < split, t >= split
    log.info("training_set", events=len(txs), train=int(train_mask.sum()), eval=int(eval_mask.sum()),
             fraud_rate=round(float(y.mean()), 4), seconds=round(time.perf_counter() - t0, 1))
    dtrain = lgb.Dataset(X[train_mask], y[train_mask], feature_name=list(MODEL_FEATURES), free_raw_data=False)
    booster = lgb.train(LGB_PARAMS, dtrain, num_boost_round=NUM_ROUNDS)
    p_eval = booster.predict(X[eval_mask])
    metrics = evaluate(y[eval_mask], p_eval, thresholds)
    manifest: dict[str, Any] = {
        "format": "lightgbm-text",
        "feature_names": list(MODEL_FEATURES),
        "metrics": metrics,
        "training_window": {"start": format_time(t.min()), "end": format_time(split), "events": int(train_mask.sum())},
        "evaluation_window": {"start": format_time(split), "end": format_time(t.max()), "events": int(eval_mask.sum())},
        "params": {**LGB_PARAMS, "num_boost_round": NUM_ROUNDS},
        "feast": {"feature_service": "fraud_scoring", "profile": list(PROFILE_FEATURES),
                  "merchant": list(MERCHANT_FEATURES)},
        "defaults": {"customer_profile": PROFILE_DEFAULTS, "merchant_risk": MERCHANT_DEFAULTS},
    }
    reg = Registry(registry)
    if baseline is not None:
        manifest["baseline"] = evaluate_baseline(reg, baseline, X[eval_mask], y[eval_mask], thresholds)
    version = reg.publish(MODEL_NAME, booster.model_to_string().encode(), manifest,
                          alias="production" if promote else None)
    log.info("model_published", model=f"{MODEL_NAME}/{version}", promoted=promote, **metrics,
             seconds=round(time.perf_counter() - t0, 1))
    return reg.load(f"{MODEL_NAME}/{version}")[1]


def evaluate_baseline(
    reg: Registry, ref: str, X: np.ndarray, y: np.ndarray, thresholds: dict[str, float]
) -> dict[str, Any] | None:
    """``{"ref", "alias", "metrics"}`` of the model ``ref`` points at, evaluated on the rows
    ``X, y`` (a candidate's evaluation window); ``None`` when ``ref`` does not resolve (no
    model yet); ``{"ref", "error"}`` when it cannot be loaded or scored (e.g. another
    feature list)."""
    try:
        name, version = reg.resolve(ref)
    except RegistryError:
        return None
    out: dict[str, Any] = {"ref": format_ref(name, version=version), "alias": parse_ref(ref)[1]}
    try:
        model = FraudModel.load(out["ref"], reg)
        out["metrics"] = evaluate(y, model.predict(X), thresholds)
    except (RegistryError, ValueError) as exc:
        out["error"] = str(exc)
    return out


def comparison_text(manifest: dict[str, Any]) -> str:
    """How a published candidate compares with its ``baseline`` on the candidate's
    evaluation window: a small table, or one line saying why there is none."""
    cand = f"{manifest['name']}/{manifest['version']}"
    base = manifest.get("baseline")
    window = manifest.get("evaluation_window", {})
    if not base:
        return f"no {MODEL_NAME}@production model to compare {cand} with"
    if "error" in base:
        return f"could not evaluate {base['ref']} on {cand}'s evaluation window: {base['error']}"
    alias = f" (@{base['alias']})" if base.get("alias") else ""
    head = (f"{cand} vs {base['ref']}{alias}, both on {cand}'s evaluation window "
            f"{window.get('start')} .. {window.get('end')} ({window.get('events')} events):")
    table = render_comparison(compare_metrics(base["metrics"], manifest["metrics"]), base["ref"], cand)
    return head + "\n" + table


def run(
    history: Path = Path("data/history.parquet"),
    feature_repo: Path = Path("feature_repo"),
    registry: Path = Path("model_registry"),
    eval_fraction: float = 0.3,
    promote: bool = True,
    if_missing: bool = False,
) -> dict[str, Any] | None:
    """The command line's work: train, publish, print what was published and how it compares
    with the version ``production`` points at (on the same evaluation window). Returns the
    manifest, or ``None`` when ``if_missing`` and a production model exists."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"--eval-fraction {eval_fraction}: expected a number between 0 and 1")
    if if_missing and "production" in Registry(registry).aliases(MODEL_NAME):
        print(f"{MODEL_NAME}@production exists in {registry}; not retraining")
        return None
    manifest = train(history, feature_repo, registry, eval_fraction, promote)
    m = manifest["metrics"]
    ref = f"{manifest['name']}/{manifest['version']}"
    print(
        f"published {ref}: ROC AUC {m['roc_auc']}, PR AUC {m['pr_auc']}, "
        f"CRITICAL recall {m['recall_at_critical']} precision {m['precision_at_critical']} "
        f"on {manifest['evaluation_window']['events']} later events"
    )
    if promote:
        print(f"{MODEL_NAME}@production -> {ref}")
    else:
        print(f"{MODEL_NAME}@production not moved; promote with: streamscore models alias "
              f"{MODEL_NAME} production {manifest['version']}")
    print(comparison_text(manifest))
    return manifest
