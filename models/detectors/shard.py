"""One multivariate River ``HalfSpaceTrees`` shared by all keys of a shard."""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence

import structlog
from river import anomaly, preprocessing

from models.detectors.key import KeyDetector, z_to_score

__all__ = ["ShardDetector"]

log = structlog.get_logger(__name__)


class ShardDetector:
    """One multivariate River ``HalfSpaceTrees`` shared by all keys of a shard.

    Inputs are scaled to ``[0, 1]`` before they reach the trees, in one of two ways:

    * ``limits=None`` (default): a River ``MinMaxScaler`` learns each feature's
      running min and max (it learns the reading *before* transforming it, so
      scaled values stay inside ``[0, 1]``);
    * ``limits={feature: (lo, hi)}``: fixed ranges; values are clipped to them
      and ``HalfSpaceTrees(limits=...)`` scales. Use it when the inputs are
      already normalised (e.g. per-key z-scores clipped to ``[-c, c]``), so a
      single extreme value cannot squash the scale for everyone.

    Only the names in ``features`` are read from ``x``; other keys are ignored.
    Missing features (absent, None or NaN) are imputed with the feature's
    running mean in scaled space (0.5 before any value was seen), so the trees
    always see every feature and a gap does not look like an anomaly.

    ``score_one`` scores without learning, ``learn_one`` learns, ``score_learn``
    does both in that order. River's raw HST score is in ``[0, 1]``
    but not calibrated: typical readings already score 0.6-0.9 and the level
    depends on the data and the number of features. So by default
    (``calibrate=True``) the raw score is compared with its own recent
    distribution in this shard (a :class:`KeyDetector` with ``calib_alpha``
    over the raw scores) and only an *above usual* deviation counts:
    ``score = z_to_score(max(z, 0), scale)``, on the same scale as the
    per-key detectors. ``calibrate=False`` returns the raw HST score.
    The raw score of the last call is kept in ``last_raw_score``.

    Warm-up: during the first ``window_size`` readings River's HST scores 0;
    they are reported as ``(0.0, True)``. With calibration, the next
    ``calib_warmup`` readings are still flagged warming (score computed from
    the few raw scores seen so far).

    One ensemble is ~166 KiB pickled and ~40 us per reading with the defaults:
    keep one per shard or segment, never one per key. :meth:`snapshot` returns
    ``pickle.dumps`` bytes of this detector's own state; only ever restore
    bytes produced by :meth:`snapshot` (never unpickle data from outside).

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
        self.scaler = preprocessing.MinMaxScaler() if limits is None else None
        self.hst = anomaly.HalfSpaceTrees(
            n_trees=n_trees,
            height=height,
            window_size=self.window_size,
            limits=dict(limits) if limits is not None else None,  # type: ignore[arg-type]
            seed=seed,
        )
        # running mean of each feature in scaled space ([0, 1]), for imputation
        self._mean = {f: 0.5 for f in features}
        self._count = {f: 0 for f in features}
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

    def _scaled(self, x: Mapping[str, float | None], learn: bool) -> dict[str, float]:
        """Scaled, clipped, imputed feature dict (with ``learn``, learns the scaler and the means)."""
        present: dict[str, float] = {}
        for f in self.features:
            v = x.get(f)
            if v is None or v != v:
                continue
            v = float(v)
            if math.isinf(v):
                raise ValueError(f"ShardDetector: feature {f!r} is infinite ({v!r})")
            present[f] = v
        limits = self.limits
        if limits is None:
            assert self.scaler is not None
            if learn:
                self.scaler.learn_one(present)
            scaled = self.scaler.transform_one(present)
        else:
            scaled = {}
            for f, v in present.items():
                lo, hi = limits[f]
                scaled[f] = lo if v < lo else hi if v > hi else v
        out: dict[str, float] = {}
        for f in self.features:
            if f in scaled:
                v = scaled[f]
                if limits is None:
                    u = v
                else:
                    lo, hi = limits[f]
                    u = (v - lo) / (hi - lo)
                if learn:
                    c = self._count[f] = self._count[f] + 1
                    self._mean[f] += (u - self._mean[f]) / min(c, self.window_size)
                out[f] = v
            else:
                u = self._mean[f]
                if limits is None:
                    out[f] = u
                else:
                    lo, hi = limits[f]
                    out[f] = lo + u * (hi - lo)
        return out

    def _raw_to_score(self, raw: float) -> float:
        if self.calibrator is None:
            return raw
        z = self.calibrator.z(raw)
        return z_to_score(z, self.scale) if z > 0.0 else 0.0

    def score_one(self, x: Mapping[str, float | None]) -> float:
        """Score of ``x`` in ``[0, 1]``; learns nothing (the scaler is not updated either)."""
        if self.n < self.window_size:
            return 0.0
        xs = self._scaled(x, learn=False)
        return min(max(self._raw_to_score(float(self.hst.score_one(xs))), 0.0), 1.0)

    def learn_one(self, x: Mapping[str, float | None]) -> None:
        """Learn ``x`` (scaler, imputation means, trees; not the calibrator, which
        learns from the raw scores :meth:`score_learn` sees)."""
        self.hst.learn_one(self._scaled(x, learn=True))
        self.n += 1

    def score_learn(self, x: Mapping[str, float | None]) -> tuple[float, bool]:
        """Score the reading ``x`` (feature -> value), then learn it.

        Returns ``(score in [0, 1], warming_up)``; ``(0.0, True)`` during the
        first ``window_size`` readings.
        """
        if not isinstance(x, Mapping):
            raise TypeError(f"ShardDetector.score_learn: x must be a mapping, got {type(x).__name__}")
        xs = self._scaled(x, learn=True)
        warming = self.warming_up
        if self.n < self.window_size:
            raw = score = 0.0
        else:
            raw = float(self.hst.score_one(xs))
            score = self._raw_to_score(raw)
            if self.calibrator is not None:
                self.calibrator.learn_one(raw)
        self.last_raw_score = raw
        self.hst.learn_one(xs)
        self.n += 1
        return min(max(score, 0.0), 1.0), warming

    def _fingerprint(self) -> tuple:
        cal = self.calibrator
        return (
            self.features, self.seed, self.window_size, self.hst.n_trees, self.hst.height, self.limits,
            None if cal is None else (cal.alpha, cal.warmup), self.scale,
        )

    def snapshot(self) -> bytes:
        """The learned state as bytes: the trees' masses, the scaler, the imputation
        means, the calibrator (``pickle.dumps`` of this detector's own objects;
        restore only bytes produced here, never data from outside)."""
        state = (
            self._fingerprint(), self.hst, self.scaler, self._mean, self._count, self.n,
            None if self.calibrator is None else self.calibrator.snapshot(), self.last_raw_score,
        )
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, snap: bytes) -> bool:
        """Put :meth:`snapshot` bytes into this detector. The trees' learned
        masses cannot be separated from their shape, so a snapshot taken under
        another configuration (features, trees, window, limits, calibration) is
        not loaded: the detector starts afresh, the discard is logged, and
        ``False`` is returned."""
        if not isinstance(snap, (bytes, bytearray)):
            raise TypeError(f"ShardDetector.load: expected bytes, got {type(snap).__name__}")
        fingerprint, hst, scaler, mean, count, n, cal, raw = pickle.loads(snap)
        if fingerprint != self._fingerprint():
            log.warning("detector_state_discarded", detector="ShardDetector",
                        reason="configuration changed since the snapshot", features=list(self.features))
            return False
        self.hst, self.scaler, self._mean, self._count, self.n, self.last_raw_score = hst, scaler, mean, count, n, raw
        if self.calibrator is not None and cal is not None:
            self.calibrator.load(cal)
        return True

    def __repr__(self) -> str:
        return f"ShardDetector(features={self.features!r}, n={self.n}, warming_up={self.warming_up})"
