"""The compiled batch of :mod:`features.window_kernel` against the per-event TiledWindows methods."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from features.window_kernel import insert_many
from features.windows import TiledWindows

LOOKBACK = 4


def _reference(win: TiledWindows, T, V):
    """Per event, plainly: previous, the lookback of each present field, insert_row, aggregates."""
    row = win.spec.row
    out = []
    for t, vals in zip(np.asarray(T).tolist(), np.asarray(V).tolist()):
        prev = win.previous(t)
        tail = win.tail
        prev_t = tail[prev * row] if prev >= 0 else math.nan
        prev_v = []
        for f, v in enumerate(vals):
            pv = math.nan
            if v == v and prev >= 0:
                for j in range(prev, max(-1, prev - LOOKBACK), -1):
                    if tail[j * row + 1 + f] == tail[j * row + 1 + f]:
                        pv = tail[j * row + 1 + f]
                        break
            prev_v.append(pv)
        mask = win.insert_row(t, list(vals))
        out.append((win.aggregates(t, mask, list(vals)), prev_t, prev_v))
    return out


def _events(rng: random.Random, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mostly in order, some late (a little, a lot, past the retention), some equal times,
    values with NaN gaps and repeats."""
    t = 1_000.0
    T, V = [], []
    for _ in range(n):
        u = rng.random()
        if u < 0.7:
            t += rng.choice([0.0, 0.5, 1.0, rng.uniform(0, 30)])
            ti = t
        elif u < 0.85:
            ti = t - rng.uniform(0, 60)  # late within the lateness
        elif u < 0.95:
            ti = t - rng.uniform(60, 400)  # late past the lateness / a horizon
        else:
            t += rng.uniform(100, 500)  # a gap
            ti = t
        T.append(round(ti, 3))
        V.append([math.nan if rng.random() < 0.2 else rng.choice([1.0, 2.0, rng.gauss(10, 3)]) for _ in range(2)])
    return np.array(T), np.array(V)


def _new() -> TiledWindows:
    return TiledWindows((60.0, 300.0), ("a", "b"), lateness_s=120.0, tiles=6, max_tail=40, min_tail=5)


def _close(got, want) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_kernel_equals_the_per_event_methods_and_any_split(seed: int) -> None:
    rng = random.Random(seed)
    T, V = _events(rng, 400)
    ref_win = _new()
    ref = _reference(ref_win, T, V)
    for cuts in ([], sorted(rng.sample(range(1, len(T)), 7)), list(range(1, len(T)))[::37]):
        win = _new()
        parts = []
        for lo, hi in zip([0, *cuts], [*cuts, len(T)]):
            parts.append(insert_many(win, T[lo:hi], V[lo:hi], LOOKBACK))
        agg = np.concatenate([p[0] for p in parts])
        prev_t = np.concatenate([p[1] for p in parts])
        prev_v = np.concatenate([p[2] for p in parts])
        _close(agg, [r[0] for r in ref])
        _close(prev_t, [r[1] for r in ref])
        _close(prev_v, [r[2] for r in ref])
        assert repr(win.snapshot()) == repr(ref_win.snapshot())  # repr: NaN equals NaN


def test_kernel_and_per_event_calls_interleave_on_one_object() -> None:
    rng = random.Random(42)
    T, V = _events(rng, 200)
    ref_win, win = _new(), _new()
    ref = _reference(ref_win, T, V)
    got = list(insert_many(win, T[:100], V[:100], LOOKBACK)[0])
    got += [r[0] for r in _reference(win, T[100:150], V[100:150])]
    got += list(insert_many(win, T[150:], V[150:], LOOKBACK)[0])
    _close(got, [r[0] for r in ref])
    assert repr(win.snapshot()) == repr(ref_win.snapshot())  # repr: NaN equals NaN


def test_kernel_refuses_non_finite_times_and_extra_fields() -> None:
    with pytest.raises(ValueError, match="finite"):
        insert_many(_new(), np.array([1.0, math.inf]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="extra_fields"):
        insert_many(TiledWindows((60.0,), ("a",), extra_fields=("x",)), np.array([1.0]), np.zeros((1, 1)))
