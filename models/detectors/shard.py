"""One multivariate Half-Space Trees detector shared by all keys of a shard."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import msgspec
import numpy as np
import structlog

from models.detectors.hst import HalfSpaceTrees
from models.detectors.key import KeyDetector, z_to_score

__all__ = ["ShardDetector"]

log = structlog.get_logger(__name__)

_FORMAT = "numpy-hst/1"  # part of the snapshot fingerprint: River-object snapshots of before are discarded
_NAN = float("nan")


class ShardDetector:
    """One multivariate Half-Space Trees ensemble shared by all keys of a shard.

    The trees are :class:`models.detectors.hst.HalfSpaceTrees` (River's
    algorithm, trees and scores, on numpy arrays). Inputs are scaled to
    ``[0, 1]`` before they reach the trees, in one of two ways:

    * ``limits=None`` (default): a running min-max scaler (River's
      ``MinMaxScaler`` arithmetic) learns each feature's min and max *before*
      transforming, so scaled values stay inside ``[0, 1]``;
    * ``limits={feature: (lo, hi)}``: fixed ranges; values are clipped to them
      and the trees are drawn over them. Use it when the inputs are already
      normalised (e.g. per-key z-scores clipped to ``[-c, c]``), so a single
      extreme value cannot squash the scale for everyone.

    Only the names in ``features`` are read from ``x``; other keys are ignored.
    Missing features (absent, None or NaN) are imputed with the feature's
    running mean in scaled space (0.5 before any value was seen), so the trees
    always see every feature and a gap does not look like an anomaly.

    **Batches.** :meth:`score_learn_many` takes a batch of readings and works
    like a micro-batch: (1) the scaler learns the batch's values, (2) every
    reading is scaled and its gaps imputed with the means *as before the
    batch*, (3) every reading is scored against the trees and calibrated
    against the calibrator *as before the batch*, then (4) the imputation
    means, the calibrator and the trees learn the batch, in order (the trees'
    windows swap at the same reading counts as one by one). So a batch's
    scores do not depend on the order of its readings, and the whole batch is
    scored and learned with a few numpy steps per tree level. The warm-up flag
    of every reading is the detector's state before the batch.
    :meth:`score_learn` is exactly ``score_learn_many([x])[0]`` (a batch of
    one: the usual score-then-learn order), on a plain-Python path for speed.

    ``score_one`` scores without learning, ``learn_one`` learns. The raw HST
    score is in ``[0, 1]`` but not calibrated: typical readings already score
    0.6-0.9 and the level depends on the data and the number of features. So
    by default (``calibrate=True``) the raw score is compared with its own
    recent distribution in this shard (a :class:`KeyDetector` with
    ``calib_alpha`` over the raw scores) and only an *above usual* deviation
    counts: ``score = z_to_score(max(z, 0), scale)``, on the same scale as the
    per-key detectors. ``calibrate=False`` returns the raw HST score. The raw
    score of the last reading is kept in ``last_raw_score``.

    Warm-up: during the first ``window_size`` readings HST scores 0; they are
    reported as ``(0.0, True)``. With calibration, the next ``calib_warmup``
    readings are still flagged warming (score computed from the few raw
    scores seen so far).

    Cost with the defaults (6 features): ~1.5-2 us per reading in batches of
    1,000, about River's cost one by one. :meth:`snapshot` is ~21 KiB of
    MessagePack bytes of plain data (the masses as uint16 bytes; the trees are
    redrawn from ``seed``); loading it runs no code.

    >>> sd = ShardDetector(["a", "b"], window_size=20, calib_warmup=20)
    >>> import random
    >>> rng = random.Random(0)
    >>> flags = [sd.score_learn({"a": rng.gauss(0, 1), "b": rng.gauss(5, 1)})[1] for _ in range(60)]
    >>> flags[0], flags[19], flags[20], flags[39], flags[40]
    (True, True, True, True, False)
    >>> s_normal, _ = sd.score_learn({"a": 0.0, "b": 5.0})
    >>> s_odd, _ = sd.score_learn({"a": 9.0, "b": None})
    >>> s_odd > s_normal
    True
    >>> copy = ShardDetector(["a", "b"], window_size=20, calib_warmup=20)
    >>> copy.load(sd.snapshot())
    True
    >>> copy.score_learn({"a": 1.0}) == sd.score_learn({"a": 1.0})
    True
    >>> batch = [{"a": 0.1, "b": 5.2}, {"a": 8.0, "b": 5.0}]
    >>> out = sd.score_learn_many(batch)            # scored as a micro-batch, then learned
    >>> out[1][0] > out[0][0], copy.score_learn_many(batch[::-1]) == out[::-1]
    (True, True)
    """

    def __init__(
        self,
        features: Sequence[str],
        *,
        seed: int = 42,
        window_size: int = 250,
        n_trees: int = 10,
        height: int = 8,
        limits: Mapping[str, tuple[float, float]] | None = None,
        calibrate: bool = True,
        calib_alpha: float = 0.005,
        calib_warmup: int = 50,
        scale: float = 4.0,
    ) -> None:
        features = tuple(features)
        if not features:
            raise ValueError("ShardDetector: features must name at least one feature")
        if len(set(features)) != len(features):
            raise ValueError(f"ShardDetector: duplicate feature names in {features!r}")
        if window_size < 2:
            raise ValueError(f"ShardDetector: window_size must be >= 2, got {window_size!r}")
        if limits is not None:
            bad = [f for f in features if f not in limits or not limits[f][0] < limits[f][1]]
            if bad:
                raise ValueError(
                    f"ShardDetector: limits must give (lo, hi) with lo < hi for every feature; "
                    f"missing or invalid for {bad!r}"
                )
            limits = {f: (float(limits[f][0]), float(limits[f][1])) for f in features}
        self.features = features
        self.seed = seed
        self.window_size = int(window_size)
        self.limits = limits
        self.hst = HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=self.window_size, limits=limits, seed=seed,
            features=features,
        )
        k = len(features)
        self._lo = [limits[f][0] for f in features] if limits is not None else None
        self._hi = [limits[f][1] for f in features] if limits is not None else None
        # running min / max of each feature (limits=None), River's MinMaxScaler
        self._min = [math.inf] * k
        self._max = [-math.inf] * k
        # running mean of each feature in scaled space ([0, 1]), for imputation
        self._mean = [0.5] * k
        self._count = [0] * k
        self.n = 0
        self.scale = float(scale)
        self.calibrator = (
            KeyDetector(alpha=calib_alpha, warmup=calib_warmup, scale=scale) if calibrate else None
        )
        self.last_raw_score = 0.0

    @property
    def warming_up(self) -> bool:
        """True while the trees fill their first window (HST scores 0) and,
        with calibration, while the calibrator is warming up."""
        if self.n < self.window_size:
            return True
        return self.calibrator is not None and self.calibrator.warming_up

    # ------------------------------------------------------------------ one reading (plain Python)

    def _values(self, x: Mapping[str, float | None]) -> list[float]:
        """The features of ``x`` as floats in ``features`` order, NaN = missing."""
        if not isinstance(x, Mapping):
            raise TypeError(f"ShardDetector: x must be a mapping, got {type(x).__name__}")
        out = []
        for f in self.features:
            v = x.get(f)
            if v is None:
                out.append(_NAN)
                continue
            v = float(v)
            if math.isinf(v):
                raise ValueError(f"ShardDetector: feature {f!r} is infinite ({v!r})")
            out.append(v)
        return out

    def _scale_row(self, vals: list[float], learn: bool) -> tuple[list[float], list[float]]:
        """``(tree input, scaled value in [0, 1] or NaN if missing)`` of one reading;
        with ``learn``, the scaler learns it first."""
        lo, hi = self._lo, self._hi
        xs: list[float] = []
        us: list[float] = []
        for i, v in enumerate(vals):
            if v != v:
                u = self._mean[i]
                xs.append(u if lo is None else lo[i] + u * (hi[i] - lo[i]))  # type: ignore[index]
                us.append(_NAN)
                continue
            if lo is None:
                mn, mx = self._min[i], self._max[i]
                if learn:
                    if v < mn:
                        mn = self._min[i] = v
                    if v > mx:
                        mx = self._max[i] = v
                elif mn > mx:  # never seen (score_one): treated as missing
                    u = self._mean[i]
                    xs.append(u)
                    us.append(_NAN)
                    continue
                d = mx - mn
                u = (v - mn) / d if d else 0.0
                xs.append(u)
            else:
                a, b = lo[i], hi[i]  # type: ignore[index]
                c = a if v < a else b if v > b else v
                u = (c - a) / (b - a)
                xs.append(c)
            us.append(u)
        return xs, us

    def _learn_means(self, U: np.ndarray) -> None:
        """Update the imputation means with the scaled values ``U`` (rows in order,
        NaN = missing): per value ``m = (1 - a) * m + a * u`` with ``a = 1 / min(count,
        window_size)``, unrolled (``m_n = m_0 * prod(1 - a_j) + sum_i a_i u_i *
        prod_{j > i}(1 - a_j)``); one row gives exactly :meth:`_learn_mean_row`."""
        present = ~np.isnan(U)
        count = np.array(self._count, dtype=np.int64)[None, :] + np.cumsum(present, axis=0)
        a = np.where(present, 1.0 / np.minimum(np.maximum(count, 1), self.window_size), 0.0)
        keep = np.cumprod((1.0 - a)[::-1], axis=0)[::-1]  # prod_{j >= i} (1 - a_j)
        after = np.ones_like(keep)
        after[:-1] = keep[1:]  # prod_{j > i} (1 - a_j)
        mean = keep[0] * np.array(self._mean) + (a * np.where(present, U, 0.0) * after).sum(axis=0)
        self._mean, self._count = mean.tolist(), count[-1].tolist()

    def _learn_mean_row(self, us: Sequence[float]) -> None:
        """:meth:`_learn_means` for one reading."""
        w, mean, count = self.window_size, self._mean, self._count
        for i, u in enumerate(us):
            if u == u:
                c = count[i] = count[i] + 1
                a = 1.0 / (c if c < w else w)
                mean[i] = (1.0 - a) * mean[i] + a * u

    def _calibrated(self, raw: float) -> float:
        if self.calibrator is None:
            return raw
        z = self.calibrator.z(raw)
        return z_to_score(z, self.scale) if z > 0.0 else 0.0

    def score_one(self, x: Mapping[str, float | None]) -> float:
        """Score of ``x`` in ``[0, 1]``; learns nothing (the scaler is not updated either)."""
        if self.n < self.window_size:
            return 0.0
        xs, _ = self._scale_row(self._values(x), learn=False)
        return min(max(self._calibrated(self.hst._score_row(xs)), 0.0), 1.0)

    def learn_one(self, x: Mapping[str, float | None]) -> None:
        """Learn ``x`` (scaler, imputation means, trees; not the calibrator, which
        learns from the raw scores :meth:`score_learn` sees)."""
        xs, us = self._scale_row(self._values(x), learn=True)
        self._learn_mean_row(us)
        self.hst._learn_row(xs)
        self.n += 1

    def score_learn(self, x: Mapping[str, float | None]) -> tuple[float, bool]:
        """Score the reading ``x`` (feature -> value), then learn it:
        ``score_learn_many([x])[0]``.

        Returns ``(score in [0, 1], warming_up)``; ``(0.0, True)`` during the
        first ``window_size`` readings.
        """
        xs, us = self._scale_row(self._values(x), learn=True)
        warming = self.warming_up
        raw = self.hst._score_learn_row(xs)  # xs has no gaps (imputed): one walk scores and learns
        if self.n < self.window_size:
            raw = score = 0.0
        else:
            score = self._calibrated(raw)
            if self.calibrator is not None:
                self.calibrator.learn_many((raw,))
        self.last_raw_score = raw
        self._learn_mean_row(us)
        self.n += 1
        return min(max(score, 0.0), 1.0), warming

    # ------------------------------------------------------------------ batches (numpy)

    def _matrix(self, rows: Sequence[Mapping[str, float | None]]) -> np.ndarray:
        for x in rows:
            if type(x) is not dict and not isinstance(x, Mapping):
                raise TypeError(f"ShardDetector: x must be a mapping, got {type(x).__name__}")
        feats = self.features
        V = np.array([[*map(x.get, feats)] for x in rows], dtype=np.float64)  # None -> NaN
        return V.reshape(len(rows), len(feats))

    def _scale_many(self, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(tree inputs, scaled values with NaN where missing)``; the scaler learns
        the batch first. Same arithmetic as :meth:`_scale_row`."""
        present = ~np.isnan(V)
        mean = np.array(self._mean)
        if self.limits is None:
            mn = np.minimum(np.array(self._min), np.where(present, V, np.inf).min(axis=0))
            mx = np.maximum(np.array(self._max), np.where(present, V, -np.inf).max(axis=0))
            self._min, self._max = mn.tolist(), mx.tolist()
            d = mx - mn
            ok = d != 0  # inf - inf (never seen) is NaN, != 0: only reached where missing
            with np.errstate(invalid="ignore", divide="ignore"):
                U = np.where(ok, (V - mn) / np.where(ok, d, 1.0), 0.0)
            U = np.where(present, U, np.nan)
            X = np.where(present, U, mean)
        else:
            lo, hi = np.array(self._lo), np.array(self._hi)
            C = np.clip(V, lo, hi)  # NaN stays NaN
            U = (C - lo) / (hi - lo)
            X = np.where(present, C, lo + mean * (hi - lo))
        return X, U

    def score_learn_many(self, rows: Sequence[Mapping[str, float | None]]) -> list[tuple[float, bool]]:
        """Score a batch of readings against the detector as it was before the
        batch, then learn them in order (see the class docstring); one
        ``(score in [0, 1], warming_up)`` per reading, in order. A batch of one
        is :meth:`score_learn`; a batch longer than ``window_size`` is taken in
        micro-batches of ``window_size``."""
        return self.score_learn_matrix(self._matrix(rows)) if len(rows) else []

    def score_learn_matrix(self, V: np.ndarray) -> list[tuple[float, bool]]:
        """:meth:`score_learn_many` of the readings ``V`` (readings x :attr:`features`,
        NaN = missing): the batch step of callers that hold columns, not mappings."""
        scores, warming = self.score_learn_columns(V)
        return list(zip(scores.tolist(), warming.tolist()))

    def score_learn_columns(self, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score_learn_matrix` as two columns: the scores (float64) and the warm-up
        flags (bool), one per reading, for callers that go on with columns."""
        V = np.asarray(V, dtype=np.float64)
        inf = np.isinf(V)
        if inf.any():
            r, c = np.argwhere(inf)[0]
            raise ValueError(f"ShardDetector: feature {self.features[c]!r} is infinite ({V[r, c]!r})")
        # A micro-batch never spans more than one window: warm-up ends and the trees'
        # window swaps stay within one window of where per-event learning has them.
        n = len(V)
        scores = np.empty(n)
        warming = np.empty(n, dtype=np.bool_)
        step = max(self.window_size, 1)
        for i in range(0, n, step):
            chunk = V[i:i + step]
            if len(chunk) == 1:
                scores[i], warming[i] = self.score_learn(dict(zip(self.features, chunk[0].tolist())))
            else:
                scores[i:i + len(chunk)], warming[i:i + len(chunk)] = self._score_learn_np(chunk)
        return scores, warming

    def _score_learn_np(self, V: np.ndarray) -> tuple[np.ndarray, bool]:
        """:meth:`score_learn_columns` on numpy (any batch size; tested equal to the
        plain-Python :meth:`score_learn` on batches of one): the scores, and the warm-up
        flag of them all (the detector's state before the batch)."""
        X, U = self._scale_many(V)
        n = len(V)
        warming = self.warming_up
        raw = self.hst.score_learn_many(X)  # scored against the trees before the batch, then learned
        if self.n < self.window_size:
            score = np.zeros(n)
            warming = True
            self.last_raw_score = 0.0
        else:
            cal = self.calibrator
            if cal is None:
                score = raw
            elif cal.n < 2:
                score = np.zeros(n)
            else:
                z = (raw - cal.mean) / max(math.sqrt(cal.var), cal.min_std)
                z2 = z * z
                with np.errstate(invalid="ignore"):
                    score = np.where(z > 0.0, np.where(np.isinf(z2), 1.0, z2 / (z2 + self.scale * self.scale)), 0.0)
            score = np.clip(score, 0.0, 1.0)
            if cal is not None:
                cal.learn_many(raw.tolist())
            self.last_raw_score = float(raw[-1])
        self._learn_means(U)
        self.n += n
        return score, warming

    # ------------------------------------------------------------------ state

    def _fingerprint(self) -> tuple:
        cal = self.calibrator
        return (
            _FORMAT, self.features, self.seed, self.window_size, self.hst.n_trees, self.hst.height, self.limits,
            None if cal is None else (cal.alpha, cal.warmup), self.scale,
        )

    def snapshot(self) -> bytes:
        """The learned state as MessagePack bytes of plain data: the trees' masses,
        the scaler, the imputation means, the calibrator. Decoding it runs no code
        (no pickle)."""
        state = [
            repr(self._fingerprint()), self.hst.snapshot(), self._min, self._max, self._mean, self._count, self.n,
            None if self.calibrator is None else list(self.calibrator.snapshot()), self.last_raw_score,
        ]
        return msgspec.msgpack.encode(state)

    def load(self, snap: bytes) -> bool:
        """Put :meth:`snapshot` bytes into this detector. The trees' learned
        masses cannot be separated from their shape, so a snapshot taken under
        another configuration (features, trees, window, limits, calibration,
        or the River-object format of before) is not loaded: the detector
        starts afresh, the discard is logged, and ``False`` is returned."""
        if not isinstance(snap, (bytes, bytearray)):
            raise TypeError(f"ShardDetector.load: expected bytes, got {type(snap).__name__}")
        try:
            state = msgspec.msgpack.decode(snap)
        except Exception:  # whatever the decoder raises
            state = None  # not this format (e.g. a pickled snapshot of an older version)
        if not isinstance(state, list) or len(state) != 9 or state[0] != repr(self._fingerprint()):
            log.warning("detector_state_discarded", detector="ShardDetector",
                        reason="configuration changed since the snapshot", features=list(self.features))
            return False
        if not isinstance(state[1], dict) or state[1].get("digest") != self.hst._digest():  # same settings, other trees (a changed RNG?)
            log.warning("detector_state_discarded", detector="ShardDetector",
                        reason="the trees differ from the snapshot's", features=list(self.features))
            return False
        _, hst, mn, mx, mean, count, n, cal, raw = state
        self.hst.load(hst)
        self._min, self._max, self._mean, self._count = list(mn), list(mx), list(mean), list(count)
        self.n, self.last_raw_score = int(n), float(raw)
        if self.calibrator is not None and cal is not None:
            self.calibrator.load(cal)
        return True

    def __repr__(self) -> str:
        return f"ShardDetector(features={self.features!r}, n={self.n}, warming_up={self.warming_up})"
