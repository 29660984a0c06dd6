"""Drift of a score stream: River ``PageHinkley`` with a plain-data snapshot."""

from __future__ import annotations

from river.drift import PageHinkley

__all__ = ["DriftMonitor"]


class DriftMonitor:
    """River ``PageHinkley`` (mode "up") on one score stream.

    Fires when the stream's level rises for long enough: the cumulative sum of
    ``score - running mean - delta`` climbs ``threshold`` above its minimum.
    After a detection River resets the test (the next update starts afresh).
    :meth:`snapshot` holds the test's running sums only; the thresholds come
    from the constructor.

    >>> dm = DriftMonitor(threshold=2.0, min_instances=10)
    >>> [i for i, s in enumerate([0.05] * 50 + [0.6] * 20) if dm.update(s)]
    [53]
    >>> copy = DriftMonitor(threshold=2.0, min_instances=10)
    >>> copy.load(dm.snapshot()); copy.snapshot() == dm.snapshot()
    True
    """

    __slots__ = ("ph",)

    def __init__(self, *, threshold: float = 20.0, delta: float = 0.02, min_instances: int = 30) -> None:
        self.ph = PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold, mode="up")

    def update(self, score: float) -> bool:
        """Feed one score; True when a drift is detected at this score."""
        self.ph.update(score)
        return bool(self.ph.drift_detected)

    def snapshot(self) -> tuple:
        """``(n, mean, sum_increase, sum_decrease, min_increase, max_decrease, detected)``."""
        ph = self.ph
        return (
            ph._x_mean.n,
            ph._x_mean._mean,
            ph._sum_increase,
            ph._sum_decrease,
            ph._min_increase,
            ph._max_decrease,
            bool(ph._drift_detected),
        )

    def load(self, snap: tuple) -> None:
        """Put :meth:`snapshot` output into this monitor."""
        if not isinstance(snap, (tuple, list)) or len(snap) != 7:
            raise ValueError(f"DriftMonitor.load: expected a tuple of 7 items, got {snap!r:.80}")
        ph = self.ph
        n, mean, s_inc, s_dec, min_inc, max_dec, detected = snap
        ph._x_mean.n, ph._x_mean._mean = n, mean
        ph._sum_increase, ph._sum_decrease = s_inc, s_dec
        ph._min_increase, ph._max_decrease = min_inc, max_dec
        ph._drift_detected = detected
