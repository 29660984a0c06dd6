"""The compiled per-customer step of :class:`models.fraud.state.CustomerState`: one call per
customer and batch computes the streaming features (:func:`features.transaction_kernel.feature_rows`:
windows, time since the previous transaction, distance, speed, deviation) and the amount
detector's score and learning (:class:`~models.detectors.KeyDetector`'s arithmetic, the one of
:mod:`models.detectors.kernel`) of every new transaction, so a customer with one event in the
batch costs one compiled call and one small array out. Compiled by numba (``cache=True``).
Tests: ``tests/models/fraud/test_fraud.py`` (against :class:`~features.transactions.CustomerFeatures`
and :meth:`KeyDetector.score_learn <models.detectors.KeyDetector.score_learn>` event by event).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from features.transaction_kernel import FEATURE_COLUMNS, feature_rows
from models.detectors.kernel import _learn, _score, _z

__all__ = ["customer_kernel", "COLUMNS"]

#: Columns per transaction: the features, the amount score, the detector's warm-up flag (0/1),
#: then the shared detector's input (``models.fraud.state.shard_row``'s values, NaN: missing).
COLUMNS = FEATURE_COLUMNS + 2 + 6


@numba.njit(cache=True, inline="always")
def _log1p(v):
    return math.log1p(max(v, 0.0)) if v == v else v


@numba.njit(cache=True, inline="always")
def shard_input(row, log_amount):
    """The shared detector's input of one transaction from its feature row, into
    ``row[FEATURE_COLUMNS + 2:]``: ``models.fraud.state.shard_row``'s rule (log-scaled gap,
    distance and speed, the 1-hour count, the deviation clipped to [-5, 20]; NaN: missing),
    tested equal to it."""
    p = FEATURE_COLUMNS + 2
    row[p] = log_amount
    row[p + 1] = _log1p(row[1])
    row[p + 2] = row[4]
    row[p + 3] = _log1p(row[2])
    row[p + 4] = _log1p(row[3])
    dev = row[19]
    row[p + 5] = max(-5.0, min(dev, 20.0)) if dev == dev else dev


@numba.njit(cache=True)
def customer_kernel(X, recs, nrec, tail, ntail, state, params, n, mean, var, out):
    """The transactions ``X[j] = (t, amount, lat, lon)`` through the windows and the amount
    detector, in order: ``out[j, :FEATURE_COLUMNS]`` their features (:func:`feature_rows`),
    ``out[j, FEATURE_COLUMNS]`` the amount score of ``log1p(amount)`` against the detector
    before it, ``out[j, FEATURE_COLUMNS + 1]`` 1.0 when that detector was warming up; the
    detector (state ``n, mean, var``) then learns it. ``params``: the windows' ``TiledWindows.params``,
    then the detector's ``alpha, warmup, scale, clip, min_std``, then 2.0 (``two`` of :func:`feature_rows`); ``out[j, FEATURE_COLUMNS + 2:]``
    the shard detector's input (:func:`shard_input`). ``out[len(X), :3]``: the detector's state after the batch. Returns
    :func:`feature_rows`'s code (anything but -1: nothing done)."""
    k = params.shape[0] - 6
    bad = feature_rows(X, recs, nrec, tail, ntail, state, params[:k], params[k + 5], out)
    if bad != -1:
        return bad
    st = np.empty(3)
    st[0] = n
    st[1] = mean
    st[2] = var
    a, warmup, scale, clip, min_std = params[k], params[k + 1], params[k + 2], params[k + 3], params[k + 4]
    for j in range(X.shape[0]):
        v = math.log1p(X[j, 1])
        out[j, FEATURE_COLUMNS + 1] = 1.0 if st[0] < warmup else 0.0
        out[j, FEATURE_COLUMNS] = _score(_z(st, v, min_std), scale)
        _learn(st, v, warmup, a, clip, min_std)
        shard_input(out[j], v)
    last = X.shape[0]
    out[last, 0] = st[0]
    out[last, 1] = st[1]
    out[last, 2] = st[2]
    return -1
