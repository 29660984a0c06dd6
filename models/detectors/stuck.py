"""Per-key detector of a sensor stuck at one value."""

from __future__ import annotations

import math
from statistics import NormalDist

from models.detectors.key import z_to_score

__all__ = ["StuckDetector", "tail_score"]

_NORMAL = NormalDist()


def tail_score(tail: float, scale: float) -> float:
    """Score of a run whose chance under normal behaviour is ``2 * tail``: the
    two-sided normal z with that tail, mapped with ``z_to_score(z, scale)``.

    >>> tail_score(0.5, 4.0), round(tail_score(1e-6, 4.0), 3)
    (0.0, 0.585)
    """
    z = -_NORMAL.inv_cdf(max(tail, 1e-300))
    return z_to_score(z, scale) if z > 0 else 0.0


class StuckDetector:
    """How improbable the current run of exactly repeated values is for this key.

    Real sensors are noisy, so two consecutive readings are rarely exactly
    equal. The detector learns ``p``, the key's rate of exact repeats (decayed
    counts with forgetting factor ``beta`` and a Jeffreys prior:
    ``p = (repeats + 0.5) / (transitions + 1)``); only the first repeat of a run
    counts, so a stuck period barely teaches that repeats are normal. For a run
    of ``r`` repeats the chance under normal behaviour is ``P = p ** r``, turned
    into the two-sided normal z with the same tail and mapped with
    ``z_to_score(z, scale)``: the same scale as a :class:`KeyDetector` score.

    Missing values (None / NaN) are skipped; the run continues across them.
    ``warming_up`` until ``warmup`` transitions were seen. :meth:`snapshot` is the
    learned state only; configuration comes from the constructor.

    >>> sd = StuckDetector(warmup=5)
    >>> [round(sd.score_learn(v)[0], 2) for v in (1.0, 1.1, 1.3, 1.2, 1.0, 1.4, 1.4, 1.4, 1.4)]
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.16, 0.2, 0.29]
    >>> copy = StuckDetector(warmup=5)
    >>> copy.load(sd.snapshot()); copy.snapshot() == sd.snapshot()
    True
    """

    __slots__ = ("beta", "warmup", "scale", "last", "run", "reps", "trans", "n")

    def __init__(self, *, beta: float = 0.01, warmup: int = 20, scale: float = 4.0) -> None:
        if not 0.0 < beta < 1.0:
            raise ValueError(f"StuckDetector: beta must be in (0, 1), got {beta!r}")
        if warmup < 1:
            raise ValueError(f"StuckDetector: warmup must be >= 1, got {warmup!r}")
        self.beta = float(beta)
        self.warmup = int(warmup)
        self.scale = float(scale)
        self.last: float | None = None
        self.run = 0  # consecutive exact repeats of `last`
        self.reps = 0.0  # decayed count of runs started
        self.trans = 0.0  # decayed count of transitions from a fresh value
        self.n = 0  # transitions seen

    @property
    def warming_up(self) -> bool:
        return self.n < self.warmup

    @property
    def repeat_rate(self) -> float:
        return (self.reps + 0.5) / (self.trans + 1.0)

    def score_one(self, value: float | None) -> float:
        """Score of ``value`` given the run so far; does not learn."""
        if value is None or value != value or self.last is None or value != self.last:
            return 0.0
        log_tail = (self.run + 1) * math.log(self.repeat_rate)  # log P(run this long | normal)
        return tail_score(math.exp(max(log_tail, -700.0)) / 2.0, self.scale)

    def learn_one(self, value: float | None) -> None:
        """Extend or end the current run; learn the repeat rate on transitions."""
        if value is None or value != value:
            return
        if self.last is None:
            self.last = value
            return
        repeat = value == self.last
        if self.run == 0:  # a transition from a fresh value: learn the repeat rate
            d = 1.0 - self.beta
            self.reps = d * self.reps + (1.0 if repeat else 0.0)
            self.trans = d * self.trans + 1.0
            self.n += 1
        if repeat:
            self.run += 1
        else:
            self.run = 0
            self.last = value

    def score_learn(self, value: float | None) -> tuple[float, bool]:
        """Score, then learn: ``(score, warming_up)``."""
        warming = self.warming_up
        score = self.score_one(value)
        self.learn_one(value)
        return score, warming

    def snapshot(self) -> tuple:
        """The learned state: ``(last, run, reps, trans, n)``."""
        return (self.last, self.run, self.reps, self.trans, self.n)

    def load(self, snap: tuple) -> None:
        """Put :meth:`snapshot` output into this detector."""
        if not isinstance(snap, (tuple, list)) or len(snap) != 5:
            raise ValueError(f"StuckDetector.load: expected (last, run, reps, trans, n), got {snap!r:.80}")
        last, run, reps, trans, n = snap
        self.last, self.run, self.reps, self.trans, self.n = last, int(run), float(reps), float(trans), int(n)
