"""Event-time rolling windows for one key by tiled aggregation: cost per event and
memory per key do not grow with the event rate.

:class:`TiledWindows` keeps, for each horizon ``H``, partial aggregates per
*tile* of event time, and a short exact *tail* of the key's newest events.

**Tiles.** A horizon is cut into ``tiles`` (``N``, 60 by default) tiles of
width ``w = H / N``, aligned on the epoch: tile ``k`` holds the events with
time in ``(k*w, (k+1)*w]`` (``k = ceil(t / w) - 1``). Per tile and field it
keeps count, sum, M2 (sum of squared deviations from the tile's mean), min and
max. Only non-empty tiles are stored, so a key with 2 events a day keeps a
handful of tiles and a 10 Hz key at most ``N + (lateness / w) + 2`` per horizon.
The variance is never taken from a running sum of squares: each tile adds an
event by Welford's update and tiles are combined by Chan et al.'s parallel
merge (``M2 = M2a + M2b + d**2 * na * nb / n``, ``d`` the difference of the
means), and nothing is ever subtracted from a running total, so it does not
drift however long the key lives. A read combines the tiles of the window; the
combined aggregate of all tiles but the newest is cached and reused while the
window stays on the same tiles (a busy key pays O(1) per event, a sparse key
O(its few tiles)); results do not depend on the cache.

**Exactness** (window of an event at time ``t``: ``(t - H, t]``, the event counted).
The window read is the whole tiles from the one holding ``t - H`` on:
event time ``(a*w, t]`` with ``a = floor((t - H) / w)``, so it covers at least
``H`` and less than ``H + w`` of event time:

* counts, sums, min and max are exact over ``(a*w, t]``; when ``t - H`` falls
  on a tile boundary (``t`` a multiple of ``w``) that *is* ``(t - H, t]``:
  exact. Otherwise the oldest, partially covered tile is included whole, so
  the count is between the exact count of ``(t - H, t]`` and that of
  ``(t - H - w, t]``; min/max follow the same rule; mean and std are those of
  the covered events (float rounding aside, about 1e-15 relative);
* an event that arrives late (behind the newest event time) lands in its
  tile: later windows are as if it had come in order. Its own window ends
  exactly at ``t`` when the tail still holds every event of the tile of ``t``
  (always while fewer than ``max_tail`` newer events are kept); otherwise the
  tile of ``t`` is read whole, i.e. up to ``w`` after ``t``;
* an event more than ``lateness_s + H`` behind the newest is not put into
  that horizon's tiles (they are gone); it is still counted in its own window
  of that horizon (see :meth:`aggregates`). One more than the retention
  (longest horizon + lateness) behind is not stored at all.

Nothing caps the window contents. The only cap, ``max_tail``, bounds the exact
tail (used for the previous event, for deltas and for the end of a late
event's window): for an event older than everything in the tail,
:meth:`previous` says "unknown" (``-1``) rather than guessing.

**State** is plain data: :meth:`snapshot` holds no configuration and
:meth:`load` fills an object built from the current configuration (another
horizon is rebuilt from a snapshot's tiles whose width divides the new one, or
else from the exact tail; fields the configuration no longer has are dropped;
new ones start empty).

>>> win = TiledWindows(horizons_s=(3600.0,), fields=("amount",), lateness_s=600)
>>> win.insert(120.0, {"amount": 10.0})
1
>>> _ = win.insert(180.0, {"amount": 30.0})
>>> win.stats("amount", t=180.0, horizon=3600.0)
WindowStats(count=2, sum=40.0, mean=20.0, std=10.0, min=10.0, max=30.0)
>>> _ = win.insert(150.0, {"amount": 20.0})   # arrives late, lands in its tile
>>> win.stats("amount", t=150.0, horizon=3600.0).count, win.stats("amount", t=180.0, horizon=3600.0).count
(2, 3)
>>> copy = TiledWindows(horizons_s=(3600.0,), fields=("amount",), lateness_s=600)
>>> copy.load(win.snapshot()); copy.stats("amount", 180.0, 3600.0) == win.stats("amount", 180.0, 3600.0)
True
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

from features.defaults import LATENESS_S

__all__ = ["WindowStats", "EMPTY_STATS", "summarize", "TiledWindows", "TILES", "LATENESS_S"]

#: Default number of tiles per horizon (tile width = horizon / TILES).
TILES = 60


_INF = math.inf
_NAN = math.nan
_AGG = 5  # per tile and field: n, sum, m2, min, max
_SNAP_TAG = "tiles/1"


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
    """Count, sum, mean, population std, min and max of ``values`` (a reference
    computation over raw values; NaN marks a missing value and is skipped).

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


