"""Tests for models.status: the batch form of the warm-up rule against the per-event rule."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models.status import anomaly_score, anomaly_scores


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
