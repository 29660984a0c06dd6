"""TiledWindows: tiled event-time windows, the documented exactness rule, late events, state."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from features.windows import TiledWindows, WindowStats, summarize
from tests.conftest import is_plain


def covered(events, t: float, horizon: float, w: float, end: float | None = None) -> list[float]:
    """Values the documented rule reads for a window ending at ``t``: whole tiles
    from the one holding ``t - horizon`` (tile k = (k*w, (k+1)*w]), up to ``end`` (default t)."""
    a = math.floor((t - horizon) / w)
    end = t if end is None else end
    return [v for ts, v in events if math.ceil(ts / w) - 1 >= a and ts <= end]


def exact(events, t: float, horizon: float) -> list[float]:
    return [v for ts, v in events if t - horizon < ts <= t]


def assert_stats(s: WindowStats, vals: list[float]) -> None:
    e = summarize(vals)
    assert s.count == e.count
    if e.count == 0:
        assert math.isnan(s.mean)
        return
    assert s.min == e.min and s.max == e.max
    assert s.sum == pytest.approx(e.sum, rel=1e-12)
    assert s.mean == pytest.approx(e.mean, rel=1e-12)
    assert s.std == pytest.approx(e.std, rel=1e-9, abs=1e-9)


def random_sequence(seed: int, n: int, mean_gap: float) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    t = 1_000_000.0
    out = []
    for _ in range(n):
        t += rng.expovariate(1.0 / mean_gap) + 1e-3
        out.append((t, round(math.exp(rng.gauss(3.0, 0.8)), 2)))
    return out


def shuffle_within_lateness(events, lateness: float, seed: int) -> list:
    rng = random.Random(seed)
    delayed = sorted(((t + rng.uniform(0, lateness), (t, v)) for t, v in events), key=lambda x: x[0])
    return [ev for _, ev in delayed]


# --- the window rule ------------------------------------------------------------


def test_aligned_window_is_exact_and_unaligned_includes_the_whole_oldest_tile():
    win = TiledWindows((600.0,), ("x",), lateness_s=0, tiles=60)  # tiles of 10 s
    for t, v in [(1000.0, 1.0), (1004.0, 2.0), (1010.0, 4.0), (1015.0, 8.0), (1600.0, 16.0)]:
        win.insert(t, {"x": v})
    # t = 1600 is on a tile boundary: the window is exactly (1000, 1600]
    s = win.stats("x", 1600.0, 600.0)
    assert (s.count, s.sum, s.min, s.max) == (4, 30.0, 2.0, 16.0)
    win.insert(1603.0, {"x": 32.0})
    # t - H = 1003 falls inside tile (1000, 1010]: that tile is read whole (it holds 1004 but not 1000)
    s = win.stats("x", 1603.0, 600.0)
    assert (s.count, s.sum, s.min) == (5, 62.0, 2.0)
    assert s.count >= len(exact([(1004.0, 2), (1010.0, 4), (1015.0, 8), (1600.0, 16), (1603.0, 32)], 1603.0, 600))


def test_docstring_values_and_population_std():
    win = TiledWindows((3600.0,), ("amount",))
    win.insert(120.0, {"amount": 10.0})
    win.insert(180.0, {"amount": 30.0})
    assert win.stats("amount", 180.0, 3600.0) == WindowStats(2, 40.0, 20.0, 10.0, 10.0, 30.0)


@pytest.mark.parametrize("seed", [1, 2])
def test_in_order_stats_match_the_documented_rule_and_bound(seed):
    events = random_sequence(seed, n=1_500, mean_gap=20.0)
    horizons = (300.0, 1800.0)
    win = TiledWindows(horizons, ("x",), lateness_s=600, tiles=60)
    for i, (t, v) in enumerate(events):
        win.insert(t, {"x": v})
        for h, w in zip(horizons, win.widths):
            s = win.stats("x", t, h)
            assert_stats(s, covered(events[: i + 1], t, h, w))
            # the bound: between the exact window and one tile more
            assert len(exact(events[: i + 1], t, h)) <= s.count <= len(exact(events[: i + 1], t, h + w))


@pytest.mark.parametrize("seed", [3, 4])
def test_out_of_order_within_lateness_lands_in_its_tile(seed):
    lateness, horizon = 600.0, 3600.0
    events = random_sequence(seed, n=800, mean_gap=60.0)
    arrival = shuffle_within_lateness(events, lateness, seed + 100)
    assert arrival != events
    ordered = TiledWindows((horizon,), ("x",), lateness)
    shuffled = TiledWindows((horizon,), ("x",), lateness)
    for t, v in events:
        ordered.insert(t, {"x": v})
    arrived = []
    (w,) = shuffled.widths
    for t, v in arrival:
        assert shuffled.insert(t, {"x": v}) == 1, "an event within the lateness must be stored"
        arrived.append((t, v))
        # the tail holds the whole tile of t: the window ends exactly at t
        assert_stats(shuffled.stats("x", t, horizon), covered(arrived, t, horizon, w))
    # once everything has arrived, every window within the lateness equals in-order arrival's
    probes = [t for t, _ in events if t >= events[-1][0] - lateness]
    assert len(probes) > 5
    for t in probes:
        a, b = shuffled.stats("x", t, horizon), ordered.stats("x", t, horizon)
        assert (a.count, a.min, a.max) == (b.count, b.min, b.max)
        assert a.sum == pytest.approx(b.sum, rel=1e-12) and a.std == pytest.approx(b.std, rel=1e-9)


def test_late_event_whose_tile_left_the_tail_reads_the_whole_tile():
    win = TiledWindows((600.0,), ("x",), lateness_s=600, max_tail=5)  # tiles of 10 s
    for i in range(50):
        win.insert(1000.0 + i, {"x": float(i)})
    assert len(win) == 5 and win.floor == 1044.0
    win.insert(1021.5, {"x": 100.0})  # tile (1020, 1030] is no longer in the tail
    s = win.stats("x", 1021.5, 600.0)
    # read to the end of its tile (1030), not to t: 1000 .. 1030 and itself (ending at t would give 23)
    assert s.count == 32 and s.max == 100.0
    # its predecessor is unknown (older than the tail): -1, never a guess
    assert win.previous(1021.0) == -1


def test_events_out_of_retention_are_not_stored():
    win = TiledWindows((1000.0,), ("x",), lateness_s=0)
    win.insert(10_000.0, {"x": 1.0})
    before = win.snapshot()
    assert win.insert(8_999.0, {"x": 99.0}) == -1
    assert win.snapshot() == before
    assert win.insert(9_000.0, {"x": 3.0}) >= 0  # exactly at the retention edge: stored


def test_is_late_and_previous():
    win = TiledWindows((1000.0,), ("x",), lateness_s=600)
    assert win.previous(5.0) == -1
    win.insert(5000.0, {"x": 1.0})
    assert not win.is_late(4400.0) and win.is_late(4399.9) and not win.is_late(6000.0)
    win.insert(5000.0, {"x": 2.0})
    assert win.previous(5000.0) == 1 and win.previous(4999.0) == -1
    assert win.tail_times() == [5000.0, 5000.0]


# --- bounded state, no cap on windows ----------------------------------------------


def test_state_is_bounded_by_tiles_not_by_events():
    win = TiledWindows((3600.0,), ("x",), lateness_s=600, tiles=60, max_tail=256)
    for i in range(100_000):  # 10 Hz for 10 000 s
        win.insert(1_000_000.0 + i / 10, {"x": float(i % 100)})
    # tiles kept: (horizon + lateness) / w, plus the partial ones
    assert win.tile_count() <= 60 + 10 + 2
    assert len(win) <= 256
    t = 1_000_000.0 + 99_999 / 10
    s = win.stats("x", t, 3600.0)
    # nothing capped: every reading of (a*w, t], the 36 000 of the hour plus the oldest tile's part
    a = math.floor((t - 3600.0) / 60.0)
    assert s.count == sum(1 for i in range(100_000) if 1_000_000.0 + i / 10 > a * 60.0) == 36_199


def test_sparse_key_keeps_only_non_empty_tiles():
    win = TiledWindows((3600.0, 86_400.0, 604_800.0), ("amount",), lateness_s=600)
    for i in range(60):  # two a day for 30 days
        win.insert(1_790_000_000.0 + i * 43_200.0, {"amount": 10.0})
    assert win.tile_count() <= 1 + 3 + 15
    assert len(win) <= 2


def test_variance_is_stable_with_a_large_offset_over_a_long_run():
    rng = random.Random(8)
    win = TiledWindows((600.0,), ("x",), lateness_s=0)
    events = []
    for i in range(60_000):
        t, v = 1e9 + i, 1e9 + rng.gauss(0, 1e-3)
        events.append((t, v))
        win.insert(t, {"x": v})
    s = win.stats("x", events[-1][0], 600.0)
    e = summarize(covered(events[-700:], events[-1][0], 600.0, 10.0))
    assert s.count == e.count
    assert s.std == pytest.approx(e.std, rel=1e-4)  # sums of squares would give noise here


# --- missing values -------------------------------------------------------------


def test_summarize_skips_nan():
    assert summarize([1.0, math.nan, 3.0]) == WindowStats(2, 4.0, 2.0, 1.0, 1.0, 3.0)
    assert summarize([math.nan]).count == 0 and summarize([]).count == 0


def test_missing_values_are_skipped_per_field():
    win = TiledWindows((1000.0,), ("a", "b"))
    win.insert(1.0, {"a": 1.0, "b": 5.0})
    win.insert(2.0, {"a": None, "b": 7.0})
    win.insert(3.0, {"b": 9.0})
    win.insert(4.0, {"a": 3.0, "b": math.nan})
    a, b = win.stats("a", 4.0, 1000.0), win.stats("b", 4.0, 1000.0)
    assert (a.count, a.sum, a.min, a.max) == (2, 4.0, 1.0, 3.0)
    assert (b.count, b.sum, b.min, b.max) == (3, 21.0, 5.0, 9.0)


def test_constructor_rejects_bad_settings():
    with pytest.raises(ValueError, match="horizons_s"):
        TiledWindows((0.0,))
    with pytest.raises(ValueError, match="tiles"):
        TiledWindows((10.0,), tiles=0)
    with pytest.raises(ValueError, match="max_tail"):
        TiledWindows((10.0,), max_tail=0)


# --- snapshot / restore -------------------------------------------------------------


def test_snapshot_restore_gives_identical_results():
    lateness = 300.0
    events = random_sequence(21, n=3_000, mean_gap=2.0)
    arrival = shuffle_within_lateness(events, lateness, 22)
    mk = lambda: TiledWindows((60.0, 1800.0), ("x",), lateness, max_tail=100)  # noqa: E731
    h = mk()
    for t, v in arrival[:1500]:
        h.insert(t, {"x": v})
    snap = pickle.loads(pickle.dumps(h.snapshot()))
    assert is_plain(snap)
    restored = mk()
    restored.load(snap)
    assert restored.snapshot() == h.snapshot()
    for t, v in arrival[1500:]:
        assert h.insert(t, {"x": v}) == restored.insert(t, {"x": v})
        assert h.aggregates(t) == restored.aggregates(t)  # bit for bit: the read cache changes nothing
    assert h.snapshot() == restored.snapshot()


def test_restore_under_a_new_configuration_re_tiles_and_uses_it():
    old = TiledWindows((60.0, 600.0), ("x", "y"), lateness_s=60)  # tiles of 1 s and 10 s
    events = [(1000.0 + i, float(i)) for i in range(300)]
    for t, v in events:
        old.insert(t, {"x": v, "y": 1.0})
    new = TiledWindows((120.0, 7.0), ("x", "z"), lateness_s=30, tiles=60)  # 2 s tiles, 7/60 s tiles
    new.load(old.snapshot())
    assert new.horizons == (120.0, 7.0)
    t = 1300.0
    new.insert(t, {"x": 300.0, "z": 5.0})
    events.append((t, 300.0))
    # 120 s: re-tiled from the 1 s tiles (2 s is a multiple): exact under the rule
    assert_stats(new.stats("x", t, 120.0), covered(events, t, 120.0, 2.0))
    # 7 s: no tile set divides 7/60 s: rebuilt from the exact tail
    assert new.stats("x", t, 7.0).count >= 1
    # a new field starts empty except for the new event
    assert new.stats("z", t, 120.0).count == 1


def test_load_of_the_previous_exact_event_format_replays_it():
    win = TiledWindows((100.0,), ("x",), lateness_s=0)
    win.load((30.0, [10.0, 20.0, 30.0], {"x": [1.0, 2.0, 3.0]}))
    assert win.watermark == 30.0 and win.stats("x", 30.0, 100.0).sum == 6.0


def test_snapshot_holds_its_numbers_as_raw_bytes_and_the_list_format_still_loads():
    """``tiles/2`` holds tiles and tail as float64 bytes (cheap at an epoch's end: a few
    objects per key); a ``tiles/1`` snapshot (the same numbers as lists, written before
    2026-12-07) restores to the same state."""
    from array import array

    events = random_sequence(23, n=800, mean_gap=3.0)
    win = TiledWindows((60.0, 1800.0), ("x",), 60.0, max_tail=50)
    for t, v in events:
        win.insert(t, {"x": v})
    snap = win.snapshot()
    assert snap[0] == "tiles/2" and isinstance(snap[6], bytes) and all(isinstance(d, bytes) for _, _, d in snap[4])
    as_lists = lambda b: array("d", b).tolist()  # noqa: E731 (this machine is little-endian)
    old = ("tiles/1", snap[1], snap[2], list(snap[3]), [(w, since, as_lists(d)) for w, since, d in snap[4]],
           list(snap[5]), as_lists(snap[6]))
    restored = TiledWindows((60.0, 1800.0), ("x",), 60.0, max_tail=50)
    restored.load(old)
    assert restored.snapshot() == snap
    t = events[-1][0] + 1.0
    assert restored.insert(t, {"x": 1.0}) == win.insert(t, {"x": 1.0})
    with pytest.raises(ValueError, match="float64 bytes"):
        TiledWindows((60.0, 1800.0), ("x",), 60.0).load(snap[:6] + (b"\x00" * 7,))


def test_load_rejects_garbage():
    with pytest.raises(ValueError, match="TiledWindows.load"):
        TiledWindows((10.0,)).load(("x",))
