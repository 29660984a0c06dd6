"""Hot keys: a 10 Hz device over more than an hour, out of order within the lateness,
against a brute-force computation of every checked window under the documented rule."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from features.sensors import DeviceFeatures, SensorConfig, feature_names

T0 = 1_704_067_200.0  # a multiple of 3600: tiles of 5 s and 60 s are aligned on readings
SENSORS = ("temperature", "humidity", "pressure")
CFG = SensorConfig(sensors=SENSORS, windows_s=(300.0, 3600.0), lateness_s=600.0, max_events=512)
N = 42_000  # 70 minutes at 10 Hz


def hot_stream(seed: int = 1):
    """(event time, values) in arrival order: 10 Hz, 2% of readings delayed 1-30 s, 0.3% delayed 60-300 s."""
    rng = random.Random(seed)
    times = np.array([T0 + i / 10 for i in range(N)])
    vals = np.array([[20 + rng.gauss(0, 0.5), 50 + rng.gauss(0, 2), 1000 + rng.gauss(0, 0.3)] for _ in range(N)])
    delay = np.zeros(N)
    for i in range(N):
        r = rng.random()
        delay[i] = rng.uniform(1, 30) if r < 0.02 else rng.uniform(60, 300) if r < 0.023 else 0.0
    order = np.argsort(times + delay, kind="stable")
    return times, vals, order


def test_hot_device_matches_brute_force_within_the_documented_bound():
    times, vals, order = hot_stream()
    dev = DeviceFeatures(CFG)
    arrived = np.zeros(N, dtype=bool)
    checked = late_checked = aligned_checked = whole_tile = 0
    for step, i in enumerate(order):
        t = times[i]
        f = dev.update(t, dict(zip(SENSORS, vals[i])))
        arrived[i] = True
        late = f["late_s"] > 0
        aligned = (t - T0) * 10 % 50 == 0
        if not (late or aligned or step % 97 == 0):
            continue
        checked += 1
        late_checked += late
        for W in CFG.windows_s:
            w = W / 60
            k_end = math.ceil(t / w) - 1
            a = math.floor((t - W) / w)
            tail_covers = dev.windows.floor <= k_end * w
            end = t if (not late or tail_covers) else (k_end + 1) * w
            whole_tile += late and not tail_covers
            tile = np.ceil(times / w) - 1
            sel = arrived & (tile >= a) & (times <= end)
            exact = arrived & (times > t - W) & (times <= t)
            st = dev.windows.stats(SENSORS[0], t, W)
            # counts: exactly the rule's set; within the bound of the exact window
            assert st.count == sel.sum()
            assert exact.sum() <= st.count <= (arrived & (times > t - W - w) & (times <= t + w)).sum()
            if (t - T0) * 10 % (w * 10) == 0 and not late:  # t a multiple of this window's tile width
                aligned_checked += 1
                assert st.count == exact.sum()  # exact where promised
            for j, s in enumerate(SENSORS):
                x = vals[sel, j]
                label = f"{int(W)}s"
                assert f[f"{s}_min_{label}"] == x.min() and f[f"{s}_max_{label}"] == x.max()
                assert f[f"{s}_mean_{label}"] == pytest.approx(x.mean(), rel=1e-12)
                assert f[f"{s}_std_{label}"] == pytest.approx(x.std(), rel=1e-8)
        # dt_s and deltas: from the exact tail (None only when the predecessor left it)
        prev = arrived & (times <= t)
        prev[i] = False
        if f["dt_s"] is not None:
            p = np.flatnonzero(prev)[-1] if not late else np.flatnonzero(prev & (times == times[prev].max()))[-1]
            assert f["dt_s"] == pytest.approx(t - times[p], abs=1e-9)
            assert f["temperature_delta"] == pytest.approx(vals[i, 0] - vals[p, 0], abs=1e-9)
        else:
            assert late or not prev.any()  # an in-order reading always knows its predecessor
    assert checked > 1_000 and late_checked > 500 and aligned_checked > 500 and whole_tile > 0
    assert dev.windows.tile_count() <= 2 * ((60 + 600 / 5 + 2) + (60 + 10 + 2))
    assert len(dev) <= 512


def test_hot_device_restore_gives_identical_outputs():
    times, vals, order = hot_stream(seed=2)
    a = DeviceFeatures(CFG)
    for i in order[:20_000]:
        a.update(times[i], dict(zip(SENSORS, vals[i])))
    snap = pickle.loads(pickle.dumps(a.snapshot()))
    b = DeviceFeatures(CFG)
    b.load(snap)
    for i in order[20_000:22_000]:
        v = dict(zip(SENSORS, vals[i]))
        assert a.update(times[i], v) == b.update(times[i], v)
    assert a.snapshot() == b.snapshot()


def test_hot_device_restore_under_a_new_configuration():
    times, vals, order = hot_stream(seed=3)
    a = DeviceFeatures(CFG)
    for i in range(20_000):  # in order
        a.update(times[i], dict(zip(SENSORS, vals[i])))
    new_cfg = SensorConfig(sensors=("temperature", "vibration"), windows_s=(600.0, 1800.0), lateness_s=60.0,
                           max_events=64)
    b = DeviceFeatures(new_cfg)
    b.load(a.snapshot())  # must not crash
    t = times[20_000]
    f = b.update(t, {"temperature": vals[20_000, 0], "vibration": 1.0})
    assert list(f) == feature_names(new_cfg)
    # 600 s: re-tiled from the 5 s tiles (10 s = 2 x 5 s): the documented rule, exactly
    w = 10.0
    sel = (np.ceil(times[:20_001] / w) - 1 >= math.floor((t - 600) / w))
    x = vals[:20_001][sel, 0]
    assert f["temperature_mean_600s"] == pytest.approx(x.mean(), rel=1e-12)
    assert f["temperature_max_600s"] == x.max()
    assert f["vibration_mean_600s"] == 1.0 and f["vibration_delta"] is None
    assert len(b) <= 64
