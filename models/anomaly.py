"""Online anomaly detectors shared by the fraud and IoT dataflows.

Three pieces, all plain Python (no stream engine imports):

* :class:`KeyDetector` -- cheap per-key, per-variable detector of deviation from
  the key's *own* behaviour: exponentially weighted mean and variance, a robust
  (Huber-clipped) update, ``z = (x - mean) / std`` and ``score = z2 / (z2 + scale2)``.
  State is a few floats; ``snapshot()`` returns a plain tuple.
* :class:`ShardDetector` -- one multivariate River ``HalfSpaceTrees`` shared by all
  keys of a shard or segment, on scaled inputs (River ``MinMaxScaler`` or fixed
  ``limits``). Never one per key: a tree ensemble is ~166 KiB pickled.
  ``snapshot()`` returns bytes.
* :func:`combine_scores` -- a documented rule that folds detector scores into one
  score in ``[0, 1]``.

Every score is in ``[0, 1]``, higher = more anomalous. Every detector reports
whether it is still warming up; a warming detector's score is a best effort,
not a confident value, and callers should mark the record (and may leave the
score out of a combination, as :func:`combine_scores` does with ``warming=``).

Signatures::

    KeyDetector(*, alpha=0.02, warmup=20, scale=4.0, clip=3.0, min_std=1e-9)
        .score_learn(value: float | None) -> tuple[float, bool]   # (score, warming_up)
        .snapshot() -> tuple ;  KeyDetector.restore(snap) -> KeyDetector
    ShardDetector(features, *, seed=42, window_size=250, n_trees=10, height=8, limits=None,
                  calibrate=True, calib_alpha=0.005, calib_warmup=50, scale=4.0)
        .score_learn(x: Mapping[str, float | None]) -> tuple[float, bool]
        .snapshot() -> bytes ;  ShardDetector.restore(snap) -> ShardDetector
    combine_scores(scores, weights=None, *, method="noisy_or", warming=()) -> float
    z_to_score(z, scale=4.0) -> float

>>> kd = KeyDetector(warmup=5)
>>> for v in [10.0, 10.2, 9.8, 10.1, 9.9, 10.0, 10.1, 9.9]:
...     s, warming = kd.score_learn(v)
>>> warming, s < 0.2
(False, True)
>>> s, _ = kd.score_learn(14.0)      # a spike far outside the key's own spread
>>> s > 0.9
True
>>> KeyDetector.restore(kd.snapshot()).score_learn(10.0) == kd.score_learn(10.0)
True
>>> combine_scores({"temperature": 0.5, "humidity": 0.5})
0.75
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable, Mapping, Sequence

from river import anomaly, preprocessing

__all__ = ["KeyDetector", "ShardDetector", "combine_scores", "z_to_score"]


def z_to_score(z: float, scale: float = 4.0) -> float:
    """Map a deviation ``z`` (in standard deviations) to a score in ``[0, 1)``.

    ``score = z**2 / (z**2 + scale**2)``: 0 at ``z = 0``, 0.5 at ``|z| = scale``,
    0.8 at ``|z| = 2 * scale``; smooth and strictly increasing in ``|z|``, so it
    keeps ranking very large deviations apart instead of saturating at 1.

    >>> z_to_score(0.0), z_to_score(4.0), z_to_score(-8.0)
    (0.0, 0.5, 0.8)
    >>> z_to_score(float("inf"))
    1.0
    """
    if z != z:
        raise ValueError("z_to_score: z is NaN")
    z2 = z * z
    if math.isinf(z2):
        return 1.0
    return z2 / (z2 + scale * scale)


class KeyDetector:
    """Cheap per-key, per-variable detector of deviation from the key's own behaviour.

    Keeps an exponentially weighted mean and variance (forgetting factor
    ``alpha``; memory of roughly ``1 / alpha`` values). For each value it first
    scores, then learns:

    * ``z = (value - mean) / max(std, min_std)`` and
      ``score = z_to_score(z, scale)`` (0.5 at ``|z| = scale``);
    * the update is robust: once warm, the residual is clipped to
      ``clip * std`` before it moves the mean and variance, so a spike barely
      shifts the baseline while a lasting level change is still followed.

    During the first ``warmup`` values the flag ``warming_up`` is True: the
    score is computed from the plain mean and variance of the values seen so
    far (0.0 until two values were seen) and must not be read as confident.
    A missing value (None or NaN) is skipped: the state is unchanged and the
    result is ``(0.0, warming_up)``; callers should rather leave the variable
    out of their combination (the IoT scoring does).

    State: 3 numbers plus the configuration; :meth:`snapshot` is a plain tuple.

    >>> kd = KeyDetector(alpha=0.1, warmup=3)
    >>> [kd.score_learn(v)[1] for v in (1.0, 2.0, 3.0, 2.0)]
    [True, True, True, False]
    >>> kd.score_learn(None)
    (0.0, False)
    >>> snap = kd.snapshot()
    >>> snap[:5]
    ('KeyDetector/1', 0.1, 3, 4.0, 3.0)
    >>> KeyDetector.restore(snap).snapshot() == snap
    True
    """

    __slots__ = ("alpha", "warmup", "scale", "clip", "min_std", "n", "mean", "var")

    _VERSION = "KeyDetector/1"

    def __init__(
        self,
        *,
        alpha: float = 0.02,
        warmup: int = 20,
        scale: float = 4.0,
        clip: float = 3.0,
        min_std: float = 1e-9,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"KeyDetector: alpha must be in (0, 1), got {alpha!r}")
        if warmup < 2:
            raise ValueError(f"KeyDetector: warmup must be >= 2, got {warmup!r}")
        if not scale > 0.0:
            raise ValueError(f"KeyDetector: scale must be > 0, got {scale!r}")
        if not clip > 0.0:
            raise ValueError(f"KeyDetector: clip must be > 0, got {clip!r}")
        if not min_std > 0.0:
            raise ValueError(f"KeyDetector: min_std must be > 0, got {min_std!r}")
        self.alpha = float(alpha)
        self.warmup = int(warmup)
        self.scale = float(scale)
        self.clip = float(clip)
        self.min_std = float(min_std)
        self.n = 0  # values learned
        self.mean = 0.0
        self.var = 0.0

    @property
    def warming_up(self) -> bool:
        """True until ``warmup`` values were learned."""
        return self.n < self.warmup

    def z(self, value: float) -> float:
        """Signed deviation of ``value`` from the learned mean, in std units
        (0.0 before two values were learned). Does not learn."""
        if self.n < 2:
            return 0.0
        return (value - self.mean) / max(math.sqrt(self.var), self.min_std)

    def score_learn(self, value: float | None) -> tuple[float, bool]:
        """Score ``value`` against the state, then learn it.

        Returns ``(score in [0, 1], warming_up)``; ``warming_up`` describes the
        state the score was computed from.
        """
        if value is None or value != value:  # missing: skipped
            return 0.0, self.warming_up
        value = float(value)
        if math.isinf(value):
            raise ValueError(f"KeyDetector.score_learn: value is infinite ({value!r})")
        warming = self.n < self.warmup
        score = z_to_score(self.z(value), self.scale)
        self.learn(value)
        return score, warming

    def learn(self, value: float) -> None:
        """Update the mean and variance with ``value`` (see the class docstring)."""
        self.n += 1
        if self.n <= self.warmup:
            # Plain running mean / population variance (Welford): converges fast
            # and does not depend on alpha while there is too little data.
            delta = value - self.mean
            self.mean += delta / self.n
            self.var += (delta * (value - self.mean) - self.var) / self.n
            return
        a = self.alpha
        r = value - self.mean
        lim = self.clip * max(math.sqrt(self.var), self.min_std)
        if r > lim:
            r = lim
        elif r < -lim:
            r = -lim
        self.mean += a * r
        self.var = (1.0 - a) * (self.var + a * r * r)

    def snapshot(self) -> tuple:
        """Plain-data state: ``(version, alpha, warmup, scale, clip, min_std, n, mean, var)``."""
        return (
            self._VERSION,
            self.alpha,
            self.warmup,
            self.scale,
            self.clip,
            self.min_std,
            self.n,
            self.mean,
            self.var,
        )

    @classmethod
    def restore(cls, snap: tuple) -> "KeyDetector":
        """Rebuild a detector from :meth:`snapshot` output."""
        if not isinstance(snap, tuple) or len(snap) != 9 or snap[0] != cls._VERSION:
            raise ValueError(
                f"KeyDetector.restore: expected a {cls._VERSION} snapshot tuple of 9 items, "
                f"got {type(snap).__name__} {snap!r:.80}"
            )
        _, alpha, warmup, scale, clip, min_std, n, mean, var = snap
        kd = cls(alpha=alpha, warmup=warmup, scale=scale, clip=clip, min_std=min_std)
        kd.n, kd.mean, kd.var = int(n), float(mean), float(var)
        return kd

    def __repr__(self) -> str:
        return (
            f"KeyDetector(n={self.n}, mean={self.mean:.6g}, std={math.sqrt(self.var):.6g}, "
            f"warming_up={self.warming_up})"
        )


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

    ``score_learn`` scores then learns. River's raw HST score is in ``[0, 1]``
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
    >>> ShardDetector.restore(sd.snapshot()).score_learn({"a": 1.0}) == sd.score_learn({"a": 1.0})
    True
    """

    _VERSION = "ShardDetector/1"

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

    def _prepare(self, x: Mapping[str, float | None]) -> dict[str, float]:
        """Scaled, clipped, imputed feature dict (learns the scaler and the means)."""
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

    def score_learn(self, x: Mapping[str, float | None]) -> tuple[float, bool]:
        """Score the reading ``x`` (feature -> value), then learn it.

        Returns ``(score in [0, 1], warming_up)``; ``(0.0, True)`` during the
        first ``window_size`` readings.
        """
        if not isinstance(x, Mapping):
            raise TypeError(f"ShardDetector.score_learn: x must be a mapping, got {type(x).__name__}")
        xs = self._prepare(x)
        warming = self.warming_up
        if self.n < self.window_size:
            raw = score = 0.0
        else:
            raw = score = float(self.hst.score_one(xs))
            if self.calibrator is not None:
                z = self.calibrator.z(raw)
                score = z_to_score(z, self.scale) if z > 0.0 else 0.0
                self.calibrator.learn(raw)
        self.last_raw_score = raw
        self.hst.learn_one(xs)
        self.n += 1
        return min(max(score, 0.0), 1.0), warming

    def snapshot(self) -> bytes:
        """This detector's state as bytes (``pickle.dumps``)."""
        return pickle.dumps((self._VERSION, self.__dict__), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, snap: bytes) -> "ShardDetector":
        """Rebuild a detector from :meth:`snapshot` bytes (trusted, self-produced only)."""
        if not isinstance(snap, (bytes, bytearray)):
            raise TypeError(f"ShardDetector.restore: expected bytes, got {type(snap).__name__}")
        version, state = pickle.loads(snap)
        if version != cls._VERSION:
            raise ValueError(f"ShardDetector.restore: expected a {cls._VERSION} snapshot, got {version!r}")
        sd = cls.__new__(cls)
        sd.__dict__.update(state)
        return sd

    def __repr__(self) -> str:
        return f"ShardDetector(features={self.features!r}, n={self.n}, warming_up={self.warming_up})"


