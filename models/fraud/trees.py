"""The fraud model's trees as flat arrays, walked by one compiled kernel: its predictions,
and why it scored a row as it did, at a cost bounded per batch.

:class:`TreePaths` reads a LightGBM model (``Booster.dump_model()``) into node arrays, and
one numba kernel (:func:`_walk`, ``cache=True``) takes each row down every tree, tree by
tree so that a tree's nodes stay in cache over the batch:

- **Predictions** (:meth:`TreePaths.raw_scores`, :meth:`TreePaths.probabilities`): the
  leaves' values summed in LightGBM's order, so the scores are LightGBM's own to the bit
  (``tests/models/fraud/test_trees.py`` compares them with ``Booster.predict`` on models
  with every missing-value rule, and on values on every threshold and around 0). For the
  300-tree fraud model on real rows: about 11 µs a row in batches of 1,000 and 20 µs for a
  single row, where ``Booster.predict`` on one thread costs 20 and 45 µs (``python -m
  benchmarks.explain`` prints both). The split's side is picked arithmetically, not by a
  jump the CPU would mispredict on about every other node.
- **Path contributions** (Saabas, :meth:`TreePaths.contributions`): each split on a row's
  path credits its feature with the change of the node's expected output; O(depth) per
  tree, about the cost of a prediction. Exact TreeSHAP (LightGBM's ``pred_contrib=True``)
  is O(trees x leaves x depth^2): 1.2-1.9 ms a row for the fraud model, so an alert storm
  (most events alerting) made the scoring thread fall seconds behind. The contributions
  sum, with :attr:`TreePaths.bias`, to the model's raw score. How often their top features
  agree with exact TreeSHAP's is measured by ``benchmarks/explain.py``.

A model of another kind (categorical splits, linear trees, multiclass, random forests'
averaged output) raises ``ValueError`` here, and :meth:`TreePaths.probabilities` is
refused for another objective than binary; :class:`~models.fraud.artifact.FraudModel`
then predicts with LightGBM and explains with exact TreeSHAP.

>>> import lightgbm as lgb, numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 3)); y = (X[:, 0] + 0.2 * X[:, 1] > 0).astype(int)
>>> booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 7}, lgb.Dataset(X, y), 20)
>>> paths = TreePaths(booster.dump_model())
>>> bool((paths.probabilities(X) == booster.predict(X)).all())
True
>>> contrib = paths.contributions(X[:4])
>>> np.allclose(contrib.sum(axis=1) + paths.bias, booster.predict(X[:4], raw_score=True))
True
>>> int(np.argmax(np.abs(contrib).sum(axis=0)))   # feature 0 drives the label
0
"""

from __future__ import annotations

from typing import Any, Mapping

import numba
import numpy as np

__all__ = ["TreePaths", "ZERO_THRESHOLD", "warm_up"]

#: LightGBM's ``kZeroThreshold``: with ``missing_type: Zero``, values this close to 0 are missing.
#: It is the C++ ``float`` ``1e-35f`` (1.0000000180025095e-35 as a double), not the double 1e-35.
ZERO_THRESHOLD = float(np.float32(1e-35))

_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2


