"""Tests for models.status: the batch form of the warm-up rule against the per-event rule."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models.status import Thresholds, anomaly_score, anomaly_scores, combined_risk, combined_risks


@pytest.mark.parametrize("method", ["max", "noisy_or", "mean"])
def test_anomaly_scores_equal_anomaly_score_row_by_row(method: str) -> None:
    rng = random.Random(4)
    names = ["a", "a_slow", "a_stuck", "b", "b_slow", "shard"]
    weights = [1.0, 0.7, 1.0, 0.0, 0.3, 0.5]
    n = 3000
    S = np.array([[rng.choice([rng.random(), 0.0, 1.0, np.nan]) for _ in names] for _ in range(n)])
    W = np.array([[rng.random() < 0.2 for _ in names] for _ in range(n)])
    S[5, :] = np.nan  # nothing scored
    W[6, :] = True  # everything warming
    got = anomaly_scores(S, W, weights, method)
    for j in range(n):
        scores = {m: (None if v != v else v) for m, v in zip(names, S[j].tolist())}
        warming = [m for m, w in zip(names, W[j].tolist()) if w]
        want = anomaly_score(scores, warming, dict(zip(names, weights)), method)
        assert got[j] == want, (j, got[j], want)  # equal, not close
    assert got[5] is None and got[6] is None and sum(g is None for g in got) >= 2
    for size in (1, 2, 8, 9, 50):  # a few rows go through the per-event rule, more through numpy
        parts = [x for i in range(0, 400, size) for x in anomaly_scores(S[i:i + size], W[i:i + size], weights, method)]
        assert parts == got[:len(parts)] and len(parts) >= 400


def test_anomaly_scores_refuse_what_anomaly_score_refuses() -> None:
    with pytest.raises(ValueError, match="outside"):
        anomaly_scores(np.array([[1.5]]), np.array([[False]]), [1.0], "max")
    assert anomaly_scores(np.array([[1.5]]), np.array([[True]]), [1.0], "max") == [None]  # warming: not read
    with pytest.raises(ValueError, match="unknown method"):
        anomaly_scores(np.array([[0.5]]), np.array([[False]]), [1.0], "median")
    with pytest.raises(ValueError, match="weights"):
        anomaly_scores(np.array([[0.5]]), np.array([[False]]), [1.0, 1.0], "max")
    assert anomaly_scores(np.empty((0, 2)), np.empty((0, 2), dtype=bool), [1.0, 1.0], "max") == []


@pytest.mark.parametrize("weight", [0.0, 0.4, 1.0, 1.5])
def test_combined_risks_equal_combined_risk_pair_by_pair(weight: float) -> None:
    rng = random.Random(5)
    fraud = [rng.random() for _ in range(3000)] + [0.0, 1.0, 0.5, 1e-300, 1 - 1e-16, 0.3, 0.3, 0.3]
    anomaly: list = [None if rng.random() < 0.3 else rng.random() for _ in range(3000)]
    anomaly += [0.0, 1.0, None, 1e-300, float("nan"), 0.0, 1.0, 0.7]
    if weight <= 1.0:  # combine_scores refuses what is outside [0, 1]: only in range here
        got = combined_risks(np.array(fraud), anomaly, weight).tolist()
        assert [repr(g) for g in got] == [repr(combined_risk(p, a, weight)) for p, a in zip(fraud, anomaly)]
    else:
        with pytest.raises(ValueError):
            combined_risks(np.array(fraud), anomaly, weight)
    assert combined_risks(np.array([0.2, 0.3]), [None, None], weight).tolist() == [0.2, 0.3]


def test_statuses_equal_status_of_each() -> None:
    rng = random.Random(6)
    t = Thresholds(critical=0.8, warning=0.5)
    scores = [rng.random() for _ in range(2000)] + [0.8, 0.5, 0.0, 1.0, float("nan"), 0.5000001, 0.8000001]
    assert t.statuses(np.array(scores)) == [t.status(s) for s in scores]
    assert Thresholds(0.3, 0.3).statuses(np.array([0.3, 0.31])) == ["NORMAL", "CRITICAL"]