def stats_of(agg: Sequence[float]) -> WindowStats:
    """:class:`WindowStats` of an aggregate ``(n, sum, m2, min, max)``.

    >>> stats_of((2.0, 40.0, 200.0, 10.0, 30.0))
    WindowStats(count=2, sum=40.0, mean=20.0, std=10.0, min=10.0, max=30.0)
    """
    n, s, m2, lo, hi = agg
    if n <= 0:
        return EMPTY_STATS
    return WindowStats(int(n), s, s / n, math.sqrt(m2 / n) if m2 > 0.0 else 0.0, lo, hi)


class _Spec:
    """Configuration shared by every key built with the same arguments (one object, not one per key)."""

    __slots__ = ("horizons", "widths", "n_tiles", "lateness", "retention", "fields", "extra", "n_fields",
                 "row", "stride", "max_tail", "min_tail", "span", "empty_rec", "index")

    def __init__(self, horizons, fields, lateness, n_tiles, extra, max_tail, min_tail):
        self.horizons = horizons
        self.n_tiles = n_tiles
        self.widths = tuple(h / n_tiles for h in horizons)
        self.lateness = lateness
        self.retention = max(horizons) + lateness
        self.fields = fields
        self.extra = extra
        self.n_fields = len(fields)
        self.row = 1 + len(fields) + len(extra)  # tail row: t, fields..., extra...
        self.stride = 1 + _AGG * len(fields)  # tile record: k, (n, sum, m2, min, max) per field
        self.max_tail = max_tail
        self.min_tail = min_tail
        # the tail must cover the tile of any event within the lateness, and the event before it
        self.span = lateness + max(self.widths)
        self.empty_rec = array("d", [0.0] * self.stride)
        for f in range(self.n_fields):
            self.empty_rec[1 + _AGG * f + 3] = _INF
            self.empty_rec[1 + _AGG * f + 4] = -_INF
        self.index = {h: i for i, h in enumerate(horizons)}


@lru_cache(maxsize=64)
def _spec(horizons, fields, lateness, n_tiles, extra, max_tail, min_tail) -> _Spec:
    return _Spec(horizons, fields, lateness, n_tiles, extra, max_tail, min_tail)


def _rec_search(rec: array, stride: int, k: float) -> int:
    """Number of tile records with index < ``k`` (records sorted by index)."""
    lo, hi = 0, len(rec) // stride
    while lo < hi:
        mid = (lo + hi) // 2
        if rec[mid * stride] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _row_search(tail: array, row: int, t: float) -> int:
    """Number of tail rows with time <= ``t`` (rows sorted by time)."""
    lo, hi = 0, len(tail) // row
    while lo < hi:
        mid = (lo + hi) // 2
        if t < tail[mid * row]:
            hi = mid
        else:
            lo = mid + 1
    return lo


