"""A batch of one key's events through :class:`~features.windows.TiledWindows` in one compiled call.

:func:`insert_many` is :meth:`TiledWindows.previous`, :meth:`TiledWindows.insert_row` and
:meth:`TiledWindows.aggregates` on every event of a batch, in order, as one numba kernel
(``cache=True``: compiled once per machine, then loaded from ``__pycache__``). It reads and
writes the windows' own state (tile records, exact tail, watermark, floor), so snapshots,
:meth:`~TiledWindows.load` and the per-event methods keep working on the same object, and a
batch split anywhere gives the same results as one batch. The per-event methods are its
reference: ``tests/features/test_window_kernel.py`` checks the kernel against them on random
sequences (missing values, late events, events past the retention, any split).

It is the windows' arithmetic written a second time, in compiled form, because the per-event
methods live in :mod:`features.windows` (the fraud flow's); once that module takes a batch
method, this kernel belongs there and the per-event path becomes its batch of one.
Windows with ``extra_fields`` are not supported (the IoT features have none).
"""

from __future__ import annotations

import math
from array import array

import numba
import numpy as np

from features.windows import TiledWindows

__all__ = ["insert_many", "window_stats"]

_AGG = 5


@numba.njit(cache=True, inline="always")
def _rec_search(rec, nr, k):
    lo, hi = 0, nr
    while lo < hi:
        mid = (lo + hi) // 2
        if rec[mid, 0] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, inline="always")
def _row_search(tail, n, t):
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if t < tail[mid, 0]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, inline="always")
def _merge_into(out, p, nb, sb, m2b, lob, hib):
    na = out[p]
    if nb <= 0:
        return
    if na <= 0:
        out[p] = nb
        out[p + 1] = sb
        out[p + 2] = m2b
        out[p + 3] = lob
        out[p + 4] = hib
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


