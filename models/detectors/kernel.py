"""One key's per-variable detectors over a batch, in one compiled call.

:func:`score_learn_many` runs, for every value of a batch in order and every variable
(column) that has one, what the IoT device step runs per reading: the value detector and
the long-memory detector (:class:`~models.detectors.KeyDetector`: z before learning, then
learn), the :class:`~models.detectors.StuckDetector` (the repeat's tail probability, then
learn) and the drift monitor (:class:`~models.detectors.DriftMonitor`, River's
``PageHinkley`` arithmetic) on the watched score once its detector is warm. It is a numba
kernel (``cache=True``) over the detectors' own state, read from and written back to the
detector objects, so their snapshots, ``load`` and per-event methods keep working, and a
batch split anywhere gives the same results as one batch. The per-event methods (and River's
``PageHinkley``) are its reference: ``tests/models/detectors/test_kernel.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np

from models.detectors.drift import DriftMonitor
from models.detectors.key import KeyDetector
from models.detectors.stuck import StuckDetector, tail_score

__all__ = ["BatchScores", "score_learn_many"]


@numba.njit(cache=True, inline="always")
def _z(st, v, min_std):
    if st[0] < 2:
        return 0.0
    return (v - st[1]) / max(math.sqrt(st[2]), min_std)


@numba.njit(cache=True, inline="always")
def _score(z, scale):
    z2 = z * z
    if math.isinf(z2):
        return 1.0
    return z2 / (z2 + scale * scale)


@numba.njit(cache=True, inline="always")
def _learn(st, v, warmup, a, clip, min_std):
    n = st[0] + 1
    st[0] = n
    mean = st[1]
    var = st[2]
    if n <= warmup:
        delta = v - mean
        mean += delta / n
        var += (delta * (v - mean) - var) / n
    else:
        r = v - mean
        lim = clip * max(math.sqrt(var), min_std)
        if r > lim:
            r = lim
        elif r < -lim:
            r = -lim
        mean += a * r
        var = (1.0 - a) * (var + a * r * r)
    st[1] = mean
    st[2] = var


@numba.njit(cache=True)
def _kernel(V, level, lp, slow, sp, has_slow, stuck, beta, stuck_warmup, drift, dp, slow_watched, z_out,
            s_out, w_out, ss_out, sw_out, tail_out, stw_out, fired, watched_out):
    n, nf = V.shape
    for j in range(n):
        for f in range(nf):
            v = V[j, f]
            if v != v:
                continue
            # value detector: z before learning, then learn
            st = level[f]
            z = _z(st, v, lp[4])
            z_out[j, f] = z
            w = st[0] < lp[1]
            s = _score(z, lp[2])
            s_out[j, f] = s
            w_out[j, f] = w
            _learn(st, v, lp[1], lp[0], lp[3], lp[4])
            if has_slow:
                sl = slow[f]
                ws = sl[0] < sp[1]
                ss = _score(_z(sl, v, sp[4]), sp[2])
                ss_out[j, f] = ss
                sw_out[j, f] = ws
                _learn(sl, v, sp[1], sp[0], sp[3], sp[4])
                if slow_watched:
                    s = ss
                    w = ws
            # stuck: (last, run, reps, trans, n); last NaN = none yet
            k = stuck[f]
            stw_out[j, f] = k[4] < stuck_warmup
            last = k[0]
            if last == last and v == last:
                rate = (k[2] + 0.5) / (k[3] + 1.0)
                tail_out[j, f] = math.exp(max((k[1] + 1) * math.log(rate), -700.0)) / 2.0
            else:
                tail_out[j, f] = np.nan
            if last != last:
                k[0] = v
            else:
                repeat = v == last
                if k[1] == 0:
                    d = 1.0 - beta
                    k[2] = d * k[2] + (1.0 if repeat else 0.0)
                    k[3] = d * k[3] + 1.0
                    k[4] += 1
                if repeat:
                    k[1] += 1
                else:
                    k[1] = 0
                    k[0] = v
            # drift: River PageHinkley (mode "up") on the watched score, once warm
            watched_out[j, f] = s
            if not w:
                ph = drift[f]  # (n, mean, sum_inc, sum_dec, min_inc, max_dec, detected)
                if ph[6] != 0.0:
                    ph[0] = 0.0
                    ph[1] = 0.0
                    ph[2] = 0.0
                    ph[3] = 0.0
                    ph[4] = np.inf
                    ph[5] = -1.0
                    ph[6] = 0.0
                ph[0] += 1.0
                ph[1] += (1.0 / ph[0]) * (s - ph[1])
                dev = s - ph[1]
                ph[2] = dp[3] * ph[2] + dev - dp[1]
                ph[3] = dp[3] * ph[3] + dev + dp[1]
                if ph[2] < ph[4]:
                    ph[4] = ph[2]
                if ph[3] > ph[5]:
                    ph[5] = ph[3]
                if ph[0] >= dp[2]:
                    ph[6] = 1.0 if ph[2] - ph[4] > dp[0] else 0.0
                fired[j, f] = ph[6] != 0.0


class BatchScores:
    """What :func:`score_learn_many` gives per reading ``j`` and variable ``f`` (NaN /
    False where the value is missing): ``z`` (value detector, before learning), ``score``
    and ``warming`` (value detector), ``slow`` and ``slow_warming`` (long-memory detector;
    all NaN / False without one), ``stuck`` and ``stuck_warming``, ``drift`` (the monitor
    fired at this value) and ``watched`` (the score the monitor watches)."""

    __slots__ = ("z", "score", "warming", "slow", "slow_warming", "stuck", "stuck_warming", "drift", "watched")

    def __init__(self, n: int, nf: int) -> None:
        self.z, self.score, self.slow, self.stuck, self.watched = np.full((5, n, nf), np.nan)
        self.warming, self.slow_warming, self.stuck_warming, self.drift = np.zeros((4, n, nf), dtype=np.bool_)


def _key_params(d: KeyDetector) -> np.ndarray:
    return np.array([d.alpha, d.warmup, d.scale, d.clip, d.min_std])


def score_learn_many(V: np.ndarray, level: Sequence[KeyDetector], slow: Sequence[KeyDetector] | None,
                     stuck: Sequence[StuckDetector], drift: Sequence[DriftMonitor],
                     drift_on_slow: bool) -> BatchScores:
    """Score, then learn, the values ``V`` (readings x variables, NaN = missing) with one
    detector of each kind per column (``slow`` None: no long-memory detectors), in
    reading order; the drift monitors watch the slow detector's score when
    ``drift_on_slow`` (and there is one), else the value detector's. Infinite values
    raise ``ValueError``. Returns :class:`BatchScores` (the stuck score already mapped by
    :func:`~models.detectors.stuck.tail_score`)."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    n, nf = V.shape
    if np.isinf(V).any():
        j, f = np.argwhere(np.isinf(V))[0]
        raise ValueError(f"KeyDetector: value is infinite ({V[j, f]!r})")
    out = BatchScores(n, nf)
    if not n:
        return out
    lv = np.array([[d.n, d.mean, d.var] for d in level], dtype=np.float64).reshape(nf, 3)
    has_slow = bool(slow)
    sv = np.array([[d.n, d.mean, d.var] for d in slow], dtype=np.float64).reshape(nf, 3) if slow else np.zeros((nf, 3))
    kv = np.array([[np.nan if d.last is None else d.last, d.run, d.reps, d.trans, d.n] for d in stuck],
                  dtype=np.float64).reshape(nf, 5)
    dv = np.array([m.snapshot() for m in drift], dtype=np.float64).reshape(nf, 7)
    ph = drift[0].ph
    dp = np.array([ph.threshold, ph.delta, ph.min_instances, ph.alpha])
    lp = _key_params(level[0])
    sp = _key_params(slow[0]) if slow else lp
    sk = stuck[0]
    _kernel(V, lv, lp, sv, sp, has_slow, kv, sk.beta, sk.warmup, dv, dp, has_slow and drift_on_slow,
            out.z, out.score, out.warming, out.slow, out.slow_warming, out.stuck, out.stuck_warming, out.drift,
            out.watched)
    for f in range(nf):
        d = level[f]
        d.n, d.mean, d.var = int(lv[f, 0]), float(lv[f, 1]), float(lv[f, 2])
        if slow:
            d = slow[f]
            d.n, d.mean, d.var = int(sv[f, 0]), float(sv[f, 1]), float(sv[f, 2])
        k = stuck[f]
        last = float(kv[f, 0])
        k.last, k.run, k.reps, k.trans, k.n = (None if last != last else last), int(kv[f, 1]), float(kv[f, 2]), \
            float(kv[f, 3]), int(kv[f, 4])
        row = dv[f].tolist()
        drift[f].load((row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6])))
    # the stuck score of the repeats (the rest score 0.0 where present)
    present = ~np.isnan(V)
    tails = out.stuck
    rep = ~np.isnan(tails)
    scores = np.where(present, 0.0, np.nan)
    if rep.any():
        scale = stuck[0].scale
        scores[rep] = [tail_score(t, scale) for t in tails[rep].tolist()]
    out.stuck = scores
    return out
