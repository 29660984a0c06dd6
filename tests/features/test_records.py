"""features.records: format_time (and format_times, for many at once) gives exactly what
datetime's own formatting gives."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import numpy as np
import pytest

from features.records import MAX_EPOCH_S, MIN_EPOCH_S, format_time, format_times, rounded


def by_datetime(t: float) -> str:
    """The reference: the formatting format_time replaced."""
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def times() -> list[float]:
    """Random times over the whole range, streams' times and rounding edges, shuffled."""
    rng = random.Random(9)
    ts = [rng.uniform(MIN_EPOCH_S, MAX_EPOCH_S - 1) for _ in range(20000)]
    ts += [rng.uniform(-1e5, 2e9) for _ in range(20000)]
    base = 1_704_067_200.0
    ts += [base + i / 10 for i in range(3000)] + [base + i / 1000 for i in range(3000)]  # 10 Hz, 1 kHz
    # rounding edges: half microseconds, just under a millisecond and a second, negatives
    ts += [base + k + d for k in range(50) for d in (0.0000005, 0.0000015, 0.0009995, 0.9999995, 0.99999949,
                                                       0.9995, 0.5, 0.0)]
    ts += [-k - d for k in range(50) for d in (0.0000005, 0.0005, 0.9999995, 0.5, 0.0)]
    ts += [0.0, -0.0, 1e-7, -1e-7, 5e-7, -5e-7, MIN_EPOCH_S, MAX_EPOCH_S - 0.001]
    ts += [float(int(t)) + 0.123 for t in ts[:2000]]
    rng.shuffle(ts)
    return ts


def test_format_time_equals_datetime_formatting() -> None:
    for t in times():
        assert format_time(t) == by_datetime(t), repr(t)


def test_format_times_equals_format_time_of_each() -> None:
    ts = times()
    for size in (1, 7, 8, 1000, len(ts)):  # below and above the size formatted at once
        for start in range(0, len(ts), max(size, len(ts) // 5)):
            chunk = ts[start:start + size]
            assert format_times(chunk) == [format_time(t) for t in chunk]
    assert format_times([]) == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e20])
def test_format_times_refuses_what_format_time_refuses(bad: float) -> None:
    with pytest.raises((ValueError, OverflowError, OSError)):
        format_times([1.8e9] * 20 + [bad])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e20])
def test_format_time_refuses_what_datetime_refuses(bad: float) -> None:
    with pytest.raises((ValueError, OverflowError, OSError)):
        by_datetime(bad)
    with pytest.raises((ValueError, OverflowError, OSError)):
        format_time(bad)


def test_format_time_keeps_the_text_of_the_hour() -> None:
    """Event times of a stream fall in a few hours: one cached text per hour, not per second."""
    from features import records

    records._HOURS.clear()
    base = 1_704_067_200.0  # an hour boundary
    for i in range(7200):
        assert format_time(base + i * 0.5 + 0.25) == by_datetime(base + i * 0.5 + 0.25)
    assert len(records._HOURS) == 1


def test_rounded_is_round() -> None:
    rng = random.Random(2)
    xs = [rng.random() for _ in range(20000)] + [rng.uniform(-1e5, 1e5) for _ in range(20000)]
    xs += [k / 1e6 + 5e-7 for k in range(20000)] + [k / 1e3 + 5e-4 for k in range(-2000, 2000)]  # halves
    xs += [round(x, 7) for x in xs[:5000]] + [0.0, -0.0, -1e-9, 1e300, -1e300, float("inf"), float("-inf")]
    for nd in (0, 3, 6):
        got = rounded(np.array(xs), nd).tolist()
        want = [round(x, nd) for x in xs]
        assert [repr(g) for g in got] == [repr(w) for w in want]  # repr: -0.0 and 0.0 differ
    assert np.isnan(rounded(np.array([np.nan]), 6)[0])
    small = np.array(xs[:40]).reshape(4, 10)  # a few values: round itself
    assert rounded(small, 6).tolist() == [[round(x, 6) for x in row] for row in small.tolist()]


def test_format_times_is_format_time_of_each() -> None:
    """The batch form (numpy's datetime64 text) gives format_time's text for every time:
    rounding edges, before 1970, the ends of years 1-9999 and beyond them (one by one)."""
    import random

    from features.records import format_times

    rng = random.Random(1)
    xs = [rng.uniform(-3e9, 4e9) for _ in range(20_000)]
    xs += [round(rng.uniform(0, 2e9), 3) + d for d in (0.0005, -0.0005, 0.00049999, 5e-7, -5e-7, 0.9999995, 0.9995)
           for _ in range(3_000)]
    xs += [1704067208.0 + 0.1 * k for k in range(5_000)]
    xs += [-62135596800.0, 253402300799.9994, -1e-7, 1e-7, 0.0, -0.0]
    assert format_times(xs) == [format_time(x) for x in xs]
    assert format_times([]) == []
    for outside in (253402300800.5, -62135596800.5):  # as format_time: no such year
        with pytest.raises(ValueError, match="out of range"):
            format_time(outside)
        with pytest.raises(ValueError, match="out of range"):
            format_times([0.0] * 20 + [outside])
