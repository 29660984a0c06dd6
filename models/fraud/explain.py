"""Why the model scored a row as it did, at a cost bounded per batch.

Exact TreeSHAP (LightGBM's ``pred_contrib=True``) costs O(trees x leaves x depth^2)
per row: about 1.2 ms a row for the 300-tree fraud model, so an alert storm (most
events alerting) made the scoring thread fall seconds behind. :class:`TreePaths`
computes **path contributions** (Saabas): each row follows its path down every tree,
and each split on the path credits its feature with the change of the node's expected
output. That is O(depth) per tree, and all rows and all trees are walked at once with
numpy, so a batch costs a few array operations per tree level.

The contributions sum, with :attr:`TreePaths.bias`, exactly to the model's raw score
(log-odds), which is how the tests check that the walk follows LightGBM's own
routing (thresholds, missing values, default directions). How often their top
features agree with exact TreeSHAP's is measured by ``benchmarks/explain.py``.

>>> import lightgbm as lgb, numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 3)); y = (X[:, 0] + 0.2 * X[:, 1] > 0).astype(int)
>>> booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 7}, lgb.Dataset(X, y), 20)
>>> paths = TreePaths(booster.dump_model())
>>> contrib = paths.contributions(X[:4])
>>> np.allclose(contrib.sum(axis=1) + paths.bias, booster.predict(X[:4], raw_score=True))
True
>>> int(np.argmax(np.abs(contrib).sum(axis=0)))   # feature 0 drives the label
0
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["TreePaths", "ZERO_THRESHOLD"]

#: LightGBM's ``kZeroThreshold``: with ``missing_type: Zero``, values this close to 0 are missing.
ZERO_THRESHOLD = 1e-35

_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2


class TreePaths:
    """The trees of a LightGBM model (``Booster.dump_model()``) as flat node arrays.

    Numerical splits only (``decision_type`` ``<=``); a model with categorical splits
    raises ``ValueError`` here, and its owner falls back to exact TreeSHAP.
    """

    def __init__(self, dump: Mapping[str, Any]) -> None:
        feature: list[int] = []
        threshold: list[float] = []
        left: list[int] = []
        right: list[int] = []
        value: list[float] = []
        default_left: list[bool] = []
        missing: list[int] = []
        roots: list[int] = []
        depth = 0
        for tree in dump["tree_info"]:
            stack = [(tree["tree_structure"], -1, False, 0)]
            roots.append(len(feature))
            while stack:
                node, parent, is_left, level = stack.pop()
                me = len(feature)
                if parent >= 0:
                    (left if is_left else right)[parent] = me
                depth = max(depth, level)
                if "leaf_value" in node or "split_feature" not in node:
                    leaf_value = float(node.get("leaf_value", 0.0))
                    feature.append(0)  # a leaf points to itself: walking on adds nothing
                    threshold.append(0.0)
                    left.append(me)
                    right.append(me)
                    value.append(leaf_value)
                    default_left.append(True)
                    missing.append(_MISSING_NONE)
                    continue
                if node.get("decision_type", "<=") != "<=":
                    raise ValueError(f"TreePaths: split type {node.get('decision_type')!r} is not supported "
                                     "(numerical '<=' splits only)")
                feature.append(int(node["split_feature"]))
                threshold.append(float(node["threshold"]))
                left.append(-1)
                right.append(-1)
                value.append(float(node["internal_value"]))
                default_left.append(bool(node.get("default_left", True)))
                missing.append({"None": _MISSING_NONE, "Zero": _MISSING_ZERO, "NaN": _MISSING_NAN}[
                    node.get("missing_type", "None")])
                stack.append((node["right_child"], me, False, level + 1))
                stack.append((node["left_child"], me, True, level + 1))
        self.n_features = int(dump.get("max_feature_idx", max(feature, default=0))) + 1
        self.feature = np.asarray(feature, dtype=np.intp)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.left = np.asarray(left, dtype=np.intp)
        self.right = np.asarray(right, dtype=np.intp)
        self.value = np.asarray(value, dtype=np.float64)
        self.default_left = np.asarray(default_left, dtype=bool)
        self.missing = np.asarray(missing, dtype=np.int8)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.depth = depth
        #: The expected raw score before any split (the sum of the trees' root values).
        self.bias = float(self.value[self.roots].sum())

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """``(rows, features)`` path contributions of each row (raw-score units): with
        :attr:`bias` they sum to the model's raw score of the row."""
        X = np.asarray(X, dtype=np.float64)
        n = len(X)
        F = self.n_features
        out = np.zeros(n * F)
        if n == 0 or len(self.roots) == 0:
            return out.reshape(n, F)
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        row_base = (np.arange(n, dtype=np.intp) * F)[:, None]
        row_off = (np.arange(n, dtype=np.intp) * X.shape[1])[:, None]
        flat_x = X.ravel()
        for _ in range(self.depth):
            f = self.feature[node]
            x = flat_x[row_off + f]
            miss = self.missing[node]
            nan = np.isnan(x)
            x = np.where(nan & (miss != _MISSING_NAN), 0.0, x)  # LightGBM: NaN is 0 unless NaN is missing
            is_missing = (nan & (miss == _MISSING_NAN)) | ((miss == _MISSING_ZERO) & (np.abs(x) <= ZERO_THRESHOLD))
            go_left = np.where(is_missing, self.default_left[node], x <= self.threshold[node])
            child = np.where(go_left, self.left[node], self.right[node])
            out += np.bincount((row_base + f).ravel(), weights=(self.value[child] - self.value[node]).ravel(),
                               minlength=n * F)
            if np.array_equal(child, node):  # every row is at a leaf of every tree
                break
            node = child
        return out.reshape(n, F)
