"""Per-key, per-variable detector of deviation from the key's own behaviour."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["KeyDetector", "z_to_score"]


def z_to_score(z: float, scale: float = 4.0) -> float:
    """Map a deviation ``z`` (in standard deviations) to a score in ``[0, 1)``.

    ``score = z**2 / (z**2 + scale**2)``: 0 at ``z = 0``, 0.5 at ``|z| = scale``,
    0.8 at ``|z| = 2 * scale``; smooth and strictly increasing in ``|z|``.

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


def _value(x: float | Mapping[str, float] | None) -> float | None:
    """A float from a number or a one-item dict (River passes dicts)."""
    if type(x) is float and x - x == 0.0:  # the common case: a finite float
        return x
    if isinstance(x, Mapping):
        if len(x) != 1:
            raise ValueError(f"KeyDetector: expected one variable, got {sorted(x)!r}")
        x = next(iter(x.values()))
    if x is None or x != x:
        return None
    v = float(x)
    if math.isinf(v):
        raise ValueError(f"KeyDetector: value is infinite ({x!r})")
    return v


class KeyDetector:
    """Deviation of one variable from one key's own behaviour.

    Keeps an exponentially weighted mean and variance (forgetting factor
    ``alpha``; memory of roughly ``1 / alpha`` values):

    * ``score_one``: ``z = (x - mean) / max(std, min_std)``, ``z_to_score(z, scale)``;
    * ``learn_one``: robust; once warm, the residual is clipped to ``clip * std``
      before it moves the mean and variance, so a spike barely shifts the
      baseline while a lasting level change is still followed. During the
      first ``warmup`` values: plain running mean and variance (Welford).

    ``warming_up`` is True until ``warmup`` values were learned; a score computed
    then must not be read as confident (see :func:`models.status.anomaly_score`).
    A missing value (None or NaN) is skipped: score 0.0, nothing learned.

    Configuration is given to the constructor; :meth:`snapshot` holds the learned
    state only (``(n, mean, var)``) and :meth:`load` puts it into a detector built
    with the current configuration.

    >>> kd = KeyDetector(warmup=5)
    >>> for v in [10.0, 10.2, 9.8, 10.1, 9.9, 10.0, 10.1, 9.9]:
    ...     s, warming = kd.score_learn(v)
    >>> warming, s < 0.2
    (False, True)
    >>> kd.score_one({"amount": 14.0}) > 0.9      # River-style dict input works too
    True
    >>> copy = KeyDetector(warmup=5)
    >>> copy.load(kd.snapshot())
    >>> copy.score_learn(10.0) == kd.score_learn(10.0)
    True
    """

    __slots__ = ("alpha", "warmup", "scale", "clip", "min_std", "n", "mean", "var")

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

    def score_one(self, x: float | Mapping[str, float] | None) -> float:
        """Score in ``[0, 1]`` of ``x`` against the state; does not learn."""
        v = _value(x)
        return 0.0 if v is None else z_to_score(self.z(v), self.scale)

    def learn_one(self, x: float | Mapping[str, float] | None) -> None:
        """Update the mean and variance with ``x`` (see the class docstring)."""
        v = _value(x)
        if v is None:
            return
        self.n += 1
        if self.n <= self.warmup:
            delta = v - self.mean
            self.mean += delta / self.n
            self.var += (delta * (v - self.mean) - self.var) / self.n
            return
        a = self.alpha
        r = v - self.mean
        lim = self.clip * max(math.sqrt(self.var), self.min_std)
        if r > lim:
            r = lim
        elif r < -lim:
            r = -lim
        self.mean += a * r
        self.var = (1.0 - a) * (self.var + a * r * r)

    def learn_many(self, values: Iterable[float]) -> None:
        """Learn the floats ``values`` in order: the same arithmetic as
        :meth:`learn_one` on each, without its per-call checks (the caller
        gives finite floats; a NaN is skipped).

        >>> a, b = KeyDetector(warmup=3), KeyDetector(warmup=3)
        >>> values = [1.0, 2.0, 1.5, 9.0, 1.2]
        >>> a.learn_many(values)
        >>> for v in values:
        ...     b.learn_one(v)
        >>> a.snapshot() == b.snapshot()
        True
        """
        n, mean, var = self.n, self.mean, self.var
        warmup, a, clip, min_std = self.warmup, self.alpha, self.clip, self.min_std
        sqrt = math.sqrt
        for v in values:
            if v != v:
                continue
            n += 1
            if n <= warmup:
                delta = v - mean
                mean += delta / n
                var += (delta * (v - mean) - var) / n
                continue
            r = v - mean
            lim = clip * max(sqrt(var), min_std)
            if r > lim:
                r = lim
            elif r < -lim:
                r = -lim
            mean += a * r
            var = (1.0 - a) * (var + a * r * r)
        self.n, self.mean, self.var = n, mean, var

    def score_learn(self, x: float | Mapping[str, float] | None) -> tuple[float, bool]:
        """Score, then learn: ``(score, warming_up)`` where ``warming_up``
        describes the state the score was computed from."""
        warming = self.n < self.warmup
        v = _value(x)
        if v is None:
            return 0.0, warming
        score = z_to_score(self.z(v), self.scale)
        self.learn_one(v)
        return score, warming

    def snapshot(self) -> tuple[int, float, float]:
        """The learned state: ``(n, mean, var)``."""
        return (self.n, self.mean, self.var)

    def load(self, snap: tuple[int, float, float]) -> None:
        """Put :meth:`snapshot` output into this detector."""
        if not isinstance(snap, (tuple, list)) or len(snap) != 3:
            raise ValueError(f"KeyDetector.load: expected (n, mean, var), got {snap!r:.80}")
        self.n, self.mean, self.var = int(snap[0]), float(snap[1]), float(snap[2])

    def __repr__(self) -> str:
        return (
            f"KeyDetector(n={self.n}, mean={self.mean:.6g}, std={math.sqrt(self.var):.6g}, "
            f"warming_up={self.warming_up})"
        )
