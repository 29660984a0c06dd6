"""The model's compiled tree walk: predictions and path contributions against LightGBM's
own (brute-force reference), the fall-back to LightGBM for models it does not support, and
the explanations' per-batch budget in an alert storm."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from features.records import DeadLetter
from models.fraud import MODEL_FEATURES, MODEL_NAME, FraudModel, FraudPipeline, FraudScoringConfig, feature_matrix
from models.fraud.trees import TreePaths
from models.status import CRITICAL, NORMAL, Thresholds
from tests.models.fraud.test_fraud import RAW, fake_lookups


def _booster(missing: str, rng: np.random.Generator, **more: object) -> tuple[lgb.Booster, np.ndarray]:
    """A small real model whose data has NaNs and exact zeros, so every routing rule is used."""
    X = rng.normal(size=(2000, 5))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[rng.random(X.shape) < 0.1] = 0.0
    y = ((np.nan_to_num(X[:, 0]) + 0.5 * np.isnan(X[:, 1]) - 0.3 * (X[:, 2] == 0)) > 0.2).astype(int)
    params = {"objective": "binary", "verbosity": -1, "num_leaves": 15, "min_data_in_leaf": 5, "seed": 3,
              "deterministic": True, "num_threads": 1, "zero_as_missing": missing == "zero",
              "use_missing": missing != "none", **more}
    return lgb.train(params, lgb.Dataset(X, y), 40), X


@pytest.mark.parametrize("missing", ["nan", "zero", "none"])
@pytest.mark.parametrize("sigmoid", [1.0, 0.7])
def test_predictions_are_lightgbm_s_to_the_bit(missing, sigmoid):
    """Brute-force reference: the walk's raw scores and probabilities are ``Booster.predict``'s
    (the same leaves, summed in the same order), on rows with NaNs and exact zeros, on every
    threshold, just around 0 (LightGBM reads |v| <= 1e-35f as 0), and infinities."""
    rng = np.random.default_rng(5)
    booster, X = _booster(missing, rng, sigmoid=sigmoid)
    paths = TreePaths(booster.dump_model())
    assert paths.sigmoid == sigmoid
    edge = np.tile(np.concatenate([paths.threshold, [1e-36, -1e-36, 1e-35, -1e-35, np.inf, -np.inf, np.nan, 0.0]]), 5)
    rows = np.vstack([X, edge[: (len(edge) // 5) * 5].reshape(5, -1).T, np.full((1, 5), np.nan)])
    assert np.array_equal(paths.raw_scores(rows), booster.predict(rows, raw_score=True, num_threads=1))
    assert np.array_equal(paths.probabilities(rows), booster.predict(rows, num_threads=1))
    assert np.array_equal(paths.probabilities(rows[-1:]), booster.predict(rows[-1:]))  # one row
    assert paths.probabilities(rows[:0]).shape == (0,)


def test_another_objective_is_walked_but_not_given_probabilities():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3))
    booster = lgb.train({"objective": "regression", "verbosity": -1, "num_leaves": 5}, lgb.Dataset(X, X[:, 0]), 5)
    paths = TreePaths(booster.dump_model())
    assert np.array_equal(paths.raw_scores(X), booster.predict(X, num_threads=1))
    with pytest.raises(ValueError, match="binary"):
        paths.probabilities(X)
    model = _fraud_model(booster, 3)  # LightGBM's predict, then
    assert np.array_equal(model.predict(X), booster.predict(X, num_threads=1))


def _fraud_model(booster: lgb.Booster, n: int) -> FraudModel:
    return FraudModel(booster.model_to_string().encode(),
                      {"name": "t", "version": 1, "feature_names": [f"f{i}" for i in range(n)]})


@pytest.mark.parametrize("params", [
    {"objective": "binary", "linear_tree": True},
    {"objective": "binary", "boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.5},
], ids=["linear", "random-forest"])
def test_a_model_the_walk_does_not_support_is_scored_and_explained_by_lightgbm(params):
    """Refused by the walk (``ValueError`` naming why); the model then predicts with
    LightGBM and explains with exact TreeSHAP, and one LightGBM cannot explain (linear trees) gets no top features instead of
    failing its batch."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] > 0).astype(float)
    booster = lgb.train({"verbosity": -1, "num_leaves": 5, **params}, lgb.Dataset(X, y), 5)
    with pytest.raises(ValueError, match="not supported"):
        TreePaths(booster.dump_model())
    model = _fraud_model(booster, 3)
    assert model._paths is None
    assert np.array_equal(model.predict(X[:20]), booster.predict(X[:20], num_threads=1))
    tops = model.explain(X[:2])
    assert len(tops) == 2
    if params.get("linear_tree"):
        assert tops == [[], []]


def test_the_fraud_model_scores_through_the_walk_as_lightgbm_does(fraud_env):
    """The production model is one the walk supports; on its real training rows the scores
    are LightGBM's to the bit."""
    from models.train import build_training_rows, load_history, point_in_time_features

    model = FraudModel.load(f"{MODEL_NAME}@production", fraud_env.registry)
    assert model._paths is not None and model._paths.sigmoid == 1.0
    txs = load_history(fraud_env.history)
    X = feature_matrix(build_training_rows(txs, point_in_time_features(txs, fraud_env.repo)))
    assert np.array_equal(model.predict(X), model._booster.predict(X, num_threads=1))


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
