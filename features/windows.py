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
drift however long the key lives. A read combines the tiles of the window;
within a batch (:meth:`TiledWindows.insert_many`) the combined aggregate of all
tiles but the newest is kept and reused while the window stays on the same
tiles (a busy key pays O(1) per event, a sparse key O(its few tiles)); results
do not depend on it.

**One implementation.** The arithmetic (insert, evict, read) is written once, as
compiled numba kernels in :mod:`features.window_kernel`:
:meth:`TiledWindows.insert_many` runs a key's whole batch through it in one call,
and the per-event :meth:`~TiledWindows.insert`/:meth:`~TiledWindows.insert_row`
are a batch of one, :meth:`~TiledWindows.aggregates`/:meth:`~TiledWindows.stats`
its read. The state is kept as the kernel's numpy arrays (no copy per call); snapshots
are plain lists, in the same format as before.

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
import sys
from array import array
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from features.defaults import LATENESS_S

__all__ = ["WindowStats", "EMPTY_STATS", "summarize", "Inserted", "TiledWindows", "TILES", "LATENESS_S"]

#: Default number of tiles per horizon (tile width = horizon / TILES).
TILES = 60


_INF = math.inf
_NAN = math.nan
_AGG = 5  # per tile and field: n, sum, m2, min, max
_SNAP_TAG = "tiles/2"  # "tiles/1": the same with the arrays as lists of floats (still loaded)
_SNAP_TAGS = ("tiles/1", _SNAP_TAG)


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
                 "row", "stride", "max_tail", "min_tail", "span", "empty_rec", "index", "h_arr", "w_arr",
                 "out_width", "params")

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
        self.h_arr = np.array(horizons)  # the kernel's arguments
        self.w_arr = np.array(self.widths)
        # a row of TiledWindows.insert_rows: aggregates, prev_t, prev_v, prev_row, mask
        self.out_width = len(horizons) * len(fields) * _AGG + 1 + len(fields) + len(fields) + len(extra) + 1
        # the configuration in one array, for compiled steps built on the insert (TiledWindows.run):
        # lateness, retention, span, max_tail, min_tail, H, the H horizons, the H tile widths
        self.params = np.array([lateness, self.retention, self.span, max_tail, min_tail, len(horizons),
                                *horizons, *self.widths])