class TreePaths:
    """The trees of a LightGBM model (``Booster.dump_model()``) as flat arrays: the
    split nodes (feature, threshold, children, default direction, missing-value type,
    expected output), and the leaves' values. A child ``c >= 0`` is a split node, ``c < 0``
    the leaf ``~c``, as in LightGBM's own ``Tree``: a tree's nodes stay small and close.

    ``ValueError`` names what is not supported (see the module's docstring); its owner then
    falls back to LightGBM itself.
    """

    def __init__(self, dump: Mapping[str, Any]) -> None:
        if dump.get("average_output") or int(dump.get("num_tree_per_iteration", 1)) != 1:
            raise ValueError("TreePaths: averaged (random forest) or multiclass models are not supported "
                             f"(average_output {dump.get('average_output')}, "
                             f"{dump.get('num_tree_per_iteration', 1)} trees per iteration)")
        objective = str(dump.get("objective", "")).split()
        sigmoid = [part.split(":", 1)[1] for part in objective[1:] if part.startswith("sigmoid:")]
        #: LightGBM's ``sigmoid`` of a binary model (probability = 1 / (1 + exp(-sigmoid * raw))),
        #: or ``None`` for another objective: :meth:`probabilities` is then refused.
        self.sigmoid = float(sigmoid[0]) if objective[:1] == ["binary"] and sigmoid else None
        feature: list[int] = []
        threshold: list[float] = []
        left: list[int] = []
        right: list[int] = []
        value: list[float] = []
        default_left: list[bool] = []
        missing: list[int] = []
        leaves: list[float] = []
        roots: list[int] = []
        depth = 0

        def add(node: Mapping[str, Any]) -> int:
            """``node``'s index (``~leaf`` for a leaf); its split children are added after it."""
            if "leaf_value" in node or "split_feature" not in node:
                if node.get("leaf_coeff"):
                    raise ValueError("TreePaths: linear trees are not supported")
                leaves.append(float(node.get("leaf_value", 0.0)))
                return ~(len(leaves) - 1)
            if node.get("decision_type", "<=") != "<=":
                raise ValueError(f"TreePaths: split type {node.get('decision_type')!r} is not supported "
                                 "(numerical '<=' splits only)")
            me = len(feature)
            feature.append(int(node["split_feature"]))
            threshold.append(float(node["threshold"]))
            value.append(float(node["internal_value"]))
            default_left.append(bool(node.get("default_left", True)))
            missing.append({"None": _MISSING_NONE, "Zero": _MISSING_ZERO, "NaN": _MISSING_NAN}[
                node.get("missing_type", "None")])
            left.append(0)
            right.append(0)
            return me

        for tree in dump["tree_info"]:
            root = add(tree["tree_structure"])
            roots.append(root)
            stack = [(tree["tree_structure"], root, 1)] if root >= 0 else []
            while stack:  # iterative: a deep tree must not exhaust Python's recursion limit
                node, me, level = stack.pop()
                depth = max(depth, level)
                for side, slot in (("left_child", left), ("right_child", right)):
                    child = add(node[side])
                    slot[me] = child
                    if child >= 0:
                        stack.append((node[side], child, level + 1))
        self.n_features = int(dump.get("max_feature_idx", max(feature, default=0))) + 1
        self.feature = np.asarray(feature, dtype=np.int32)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.left = np.asarray(left, dtype=np.int32)
        self.right = np.asarray(right, dtype=np.int32)
        self.value = np.asarray(value, dtype=np.float64)
        self.default_left = np.asarray(default_left, dtype=np.bool_)
        self.missing = np.asarray(missing, dtype=np.int8)
        self.leaves = np.asarray(leaves, dtype=np.float64)
        self.roots = np.asarray(roots, dtype=np.int32)
        #: The most splits on a path from a root to a leaf.
        self.depth = depth
        #: The expected raw score before any split (the sum of the trees' root values).
        self.bias = float(sum(self.value[r] if r >= 0 else self.leaves[~r] for r in roots))

    def _rows(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] < self.n_features:
            raise ValueError(f"TreePaths: expected a (rows, {self.n_features}) matrix, got shape {X.shape}")
        return X

    def raw_scores(self, X: np.ndarray) -> np.ndarray:
        """Each row's raw score: LightGBM's ``predict(X, raw_score=True)``, to the bit."""
        return self._walk(self._rows(X), None)

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """Each row's probability: LightGBM's ``predict(X)`` of a binary model."""
        if self.sigmoid is None:
            raise ValueError("TreePaths: probabilities need a binary model (objective 'binary sigmoid:...')")
        return _probabilities(self.raw_scores(X), self.sigmoid)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """``(rows, features)`` path contributions of each row (raw-score units): with
        :attr:`bias` they sum to the model's raw score of the row."""
        X = self._rows(X)
        contrib = np.zeros((len(X), self.n_features))
        self._walk(X, contrib)
        return contrib

    def _walk(self, X: np.ndarray, contrib: np.ndarray | None) -> np.ndarray:
        return _walk(X, self.feature, self.threshold, self.left, self.right, self.value, self.leaves,
                     self.default_left, self.missing, self.roots, contrib)


@numba.njit(cache=True)
def _walk(X, feature, threshold, left, right, value, leaves, default_left, missing, roots, contrib):
    """Each row of ``X`` down every tree to its leaf; returns the leaves' values summed in
    LightGBM's order of trees (so the sums are LightGBM's raw scores). With a ``contrib`` of
    ``(rows, features)`` (not ``None``), each split on a row's path also credits its
    feature there with the change of expected output to the child the row takes.
    ``contrib=None`` is compiled apart, without that step (numba prunes the branch for a
    ``None`` argument): predictions cost about 8% less than with the check in the loop.

    A split is LightGBM's ``NumericalDecision`` on the value as its predictor reads a row
    (within :data:`ZERO_THRESHOLD` of 0 is 0): a NaN is 0 unless NaN is the missing value,
    and a missing value goes the default way. The side is picked arithmetically, not by a
    jump: on real rows the CPU cannot guess it. Tree by tree, so a tree's nodes stay in
    cache over the batch. (The rule is written once, here, in the loop: numba compiles it
    3-8x slower when it is a function of its own, inlined or not.)"""
    out = np.zeros(X.shape[0])
    for t in range(roots.shape[0]):
        for i in range(X.shape[0]):
            node = roots[t]
            while node >= 0:
                v = X[i, feature[node]]
                kind = missing[node]
                if v != v:
                    absent = kind == _MISSING_NAN
                    if not absent:
                        v = 0.0
                        absent = kind == _MISSING_ZERO
                else:
                    if -ZERO_THRESHOLD <= v <= ZERO_THRESHOLD:
                        v = 0.0
                    absent = kind == _MISSING_ZERO and v == 0.0
                go_left = default_left[node] if absent else v <= threshold[node]
                right_child = right[node]
                child = right_child + (left[node] - right_child) * np.int32(go_left)
                if contrib is not None:
                    contrib[i, feature[node]] += (value[child] if child >= 0 else leaves[~child]) - value[node]
                node = child
            out[i] += leaves[~node]
    return out


@numba.njit(cache=True)
def _probabilities(raw, sigmoid):
    out = np.empty(raw.shape[0])
    for i in range(raw.shape[0]):
        out[i] = 1.0 / (1.0 + np.exp(-sigmoid * raw[i]))
    return out


def warm_up() -> None:
    """Load (or, the first time on a machine, compile) the kernels, with the argument types
    :class:`TreePaths` always passes, on a one-split tree."""
    split = {"split_feature": 0, "threshold": 0.5, "decision_type": "<=", "default_left": True,
             "missing_type": "NaN", "internal_value": 0.0, "left_child": {"leaf_value": -1.0},
             "right_child": {"leaf_value": 1.0}}
    paths = TreePaths({"objective": "binary sigmoid:1", "max_feature_idx": 0, "tree_info": [{"tree_structure": split}]})
    X = np.array([[0.0], [1.0]])
    paths.probabilities(X)
    paths.contributions(X)
