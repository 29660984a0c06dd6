"""Explanations at a cost bounded per batch: path contributions against LightGBM's own
routing, and the per-batch budget in an alert storm."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from features.records import DeadLetter
from models.fraud import MODEL_FEATURES, MODEL_NAME, FraudModel, FraudPipeline, FraudScoringConfig, feature_matrix
from models.fraud.explain import TreePaths
from models.status import CRITICAL, NORMAL, Thresholds
from tests.models.fraud.test_fraud import RAW, fake_lookups


def _booster(missing: str, rng: np.random.Generator) -> tuple[lgb.Booster, np.ndarray]:
    """A small real model whose data has NaNs and exact zeros, so every routing rule is used."""
    X = rng.normal(size=(2000, 5))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[rng.random(X.shape) < 0.1] = 0.0
    y = ((np.nan_to_num(X[:, 0]) + 0.5 * np.isnan(X[:, 1]) - 0.3 * (X[:, 2] == 0)) > 0.2).astype(int)
    params = {"objective": "binary", "verbosity": -1, "num_leaves": 15, "min_data_in_leaf": 5, "seed": 3,
              "deterministic": True, "num_threads": 1, "zero_as_missing": missing == "zero",
              "use_missing": missing != "none"}
    return lgb.train(params, lgb.Dataset(X, y), 40), X


@pytest.mark.parametrize("missing", ["nan", "zero", "none"])
def test_paths_follow_lightgbm_routing_exactly(missing):
    """Brute-force reference: with the bias, the contributions of every row sum to LightGBM's own
    raw score. A wrong threshold side, missing-value rule or default direction breaks the sum."""
    rng = np.random.default_rng(11)
    booster, X = _booster(missing, rng)
    paths = TreePaths(booster.dump_model())
    rows = np.vstack([X[:300], np.full((1, 5), np.nan), np.zeros((1, 5))])
    contrib = paths.contributions(rows)
    assert contrib.shape == (len(rows), 5)
    assert np.allclose(contrib.sum(axis=1) + paths.bias, booster.predict(rows, raw_score=True), atol=1e-9)
    # one row at a time gives the same as the batch
    assert np.allclose(paths.contributions(rows[7:8]), contrib[7:8])
    assert paths.contributions(rows[:0]).shape == (0, 5)


def test_categorical_splits_are_refused():
    dump = {"tree_info": [{"tree_structure": {"split_feature": 0, "threshold": "1||2", "decision_type": "==",
                                              "internal_value": 0.0, "left_child": {"leaf_value": 1.0},
                                              "right_child": {"leaf_value": -1.0}}}], "max_feature_idx": 0}
    with pytest.raises(ValueError, match="not supported"):
        TreePaths(dump)


def test_paths_top_feature_agrees_with_treeshap_on_most_alerts(fraud_env):
    """On the fraud model's riskiest training rows, the path contributions' top feature is
    TreeSHAP's for most of them (benchmarks/explain.py prints the full agreement figures)."""
    from models.train import build_training_rows, load_history, point_in_time_features

    model = FraudModel.load(f"{MODEL_NAME}@production", fraud_env.registry)
    txs = load_history(fraud_env.history)
    X = feature_matrix(build_training_rows(txs, point_in_time_features(txs, fraud_env.repo)))
    alerts = X[model.predict(X) > 0.5]
    assert len(alerts) >= 30
    fast, exact = model.explain(alerts), model.explain_exact(alerts)
    same_top = sum(1 for a, b in zip(fast, exact) if a[:1] and b[:1] and a[0][0] == b[0][0])
    assert same_top / len(alerts) >= 0.6, (same_top, len(alerts))


class CountingModel:
    """Every transaction alerts (probability 0.99, or 0.6 for amounts under 100); counts the
    rows each explanation method is asked for."""

    version = "storm/1"

    def __init__(self) -> None:
        self.explained: list[int] = []
        self.exact: list[int] = []

    def predict(self, X):
        amount = X[:, MODEL_FEATURES.index("amount_sum_1h")]
        return np.where(amount < 100, 0.6, 0.99)

    def explain(self, X, top=3):
        self.explained.append(len(X))
        return [[("amount_sum_1h", 1.0)] for _ in range(len(X))]

    def explain_exact(self, X, top=3):
        self.exact.append(len(X))
        return [[("amount_sum_1h", 2.0)] for _ in range(len(X))]


def _storm(n: int) -> list[dict]:
    """``n`` transactions of distinct customers; every third one small (a WARNING)."""
    return [{**RAW, "transaction_id": f"s{i}", "customer_id": f"C{i:06d}",
             "amount": 50.0 if i % 3 == 0 else 900.0} for i in range(n)]


def test_an_alert_storm_explains_at_most_the_budget_strongest_first():
    customers, merchants = fake_lookups()
    model = CountingModel()
    cfg = FraudScoringConfig(explain_budget=5, thresholds=Thresholds(0.8, 0.5))
    out = FraudPipeline(cfg, model, customers, merchants).process(_storm(30), arrival=1.0)
    assert not any(isinstance(r, DeadLetter) for r in out)
    assert all(r["status"] != NORMAL for r in out)  # a storm: every event alerts
    assert model.explained == [5] and model.exact == []  # one call, the budget, never exact TreeSHAP
    with_features = [r for r in out if "amount_sum_1h=900" in r["reasons"]]
    skipped = [r for r in out if "reasons_skipped" in r]
    assert len(with_features) == 5 and len(skipped) == 25
    assert all(r["status"] == CRITICAL for r in with_features)  # CRITICAL first
    # every alert still has reasons (its scores), and the skipped ones say why
    assert all(r["reasons"] and r["reasons"][0].startswith("fraud_score=") for r in out)
    assert all("explain_budget" in r["reasons_skipped"] and "5 of this batch's 30" in r["reasons_skipped"]
               for r in skipped)
    assert not any("reasons_skipped" in r for r in with_features)


def test_under_the_budget_every_alert_is_explained_and_treeshap_is_a_choice():
    customers, merchants = fake_lookups()
    model = CountingModel()
    cfg = FraudScoringConfig(explain_method="treeshap")
    out = FraudPipeline(cfg, model, customers, merchants).process(_storm(12), arrival=1.0)
    assert model.exact == [12] and model.explained == []
    assert all("reasons_skipped" not in r and any(x.startswith("amount_sum_1h=") for x in r["reasons"])
               for r in out)
    with pytest.raises(ValueError, match="explain_method"):
        FraudScoringConfig(explain_method="lime")
    with pytest.raises(ValueError, match="explain_budget"):
        FraudScoringConfig(explain_budget=-1)
