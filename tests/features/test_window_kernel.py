"""The tiled windows' compiled kernel (``TiledWindows.insert_many``, the one implementation
of the rule) against a brute-force reference: :func:`features.windows.summarize` over the
raw values of each window as the exactness rules at the top of ``features/windows.py``
define it; late events, NaN, events past the lateness and the retention, any batch split;
the per-event methods are its batch of one."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from features.windows import TiledWindows, stats_of, summarize

HORIZONS = (60.0, 300.0)
TILES = 6
LATENESS = 120.0
LOOKBACK = 4


def _new(max_tail: int = 100_000) -> TiledWindows:
    return TiledWindows(HORIZONS, ("a", "b"), lateness_s=LATENESS, tiles=TILES, max_tail=max_tail, min_tail=5)


def _events(rng: random.Random, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mostly in order, some late (within the lateness, past it, past the retention),
    equal times, times on tile boundaries, gaps, values with NaN gaps and repeats."""
    t = 1_000.0
    T, V = [], []
    for _ in range(n):
        u = rng.random()
        if u < 0.6:
            t += rng.choice([0.0, 0.5, 1.0, rng.uniform(0, 30)])
            ti = t
        elif u < 0.7:
            t = math.ceil(t / 10.0) * 10.0 + rng.choice([0.0, 10.0])  # on a tile boundary (w = 10 and 50)
            ti = t
        elif u < 0.82:
            ti = t - rng.uniform(0, LATENESS)  # late within the lateness
        elif u < 0.92:
            ti = t - rng.uniform(LATENESS, 400)  # late past the lateness / a horizon
        elif u < 0.95:
            ti = t - rng.uniform(421, 900)  # past the retention (300 + 120)
        else:
            t += rng.uniform(100, 500)  # a gap
            ti = t
        T.append(round(ti, 3))
        V.append([math.nan if rng.random() < 0.2 else rng.choice([1.0, 2.0, rng.gauss(10, 3)]) for _ in range(2)])
    return np.array(T), np.array(V)


class Reference:
    """The documented rule, by brute force over the raw events (no tiles, no tail)."""

    def __init__(self) -> None:
        self.wm = -math.inf
        self.events: list[tuple[float, list[float], list[bool]]] = []  # (t, values, in tiles of horizon i)

    def insert(self, t: float, vals: list[float]) -> dict:
        wm_before = self.wm
        ret = {"within_lateness": t >= wm_before - LATENESS}
        stored = [(e, v) for e, v, _ in self.events if e >= wm_before - max(HORIZONS) - LATENESS]
        before = [e for e, _ in stored if e <= t]
        ret["prev_t"] = max(before) if before else math.nan
        if t < wm_before - max(HORIZONS) - LATENESS:
            ret["mask"] = -1
            return ret
        self.wm = max(self.wm, t)
        in_tiles = []
        for h in HORIZONS:
            w = h / TILES
            in_tiles.append(math.ceil(t / w) - 1 >= math.floor((self.wm - LATENESS - h) / w))
        self.events.append((t, vals, in_tiles))
        ret["mask"] = sum(1 << i for i, took in enumerate(in_tiles) if took)
        # per horizon: the window's values ending at t, and ending at the end of t's tile
        ret["windows"] = []
        for i, h in enumerate(HORIZONS):
            w = h / TILES
            a, k_end = math.floor((t - h) / w), math.ceil(t / w) - 1
            keep = math.floor((self.wm - LATENESS - h) / w)
            tiled = [(e, v) for e, v, took in self.events if took[i] and math.ceil(e / w) - 1 >= keep]
            own = [] if in_tiles[i] else [vals]
            exact = [v for e, v in tiled if a * w < e <= t] + own
            whole = [v for e, v in tiled if a * w < e <= (k_end + 1) * w] + own
            ret["windows"].append((exact, whole))
        return ret


def _stats(agg: np.ndarray, i: int, f: int):
    p = (i * 2 + f) * 5
    return stats_of(agg[p:p + 5].tolist())


def _same(got, want) -> bool:
    if got.count != want.count:
        return False
    if want.count == 0:
        return True
    return (got.min == want.min and got.max == want.max
            and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
                    for x, y in ((got.sum, want.sum), (got.mean, want.mean), (got.std, want.std))))


def _check_against_reference(T, V, res, max_tail_big: bool) -> int:
    """Every event's aggregates, previous time and mask against :class:`Reference`;
    returns how many windows had to be exact (ending at ``t``)."""
    ref = Reference()
    exact_checked = 0
    for j, (t, vals) in enumerate(zip(T.tolist(), V.tolist())):
        r = ref.insert(t, vals)
        assert res.mask[j] == r["mask"], (j, t)
        if max_tail_big and r["within_lateness"]:
            assert (math.isnan(res.prev_t[j]) and math.isnan(r["prev_t"])) or res.prev_t[j] == r["prev_t"], (j, t)
        if r["mask"] < 0:
            continue
        for i, (exact, whole) in enumerate(r["windows"]):
            for f in range(2):
                got = _stats(res.agg[j], i, f)
                want_exact = summarize([v[f] for v in exact])
                if max_tail_big and r["within_lateness"]:
                    exact_checked += 1
                    assert _same(got, want_exact), (j, t, i, f, got, want_exact)
                else:  # past the lateness (or the tail capped): t's tile may be read whole
                    want_whole = summarize([v[f] for v in whole])
                    assert _same(got, want_exact) or _same(got, want_whole), (j, t, i, f, got, want_exact, want_whole)
    return exact_checked


