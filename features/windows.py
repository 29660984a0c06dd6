"""Event-time rolling windows for one key, exact under out-of-order arrival.

The history keeps the key's recent events sorted by event time, so a window
query for an event at time ``t`` sees exactly the events in ``(t - horizon, t]``
that have arrived so far: an event that arrives late (within the retention)
gets the same features it would have had in order. State is a few parallel
lists of floats, bounded by ``retention_s`` and ``max_events``, so a snapshot
is a cheap copy of plain data.

>>> h = EventTimeHistory(retention_s=3600, fields=("amount",))
>>> _ = h.insert(100.0, {"amount": 10.0})
>>> _ = h.insert(200.0, {"amount": 30.0})
>>> h.stats("amount", t=200.0, horizon=3600)
WindowStats(count=2, sum=40.0, mean=20.0, std=10.0, min=10.0, max=30.0)
>>> _ = h.insert(150.0, {"amount": 20.0})   # arrives late, lands in order
>>> h.stats("amount", t=150.0, horizon=3600).count
2
>>> copy = EventTimeHistory(retention_s=3600, fields=("amount",))
>>> copy.load(h.snapshot()); copy.stats("amount", t=200.0, horizon=3600) == h.stats("amount", t=200.0, horizon=3600)
True
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Mapping, Sequence

__all__ = ["WindowStats", "EventTimeHistory", "EMPTY_STATS"]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Summary of the values of one field inside one event-time window."""

    count: int
    sum: float
    mean: float
    std: float
    min: float
    max: float


EMPTY_STATS = WindowStats(0, 0.0, math.nan, math.nan, math.nan, math.nan)


def summarize(values: Sequence[float]) -> WindowStats:
    """Count, sum, mean, population std, min and max of ``values``.

    NaN marks a missing value and is skipped.

    >>> summarize([1.0, float("nan"), 3.0])
    WindowStats(count=2, sum=4.0, mean=2.0, std=1.0, min=1.0, max=3.0)
    >>> summarize([]).count
    0
    """
    vals = [v for v in values if v == v]
    n = len(vals)
    if n == 0:
        return EMPTY_STATS
    total = math.fsum(vals)
    mean = total / n
    var = math.fsum((v - mean) * (v - mean) for v in vals) / n
    return WindowStats(n, total, mean, math.sqrt(var), min(vals), max(vals))


class EventTimeHistory:
    """Recent events of one key, sorted by event time (seconds since the epoch).

    Args:
        retention_s: how far behind the newest event time an event is kept.
            Set it to the longest window plus the allowed lateness.
        fields: names of the numeric fields kept per event.
        max_events: hard cap on the events kept (oldest go first), so a hot
            key cannot grow without bound.
    """

    __slots__ = ("retention_s", "max_events", "fields", "times", "columns", "watermark")

    def __init__(
        self,
        retention_s: float,
        fields: Sequence[str] = ("value",),
        max_events: int = 1024,
    ) -> None:
        if retention_s <= 0:
            raise ValueError(f"retention_s must be > 0, got {retention_s!r}")
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events!r}")
        self.retention_s = float(retention_s)
        self.max_events = int(max_events)
        self.fields = tuple(fields)
        self.times: list[float] = []
        self.columns: dict[str, list[float]] = {f: [] for f in self.fields}
        self.watermark = -math.inf  # newest event time seen

    def __len__(self) -> int:
        return len(self.times)

    def is_late(self, t: float, lateness_s: float) -> bool:
        """Whether an event at ``t`` is later than ``lateness_s`` behind the newest."""
        return t < self.watermark - lateness_s

    def insert(self, t: float, values: Mapping[str, float | None]) -> int:
        """Add an event; returns its index, or -1 when ``t`` is already out of
        retention (then nothing is stored). Missing values are stored as NaN."""
        if t < self.watermark - self.retention_s:
            return -1
        idx = bisect_right(self.times, t)
        self.times.insert(idx, t)
        for f in self.fields:
            v = values.get(f)
            self.columns[f].insert(idx, math.nan if v is None else float(v))
        if t > self.watermark:
            self.watermark = t
        return idx - self._evict()

    def _evict(self) -> int:
        """Drop events out of retention or over the cap; returns how many."""
        cut = bisect_left(self.times, self.watermark - self.retention_s)
        cut = max(cut, len(self.times) - self.max_events)
        if cut > 0:
            del self.times[:cut]
            for col in self.columns.values():
                del col[:cut]
        return cut

    def previous(self, idx: int) -> int | None:
        """Index of the event just before ``idx`` in event time, if any."""
        return idx - 1 if idx > 0 else None

    def window(self, t: float, horizon: float) -> tuple[int, int]:
        """Index range ``[lo, hi)`` of the events in ``(t - horizon, t]``."""
        return bisect_right(self.times, t - horizon), bisect_right(self.times, t)

    def stats(self, field: str, t: float, horizon: float) -> WindowStats:
        """Statistics of ``field`` over the events in ``(t - horizon, t]``."""
        lo, hi = self.window(t, horizon)
        return summarize(self.columns[field][lo:hi])

    def snapshot(self) -> tuple:
        """The learned state as plain data: ``(watermark, times, {field: values})``.
        Configuration (retention, cap, fields) is not in it: it comes from the
        constructor of the history :meth:`load` fills."""
        return (self.watermark, list(self.times), {f: list(c) for f, c in self.columns.items()})

    def load(self, snap: tuple) -> None:
        """Put :meth:`snapshot` output into this history; events out of this
        history's retention or over its cap are evicted, fields it does not keep
        are dropped and fields it keeps that the snapshot lacks are NaN."""
        if not isinstance(snap, (tuple, list)) or len(snap) != 3:
            raise ValueError(f"EventTimeHistory.load: expected (watermark, times, columns), got {snap!r:.80}")
        watermark, times, columns = snap
        self.watermark = float(watermark)
        self.times = [float(t) for t in times]
        n = len(self.times)
        self.columns = {f: list(columns[f]) if f in columns else [math.nan] * n for f in self.fields}
        self._evict()
