"""EventTimeHistory: exact event-time windows under out-of-order arrival, bounded state."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from features.windows import EventTimeHistory, WindowStats, summarize


def brute_stats(events: list[tuple[float, float]], t: float, horizon: float) -> tuple:
    """(count, sum, mean, std, min, max) of values with time in (t - horizon, t], NaN skipped."""
    vals = [v for (ts, v) in events if t - horizon < ts <= t and not math.isnan(v)]
    if not vals:
        return (0, 0.0, math.nan, math.nan, math.nan, math.nan)
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / n)
    return (n, sum(vals), mean, std, min(vals), max(vals))


def assert_stats_match(s: WindowStats, expected: tuple) -> None:
    n, total, mean, std, lo, hi = expected
    assert s.count == n
    if n == 0:
        assert s.sum == 0.0
        assert all(math.isnan(x) for x in (s.mean, s.std, s.min, s.max))
        return
    assert s.sum == pytest.approx(total, rel=1e-9, abs=1e-9)
    assert s.mean == pytest.approx(mean, rel=1e-9, abs=1e-9)
    assert s.std == pytest.approx(std, rel=1e-7, abs=1e-7)
    assert s.min == lo
    assert s.max == hi


def random_sequence(seed: int, n: int, mean_gap: float) -> list[tuple[float, float]]:
    """``n`` events with distinct, increasing times and lognormal values."""
    rng = random.Random(seed)
    t = 1_000_000.0
    out = []
    for _ in range(n):
        t += rng.expovariate(1.0 / mean_gap) + 1e-3
        out.append((t, round(math.exp(rng.gauss(3.0, 0.8)), 2)))
    return out


def shuffle_within_lateness(events: list[tuple[float, float]], lateness: float, seed: int) -> list:
    """Arrival order where each event is delayed by at most ``lateness`` seconds."""
    rng = random.Random(seed)
    delayed = [(t + rng.uniform(0, lateness), (t, v)) for t, v in events]
    delayed.sort(key=lambda x: x[0])
    return [ev for _, ev in delayed]


# --- window boundaries -------------------------------------------------------


def test_window_excludes_t_minus_horizon_and_includes_t():
    h = EventTimeHistory(retention_s=10_000, fields=("x",))
    for t, v in [(100.0, 1.0), (100.5, 2.0), (160.0, 4.0), (200.0, 8.0), (200.0001, 16.0)]:
        h.insert(t, {"x": v})
    # window (100, 200]: excludes the event at exactly t - horizon, includes t, excludes after t
    s = h.stats("x", t=200.0, horizon=100.0)
    assert (s.count, s.sum, s.min, s.max) == (3, 14.0, 2.0, 8.0)
    assert h.window(200.0, 100.0) == (1, 4)
    # moving the end just past 100 + 100 doesn't change which start events are in
    assert h.stats("x", t=200.00005, horizon=100.0).count == 3
    # t exactly at an event's time includes it
    assert h.stats("x", t=100.0, horizon=1.0).count == 1
    assert h.stats("x", t=100.0, horizon=1.0).sum == 1.0
    # horizon that ends just before an event: nothing before the first event
    assert h.stats("x", t=99.999, horizon=50.0).count == 0


def test_stats_of_docstring_example_values():
    h = EventTimeHistory(retention_s=3600, fields=("amount",))
    h.insert(100.0, {"amount": 10.0})
    h.insert(200.0, {"amount": 30.0})
    assert h.stats("amount", t=200.0, horizon=3600) == WindowStats(2, 40.0, 20.0, 10.0, 10.0, 30.0)
    assert h.stats("amount", t=200.0, horizon=100.0) == WindowStats(1, 30.0, 30.0, 0.0, 30.0, 30.0)


def test_in_order_stats_match_brute_force():
    events = random_sequence(seed=11, n=400, mean_gap=120.0)
    horizon = 1800.0
    h = EventTimeHistory(retention_s=horizon + 600, fields=("x",), max_events=10_000)
    for i, (t, v) in enumerate(events):
        assert h.insert(t, {"x": v}) == len(h) - 1  # newest lands last
        assert_stats_match(h.stats("x", t, horizon), brute_stats(events[: i + 1], t, horizon))


# --- out-of-order arrival ----------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_out_of_order_within_lateness_matches_brute_force_and_in_order(seed):
    lateness, horizon = 600.0, 3600.0
    events = random_sequence(seed=seed, n=600, mean_gap=90.0)
    arrival = shuffle_within_lateness(events, lateness, seed=seed + 100)
    assert arrival != events  # the shuffle really reorders

    ordered = EventTimeHistory(retention_s=horizon + lateness, fields=("x",), max_events=100_000)
    shuffled = EventTimeHistory(retention_s=horizon + lateness, fields=("x",), max_events=100_000)
    for t, v in events:
        ordered.insert(t, {"x": v})

    arrived: list[tuple[float, float]] = []
    for t, v in arrival:
        idx = shuffled.insert(t, {"x": v})
        assert idx >= 0, "an event within the lateness must be stored"
        assert shuffled.times[idx] == t and shuffled.columns["x"][idx] == v
        arrived.append((t, v))
        # Each event sees exactly the events that have arrived with time in (t - h, t].
        assert_stats_match(shuffled.stats("x", t, horizon), brute_stats(arrived, t, horizon))
        assert shuffled.times == sorted(shuffled.times)

    # Once everything has arrived the state and every window are identical to in-order arrival.
    assert shuffled.times == ordered.times
    assert shuffled.columns == ordered.columns
    assert shuffled.watermark == ordered.watermark
    for t, _ in events[-200:]:
        for hz in (60.0, 600.0, horizon):
            assert shuffled.stats("x", t, hz) == ordered.stats("x", t, hz)


def test_late_insert_lands_in_event_time_order():
    h = EventTimeHistory(retention_s=3600, fields=("amount",))
    h.insert(100.0, {"amount": 10.0})
    h.insert(200.0, {"amount": 30.0})
    idx = h.insert(150.0, {"amount": 20.0})
    assert idx == 1
    assert h.times == [100.0, 150.0, 200.0]
    assert h.columns["amount"] == [10.0, 20.0, 30.0]
    assert h.previous(idx) == 0 and h.previous(0) is None
    assert h.stats("amount", t=150.0, horizon=3600).count == 2
    assert h.watermark == 200.0  # a late event doesn't move the watermark


def test_is_late():
    h = EventTimeHistory(retention_s=1000)
    h.insert(5000.0, {"value": 1.0})
    assert not h.is_late(4400.0, lateness_s=600)  # exactly at the limit: not late
    assert h.is_late(4399.9, lateness_s=600)
    assert not h.is_late(6000.0, lateness_s=600)


# --- eviction ----------------------------------------------------------------


def test_eviction_by_retention():
    h = EventTimeHistory(retention_s=1000, fields=("x",), max_events=100_000)
    for i in range(10_000):
        h.insert(float(i * 10), {"x": float(i)})
        assert h.times[0] >= h.watermark - h.retention_s
    assert h.watermark == 99_990.0
    # events at times >= 98_990 are kept: 98_990 .. 99_990 step 10 -> 101 events
    assert len(h) == 101
    assert h.times[0] == 98_990.0
    assert len(h.columns["x"]) == len(h)
    assert h.columns["x"][0] == 9899.0


def test_eviction_by_max_events_keeps_newest_and_stays_bounded():
    h = EventTimeHistory(retention_s=1e9, fields=("x", "y"), max_events=256)
    for i in range(10_000):
        h.insert(float(i), {"x": float(i), "y": -float(i)})
        assert len(h) <= 256
    assert len(h) == 256
    assert h.times == [float(i) for i in range(10_000 - 256, 10_000)]
    assert h.columns["x"] == h.times
    assert h.columns["y"] == [-t for t in h.times]
    s = h.stats("x", t=9_999.0, horizon=1e9)
    assert s.count == 256 and s.min == 9_744.0


def test_state_bounded_after_10k_shuffled_events():
    lateness = 300.0
    events = random_sequence(seed=5, n=10_000, mean_gap=30.0)
    h = EventTimeHistory(retention_s=3600 + lateness, fields=("x",), max_events=500)
    for t, v in shuffle_within_lateness(events, lateness, seed=6):
        h.insert(t, {"x": v})
        assert len(h) <= 500
        assert len(h.times) == len(h.columns["x"])
    assert h.times == sorted(h.times)
    assert h.times[0] >= h.watermark - h.retention_s


def test_late_event_beyond_retention_is_rejected_and_not_stored():
    h = EventTimeHistory(retention_s=1000, fields=("x",))
    h.insert(10_000.0, {"x": 1.0})
    h.insert(10_500.0, {"x": 2.0})
    before = h.snapshot()
    assert h.insert(9_499.0, {"x": 99.0}) == -1
    assert h.snapshot() == before
    assert len(h) == 2
    assert h.stats("x", t=9_499.0, horizon=100).count == 0
    # exactly at the retention edge is still kept
    idx = h.insert(9_500.0, {"x": 3.0})
    assert idx == 0 and len(h) == 3


def test_constructor_rejects_bad_bounds():
    with pytest.raises(ValueError, match="retention_s"):
        EventTimeHistory(retention_s=0)
    with pytest.raises(ValueError, match="max_events"):
        EventTimeHistory(retention_s=10, max_events=0)


# --- missing values -----------------------------------------------------------


def test_summarize_skips_nan():
    s = summarize([1.0, math.nan, 3.0, math.nan])
    assert s == WindowStats(count=2, sum=4.0, mean=2.0, std=1.0, min=1.0, max=3.0)
    only_nan = summarize([math.nan, math.nan])
    assert only_nan.count == 0 and only_nan.sum == 0.0 and math.isnan(only_nan.mean)
    assert summarize([]).count == 0


def test_missing_values_stored_as_nan_and_skipped_in_stats():
    h = EventTimeHistory(retention_s=1000, fields=("a", "b"))
    h.insert(1.0, {"a": 1.0, "b": 5.0})
    h.insert(2.0, {"a": None, "b": 7.0})
    h.insert(3.0, {"b": 9.0})  # "a" absent
    h.insert(4.0, {"a": 3.0, "b": None})
    assert math.isnan(h.columns["a"][1]) and math.isnan(h.columns["a"][2])
    a = h.stats("a", t=4.0, horizon=100)
    b = h.stats("b", t=4.0, horizon=100)
    assert (a.count, a.sum, a.mean, a.min, a.max) == (2, 4.0, 2.0, 1.0, 3.0)
    assert (b.count, b.sum, b.mean, b.min, b.max) == (3, 21.0, 7.0, 5.0, 9.0)


# --- snapshot / restore -------------------------------------------------------


def test_snapshot_restore_round_trip_gives_identical_results():
    lateness = 300.0
    events = random_sequence(seed=21, n=1_000, mean_gap=40.0)
    arrival = shuffle_within_lateness(events, lateness, seed=22)
    first, rest = arrival[:500], arrival[500:]
    h = EventTimeHistory(retention_s=1800 + lateness, fields=("x",), max_events=300)
    for t, v in first:
        h.insert(t, {"x": v})
    snap = pickle.loads(pickle.dumps(h.snapshot()))
    restored = EventTimeHistory(retention_s=1800 + lateness, fields=("x",), max_events=300)
    restored.load(snap)
    assert restored.snapshot() == h.snapshot()

    for t, v in rest:
        assert h.insert(t, {"x": v}) == restored.insert(t, {"x": v})
        for hz in (60.0, 1800.0):
            assert h.stats("x", t, hz) == restored.stats("x", t, hz)
        assert h.is_late(t - 400, lateness) == restored.is_late(t - 400, lateness)
    assert h.snapshot() == restored.snapshot()


def test_snapshot_is_independent_of_later_changes():
    h = EventTimeHistory(retention_s=1000, fields=("x",))
    h.insert(1.0, {"x": 1.0})
    snap = h.snapshot()
    h.insert(2.0, {"x": 2.0})
    restored = EventTimeHistory(retention_s=1000, fields=("x",))
    restored.load(snap)
    assert restored.times == [1.0] and restored.columns == {"x": [1.0]}
    restored.insert(3.0, {"x": 3.0})
    assert h.times == [1.0, 2.0]
    # restoring twice from the same snapshot gives independent objects
    again = EventTimeHistory(retention_s=1000, fields=("x",))
    again.load(snap)
    assert again.times == [1.0]


def test_restore_under_a_new_configuration_uses_it():
    h = EventTimeHistory(retention_s=1000, fields=("x", "y"), max_events=100)
    for i in range(50):
        h.insert(float(i * 10), {"x": float(i), "y": 1.0})
    shorter = EventTimeHistory(retention_s=100, fields=("x", "z"), max_events=5)
    shorter.load(h.snapshot())
    # the new retention and cap apply at once; a field it does not keep is dropped, a new one is missing
    assert shorter.times == [450.0, 460.0, 470.0, 480.0, 490.0]
    assert set(shorter.columns) == {"x", "z"} and all(v != v for v in shorter.columns["z"])
    assert shorter.stats("x", 490.0, 100.0).count == 5