def _run(win: TiledWindows, T, V, cuts):
    parts = [win.insert_many(T[lo:hi], V[lo:hi], LOOKBACK) for lo, hi in zip([0, *cuts], [*cuts, len(T)])]
    return type(parts[0])(*(np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))))


@pytest.mark.parametrize("seed", range(5))
def test_kernel_equals_the_brute_force_reference(seed: int) -> None:
    rng = random.Random(seed)
    T, V = _events(rng, 500)
    res = _run(_new(), T, V, [])
    assert _check_against_reference(T, V, res, max_tail_big=True) > 1000
    assert (res.mask == -1).any() and (res.mask == 1 << 1).any()  # past the retention; past the 60 s tiles


@pytest.mark.parametrize("seed", range(3))
def test_kernel_with_a_capped_tail_stays_within_the_documented_bound(seed: int) -> None:
    rng = random.Random(100 + seed)
    T, V = _events(rng, 400)
    _check_against_reference(T, V, _run(_new(max_tail=8), T, V, []), max_tail_big=False)


def _equal(a, b) -> None:
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # NaN equals NaN; exact, not approximately


@pytest.mark.parametrize("seed", range(4))
def test_any_batch_split_and_the_per_event_methods_give_the_same(seed: int) -> None:
    rng = random.Random(seed)
    T, V = _events(rng, 400)
    one = _new(max_tail=40)
    whole = _run(one, T, V, [])
    for cuts in (sorted(rng.sample(range(1, len(T)), 7)), list(range(1, len(T)))[::37]):
        win = _new(max_tail=40)
        _equal(_run(win, T, V, cuts), whole)
        assert repr(win.snapshot()) == repr(one.snapshot())  # repr: NaN equals NaN
    # per event: previous, insert_row, aggregates (a batch of one and the kernel's read)
    win = _new(max_tail=40)
    for j, (t, vals) in enumerate(zip(T.tolist(), V.tolist())):
        prev = win.previous(t)
        assert (prev < 0 and math.isnan(whole.prev_t[j])) or win.tail_times()[prev] == whole.prev_t[j]
        mask = win.insert_row(t, vals)
        assert mask == whole.mask[j]
        if mask >= 0:
            assert win.aggregates(t, mask, vals) == whole.agg[j].tolist()
    assert repr(win.snapshot()) == repr(one.snapshot())


def test_extra_fields_are_kept_in_the_tail_only() -> None:
    win = TiledWindows((60.0,), ("a",), extra_fields=("x", "y"), tiles=6)
    r = win.insert_many([10.0, 20.0, 15.0], [[1.0, 5.0, 6.0], [3.0, 7.0, 8.0], [2.0, math.nan, 9.0]])
    assert r.agg.shape == (3, 5)
    assert r.agg[2].tolist() == [2.0, 3.0, 0.5, 1.0, 2.0]  # only "a", up to 15 (late: the tail)
    assert r.agg[1].tolist() == [2.0, 4.0, 2.0, 1.0, 3.0]
    np.testing.assert_array_equal(r.prev_row, [[np.nan] * 3, [1.0, 5.0, 6.0], [1.0, 5.0, 6.0]])
    assert win.tail_times() == [10.0, 15.0, 20.0] and win.tail_value(1, 2) == 9.0


def test_insert_many_refuses_non_finite_times() -> None:
    with pytest.raises(ValueError, match="finite"):
        _new().insert_many(np.array([1.0, math.inf]), np.zeros((2, 2)))


def test_insert_rows_is_insert_many_in_one_array() -> None:
    """The flow's per-key call: one array in ``(t, values...)``, one out, the columns of
    :class:`Inserted` side by side; same state after."""
    T, V = _events(random.Random(5), 400)
    a, b = _new(), _new()
    many = a.insert_many(T, V, LOOKBACK)
    rows = b.insert_rows(np.column_stack([T, V]), LOOKBACK)
    assert rows.shape == (len(T), b.spec.out_width)
    np.testing.assert_array_equal(rows, np.column_stack([many.agg, many.prev_t, many.prev_v, many.prev_row,
                                                         many.mask]))
    assert repr(a.snapshot()) == repr(b.snapshot())


def test_a_key_s_arrays_grow_with_slack() -> None:
    """The kernel says when the state's arrays do not fit a batch; they grow with slack, so
    a customer-like key fed one event per batch (the customer step's usual call) while its
    tiles and tail fill up reallocates at most once per 20 events (22 times in 300 before)."""
    win = TiledWindows((3600.0, 86400.0, 604800.0), ("amount",), lateness_s=600.0, extra_fields=("lat", "lon"))
    arrays, grown = (win._r, win._t), 0
    for j in range(300):
        win.insert_many([1_000.0 + 1_200.0 * j], [[1.0, 2.0, 3.0]])
        if win._r is not arrays[0] or win._t is not arrays[1]:
            grown += 1
            arrays = (win._r, win._t)
    assert grown <= 15, grown