@numba.njit(cache=True)
def _kernel(T, V, recs, nrec, tail, ntail, state, horizons, widths, lateness, retention, span,
            max_tail, min_tail, lookback, agg, prev_t, prev_v):
    """``state = [watermark, floor]``, ``ntail = [n]`` (updated in place); per event ``j``:
    ``agg[j]`` the aggregates (:meth:`TiledWindows.aggregates` layout), ``prev_t[j]`` the
    time of the event before it in the tail (NaN: none), ``prev_v[j, f]`` the newest value
    of field ``f`` among the ``lookback`` tail events up to that one (NaN: none)."""
    n_ev, nf = V.shape
    nh = horizons.shape[0]
    inf = np.inf
    # per horizon, the merge of the tiles before the newest one of the last read (a, k_end):
    # reused while a read covers the same tiles and nothing landed in them (same merge, same result)
    c_a = np.full(nh, np.nan)
    c_k = np.full(nh, np.nan)
    c_agg = np.empty((nh, nf * _AGG))
    for j in range(n_ev):
        t = T[j]
        wm = state[0]
        floor = state[1]
        nt = ntail[0]
        # previous(t), before inserting
        if nt > 0 and tail[nt - 1, 0] <= t:
            prev = nt - 1
        else:
            prev = _row_search(tail, nt, t) - 1
        prev_t[j] = tail[prev, 0] if prev >= 0 else np.nan
        for f in range(nf):
            prev_v[j, f] = np.nan
            if prev >= 0 and V[j, f] == V[j, f]:
                stop = prev - lookback
                if stop < -1:
                    stop = -1
                q = prev
                while q > stop:
                    pv = tail[q, 1 + f]
                    if pv == pv:
                        prev_v[j, f] = pv
                        break
                    q -= 1
        # insert_row
        mask = -1
        if not t < wm - retention:
            advanced = t > wm
            if advanced:
                wm = t
                state[0] = t
            mask = 0
            for i in range(nh):
                w = widths[i]
                keep = math.floor((wm - lateness - horizons[i]) / w)
                nr = nrec[i]
                if advanced and nr > 0 and recs[i, 0, 0] < keep:
                    cut = _rec_search(recs[i], nr, keep)
                    recs[i, : nr - cut] = recs[i, cut:nr]
                    nr -= cut
                    nrec[i] = nr
                    c_a[i] = np.nan
                k = math.ceil(t / w) - 1.0
                if k < keep:
                    continue
                mask |= 1 << i
                if c_a[i] <= k < c_k[i]:  # a late event in the cached tiles
                    c_a[i] = np.nan
                if nr > 0 and recs[i, nr - 1, 0] == k:
                    b = nr - 1
                elif nr == 0 or recs[i, nr - 1, 0] < k:
                    b = nr
                    _empty(recs, i, b, nf, k)
                    nr += 1
                    nrec[i] = nr
                else:
                    b = _rec_search(recs[i], nr, k)
                    if recs[i, b, 0] != k:
                        recs[i, b + 1 : nr + 1] = recs[i, b:nr].copy()
                        _empty(recs, i, b, nf, k)
                        nr += 1
                        nrec[i] = nr
                p = 1
                for f in range(nf):
                    x = V[j, f]
                    if x == x:
                        cnt = recs[i, b, p] + 1.0
                        s = recs[i, b, p + 1]
                        if cnt == 1.0:
                            recs[i, b, p] = 1.0
                            recs[i, b, p + 1] = x
                            recs[i, b, p + 3] = x
                            recs[i, b, p + 4] = x
                        else:
                            old_mean = s / (cnt - 1.0)
                            s += x
                            recs[i, b, p] = cnt
                            recs[i, b, p + 1] = s
                            recs[i, b, p + 2] += (x - old_mean) * (x - s / cnt)
                            if x < recs[i, b, p + 3]:
                                recs[i, b, p + 3] = x
                            if x > recs[i, b, p + 4]:
                                recs[i, b, p + 4] = x
                    p += _AGG
            # _tail_insert
            stored = True
            if nt > 0 and tail[nt - 1, 0] <= t:
                pos = nt
            elif nt >= max_tail and t < tail[0, 0]:
                floor = max(floor, t)
                state[1] = floor
                stored = False
                pos = -1
            else:
                pos = _row_search(tail, nt, t)
                tail[pos + 1 : nt + 1] = tail[pos:nt].copy()
            if stored:
                tail[pos, 0] = t
                for f in range(nf):
                    tail[pos, 1 + f] = V[j, f]
                nt += 1
                old = wm - retention
                need = wm - span
                drop = 0
                while drop < nt and (tail[drop, 0] < old or nt - drop > max_tail
                                     or (nt - drop > min_tail and tail[drop + 1, 0] <= need)):
                    drop += 1
                if drop:
                    floor = max(floor, tail[drop - 1, 0])
                    state[1] = floor
                    tail[: nt - drop] = tail[drop:nt].copy()
                    nt -= drop
                ntail[0] = nt
        # aggregates(t, mask, vals)
        in_order = t >= wm
        out = agg[j]
        for i in range(nh):
            w = widths[i]
            k_end = math.ceil(t / w) - 1.0
            a = math.floor((t - horizons[i]) / w)
            nr = nrec[i]
            if nr > 0 and recs[i, nr - 1, 0] < k_end:
                j1 = nr
            else:
                j1 = _rec_search(recs[i], nr, k_end)
            j0 = 0 if (nr == 0 or recs[i, 0, 0] >= a) else _rec_search(recs[i], nr, a)
            base = i * nf * _AGG
            if c_a[i] == a and c_k[i] == k_end:
                out[base:base + nf * _AGG] = c_agg[i]
            else:
                for f in range(nf):
                    cn = 0.0
                    cs = 0.0
                    m2 = 0.0
                    lo = inf
                    hi = -inf
                    p = 1 + _AGG * f
                    for r in range(j0, j1):
                        nb = recs[i, r, p]
                        if nb > 0:
                            sb = recs[i, r, p + 1]
                            if cn <= 0:
                                cn = nb
                                cs = sb
                                m2 = recs[i, r, p + 2]
                            else:
                                d = sb / nb - cs / cn
                                tot = cn + nb
                                m2 = m2 + recs[i, r, p + 2] + d * d * cn * nb / tot
                                cs = cs + sb
                                cn = tot
                            x = recs[i, r, p + 3]
                            if x < lo:
                                lo = x
                            x = recs[i, r, p + 4]
                            if x > hi:
                                hi = x
                    q = base + _AGG * f
                    out[q] = cn
                    out[q + 1] = cs
                    out[q + 2] = m2
                    out[q + 3] = lo
                    out[q + 4] = hi
                c_a[i] = a
                c_k[i] = k_end
                c_agg[i] = out[base:base + nf * _AGG]
            if j1 < nr and recs[i, j1, 0] == k_end:
                if in_order or state[1] > k_end * w:
                    for f in range(nf):
                        p = 1 + _AGG * f
                        if recs[i, j1, p] > 0:
                            _merge_into(out, base + _AGG * f, recs[i, j1, p], recs[i, j1, p + 1],
                                        recs[i, j1, p + 2], recs[i, j1, p + 3], recs[i, j1, p + 4])
                else:  # late: the part of the tile up to t, from the exact tail
                    lo_t = k_end * w
                    for f in range(nf):
                        e = np.zeros(_AGG)
                        e[3] = inf
                        e[4] = -inf
                        r = _row_search(tail, ntail[0], lo_t)
                        while r < ntail[0] and tail[r, 0] <= t:
                            x = tail[r, 1 + f]
                            if x == x:
                                _merge_into(e, 0, 1.0, x, 0.0, x, x)
                            r += 1
                        if e[0] > 0:
                            _merge_into(out, base + _AGG * f, e[0], e[1], e[2], e[3], e[4])
            if mask >= 0 and not (mask >> i) & 1:
                for f in range(nf):
                    x = V[j, f]
                    if x == x:
                        _merge_into(out, base + _AGG * f, 1.0, x, 0.0, x, x)


