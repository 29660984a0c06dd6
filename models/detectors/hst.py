"""Half-Space Trees in numpy: River's algorithm, vectorised over the rows of a batch."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["HalfSpaceTrees"]

_PADDING = 0.15  # River's make_padded_tree(padding=0.15)
_SMALL = 4  # batches up to this many rows are walked row by row in plain Python (faster than numpy)
_BLOCK = 8192  # rows walked at once by numpy (bounds the temporary arrays)


class HalfSpaceTrees:
    """Half-Space Trees (Tan, Ting & Liu, 2011), River's algorithm on flat numpy arrays.

    Same parameters, trees and scores as ``river.anomaly.HalfSpaceTrees``: the
    trees are drawn with ``random.Random(seed)`` in the same order as River's
    ``make_padded_tree`` (split feature weighted by its range, split point
    uniform in the padded range), so for equal inputs the scores are *equal*
    to River's, not just close. Each tree is a complete binary tree of
    ``height`` splits stored in heap order (node ``i`` has children ``2i + 1``
    and ``2i + 2``): per internal node a feature column and a threshold, per
    node the reference-window mass ``r_mass`` and the latest-window mass
    ``l_mass``.

    * learning a row adds 1 to ``l_mass`` along its path in every tree; after
      every ``window_size`` learned rows the latest masses become the reference
      (``r_mass = l_mass``, ``l_mass = 0``);
    * the score of a row sums, over trees and along its path, ``r_mass *
      2**depth`` (stopping after the first node whose ``r_mass`` is below
      ``0.1 * window_size``, River's size limit, or at the leaf) and is
      normalised as River does: ``1 - total / (n_trees * window_size *
      (2**(height + 1) - 1))``; higher = more anomalous. During the first
      window the score is 0;
    * a missing value (absent key, None or NaN) goes down the child with the
      larger ``l_mass`` (the left one on ties), as in River.

    :meth:`score_many` / :meth:`learn_many` take a 2-D array whose columns are
    :attr:`features` (or a pandas DataFrame) and walk all rows at once, one
    numpy step per level. :meth:`learn_many` learns rows in order: the window
    swaps fall at the same item counts as with :meth:`learn_one` (the batch is
    split at swap points), so a batch learned at once gives the same masses as
    the rows learned one by one. ``score_one`` / ``learn_one`` take a dict, as
    in River; without ``features`` the trees are built on the first learned
    dict over its keys (River's behaviour), with ``features`` at construction.

    :meth:`snapshot` holds the learned masses, the window counter and the
    feature names (the trees are rebuilt from ``seed``; a digest of them is
    checked on :meth:`load`).

    Parameters
    ----------
    n_trees
        Number of trees.
    height
        Height of each tree (``2 ** (height + 1) - 1`` nodes).
    window_size
        Number of rows per mass window.
    limits
        ``{feature: (lo, hi)}`` ranges; ``(0, 1)`` for features not given.
    seed
        Random number seed of the trees.
    features
        Column names, in the order of the arrays given to :meth:`score_many` /
        :meth:`learn_many`; builds the trees at once.

    Examples
    --------

    >>> from models.detectors.hst import HalfSpaceTrees
    >>> X = [0.5, 0.45, 0.43, 0.44, 0.445, 0.45, 0.0]
    >>> hst = HalfSpaceTrees(n_trees=5, height=3, window_size=3, seed=42)
    >>> for x in X[:3]:
    ...     hst.learn_one({'x': x})  # warming up
    >>> for x in X:
    ...     features = {'x': x}
    ...     hst.learn_one(features)
    ...     print(f'Anomaly score for x={x:.3f}: {hst.score_one(features):.3f}')
    Anomaly score for x=0.500: 0.107
    Anomaly score for x=0.450: 0.071
    Anomaly score for x=0.430: 0.107
    Anomaly score for x=0.440: 0.107
    Anomaly score for x=0.445: 0.107
    Anomaly score for x=0.450: 0.071
    Anomaly score for x=0.000: 0.853

    The same on arrays, a batch at a time:

    >>> import numpy as np
    >>> hst = HalfSpaceTrees(n_trees=5, height=3, window_size=3, seed=42, features=['x'])
    >>> hst.learn_many(np.array([X[:3]]).T)
    >>> hst.score_many(np.array([[0.45], [0.0]])).round(3).tolist()
    [0.071, 0.853]
    """

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        limits: Mapping[str, tuple[float, float]] | None = None,
        seed: int | None = None,
        features: Sequence[str] | None = None,
    ) -> None:
        if n_trees < 1:
            raise ValueError(f"HalfSpaceTrees: n_trees must be >= 1, got {n_trees!r}")
        if height < 0:
            raise ValueError(f"HalfSpaceTrees: height must be >= 0, got {height!r}")
        if window_size < 1:
            raise ValueError(f"HalfSpaceTrees: window_size must be >= 1, got {window_size!r}")
        self.n_trees = int(n_trees)
        self.height = int(height)
        self.window_size = int(window_size)
        self.limits = {k: (float(v[0]), float(v[1])) for k, v in (limits or {}).items()}
        self.seed = seed
        self.n_nodes = 2 ** (self.height + 1) - 1
        self.n_internal = 2**self.height - 1
        self.features: tuple[str, ...] | None = None
        self._col: dict[str, int] = {}
        self.feature = np.zeros((self.n_trees, self.n_internal), dtype=np.intp)
        self.threshold = np.zeros((self.n_trees, self.n_internal), dtype=np.float64)
        self.r_mass = np.zeros((self.n_trees, self.n_nodes), dtype=np.int64)
        self.l_mass = np.zeros((self.n_trees, self.n_nodes), dtype=np.int64)
        self.counter = 0
        self._first_window = True
        self._views()
        self._tree_base = (np.arange(self.n_trees, dtype=np.intp) * self.n_nodes)[None, :]
        self._int_base = (np.arange(self.n_trees, dtype=np.intp) * self.n_internal)[None, :]
        if features is not None:
            self._build(features)

    # ------------------------------------------------------------------ trees

    def _build(self, features: Sequence[str]) -> None:
        """Draw the trees as River does: ``random.Random(seed)``, features sorted by name,
        depth-first (node, left subtree, right subtree)."""
        features = tuple(features)
        if not features or len(set(features)) != len(features):
            raise ValueError(f"HalfSpaceTrees: features must be distinct names, got {features!r}")
        self.features = features
        self._col = {f: i for i, f in enumerate(features)}
        rng = random.Random(self.seed)
        feat, thr = self.feature, self.threshold
        names = sorted(features)
        cols = [self._col[f] for f in names]

        def grow(t: int, node: int, height: int, lims: dict[str, tuple[float, float]]) -> None:
            if height == 0:
                return
            on = rng.choices(population=list(lims.keys()), weights=[lims[i][1] - lims[i][0] for i in lims])[0]
            a, b = lims[on]
            at = rng.uniform(a + _PADDING * (b - a), b - _PADDING * (b - a))
            feat[t, node] = cols[names.index(on)]
            thr[t, node] = at
            tmp = lims[on]
            lims[on] = (tmp[0], at)
            grow(t, 2 * node + 1, height - 1, lims)
            lims[on] = tmp
            lims[on] = (at, tmp[1])
            grow(t, 2 * node + 2, height - 1, lims)
            lims[on] = tmp

        for t in range(self.n_trees):
            grow(t, 0, self.height, {f: self.limits.get(f, (0.0, 1.0)) for f in names})
        self._feat_flat = feat.ravel()
        self._thr_flat = thr.ravel()
        # the same per global node index (tree * n_nodes + node), for the vectorised walks
        T, N, I = self.n_trees, self.n_nodes, self.n_internal
        g = np.arange(T * N, dtype=np.intp).reshape(T, N)
        self._gfeat = np.zeros((T, N), dtype=np.intp)
        self._gthr = np.zeros((T, N))
        self._gfeat[:, :I], self._gthr[:, :I] = feat, thr
        self._gleft = g + np.arange(N, dtype=np.intp)[None, :] + 1  # tree base + 2 * node + 1
        self._gfeat, self._gthr, self._gleft = self._gfeat.ravel(), self._gthr.ravel(), self._gleft.ravel()
        self._views()

    def _views(self) -> None:
        # flat memoryviews of the arrays, for the per-row walks in plain Python (a
        # memoryview item is a Python int / float and writes go to the array: the
        # masses are always updated in place, so the views stay valid)
        self._fv = self.feature.ravel().tolist()
        self._tv = self.threshold.ravel().tolist()
        self._rv = memoryview(self.r_mass.reshape(-1))
        self._lv = memoryview(self.l_mass.reshape(-1))

    def _digest(self) -> str:
        h = hashlib.blake2b(digest_size=8)
        h.update(repr(self.features).encode())
        h.update(self.feature.tobytes())
        h.update(self.threshold.tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ inputs

    def _matrix(self, X: Any) -> np.ndarray:
        if self.features is None:
            if hasattr(X, "columns"):
                self._build([str(c) for c in X.columns])
            else:
                raise ValueError("HalfSpaceTrees: give `features` (the columns of X) or learn a dict first")
        if hasattr(X, "columns"):  # pandas DataFrame: columns by name, absent ones missing
            cols = [X[f].to_numpy(dtype=np.float64, na_value=np.nan) if f in X.columns
                    else np.full(len(X), np.nan) for f in self.features]
            return np.column_stack(cols) if cols else np.empty((len(X), 0))
        M = np.asarray(X, dtype=np.float64)
        if M.ndim != 2 or M.shape[1] != len(self.features):
            raise ValueError(f"HalfSpaceTrees: expected an array of shape (n, {len(self.features)}), got {M.shape}")
        return M

    def _row(self, x: Mapping[str, Any]) -> list[float]:
        assert self.features is not None
        nan = float("nan")
        return [nan if (v := x.get(f)) is None else float(v) for f in self.features]

    # ------------------------------------------------------------------ walks

    def _step(self, idx: np.ndarray, rows: np.ndarray, X: np.ndarray, missing: bool) -> np.ndarray:
        """Children of the internal nodes ``idx`` (shape (n, trees)) for the rows ``X``."""
        k = self._int_base + idx
        v = X[rows, self._feat_flat[k]]
        right = ~(v < self._thr_flat[k])  # River: value < threshold -> left
        if missing:
            miss = np.isnan(v)
            if miss.any():
                lm = self.l_mass.ravel()
                left_child = self._tree_base + 2 * idx + 1
                right = np.where(miss, lm[left_child] < lm[left_child + 1], right)
        return 2 * idx + 1 + right

    def _score_row(self, x: Sequence[float]) -> float:
        """Score of one row (values in :attr:`features` order, NaN = missing): River's
        walk in plain Python over the flat arrays (faster than numpy for one row)."""
        if self._first_window:
            return 0.0
        rv, lv, fv, tv = self._rv, self._lv, self._fv, self._tv
        n_nodes, n_int, height = self.n_nodes, self.n_internal, self.height
        limit = 0.1 * self.window_size
        total = 0
        for t in range(self.n_trees):
            b, bi, node, pw = t * n_nodes, t * n_int, 0, 1
            for _ in range(height):
                r = rv[b + node]
                total += r * pw
                if r < limit:
                    break
                v = x[fv[bi + node]]
                if v != v:  # missing: the child with the larger latest mass
                    node = 2 * node + 2 if lv[b + 2 * node + 1] < lv[b + 2 * node + 2] else 2 * node + 1
                else:
                    node = 2 * node + 1 if v < tv[bi + node] else 2 * node + 2
                pw <<= 1
            else:
                total += rv[b + node] * pw
        return 1.0 - total / (self.n_trees * self.window_size * (2 ** (height + 1) - 1))

    def _learn_row(self, x: Sequence[float]) -> None:
        """Learn one row (see :meth:`_score_row`), swapping windows when one is full."""
        lv, fv, tv = self._lv, self._fv, self._tv
        n_nodes, n_int, height = self.n_nodes, self.n_internal, self.height
        for t in range(self.n_trees):
            b, bi, node = t * n_nodes, t * n_int, 0
            for _ in range(height):
                lv[b + node] += 1
                v = x[fv[bi + node]]
                if v != v:
                    node = 2 * node + 2 if lv[b + 2 * node + 1] < lv[b + 2 * node + 2] else 2 * node + 1
                else:
                    node = 2 * node + 1 if v < tv[bi + node] else 2 * node + 2
            lv[b + node] += 1
        self.counter += 1
        if self.counter == self.window_size:
            self._swap()

    def _score_learn_row(self, x: Sequence[float]) -> float:
        """:meth:`_score_row` then :meth:`_learn_row` of one row without missing
        values, in one walk (its path does not depend on the masses)."""
        rv, lv, fv, tv = self._rv, self._lv, self._fv, self._tv
        n_nodes, n_int, height = self.n_nodes, self.n_internal, self.height
        first = self._first_window
        limit = 0.1 * self.window_size
        total = 0
        for t in range(self.n_trees):
            b, bi, node, pw, scoring = t * n_nodes, t * n_int, 0, 1, not first
            for _ in range(height):
                g = b + node
                lv[g] += 1
                if scoring:
                    r = rv[g]
                    total += r * pw
                    pw <<= 1
                    if r < limit:
                        scoring = False
                i = bi + node
                node = 2 * node + (1 if x[fv[i]] < tv[i] else 2)
            g = b + node
            lv[g] += 1
            if scoring:
                total += rv[g] * pw
        self.counter += 1
        if self.counter == self.window_size:
            self._swap()
        if first:
            return 0.0
        return 1.0 - total / (self.n_trees * self.window_size * (2 ** (height + 1) - 1))

    def _paths(self, M: np.ndarray) -> np.ndarray:
        """Global node indices (``tree * n_nodes + node``) of the paths of the rows
        of ``M`` (no missing value), shape ``(height + 1, rows, trees)``."""
        n, k = M.shape
        flat = M.ravel()
        offset = (np.arange(n, dtype=np.intp) * k)[:, None]
        g = np.repeat(self._tree_base, n, axis=0)
        out = np.empty((self.height + 1, n, self.n_trees), dtype=np.intp)
        out[0] = g
        gfeat, gthr, gleft = self._gfeat, self._gthr, self._gleft
        for d in range(self.height):
            v = flat[offset + gfeat[g]]
            g = gleft[g] + ~(v < gthr[g])  # River: value < threshold -> left
            out[d + 1] = g
        return out

    def _score_paths(self, P: np.ndarray) -> np.ndarray:
        """Scores from paths: ``r_mass * 2**depth`` summed down to the first node
        under the size limit (included) or the leaf, normalised as River does."""
        r = self.r_mass.ravel()[P]
        ok = r >= 0.1 * self.window_size
        total = r[0].copy()
        reached = ok[0].copy()
        for d in range(1, self.height + 1):
            total += np.where(reached, r[d] << d, 0)
            reached &= ok[d]
        return 1.0 - total.sum(axis=1) / (self.n_trees * self.window_size * (2 ** (self.height + 1) - 1))

    def _add_paths(self, P: np.ndarray) -> None:
        self.l_mass += np.bincount(P.ravel(), minlength=self.l_mass.size).reshape(self.l_mass.shape)

    def _score_missing(self, M: np.ndarray) -> np.ndarray:
        """:meth:`score_many` of rows with missing values (River's rule needs ``l_mass``)."""
        n = M.shape[0]
        rows = np.arange(n)[:, None]
        rm = self.r_mass.ravel()
        limit = 0.1 * self.window_size
        idx = np.zeros((n, self.n_trees), dtype=np.intp)
        total = np.zeros((n, self.n_trees), dtype=np.int64)
        active = np.ones((n, self.n_trees), dtype=bool)
        for depth in range(self.height):
            r = rm[self._tree_base + idx]
            total += np.where(active, r << depth, 0)
            active &= r >= limit
            if not active.any():
                break
            idx = self._step(idx, rows, M, True)
        else:
            total += np.where(active, rm[self._tree_base + idx] << self.height, 0)
        max_score = self.n_trees * self.window_size * (2 ** (self.height + 1) - 1)
        return 1.0 - total.sum(axis=1) / max_score

    def score_many(self, X: Any) -> np.ndarray:
        """Scores of the rows of ``X`` (columns :attr:`features`) in ``[0, 1]``; learns nothing."""
        M = self._matrix(X)
        n = M.shape[0]
        if self._first_window or n == 0:
            return np.zeros(n)
        if n <= _SMALL:
            return np.array([self._score_row(row) for row in M.tolist()])
        if np.isnan(M).any():
            return self._score_missing(M)
        return np.concatenate([self._score_paths(self._paths(M[i : i + _BLOCK])) for i in range(0, n, _BLOCK)])

    def _learn_chunk(self, M: np.ndarray) -> None:
        """Add the paths of rows of one window to ``l_mass``: rows without a
        missing value at once, the others (whose path depends on ``l_mass``)
        one at a time, in order."""
        miss = np.isnan(M).any(axis=1)
        start = 0
        for i in np.flatnonzero(miss):
            if i > start:
                self._add_paths(self._paths(M[start:i]))
            self._add_missing(M[i : i + 1])
            start = i + 1
        for i in range(start, len(M), _BLOCK):
            self._add_paths(self._paths(M[i : min(i + _BLOCK, len(M))]))

    def _add_missing(self, M: np.ndarray) -> None:
        rows = np.arange(M.shape[0])[:, None]
        idx = np.zeros((M.shape[0], self.n_trees), dtype=np.intp)
        visited = [self._tree_base + idx]
        for _ in range(self.height):
            idx = self._step(idx, rows, M, True)
            visited.append(self._tree_base + idx)
        self._add_paths(np.stack(visited))

    def _learn_matrix(self, M: np.ndarray, P: np.ndarray | None = None) -> None:
        """Learn the rows of ``M`` in order (``P``: their paths, when known),
        splitting at the window swaps."""
        start, n = 0, M.shape[0]
        while start < n:
            stop = min(n, start + self.window_size - self.counter)
            if P is None:
                self._learn_chunk(M[start:stop])
            else:
                self._add_paths(P[:, start:stop])
            self.counter += stop - start
            start = stop
            if self.counter == self.window_size:
                self._swap()

    def learn_many(self, X: Any) -> None:
        """Learn the rows of ``X`` in order; window swaps happen after the same
        numbers of rows as with :meth:`learn_one`."""
        M = self._matrix(X)
        if M.shape[0] <= _SMALL:
            for row in M.tolist():
                self._learn_row(row)
            return
        self._learn_matrix(M)

    def score_learn_many(self, X: Any) -> np.ndarray:
        """Score the rows of ``X`` against the model as it is, then learn them in
        order: ``score_many(X)`` then ``learn_many(X)``, walking each path once."""
        M = self._matrix(X)
        n = M.shape[0]
        if n <= _SMALL or n > _BLOCK or np.isnan(M).any():
            scores = self.score_many(M)
            self.learn_many(M)
            return scores
        P = self._paths(M)
        scores = np.zeros(n) if self._first_window else self._score_paths(P)
        self._learn_matrix(M, P)
        return scores

    def _swap(self) -> None:
        self.r_mass[...] = self.l_mass
        self.l_mass.fill(0)
        self._first_window = False
        self.counter = 0

    def score_one(self, x: Mapping[str, Any]) -> float:
        """Score of the dict ``x`` (River's interface); learns nothing."""
        if self.features is None or self._first_window:
            return 0.0
        return self._score_row(self._row(x))

    def learn_one(self, x: Mapping[str, Any]) -> None:
        """Learn the dict ``x`` (River's interface; the first one builds the trees
        when ``features`` was not given)."""
        if self.features is None:
            self._build(sorted(x))
        self._learn_row(self._row(x))

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """The learned state as plain data: feature names, the window counter and
        the masses (small unsigned integers, as raw little-endian bytes); the trees
        are rebuilt from ``seed``."""
        dtype = np.dtype("<u2" if self.window_size < 2**16 else "<u4")
        return {
            "features": None if self.features is None else list(self.features),
            "digest": None if self.features is None else self._digest(),
            "counter": self.counter,
            "first_window": self._first_window,
            "dtype": dtype.str,
            "r_mass": self.r_mass.astype(dtype).tobytes(),
            "l_mass": self.l_mass.astype(dtype).tobytes(),
        }

    def load(self, snap: Mapping[str, Any]) -> None:
        """Put :meth:`snapshot` output into this detector (built with the same
        configuration); ValueError if the masses or trees do not fit it."""
        if not isinstance(snap, Mapping) or not {"features", "digest", "counter", "r_mass", "l_mass"} <= set(snap):
            raise ValueError(f"HalfSpaceTrees.load: expected a HalfSpaceTrees snapshot, got {snap!r:.80}")
        shape = (self.n_trees, self.n_nodes)
        r, lm = (np.frombuffer(m, dtype=snap.get("dtype", "<u2")).reshape(shape)
                 if isinstance(m, (bytes, bytearray)) else np.asarray(m)
                 for m in (snap["r_mass"], snap["l_mass"]))
        if r.shape != shape or lm.shape != shape:
            raise ValueError(f"HalfSpaceTrees.load: masses of shape {r.shape}, expected {shape}")
        if snap["features"] is not None:
            if self.features != tuple(snap["features"]):
                self._build(snap["features"])
            if self._digest() != snap["digest"]:
                raise ValueError("HalfSpaceTrees.load: the snapshot's trees differ from this configuration's")
        self.r_mass[...] = r  # in place: the flat views stay valid
        self.l_mass[...] = lm
        self.counter = int(snap["counter"])
        self._first_window = bool(snap["first_window"])

    def __getstate__(self) -> dict[str, Any]:
        config = dict(n_trees=self.n_trees, height=self.height, window_size=self.window_size,
                      limits=self.limits, seed=self.seed)
        return {"config": config, "state": self.snapshot()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["config"])  # type: ignore[misc]
        self.load(state["state"])

    def __repr__(self) -> str:
        return (f"HalfSpaceTrees(n_trees={self.n_trees}, height={self.height}, window_size={self.window_size}, "
                f"features={self.features!r}, first_window={self._first_window})")