class TiledWindows:
    """Tiled event-time windows of one key over several horizons, with an exact tail.

    Args:
        horizons_s: window lengths in seconds (each gets its own tiles).
        fields: numeric fields aggregated in the windows (missing: ``None`` or NaN, skipped).
        lateness_s: how far behind the newest event time an event may arrive and
            still be in every window it belongs to; tiles are kept for
            ``horizon + lateness_s`` (plus one tile) behind the newest event.
        tiles: tiles per horizon (``N``); the window bound is ``w = horizon / N``.
        extra_fields: fields kept only in the exact tail (e.g. coordinates).
        max_tail: cap on the events of the exact tail (not on the windows).
        min_tail: events the tail always keeps (within the retention), e.g. for
            a lookback of deltas; otherwise it keeps what a late event within
            the lateness needs (``lateness_s`` + the widest tile, and the event
            before that).

    See the module docstring for the exactness rule.
    """

    __slots__ = ("spec", "watermark", "floor", "recs", "tail", "cache")

    def __init__(
        self,
        horizons_s: Sequence[float],
        fields: Sequence[str] = ("value",),
        lateness_s: float = 0.0,
        tiles: int = TILES,
        extra_fields: Sequence[str] = (),
        max_tail: int = 512,
        min_tail: int = 1,
    ) -> None:
        horizons = tuple(float(h) for h in horizons_s)
        if not horizons or any(not (h > 0 and math.isfinite(h)) for h in horizons):
            raise ValueError(f"horizons_s must be positive finite seconds, got {horizons_s!r}")
        if len(set(horizons)) != len(horizons):
            raise ValueError(f"horizons_s has duplicates: {horizons_s!r}")
        if not lateness_s >= 0:
            raise ValueError(f"lateness_s must be >= 0, got {lateness_s!r}")
        if int(tiles) != tiles or tiles < 1:
            raise ValueError(f"tiles must be an integer >= 1, got {tiles!r}")
        if max_tail < 1 or min_tail < 1 or min_tail > max_tail:
            raise ValueError(f"need 1 <= min_tail <= max_tail, got min_tail={min_tail!r}, max_tail={max_tail!r}")
        names = tuple(fields) + tuple(extra_fields)
        if len(set(names)) != len(names):
            raise ValueError(f"field names must be distinct, got {names!r}")
        self.spec = _spec(horizons, tuple(fields), float(lateness_s), int(tiles), tuple(extra_fields),
                          int(max_tail), int(min_tail))
        self.watermark = -_INF  # newest event time seen
        self.floor = -_INF  # every stored event not in the tail has time <= floor
        self.recs = [array("d") for _ in horizons]
        self.tail = array("d")
        self.cache: list | None = None  # per horizon: [a, k_end, n, sum, m2, min, max, ...] or None

    # ------------------------------------------------------------------ info

    @property
    def horizons(self) -> tuple[float, ...]:
        return self.spec.horizons

    @property
    def widths(self) -> tuple[float, ...]:
        """Tile width of each horizon (the bound of the oldest partial tile)."""
        return self.spec.widths

    def __len__(self) -> int:
        """Events in the exact tail."""
        return len(self.tail) // self.spec.row

    def tile_count(self) -> int:
        """Non-empty tiles kept, over all horizons."""
        return sum(len(r) for r in self.recs) // self.spec.stride

    def tail_times(self) -> list[float]:
        """Event times of the exact tail, oldest first."""
        return list(self.tail[:: self.spec.row])

    def tail_value(self, row: int, field: int) -> float:
        """Value of ``field`` (position in ``fields + extra_fields``) in tail ``row``."""
        return self.tail[row * self.spec.row + 1 + field]

    def is_late(self, t: float, lateness_s: float | None = None) -> bool:
        """Whether an event at ``t`` is more than ``lateness_s`` (default: the
        configured lateness) behind the newest event time."""
        return t < self.watermark - (self.spec.lateness if lateness_s is None else lateness_s)

    # ------------------------------------------------------------------ update

    def previous(self, t: float) -> int:
        """Tail row of the newest event at or before ``t`` (call before inserting
        the event at ``t``), or -1: none kept. Exact: every event not in the tail
        is older than every event in it."""
        tail = self.tail
        row = self.spec.row
        n = len(tail) // row
        if n and tail[(n - 1) * row] <= t:
            return n - 1
        return _row_search(tail, row, t) - 1

    def insert(self, t: float, values: Mapping[str, Any]) -> int:
        """Add an event; returns the bit mask of the horizons whose tiles took it,
        or -1 when it is out of the retention (then nothing is stored)."""
        sp = self.spec
        row = []
        for f in sp.fields + sp.extra:
            v = values.get(f)
            row.append(_NAN if v is None else float(v))
        return self.insert_row(t, row)

    def insert_row(self, t: float, vals: Sequence[float]) -> int:
        """:meth:`insert` with the values in order ``fields + extra_fields`` (NaN: missing)."""
        sp = self.spec
        wm = self.watermark
        if t < wm - sp.retention:
            return -1
        advanced = t > wm
        if advanced:
            self.watermark = wm = t
        stride = sp.stride
        nf = sp.n_fields
        lateness = sp.lateness
        cache = self.cache
        mask = 0
        for i, rec in enumerate(self.recs):
            w = sp.widths[i]
            keep = math.floor((wm - lateness - sp.horizons[i]) / w)
            if advanced and rec and rec[0] < keep:
                cut = _rec_search(rec, stride, keep)
                del rec[: cut * stride]
                if cache is not None:
                    cache[i] = None
            k = math.ceil(t / w) - 1
            if k < keep:
                continue
            mask |= 1 << i
            nrec = len(rec) // stride
            last = (nrec - 1) * stride
            if nrec and rec[last] == k:
                base = last
            elif not nrec or rec[last] < k:
                base = len(rec)
                rec.extend(sp.empty_rec)
                rec[base] = k
            else:
                j = _rec_search(rec, stride, k)
                base = j * stride
                if rec[base] != k:
                    rec[base:base] = sp.empty_rec
                    rec[base] = k
            if cache is not None and cache[i] is not None and cache[i][0] <= k < cache[i][1]:
                cache[i] = None  # a late event in the cached tiles
            p = base + 1
            for f in range(nf):
                x = vals[f]
                if x == x:
                    n = rec[p] + 1.0
                    s = rec[p + 1]
                    if n == 1.0:
                        rec[p] = 1.0
                        rec[p + 1] = x
                        rec[p + 3] = x
                        rec[p + 4] = x
                    else:
                        old_mean = s / (n - 1.0)
                        s += x
                        rec[p] = n
                        rec[p + 1] = s
                        rec[p + 2] += (x - old_mean) * (x - s / n)
                        if x < rec[p + 3]:
                            rec[p + 3] = x
                        if x > rec[p + 4]:
                            rec[p + 4] = x
                p += _AGG
        self._tail_insert(t, vals)
        return mask

    def _tail_insert(self, t: float, vals: Sequence[float]) -> None:
        sp = self.spec
        tail = self.tail
        row = sp.row
        n = len(tail) // row
        if n and tail[(n - 1) * row] <= t:
            tail.append(t)
            tail.extend(vals)
        elif n >= sp.max_tail and t < tail[0]:
            self.floor = max(self.floor, t)  # older than all the full tail holds: not kept
            return
        else:
            pos = _row_search(tail, row, t) * row
            tail[pos:pos] = array("d", [t, *vals])
        n += 1
        # drop from the oldest: out of retention, over the cap, or not needed by an event within the lateness
        wm = self.watermark
        old = wm - sp.retention
        need = wm - sp.span
        drop = 0
        while drop < n and (
            tail[drop * row] < old
            or n - drop > sp.max_tail
            or (n - drop > sp.min_tail and tail[(drop + 1) * row] <= need)
        ):
            drop += 1
        if drop:
            self.floor = max(self.floor, tail[(drop - 1) * row])
            del tail[: drop * row]

    # ------------------------------------------------------------------ read

    def aggregates(self, t: float, mask: int = -1, vals: Sequence[float] | None = None) -> list[float]:
        """Aggregates of every horizon and field for a window ending at ``t``.

        Flat list: for horizon ``i`` and field ``f``, ``(n, sum, m2, min, max)``
        at ``(i * len(fields) + f) * 5``. ``mask`` and ``vals`` are what
        :meth:`insert_row` returned and was given for the event at ``t``: a horizon
        whose tiles did not take the event (too old for them) still counts it.
        """
        sp = self.spec
        stride = sp.stride
        nf = sp.n_fields
        in_order = t >= self.watermark
        out: list[float] = []
        for i, rec in enumerate(self.recs):
            w = sp.widths[i]
            k_end = math.ceil(t / w) - 1
            a = math.floor((t - sp.horizons[i]) / w)
            nrec = len(rec) // stride
            # records [j0, j1) are tiles a .. k_end - 1; record j1 is tile k_end when it exists
            if nrec and rec[(nrec - 1) * stride] < k_end:
                j1 = nrec
            else:
                j1 = _rec_search(rec, stride, k_end)
            j0 = 0 if not nrec or rec[0] >= a else _rec_search(rec, stride, a)
            cache = self.cache
            c = cache[i] if cache is not None else None
            if c is not None and c[0] == a and c[1] == k_end:
                agg = c[2:]
            else:
                agg = _merge_records(rec, j0, j1, stride, nf)
                if in_order and j1 - j0 >= 2 and j1 < nrec and rec[j1 * stride] == k_end:
                    busy = max(rec[j1 * stride + 1 + _AGG * f] for f in range(nf))
                    if busy >= 2.0:  # several events per tile: the prefix will be read again
                        if cache is None:
                            cache = self.cache = [None] * len(self.recs)
                        cache[i] = [a, k_end, *agg]
            end: Sequence[float] | None = None
            if j1 < nrec and rec[j1 * stride] == k_end:
                if in_order or self.floor > k_end * w:
                    end = rec[j1 * stride + 1 : (j1 + 1) * stride]
                else:  # late: the part of the tile up to t, from the exact tail
                    end = self._tail_aggregate(k_end * w, t)
            if end is None:
                out.extend(agg)
            else:
                out.extend(_merge_flat(agg, end, nf))
            if mask >= 0 and not mask >> i & 1 and vals is not None:
                base = len(out) - _AGG * nf
                for f in range(nf):
                    x = vals[f]
                    if x == x:
                        _merge_into(out, base + _AGG * f, 1.0, x, 0.0, x, x)
        return out

    def _tail_aggregate(self, lo: float, t: float) -> list[float]:
        """Aggregates of the tail events with time in ``(lo, t]``."""
        sp = self.spec
        tail, row, nf = self.tail, sp.row, sp.n_fields
        out = [0.0, 0.0, 0.0, _INF, -_INF] * nf
        j = _row_search(tail, row, lo)
        n_rows = len(tail) // row
        while j < n_rows and tail[j * row] <= t:
            p = j * row + 1
            for f in range(nf):
                x = tail[p + f]
                if x == x:
                    _merge_into(out, _AGG * f, 1.0, x, 0.0, x, x)
            j += 1
        return out

    def stats(self, field: str, t: float, horizon: float) -> WindowStats:
        """:class:`WindowStats` of ``field`` over the window of ``horizon`` (one of
        the configured horizons) ending at ``t``, by the rule of the module docstring."""
        sp = self.spec
        i = sp.index[float(horizon)]
        f = sp.fields.index(field)
        agg = self.aggregates(t)
        p = (i * sp.n_fields + f) * _AGG
        return stats_of(agg[p : p + _AGG])

    # ------------------------------------------------------------------ state

    def snapshot(self) -> tuple:
        """The state as plain data: ``("tiles/1", watermark, floor, fields,
        [(tile width, complete after, flat tile records), ...], tail fields, flat tail rows)``.

        No configuration: the tile width and the time after which a tile set
        holds every event describe the data (so :meth:`load` can re-tile it);
        horizons, lateness and caps come from the object :meth:`load` fills.
        """
        sp = self.spec
        sets = []
        for i, rec in enumerate(self.recs):
            w = sp.widths[i]
            since = (
                math.floor((self.watermark - sp.lateness - sp.horizons[i]) / w) * w
                if self.watermark > -_INF
                else -_INF
            )
            sets.append((w, since, rec.tolist()))
        return (_SNAP_TAG, self.watermark, self.floor, list(sp.fields), sets, list(sp.fields + sp.extra),
                self.tail.tolist())

    def load(self, snap: Any) -> None:
        """Put :meth:`snapshot` output into this object (built from the current
        configuration). A horizon is rebuilt from the snapshot's tile set with the
        earliest complete time among those whose tile width divides its own (exact
        re-tiling), else from the exact tail (then it holds only the tail's
        events until one horizon has passed). The previous format, an exact
        event list ``(watermark, times, {field: values})``, is replayed."""
        sp = self.spec
        if isinstance(snap, (tuple, list)) and len(snap) == 3:
            self._load_events(snap)
            return
        if not isinstance(snap, (tuple, list)) or len(snap) != 7 or snap[0] != _SNAP_TAG:
            raise ValueError(f"TiledWindows.load: expected a {_SNAP_TAG!r} snapshot, got {snap!r:.80}")
        _, watermark, floor, fields, sets, tail_fields, tail = snap
        self.watermark, self.floor, self.cache = float(watermark), float(floor), None
        # the exact tail, mapped to this object's fields
        old_row = 1 + len(tail_fields)
        pos = [tail_fields.index(f) if f in tail_fields else -1 for f in sp.fields + sp.extra]
        new_tail = array("d")
        for r in range(0, len(tail), old_row):
            new_tail.append(tail[r])
            new_tail.extend(array("d", [tail[r + 1 + p] if p >= 0 else _NAN for p in pos]))
        self.tail = new_tail
        fpos = [fields.index(f) if f in fields else -1 for f in sp.fields]
        old_stride = 1 + _AGG * len(fields)
        for i, w in enumerate(sp.widths):
            best = None
            for ow, since, data in sets:
                m = round(w / ow) if ow > 0 else 0
                if m >= 1 and abs(m * ow - w) <= 1e-9 * w and (best is None or (since, -ow) < (best[1], -best[0])):
                    best = (ow, since, data, m)
            if best is None:
                self.recs[i] = self._tiles_from_tail(i)
                continue
            _, _, data, m = best
            rec = array("d")
            stride = sp.stride
            for r in range(0, len(data), old_stride):
                k = int(data[r]) // m
                if not rec or rec[-stride] != k:
                    rec.extend(sp.empty_rec)
                    rec[-stride] = k
                base = len(rec) - stride + 1
                for f, p in enumerate(fpos):
                    if p >= 0:
                        q = r + 1 + _AGG * p
                        if data[q] > 0:
                            _merge_into(rec, base + _AGG * f, *data[q : q + _AGG])
            self.recs[i] = rec
        self._apply_retention()

    def _tiles_from_tail(self, i: int) -> array:
        sp = self.spec
        w, stride, row = sp.widths[i], sp.stride, sp.row
        rec = array("d")
        for r in range(0, len(self.tail), row):
            k = math.ceil(self.tail[r] / w) - 1
            if not rec or rec[-stride] != k:
                rec.extend(sp.empty_rec)
                rec[-stride] = k
            base = len(rec) - stride + 1
            for f in range(sp.n_fields):
                x = self.tail[r + 1 + f]
                if x == x:
                    _merge_into(rec, base + _AGG * f, 1.0, x, 0.0, x, x)
        return rec

    def _apply_retention(self) -> None:
        """Evict tiles and tail events this configuration does not keep."""
        sp = self.spec
        wm = self.watermark
        if wm == -_INF:
            return
        for i, rec in enumerate(self.recs):
            keep = math.floor((wm - sp.lateness - sp.horizons[i]) / sp.widths[i])
            cut = _rec_search(rec, sp.stride, keep)
            del rec[: cut * sp.stride]
        tail, row = self.tail, sp.row
        n = len(tail) // row
        drop = 0
        while drop < n and (
            tail[drop * row] < wm - sp.retention
            or n - drop > sp.max_tail
            or (n - drop > sp.min_tail and tail[(drop + 1) * row] <= wm - sp.span)
        ):
            drop += 1
        if drop:
            self.floor = max(self.floor, tail[(drop - 1) * row])
            del tail[: drop * row]

    def _load_events(self, snap: Sequence) -> None:
        """Replay an exact event-list snapshot of the previous format in event-time order."""
        watermark, times, columns = snap
        if not isinstance(columns, Mapping):
            raise ValueError(f"TiledWindows.load: expected (watermark, times, columns), got {snap!r:.80}")
        sp = self.spec
        self.watermark, self.floor, self.cache = -_INF, -_INF, None
        self.recs = [array("d") for _ in sp.horizons]
        self.tail = array("d")
        cols = [columns.get(f) for f in sp.fields + sp.extra]
        for j, t in enumerate(times):
            self.insert_row(float(t), [float(c[j]) if c is not None else _NAN for c in cols])
        if float(watermark) > self.watermark:
            self.watermark = float(watermark)
            self._apply_retention()