@lru_cache(maxsize=64)
def _spec(horizons, fields, lateness, n_tiles, extra, max_tail, min_tail) -> _Spec:
    return _Spec(horizons, fields, lateness, n_tiles, extra, max_tail, min_tail)


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

    __slots__ = ("spec", "_s", "_r", "_nr", "_t", "_nt")

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
        # the state, as the kernel's arrays (with room to grow; only the counted part is state):
        self._s = np.array([-_INF, -_INF])  # watermark (newest event time seen); floor (every
        # stored event not in the tail has time <= floor)
        # made to measure for a first batch of one event (what _room would make): most keys of a
        # large population see one event in a while, and their first call then needs no resize
        self._r = np.empty((len(horizons), 1, self.spec.stride))  # per horizon: tile records, by tile
        self._nr = np.zeros(len(horizons), dtype=np.int64)  # tile records per horizon
        self._t = np.empty((2, self.spec.row))  # the exact tail: rows (t, fields..., extra...), by time
        self._nt = np.zeros(1, dtype=np.int64)  # tail rows

    @property
    def watermark(self) -> float:
        """The newest event time seen (-inf: none)."""
        return float(self._s[0])

    @property
    def floor(self) -> float:
        """Every stored event not in the exact tail has time at or before it."""
        return float(self._s[1])

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
        return int(self._nt[0])

    def tile_count(self) -> int:
        """Non-empty tiles kept, over all horizons."""
        return int(self._nr.sum())

    def tiles_per_horizon(self) -> list[int]:
        """Non-empty tiles kept, per horizon."""
        return self._nr.tolist()

    def tail_times(self) -> list[float]:
        """Event times of the exact tail, oldest first."""
        return self._t[: self._nt[0], 0].tolist()

    def tail_value(self, row: int, field: int) -> float:
        """Value of ``field`` (position in ``fields + extra_fields``) in tail ``row``."""
        return float(self._t[row, 1 + field])

    def is_late(self, t: float, lateness_s: float | None = None) -> bool:
        """Whether an event at ``t`` is more than ``lateness_s`` (default: the
        configured lateness) behind the newest event time."""
        return t < self.watermark - (self.spec.lateness if lateness_s is None else lateness_s)

    # ------------------------------------------------------------------ update

    def previous(self, t: float) -> int:
        """Tail row of the newest event at or before ``t`` (call before inserting
        the event at ``t``), or -1: none kept. Exact: every event not in the tail
        is older than every event in it. The kernel's lookup."""
        return int(_kernel().previous(self._t, int(self._nt[0]), float(t)))

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
        """:meth:`insert` with the values in order ``fields + extra_fields`` (NaN: missing):
        :meth:`insert_many` of one event."""
        return int(self.insert_rows(np.array([[float(t), *vals]], dtype=np.float64))[0, -1])

    def insert_many(self, T: Any, V: Any, lookback: int = 1) -> Inserted:
        """Put the events ``(T[j], V[j])`` (times; values in ``fields + extra_fields``
        order, NaN: missing) into the windows in order: :meth:`insert_rows`, its columns
        returned apart. Returns, per event, what the per-event reads give right
        before/after it is inserted (:class:`Inserted`)."""
        T = np.asarray(T, dtype=np.float64).reshape(-1)
        n = len(T)
        X = np.empty((n, self.spec.row))
        X[:, 0] = T
        X[:, 1:] = np.asarray(V, dtype=np.float64).reshape(n, self.spec.row - 1)
        out = self.insert_rows(X, lookback)
        sp = self.spec
        a = len(sp.horizons) * sp.n_fields * _AGG
        p = a + 1 + sp.n_fields
        return Inserted(out[:, :a], out[:, a], out[:, a + 1 : p], out[:, p : p + sp.row - 1],
                        out[:, -1].astype(np.int64))

    def insert_rows(self, X: np.ndarray, lookback: int = 1) -> np.ndarray:
        """Put the events ``X[j] = (t, values in fields + extra_fields order)`` (float64,
        NaN: missing) into the windows in order, in one call of the compiled kernel
        (:mod:`features.window_kernel`, the one implementation of the rule); a batch split
        anywhere gives the same results. Returns one float64 row per event, what the
        per-event reads give right before/after it is inserted, in the order of the
        fields of :class:`Inserted`: ``agg`` (``H * F * 5`` columns), ``prev_t``,
        ``prev_v`` (``F``), ``prev_row`` (``F + E``), ``mask`` (``H``, ``F``, ``E``: the
        horizons, fields and extra fields). The flow's per-key call: one array in, one out."""
        sp = self.spec
        out = np.empty((len(X), sp.out_width))
        bad = _window_kernel(X, sp.n_fields, self._r, self._nr, self._t, self._nt, self._s, sp.h_arr, sp.w_arr,
                             sp.lateness, sp.retention, sp.span, sp.max_tail, sp.min_tail, lookback, out)
        if bad == -2:  # the state's arrays do not fit this batch: resize them, then insert
            self._room(len(X))
            bad = _window_kernel(X, sp.n_fields, self._r, self._nr, self._t, self._nt, self._s, sp.h_arr, sp.w_arr,
                                 sp.lateness, sp.retention, sp.span, sp.max_tail, sp.min_tail, lookback, out)
        if bad >= 0:  # nothing was inserted
            raise ValueError(f"TiledWindows.insert_many: event times must be finite, got {X[bad, 0]!r} (event {bad})")
        return out

    def run(self, kernel: Any, X: np.ndarray, *args: Any) -> None:
        """Run a compiled per-key step built on the windows' insert (e.g.
        :func:`features.transaction_kernel.features_kernel`) on the events ``X`` (rows ``(t, values
        in fields + extra_fields order)``, float64): ``kernel(X, recs, nrec, tail, ntail, state,
        *args)``, the state's arrays as :func:`features.window_kernel._kernel` takes them, and
        ``args`` (the configuration: :attr:`params` and what the step adds). It returns the insert's
        code (-2: the arrays need room, then they get it and the kernel runs again; an event
        number: its time is not finite, nothing was inserted: ValueError). Few arguments on
        purpose: each one costs the call about 50 ns, and the flow calls this per key and batch."""
        bad = kernel(X, self._r, self._nr, self._t, self._nt, self._s, *args)
        if bad == -2:  # the state's arrays do not fit this batch: resize them, then insert
            self._room(len(X))
            bad = kernel(X, self._r, self._nr, self._t, self._nt, self._s, *args)
        if bad >= 0:  # nothing was inserted
            raise ValueError(f"TiledWindows.insert_many: event times must be finite, got {X[bad, 0]!r} (event {bad})")

    @property
    def params(self) -> np.ndarray:
        """The configuration as one float64 array, for :meth:`run`'s kernels: ``lateness,
        retention, span, max_tail, min_tail, H``, then the ``H`` horizons and their ``H``
        tile widths (:func:`features.window_kernel.unpack` reads it)."""
        return self.spec.params

    def _room(self, n: int) -> None:
        """Make room for ``n`` more events: a tile per horizon and a tail row each, with
        slack for the next batches (and give back what a big batch left unused); the kernel
        says when (it returns -2). A key's first arrays (the constructor's, for one event, or
        empty ones a snapshot loaded) are made to measure, without slack: most keys of a large
        population see one event in a while (a million customers)."""
        r, t = self._r, self._t
        need_r = int(self._nr.max(initial=0)) + n
        if r.shape[1] < need_r or r.shape[1] > 2 * need_r + 16:
            slack = (need_r >> 3) + 2 if r.shape[1] else 0
            grown = np.empty((r.shape[0], need_r + slack, r.shape[2]))
            grown[:, : r.shape[1]] = r[:, : grown.shape[1]]
            self._r = grown
        need_t = int(self._nt[0]) + n + 1
        if t.shape[0] < need_t or t.shape[0] > 2 * need_t + 16:
            slack = (need_t >> 3) + 2 if t.shape[0] else 0
            grown = np.empty((need_t + slack, t.shape[1]))
            m = min(t.shape[0], grown.shape[0])
            grown[:m] = t[:m]
            self._t = grown

    def _set(self, recs: Sequence[array], tail: array, watermark: float, floor: float) -> None:
        """Put flat tile records (per horizon) and flat tail rows into the state."""
        sp = self.spec
        counts = [len(r) // sp.stride for r in recs]
        self._r = np.zeros((len(recs), max(counts, default=0), sp.stride))
        for i, r in enumerate(recs):
            if counts[i]:
                self._r[i, : counts[i]] = np.frombuffer(r, dtype=np.float64).reshape(counts[i], sp.stride)
        self._nr = np.array(counts, dtype=np.int64)
        self._t = np.array(tail, dtype=np.float64).reshape(-1, sp.row)
        self._nt = np.array([len(self._t)], dtype=np.int64)
        self._s = np.array([float(watermark), float(floor)])

    # ------------------------------------------------------------------ read

    def aggregates(self, t: float, mask: int = -1, vals: Sequence[float] | None = None) -> list[float]:
        """Aggregates of every horizon and field for a window ending at ``t``.

        Flat list: for horizon ``i`` and field ``f``, ``(n, sum, m2, min, max)``
        at ``(i * len(fields) + f) * 5``. ``mask`` and ``vals`` are what
        :meth:`insert_row` returned and was given for the event at ``t``: a horizon
        whose tiles did not take the event (too old for them) still counts it.
        The read of the compiled kernel (the one :meth:`insert_many` gives per event).
        """
        sp = self.spec
        v = np.full(sp.row - 1, _NAN) if vals is None else np.asarray(vals, dtype=np.float64)
        out = _kernel()._read(float(t), int(mask) if vals is not None else -1, v, sp.n_fields, self._r,
                              self._nr, self._t, int(self._nt[0]), self.watermark, self.floor, sp.h_arr, sp.w_arr)
        return out.tolist()

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
        """The state as plain data: ``("tiles/2", watermark, floor, fields,
        [(tile width, complete after, flat tile records), ...], tail fields, flat tail rows)``,
        the records and rows as raw little-endian float64 bytes.

        No configuration: the tile width and the time after which a tile set
        holds every event describe the data (so :meth:`load` can re-tile it);
        horizons, lateness and caps come from the object :meth:`load` fills.
        Bytewax takes every touched key's snapshot at each epoch's end, on the worker's
        thread, so it is kept cheap: a few objects whatever the number of tiles (``"tiles/1"``
        held the numbers as lists of floats, 3-4x the time and one object per number).
        """
        sp = self.spec
        sets = []
        for i in range(len(sp.horizons)):
            w = sp.widths[i]
            since = (
                math.floor((self.watermark - sp.lateness - sp.horizons[i]) / w) * w
                if self.watermark > -_INF
                else -_INF
            )
            sets.append((w, since, _raw(self._r[i, : self._nr[i]])))
        return (_SNAP_TAG, self.watermark, self.floor, sp.fields, sets, sp.fields + sp.extra,
                _raw(self._t[: self._nt[0]]))

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
        if not isinstance(snap, (tuple, list)) or len(snap) != 7 or snap[0] not in _SNAP_TAGS:
            raise ValueError(f"TiledWindows.load: expected a {_SNAP_TAG!r} snapshot, got {snap!r:.80}")
        _, watermark, floor, fields, sets, tail_fields, tail = snap
        if snap[0] == _SNAP_TAG:  # raw float64 bytes
            tail = _floats(tail)
            sets = [(ow, since, _floats(data)) for ow, since, data in sets]
        fields, tail_fields = list(fields), list(tail_fields)
        # the exact tail, mapped to this object's fields
        old_row = 1 + len(tail_fields)
        pos = [tail_fields.index(f) if f in tail_fields else -1 for f in sp.fields + sp.extra]
        new_tail = array("d")
        for r in range(0, len(tail), old_row):
            new_tail.append(tail[r])
            new_tail.extend(array("d", [tail[r + 1 + p] if p >= 0 else _NAN for p in pos]))
        recs: list[array] = []
        fpos = [fields.index(f) if f in fields else -1 for f in sp.fields]
        old_stride = 1 + _AGG * len(fields)
        for i, w in enumerate(sp.widths):
            best = None
            for ow, since, data in sets:
                m = round(w / ow) if ow > 0 else 0
                if m >= 1 and abs(m * ow - w) <= 1e-9 * w and (best is None or (since, -ow) < (best[1], -best[0])):
                    best = (ow, since, data, m)
            if best is None:
                recs.append(self._tiles_from_tail(i, new_tail))
                continue
            _, _, data, m = best
            merge = _kernel().merge_into
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
                            merge(rec, base + _AGG * f, *data[q : q + _AGG])
            recs.append(rec)
        self._set(recs, new_tail, watermark, floor)
        self._apply_retention()

    def _tiles_from_tail(self, i: int, tail: array) -> array:
        """Tile records of horizon ``i`` built from flat tail rows."""
        sp = self.spec
        w, stride, row = sp.widths[i], sp.stride, sp.row
        rec = array("d")
        merge = _kernel().merge_into
        for r in range(0, len(tail), row):
            k = math.ceil(tail[r] / w) - 1
            if not rec or rec[-stride] != k:
                rec.extend(sp.empty_rec)
                rec[-stride] = k
            base = len(rec) - stride + 1
            for f in range(sp.n_fields):
                x = tail[r + 1 + f]
                if x == x:
                    merge(rec, base + _AGG * f, 1.0, x, 0.0, x, x)
        return rec

    def _apply_retention(self) -> None:
        """Evict tiles and tail events this configuration does not keep (the kernel's rule)."""
        sp = self.spec
        _kernel()._evict(self._r, self._nr, self._t, self._nt, self._s, sp.h_arr, sp.w_arr, sp.lateness,
                         sp.retention, sp.span, sp.max_tail, sp.min_tail)

    def _load_events(self, snap: Sequence) -> None:
        """Replay an exact event-list snapshot of the previous format in event-time order."""
        watermark, times, columns = snap
        if not isinstance(columns, Mapping):
            raise ValueError(f"TiledWindows.load: expected (watermark, times, columns), got {snap!r:.80}")
        sp = self.spec
        self._set([array("d") for _ in sp.horizons], array("d"), -_INF, -_INF)
        cols = [columns.get(f) for f in sp.fields + sp.extra]
        T = [float(t) for t in times]
        self.insert_many(T, [[float(c[j]) if c is not None else _NAN for c in cols] for j in range(len(T))])
        if float(watermark) > self.watermark:
            self._s[0] = float(watermark)
            self._apply_retention()


class Inserted(NamedTuple):
    """What :meth:`TiledWindows.insert_many` gives per event ``j`` of the batch."""

    #: the window aggregates right after the event (:meth:`TiledWindows.aggregates` layout), shape (n, H * F * 5)
    agg: np.ndarray
    #: the time of the newest event at or before it, before it (:meth:`TiledWindows.previous`; NaN: none kept)
    prev_t: np.ndarray
    #: per field, the newest value among the ``lookback`` tail events up to that one (only
    #: where the event has the field; NaN otherwise or when none)
    prev_v: np.ndarray
    #: that previous event's values, ``fields + extra_fields`` (NaN: none)
    prev_row: np.ndarray
    #: the horizons whose tiles took it (bit mask), -1: out of the retention, not stored
    mask: np.ndarray


def _raw(a: np.ndarray) -> bytes:
    """An array's numbers as little-endian float64 bytes (a snapshot's form)."""
    return a.astype("<f8", copy=False).tobytes()


def _floats(data: Any) -> array:
    """:func:`_raw` bytes back to numbers; ValueError when they are not whole float64s."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) % 8:
        raise ValueError(f"TiledWindows.load: expected float64 bytes, got {data!r:.80}")
    out = array("d")
    out.frombytes(bytes(data))
    if sys.byteorder != "little":
        out.byteswap()
    return out


def _kernel() -> Any:
    """The compiled kernel module (imported on first use: numba loads only where windows are updated)."""
    from features import window_kernel

    return window_kernel


def _window_kernel(*args: Any) -> int:
    """The kernel's insert (:func:`features.window_kernel._kernel`); after the first call,
    the compiled function itself (no import per call)."""
    global _window_kernel
    _window_kernel = _kernel()._kernel
    return _window_kernel(*args)
