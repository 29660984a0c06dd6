"""The compiled arithmetic of :class:`features.windows.TiledWindows`: the one place its
per-event rule is written (insert into the tiles and the exact tail, evict, read a
window's aggregates). ``TiledWindows.insert_rows`` runs a key's whole batch through
:func:`_kernel` in one call; its per-event methods (``insert``, ``insert_row``,
``aggregates``, ``stats``) are a batch of one / a read through :func:`_read`.
Compiled by numba (``cache=True``: machine code cached next to the module, in
``__pycache__``). The arrays are the windows' own state, copied in and out by
:mod:`features.windows`; this module knows nothing of that class.
Tests: ``tests/features/test_window_kernel.py`` (against a brute-force reference:
:func:`features.windows.summarize` over the raw values of each window).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["window_stats", "merge_into", "previous"]

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


@numba.njit(cache=True, inline="always")
def unpack(params):
    """``TiledWindows.params`` as the insert's arguments: ``(horizons, widths, lateness,
    retention, span, max_tail, min_tail)``."""
    nh = int(params[5])
    return (params[6:6 + nh], params[6 + nh:6 + 2 * nh], params[0], params[1], params[2], int(params[3]),
            int(params[4]))


@numba.njit(cache=True)
def previous(tail, nt, t):
    """Row of the newest of the ``nt`` tail rows with time at or before ``t``, or -1."""
    if nt > 0 and tail[nt - 1, 0] <= t:
        return nt - 1
    return _row_search(tail, nt, t) - 1


@numba.njit(cache=True)
def _kernel(X, nf, recs, nrec, tail, ntail, state, horizons, widths, lateness, retention, span,
            max_tail, min_tail, lookback, out):
    """Insert the events ``X[j] = (t, values...)`` in order: the ``nf`` window fields, then
    the tail-only (extra) fields; ``recs[i, :nrec[i]]`` the tile records of horizon ``i``,
    ``tail[:ntail[0]]`` the exact tail, ``state = [watermark, floor]`` (all updated in
    place). Per event ``j``, row ``out[j]`` (the layout of ``TiledWindows.insert_rows``): its window aggregates
    (:func:`_aggregate`), the time of the event before it in the tail (NaN: none), per field
    the newest value among the ``lookback`` tail events up to that one (looked up only
    where event ``j`` has the field; NaN: none), that previous event's values, and the
    horizons whose tiles took it (bit mask; -1: out of the retention, not stored).
    Returns -1; or, with nothing inserted, the first event whose time is not finite, or -2
    when the arrays do not fit the batch (no room for a tile per horizon and a tail row per
    event, or more than twice that: the caller resizes them and calls again)."""
    n_ev = X.shape[0]
    nv = X.shape[1] - 1
    nh = horizons.shape[0]
    for j in range(n_ev):
        if not np.isfinite(X[j, 0]):
            return j  # refused before anything is inserted
    need_r = n_ev
    for i in range(nh):
        if nrec[i] + n_ev > need_r:
            need_r = nrec[i] + n_ev
    need_t = ntail[0] + n_ev + 1
    if not (need_r <= recs.shape[1] <= 2 * need_r + 16 and need_t <= tail.shape[0] <= 2 * need_t + 16):
        return -2
    n_agg = nh * nf * _AGG
    c_pt = n_agg  # columns of out: aggregates, prev_t, prev_v, prev_row, mask
    c_pv = c_pt + 1
    c_pr = c_pv + nf
    c_m = c_pr + nv
    # per horizon, the merge of the tiles before the newest one of the last read (a, k_end):
    # reused while a read covers the same tiles and nothing landed in them (same merge, same result)
    c_a = np.full(nh, np.nan)
    c_k = np.full(nh, np.nan)
    c_agg = np.empty((nh, nf * _AGG))
    # The tail is tail[base:base + ntail[0]] while the batch runs: rows dropped from its front
    # move the base (a hot key drops one per event at the cap), the rows move once, at the end.
    base = 0
    full = tail
    for j in range(n_ev):
        t = X[j, 0]
        wm = state[0]
        floor = state[1]
        nt = ntail[0]
        prev = previous(tail, nt, t)  # the event before it, before inserting
        out[j, c_pt] = tail[prev, 0] if prev >= 0 else np.nan
        for c in range(nv):
            out[j, c_pr + c] = tail[prev, 1 + c] if prev >= 0 else np.nan
        for f in range(nf):
            out[j, c_pv + f] = np.nan
            if prev >= 0 and X[j, 1 + f] == X[j, 1 + f]:
                stop = prev - lookback
                if stop < -1:
                    stop = -1
                q = prev
                while q > stop:
                    pv = tail[q, 1 + f]
                    if pv == pv:
                        out[j, c_pv + f] = pv
                        break
                    q -= 1
        # insert into the tiles
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
                    x = X[j, 1 + f]
                    if x == x:  # Welford's update of the tile
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
            # into the exact tail
            stored = True
            if nt > 0 and tail[nt - 1, 0] <= t:
                pos = nt
            elif nt >= max_tail and t < tail[0, 0]:
                floor = max(floor, t)  # older than all the full tail holds: not kept
                state[1] = floor
                stored = False
                pos = -1
            else:
                pos = _row_search(tail, nt, t)
                tail[pos + 1 : nt + 1] = tail[pos:nt].copy()
            if stored:
                tail[pos, 0] = t
                for c in range(nv):
                    tail[pos, 1 + c] = X[j, 1 + c]
                nt += 1
                ntail[0] = nt
                drop = _tail_drop(tail, ntail, state, retention, span, max_tail, min_tail)
                if drop:
                    base += drop
                    tail = full[base:]
        out[j, c_m] = mask
        _aggregate(out[j, :n_agg], t, mask, X[j, 1:], nf, recs, nrec, tail, ntail[0], state[0], state[1],
                   horizons, widths, c_a, c_k, c_agg)
    if base:
        for r in range(ntail[0]):  # forward: each row moves to an earlier one
            for c in range(full.shape[1]):
                full[r, c] = full[base + r, c]
    return -1


@numba.njit(cache=True)
def _tail_drop(tail, ntail, state, retention, span, max_tail, min_tail):
    """How many tail rows to drop from the oldest: out of the retention, over the cap, or
    not needed by an event within the lateness (``span`` behind the watermark; ``min_tail``
    always kept). Counts them out of ``ntail[0]`` and raises the floor ``state[1]``; the
    caller moves the rows (the tail then starts ``drop`` rows later)."""
    nt = ntail[0]
    wm = state[0]
    old = wm - retention
    need = wm - span
    drop = 0
    while drop < nt and (tail[drop, 0] < old or nt - drop > max_tail
                         or (nt - drop > min_tail and tail[drop + 1, 0] <= need)):
        drop += 1
    if drop:
        state[1] = max(state[1], tail[drop - 1, 0])
        ntail[0] = nt - drop
    return drop


@numba.njit(cache=True)
def _evict_tail(tail, ntail, state, retention, span, max_tail, min_tail):
    """Drop the tail rows :func:`_tail_drop` names, moving the rest to the front."""
    drop = _tail_drop(tail, ntail, state, retention, span, max_tail, min_tail)
    if drop:
        tail[: ntail[0]] = tail[drop:drop + ntail[0]].copy()


@numba.njit(cache=True)
def _evict(recs, nrec, tail, ntail, state, horizons, widths, lateness, retention, span, max_tail, min_tail):
    """Evict the tiles and tail rows the retention at the watermark ``state[0]`` does not keep."""
    wm = state[0]
    if wm == -np.inf:
        return
    for i in range(horizons.shape[0]):
        keep = math.floor((wm - lateness - horizons[i]) / widths[i])
        nr = nrec[i]
        cut = _rec_search(recs[i], nr, keep)
        if cut:
            recs[i, : nr - cut] = recs[i, cut:nr].copy()
            nrec[i] = nr - cut
    _evict_tail(tail, ntail, state, retention, span, max_tail, min_tail)


@numba.njit(cache=True)
def _aggregate(out, t, mask, vals, nf, recs, nrec, tail, nt, wm, floor, horizons, widths, c_a, c_k, c_agg):
    """Aggregates of every horizon and field for the window ending at ``t`` into ``out``:
    for horizon ``i`` and field ``f``, ``(n, sum, m2, min, max)`` at ``(i * nf + f) * 5``.
    ``mask``/``vals``: what the event at ``t`` was inserted with (a horizon whose tiles did
    not take it still counts it; ``mask`` -2: no such event). ``c_*``: the per-horizon cache
    of the merged tiles before the newest (see :func:`_kernel`)."""
    inf = np.inf
    in_order = t >= wm
    for i in range(horizons.shape[0]):
        w = widths[i]
        k_end = math.ceil(t / w) - 1.0
        a = math.floor((t - horizons[i]) / w)
        nr = nrec[i]
        # records [j0, j1) are tiles a .. k_end - 1; record j1 is tile k_end when it exists
        if nr > 0 and recs[i, nr - 1, 0] < k_end:
            j1 = nr
        else:
            j1 = _rec_search(recs[i], nr, k_end)
        j0 = 0 if (nr == 0 or recs[i, 0, 0] >= a) else _rec_search(recs[i], nr, a)
        base = i * nf * _AGG
        if c_a[i] == a and c_k[i] == k_end:
            out[base:base + nf * _AGG] = c_agg[i]
        else:
            for f in range(nf):  # Chan et al.'s merge of the tiles, in tile order
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
            if in_order or floor > k_end * w:
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
                    r = _row_search(tail, nt, lo_t)
                    while r < nt and tail[r, 0] <= t:
                        x = tail[r, 1 + f]
                        if x == x:
                            _merge_into(e, 0, 1.0, x, 0.0, x, x)
                        r += 1
                    if e[0] > 0:
                        _merge_into(out, base + _AGG * f, e[0], e[1], e[2], e[3], e[4])
        if mask >= 0 and not (mask >> i) & 1:
            for f in range(nf):
                x = vals[f]
                if x == x:
                    _merge_into(out, base + _AGG * f, 1.0, x, 0.0, x, x)


@numba.njit(cache=True)
def _read(t, mask, vals, nf, recs, nrec, tail, nt, wm, floor, horizons, widths):
    """:func:`_aggregate` of one window, without a cache (a read between inserts)."""
    nh = horizons.shape[0]
    out = np.empty(nh * nf * _AGG)
    c_a = np.full(nh, np.nan)
    c_k = np.full(nh, np.nan)
    c_agg = np.empty((nh, nf * _AGG))
    _aggregate(out, t, mask, vals, nf, recs, nrec, tail, nt, wm, floor, horizons, widths, c_a, c_k, c_agg)
    return out


@numba.njit(cache=True)
def merge_into(out, p, nb, sb, m2b, lob, hib):
    """Merge the aggregate ``(nb, sb, m2b, lob, hib)`` into ``out[p : p + 5]`` (Chan et
    al.; an empty side takes the other): the merge of the tiles and reads, for
    :meth:`TiledWindows.load`'s re-tiling."""
    _merge_into(out, p, nb, sb, m2b, lob, hib)


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
    """Mean, std, min and max of each field (then horizon) from ``TiledWindows.insert_many``'s
    aggregates, into the columns ``col:`` of ``out`` (NaN where a window is empty)."""
    _stats(agg, n_horizons, n_fields, out, col)