def _merge_into(out: list | array, p: int, nb: float, sb: float, m2b: float, lob: float, hib: float) -> None:
    """Merge the aggregate ``(nb, sb, m2b, lob, hib)`` into ``out[p : p + 5]`` (Chan et al.)."""
    na = out[p]
    if nb <= 0:
        return
    if na <= 0:
        out[p], out[p + 1], out[p + 2], out[p + 3], out[p + 4] = nb, sb, m2b, lob, hib
        return
    n = na + nb
    sa = out[p + 1]
    d = sb / nb - sa / na
    out[p] = n
    out[p + 1] = sa + sb
    out[p + 2] = out[p + 2] + m2b + d * d * na * nb / n
    if lob < out[p + 3]:
        out[p + 3] = lob
    if hib > out[p + 4]:
        out[p + 4] = hib


def _merge_records(rec: array, j0: int, j1: int, stride: int, nf: int) -> list[float]:
    """Merged aggregates of tile records ``[j0, j1)``, in tile order (the merge of
    :func:`_merge_into`, inlined: this is the read's inner loop)."""
    out: list[float] = []
    for f in range(nf):
        n = s = m2 = 0.0
        lo, hi = _INF, -_INF
        p = j0 * stride + 1 + _AGG * f
        for _ in range(j0, j1):
            nb = rec[p]
            if nb > 0:
                sb = rec[p + 1]
                if n <= 0:
                    n, s, m2 = nb, sb, rec[p + 2]
                else:
                    d = sb / nb - s / n
                    tot = n + nb
                    m2 = m2 + rec[p + 2] + d * d * n * nb / tot
                    s = s + sb
                    n = tot
                x = rec[p + 3]
                if x < lo:
                    lo = x
                x = rec[p + 4]
                if x > hi:
                    hi = x
            p += stride
        out += (n, s, m2, lo, hi)
    return out


def _merge_flat(agg: Sequence[float], end: Sequence[float], nf: int) -> list[float]:
    out = list(agg)
    for f in range(nf):
        p = _AGG * f
        if end[p] > 0:
            _merge_into(out, p, end[p], end[p + 1], end[p + 2], end[p + 3], end[p + 4])
    return out
