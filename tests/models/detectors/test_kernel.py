"""The compiled per-key detectors (:mod:`models.detectors.kernel`) against the per-event detectors
and River's own ``PageHinkley``, on random sequences with gaps, repeats and any split."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from river.drift import PageHinkley

from models.detectors import DriftMonitor, KeyDetector, StuckDetector
from models.detectors.kernel import score_learn_many


def _detectors(nf: int, slow: bool):
    level = [KeyDetector(alpha=0.05, warmup=5, scale=4.0, clip=3.0) for _ in range(nf)]
    slow_ = [KeyDetector(alpha=0.005, warmup=5, scale=4.0, clip=3.0) for _ in range(nf)] if slow else None
    stuck = [StuckDetector(beta=0.05, warmup=5, scale=4.0) for _ in range(nf)]
    drift = [DriftMonitor(threshold=1.0, delta=0.01, min_instances=10) for _ in range(nf)]
    return level, slow_, stuck, drift


def _reference(V, level, slow, stuck, drift, on_slow):
    """Plainly, per value: each detector's score_learn, River PageHinkley beside the monitor."""
    rivers = [PageHinkley(min_instances=10, delta=0.01, threshold=1.0, mode="up") for _ in level]
    out = []
    for row in V.tolist():
        res = []
        for f, v in enumerate(row):
            if v != v:
                res.append(None)
                continue
            z = level[f].z(v)
            s, w = level[f].score_learn(v)
            ss, ws = slow[f].score_learn(v) if slow else (math.nan, False)
            st, stw = stuck[f].score_learn(v)
            watched, ww = (ss, ws) if slow and on_slow else (s, w)
            fired = False
            if not ww:
                fired = drift[f].update(watched)
                rivers[f].update(watched)
                assert bool(rivers[f].drift_detected) == fired
            res.append((z, s, w, ss, ws, st, stw, fired, watched))
        out.append(res)
    return out


def _values(rng: random.Random, n: int, nf: int) -> np.ndarray:
    rows, level = [], [rng.gauss(0, 5) for _ in range(nf)]
    for i in range(n):
        if rng.random() < 0.02:
            level = [x + rng.gauss(0, 3) for x in level]
        row = []
        for f in range(nf):
            u = rng.random()
            if u < 0.15:
                row.append(math.nan)
            elif u < 0.3 and rows and rows[-1][f] == rows[-1][f]:
                row.append(rows[-1][f])  # a repeat (stuck runs)
            else:
                row.append(level[f] + (rng.gauss(0, 20) if u > 0.98 else rng.gauss(0, 1)))
        rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("seed,slow,on_slow", [(0, True, True), (1, True, False), (2, False, True), (3, True, True)])
def test_kernel_equals_the_per_event_detectors_and_any_split(seed: int, slow: bool, on_slow: bool) -> None:
    rng = random.Random(seed)
    V = _values(rng, 600, 3)
    ref_dets = _detectors(3, slow)
    ref = _reference(V, *ref_dets, on_slow)
    assert any(r and r[7] for row in ref for r in row)  # the sequence makes the monitors fire
    for cuts in ([], sorted(rng.sample(range(1, len(V)), 9)), list(range(1, len(V)))):
        dets = _detectors(3, slow)
        parts = [score_learn_many(V[lo:hi], *dets, on_slow) for lo, hi in zip([0, *cuts], [*cuts, len(V)])]
        for name, k in (("z", 0), ("score", 1), ("warming", 2), ("slow", 3), ("slow_warming", 4), ("stuck", 5),
                        ("stuck_warming", 6), ("drift", 7), ("watched", 8)):
            got = np.concatenate([getattr(p, name) for p in parts]).astype(float)
            want = np.array([[math.nan if r is None else float(r[k]) for r in row] for row in ref])
            if name in ("warming", "slow_warming", "stuck_warming", "drift"):
                want = np.nan_to_num(want, nan=0.0)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=name)
        for a, b in zip(dets, ref_dets):
            if a is not None:
                assert [d.snapshot() for d in a] == [d.snapshot() for d in b]


def test_kernel_refuses_infinite_values() -> None:
    with pytest.raises(ValueError, match="infinite"):
        score_learn_many(np.array([[1.0, math.inf]]), *_detectors(2, True), True)
