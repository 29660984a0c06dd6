"""Recognising a re-delivered event: the ids a key has seen lately.

Producers retry, and at-least-once transports deliver again: the same event id
for the same key may arrive twice. :class:`RecentIds` remembers one key's ids
within a horizon of event time and a count, so the scoring state can refuse the
second copy before it counts twice in the rolling windows.

The horizon is documented and bounded on purpose: an id is recognised when it
comes back within ``horizon_s`` of event time behind the key's newest event
*and* is among the key's last ``max_ids`` ids. Older copies are not recognised
(memory per key stays bounded for a hot key too).

>>> ids = RecentIds(horizon_s=3600, max_ids=3)
>>> ids.check("t1", 0.0), ids.check("t2", 10.0), ids.check("t1", 20.0)
(None, None, 0.0)
>>> again = RecentIds(3600, 3); again.load(ids.snapshot()); again.check("t2", 30.0)
10.0
>>> ids.check("t1", 7200.0)   # more than an hour after t1: forgotten, new again
"""

from __future__ import annotations

from typing import Any, Sequence

from features.defaults import DEDUP_HORIZON_S, DEDUP_MAX_IDS

__all__ = ["RecentIds", "DEDUP_HORIZON_S", "DEDUP_MAX_IDS"]



class RecentIds:
    """The ids one key has seen lately, in arrival order.

    Args:
        horizon_s: how far behind the key's newest event time an id is still
            remembered (event time, seconds). ``0`` remembers nothing.
        max_ids: at most this many ids per key (the oldest are forgotten first).

    :meth:`check` is the one call per event: it returns the event time the id was
    first seen at (a duplicate) or ``None`` after remembering it (a new event).
    """

    __slots__ = ("horizon_s", "max_ids", "_ids", "_newest")

    def __init__(self, horizon_s: float = DEDUP_HORIZON_S, max_ids: int = DEDUP_MAX_IDS) -> None:
        if not horizon_s >= 0:
            raise ValueError(f"RecentIds: horizon_s must be >= 0, got {horizon_s!r}")
        if max_ids < 0:
            raise ValueError(f"RecentIds: max_ids must be >= 0, got {max_ids!r}")
        self.horizon_s = float(horizon_s)
        self.max_ids = int(max_ids)
        self._ids: dict[str, float] = {}
        self._newest = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.horizon_s > 0 and self.max_ids > 0

    def __len__(self) -> int:
        return len(self._ids)

    def check(self, event_id: str, t: float) -> float | None:
        """``None`` (and remember ``event_id`` at ``t``) for an id not seen within
        the horizon; else the event time of its first copy (nothing changes).

        >>> ids = RecentIds(60, 10)
        >>> ids.check("a", 100.0), ids.check("a", 130.0), ids.check("a", 500.0)
        (None, 100.0, None)
        """
        ids = self._ids
        first = ids.get(event_id)
        if first is not None and (t if t > self._newest else self._newest) - first <= self.horizon_s:
            return first
        if self.max_ids <= 0 or self.horizon_s <= 0:
            return None
        if first is not None:  # remembered but out of the horizon: a new event now
            del ids[event_id]
        ids[event_id] = t
        if t > self._newest:
            self._newest = t
        self._forget()
        return None

    def _forget(self) -> None:
        ids, oldest_kept = self._ids, self._newest - self.horizon_s
        while len(ids) > self.max_ids:
            del ids[next(iter(ids))]
        while ids:
            first = next(iter(ids))
            if ids[first] >= oldest_kept:
                break
            del ids[first]

    def snapshot(self) -> tuple[list[str], list[float]] | None:
        """Plain data: ``(ids, times)`` in arrival order, or ``None`` when empty."""
        if not self._ids:
            return None
        return list(self._ids), list(self._ids.values())

    def load(self, snap: Sequence[Any] | None) -> None:
        """Put :meth:`snapshot` output into these ids (kept under this object's horizon and cap)."""
        self._ids = {}
        self._newest = float("-inf")
        if snap is None:
            return
        ids, times = snap
        self._ids = dict(zip(ids, times))
        self._newest = max(self._ids.values(), default=float("-inf"))
        self._forget()