@numba.njit(cache=True, inline="always")
def _empty(recs, i, b, nf, k):
    recs[i, b, 0] = k
    for f in range(nf):
        p = 1 + _AGG * f
        recs[i, b, p] = 0.0
        recs[i, b, p + 1] = 0.0
        recs[i, b, p + 2] = 0.0
        recs[i, b, p + 3] = np.inf
        recs[i, b, p + 4] = -np.inf


@numba.njit(cache=True)
def _stats(agg, nh, nf, out, col):
    """Per event, field and horizon (in that order): mean, population std, min, max of the
    aggregates (``stats_of``'s rule), NaN for an empty window, into ``out[:, col:]``."""
    for j in range(agg.shape[0]):
        q = col
        for f in range(nf):
            for i in range(nh):
                p = (i * nf + f) * _AGG
                cnt = agg[j, p]
                if cnt > 0:
                    m2 = agg[j, p + 2]
                    out[j, q] = agg[j, p + 1] / cnt
                    out[j, q + 1] = math.sqrt(m2 / cnt) if m2 > 0.0 else 0.0
                    out[j, q + 2] = agg[j, p + 3]
                    out[j, q + 3] = agg[j, p + 4]
                else:
                    out[j, q] = out[j, q + 1] = out[j, q + 2] = out[j, q + 3] = np.nan
                q += 4


def window_stats(agg: np.ndarray, n_horizons: int, n_fields: int, out: np.ndarray, col: int) -> None:
    """Mean, std, min and max of each field (then horizon) from :func:`insert_many`'s
    aggregates, into the columns ``col:`` of ``out`` (NaN where a window is empty)."""
    _stats(agg, n_horizons, n_fields, out, col)


_SPEC_ARRAYS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # (horizons, tiles) -> (horizons, widths)


def insert_many(win: TiledWindows, T: np.ndarray, V: np.ndarray,
                lookback: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put the events ``(T[j], V[j])`` (times; values in ``fields`` order, NaN = missing)
    into ``win`` in order; returns ``(agg, prev_t, prev_v)``: per event the aggregates
    :meth:`TiledWindows.aggregates` gives right after its :meth:`TiledWindows.insert_row`
    (shape ``(n, horizons * fields * 5)``), the time of the event just before it
    (:meth:`TiledWindows.previous`; NaN: none kept) and, per field, the newest value among
    the ``lookback`` tail events up to that one, looked up only where the event has the
    field (NaN otherwise or when none)."""
    sp = win.spec
    if sp.extra:
        raise ValueError("insert_many: windows with extra_fields are not supported")
    T = np.ascontiguousarray(T, dtype=np.float64)
    V = np.ascontiguousarray(V, dtype=np.float64).reshape(len(T), sp.n_fields)
    n = len(T)
    if n and not np.isfinite(T).all():
        raise ValueError(f"insert_many: event times must be finite, got {T[~np.isfinite(T)][0]!r}")
    stride, row, nh = sp.stride, sp.row, len(sp.horizons)
    counts = [len(r) // stride for r in win.recs]
    recs = np.empty((nh, max(counts) + n, stride))
    for i, r in enumerate(win.recs):
        if counts[i]:
            recs[i, : counts[i]] = np.frombuffer(r, dtype=np.float64).reshape(counts[i], stride)
    nt = len(win.tail) // row
    tail = np.empty((max(nt, sp.max_tail) + 1, row))
    if nt:
        tail[:nt] = np.frombuffer(win.tail, dtype=np.float64).reshape(nt, row)
    nrec = np.array(counts, dtype=np.int64)
    ntail = np.array([nt], dtype=np.int64)
    state = np.array([win.watermark, win.floor])
    agg = np.empty((n, nh * sp.n_fields * _AGG))
    prev_t = np.empty(n)
    prev_v = np.empty((n, sp.n_fields))
    hw = _SPEC_ARRAYS.get((sp.horizons, sp.n_tiles))
    if hw is None:
        hw = _SPEC_ARRAYS[(sp.horizons, sp.n_tiles)] = (np.array(sp.horizons), np.array(sp.widths))
    _kernel(T, V, recs, nrec, tail, ntail, state, hw[0], hw[1], sp.lateness,
            sp.retention, sp.span, sp.max_tail, sp.min_tail, int(lookback), agg, prev_t, prev_v)
    for i in range(nh):
        a = array("d")
        a.frombytes(recs[i, : nrec[i]].tobytes())
        win.recs[i] = a
    a = array("d")
    a.frombytes(tail[: ntail[0]].tobytes())
    win.tail = a
    win.watermark, win.floor = float(state[0]), float(state[1])
    win.cache = None  # the kernel keeps no cache (results do not depend on it)
    return agg, prev_t, prev_v