def combine_scores(
    scores: Mapping[str, float | None],
    weights: Mapping[str, float] | None = None,
    *,
    method: str = "noisy_or",
    warming: Iterable[str] = (),
) -> float:
    """Combine detector scores (each in ``[0, 1]``) into one score in ``[0, 1]``.

    Scores that are None or NaN, and those named in ``warming``, are left out.
    Each remaining score ``s`` is first multiplied by its weight ``w``
    (``weights[name]``, default 1.0, must be in ``[0, 1]``). Then:

    * ``"noisy_or"`` (default): ``1 - prod(1 - w * s)`` -- the probability that
      at least one detector fires if each fires independently with
      probability ``w * s``. Any single strong detector makes the result
      high; several moderate ones reinforce each other.
    * ``"max"``: ``max(w * s)`` -- the strongest single detector.
    * ``"mean"``: weighted mean ``sum(w * s) / sum(w)``.

    With nothing left to combine the result is 0.0: the caller must then report
    the record as warming up / unscored rather than as confidently normal.

    >>> combine_scores({"a": 0.5, "b": 0.5})
    0.75
    >>> combine_scores({"a": 0.9, "b": 0.2}, method="max")
    0.9
    >>> combine_scores({"a": 0.9, "b": 0.3}, {"a": 0.5}, method="mean")
    0.5
    >>> combine_scores({"a": float("nan"), "b": 0.4, "c": 1.0}, warming=["c"])
    0.4
    """
    if weights is None:
        weights = {}
    skip = set(warming)
    vals: list[tuple[float, float]] = []
    for name, s in scores.items():
        if name in skip or s is None or s != s:
            continue
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"combine_scores: score {name!r} = {s!r} is outside [0, 1]")
        w = weights.get(name, 1.0)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"combine_scores: weight {name!r} = {w!r} is outside [0, 1]")
        vals.append((float(s), float(w)))
    if not vals:
        return 0.0
    if method == "noisy_or":
        keep = 1.0
        for s, w in vals:
            keep *= 1.0 - w * s
        return min(max(1.0 - keep, 0.0), 1.0)
    if method == "max":
        return max(w * s for s, w in vals)
    if method == "mean":
        tw = sum(w for _, w in vals)
        return sum(w * s for s, w in vals) / tw if tw > 0 else 0.0
    raise ValueError(f"combine_scores: unknown method {method!r} (use 'noisy_or', 'max' or 'mean')")
