"""Explanations of the fraud model: cost per row and agreement with exact TreeSHAP; and the
cost of its predictions, LightGBM's ``predict`` against the compiled walk the flow uses.

    .venv/bin/python -m benchmarks.explain [--rows 2000] [--registry model_registry]

Rows are the model's own training set (``models.train``: the history replayed through
the stream's features, Feast values point-in-time), so the explained rows look like
what the flow scores. It compares, on the rows the flow would explain (alerts: fraud
score over the WARNING threshold) and on random rows:

* the cost per row of exact TreeSHAP (LightGBM ``pred_contrib=True``) and of path
  contributions (:class:`models.fraud.trees.TreePaths`), in batches of 1, 10, 100 and
  1,000 rows;
* how often the top-1 feature is the same, and how often the top-3 sets (features
  with a positive contribution, as the reasons list them) are the same;
* the cost per row of predictions: ``Booster.predict`` on one thread against
  :meth:`models.fraud.trees.TreePaths.probabilities`, in the same batches, and whether
  they are equal to the bit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.fraud import MODEL_NAME, FraudModel, FraudScoringConfig, feature_matrix
from models.fraud.trees import TreePaths


def training_matrix(history: Path, repo: Path, rows: int, seed: int = 7) -> np.ndarray:
    """``rows`` model rows of the training set, sampled (the newest half of the history)."""
    from models.train import build_training_rows, load_history, point_in_time_features

    txs = load_history(history)
    pit = point_in_time_features(txs, repo)
    X = feature_matrix(build_training_rows(txs, pit, FraudScoringConfig()))
    rng = np.random.default_rng(seed)
    half = X[len(X) // 2:]
    return half[rng.choice(len(half), size=min(rows, len(half)), replace=False)]


def top_sets(contrib: np.ndarray, top: int = 3) -> list[tuple[int, ...]]:
    """Per row, the ``top`` features with the largest positive contributions, in order."""
    order = np.argsort(-contrib, axis=1)[:, :top]
    return [tuple(int(j) for j in order[i] if contrib[i, j] > 0) for i in range(len(contrib))]


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Share of rows whose top-1 feature, and whose top-3 set, agree."""
    ta, tb = top_sets(a), top_sets(b)
    n = max(len(ta), 1)
    top1 = sum(1 for x, y in zip(ta, tb) if x[:1] == y[:1]) / n
    top3 = sum(1 for x, y in zip(ta, tb) if set(x) == set(y)) / n
    overlap = sum(len(set(x) & set(y)) / max(len(set(x) | set(y)), 1) for x, y in zip(ta, tb)) / n
    return {"top1": round(top1, 3), "top3_same_set": round(top3, 3), "top3_jaccard": round(overlap, 3)}


def per_row_us(fn: Any, X: np.ndarray, batch: int, repeat: int = 3) -> float:
    """Median microseconds per row of ``fn`` over batches of ``batch`` rows."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = 0
        for start in range(0, len(X), batch):
            fn(X[start:start + batch])
            done += len(X[start:start + batch])
        times.append((time.perf_counter() - t0) / done * 1e6)
    return round(float(np.median(times)), 1)


def measure(model: FraudModel, X: np.ndarray, warning: float = 0.5) -> dict[str, Any]:
    booster = model._booster
    paths = TreePaths(booster.dump_model())

    def exact(rows: np.ndarray) -> np.ndarray:
        return booster.predict(rows, pred_contrib=True, num_threads=1)[:, :-1]

    p = model.predict(X)
    alerts = X[p > warning]
    out: dict[str, Any] = {"rows": len(X), "alert_rows": len(alerts), "trees": len(paths.roots),
                           "max_depth": paths.depth}
    for name, rows in (("alerts", alerts), ("random", X)):
        if len(rows):
            out[f"agreement_{name}"] = agreement(exact(rows), paths.contributions(rows))
    sample = X[:1000]
    out["us_per_row"] = {
        f"batch_{b}": {"treeshap": per_row_us(exact, sample[: max(b, 100)], b),
                       "paths": per_row_us(paths.contributions, sample[: max(b, 100)], b)}
        for b in (1, 10, 100, 1000)
    }
    out["predict_us_per_row"] = {
        f"batch_{b}": {"lightgbm": per_row_us(lambda r: booster.predict(r, num_threads=1), sample, b),
                       "walk": per_row_us(paths.probabilities, sample, b)}
        for b in (1, 10, 100, 1000)
    }
    out["predictions_equal"] = bool(np.array_equal(paths.probabilities(X), booster.predict(X, num_threads=1)))
    raw = booster.predict(sample, raw_score=True)
    out["paths_sum_max_error"] = float(np.abs(paths.contributions(sample).sum(axis=1) + paths.bias - raw).max())
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--registry", type=Path, default=Path("model_registry"))
    ap.add_argument("--history", type=Path, default=Path("data/history.parquet"))
    ap.add_argument("--feature-repo", type=Path, default=Path("feature_repo"))
    args = ap.parse_args(argv)
    model = FraudModel.load(f"{MODEL_NAME}@production", args.registry)
    X = training_matrix(args.history, args.feature_repo, args.rows)
    result = measure(model, X)
    print(f"explanations of {model.version}: {result['trees']} trees, max depth {result['max_depth']}, "
          f"{result['rows']} rows ({result['alert_rows']} over WARNING)")
    for name in ("alerts", "random"):
        if f"agreement_{name}" in result:
            print(f"  agreement with exact TreeSHAP, {name:6s}: {result[f'agreement_{name}']}")
    print("  µs per row        exact TreeSHAP   path contributions")
    for b, v in result["us_per_row"].items():
        print(f"  {b:16s} {v['treeshap']:>14} {v['paths']:>20}")
    print(f"  paths: |sum + bias - raw score| max {result['paths_sum_max_error']:.2e}")
    print("  predictions, µs per row   LightGBM predict   compiled walk")
    for b, v in result["predict_us_per_row"].items():
        print(f"  {b:24s} {v['lightgbm']:>16} {v['walk']:>15}")
    print(f"  walk's probabilities equal LightGBM's to the bit: {result['predictions_equal']}")


if __name__ == "__main__":
    main()
