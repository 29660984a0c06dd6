"""The compiled per-customer step of :class:`features.transactions.CustomerFeatures`: a
customer's batch of transactions through the windows' insert (:func:`features.window_kernel._kernel`)
and, in the same call, every streaming feature of each transaction (late flag, time since
the previous one, distance, speed, the window statistics, deviation and ratio), as one
float64 row per transaction (NaN: ``None``). Compiled by numba (``cache=True``).

The formulas are not written again here: :func:`~features.transactions.haversine_km`,
:func:`~features.transactions.speed_kmh`, :func:`~features.transactions.amount_deviation`
and :func:`~features.transactions.amount_to_mean_ratio` are the plain-Python functions of
:mod:`features.transactions`, compiled as they are. Tests:
``tests/features/test_transactions.py`` (against a brute-force reference) and
``tests/features/test_transaction_kernel.py`` (the compiled formulas give the plain-Python
ones' exact floats).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from features import transactions as _tx
from features.window_kernel import _kernel as _insert
from features.window_kernel import unpack

__all__ = ["FEATURE_COLUMNS", "features_kernel", "feature_rows", "haversine_km", "haversine_rows", "speed_kmh", "amount_deviation",
           "amount_to_mean_ratio"]

#: Columns :func:`feature_rows` writes per transaction (``features.transactions._FEATURE_NAMES`` order).
FEATURE_COLUMNS = 21

_haversine = numba.njit(cache=True, inline="always")(_tx._haversine)
speed_kmh = numba.njit(cache=True, inline="always")(_tx.speed_kmh)
amount_deviation = numba.njit(cache=True, inline="always")(_tx.amount_deviation)
amount_to_mean_ratio = numba.njit(cache=True, inline="always")(_tx.amount_to_mean_ratio)


@numba.njit(cache=True)
def haversine_km(lat1, lon1, lat2, lon2, two):
    """:func:`features.transactions.haversine_km` compiled (``two``: 2.0, given at run time;
    see :func:`features.transactions._haversine`)."""
    return _haversine(lat1, lon1, lat2, lon2, two)


@numba.njit(cache=True)
def haversine_rows(coords, rows, two, out):
    """``out[i]`` = :func:`features.transactions.haversine_km` of column ``i`` of ``coords``
    (rows: lat1, lon1, lat2, lon2) where ``rows[i]``; the others left as they are."""
    for i in range(len(out)):
        if rows[i]:
            out[i] = _haversine(coords[0, i], coords[1, i], coords[2, i], coords[3, i], two)


@numba.njit(cache=True, inline="always")
def feature_rows(X, recs, nrec, tail, ntail, state, params, two, out):
    """Insert the transactions ``X[j] = (t, amount, lat, lon)`` into the windows (state arrays
    as :func:`features.window_kernel._kernel` takes them, one window field: amount; lat, lon
    kept in the tail; ``params``: ``TiledWindows.params``) and write each one's features into ``out[j, :FEATURE_COLUMNS]``:
    ``late_event`` (0/1), ``time_since_last_transaction``, ``distance_from_previous_km``,
    ``speed_kmh`` (NaN: no previous event kept), per horizon (1 h, 24 h, 7 d) count, sum,
    mean, std, max (NaN: older than the retention, not stored), ``amount_deviation``,
    ``amount_to_mean_ratio`` (NaN: no other event in the 7-day window). Returns the window
    kernel's code: -1 done, -2 the arrays need room (nothing done), else the first event
    whose time is not finite (nothing done). ``two``: 2.0, the distance's exponent, given at
    run time (:func:`features.transactions._haversine` says why)."""
    horizons, widths, lateness, retention, span, max_tail, min_tail = unpack(params)
    n = X.shape[0]
    newest = state[0]  # the watermark each event meets
    win = np.empty((n, 3 * 5 + 1 + 1 + 3 + 1))
    bad = _insert(X, 1, recs, nrec, tail, ntail, state, horizons, widths, lateness, retention, span, max_tail,
                  min_tail, 1, win)
    if bad != -1:
        return bad
    nan = np.nan
    for j in range(n):
        t = X[j, 0]
        amount = X[j, 1]
        o = out[j]
        w = win[j]
        o[0] = 1.0 if t < newest - lateness else 0.0
        if t > newest:
            newest = t
        prev_t = w[15]
        if prev_t == prev_t:
            dt = t - prev_t
            dist = _haversine(w[18], w[19], X[j, 2], X[j, 3], two)
            o[1] = dt
            o[2] = dist
            o[3] = speed_kmh(dist, dt)
        else:
            o[1] = o[2] = o[3] = nan
        if w[20] < 0:  # older than the retention: not stored
            for c in range(4, FEATURE_COLUMNS):
                o[c] = nan
            continue
        for i in range(3):
            c = w[5 * i]
            s = w[5 * i + 1]
            q = w[5 * i + 2]
            p = 4 + 5 * i
            o[p] = c
            o[p + 1] = s
            o[p + 2] = s / c
            o[p + 3] = math.sqrt(q / c) if q > 0.0 else 0.0
            o[p + 4] = w[5 * i + 4]
        c3 = w[10]
        if c3 > 1:
            # Leave the current transaction out (reverse Welford step): compare it with the others.
            s3 = w[11]
            others = c3 - 1.0
            mean = (s3 - amount) / others
            var = max((w[12] - (amount - mean) * (amount - s3 / c3)) / others, 0.0)
            o[19] = amount_deviation(amount, mean, math.sqrt(var))
            o[20] = amount_to_mean_ratio(amount, mean)
        else:
            o[19] = o[20] = nan
    return -1


@numba.njit(cache=True)
def features_kernel(X, recs, nrec, tail, ntail, state, params, two, out):
    """:func:`feature_rows` as a call of its own (``CustomerFeatures.update_rows``)."""
    return feature_rows(X, recs, nrec, tail, ntail, state, params, two, out)
