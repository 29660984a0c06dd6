"""Tests for models.detectors (KeyDetector, StuckDetector, ShardDetector,
DriftMonitor: River-shaped, snapshots hold learned state only, load() into a
detector built from the current configuration) and models.status (combine_scores,
the warm-up rule anomaly_score, combined_risk, Thresholds)."""

from __future__ import annotations

import json
import math
import pickle
import random

import pytest

from models.detectors import DriftMonitor, KeyDetector, ShardDetector, StuckDetector, z_to_score
from models.status import Thresholds, anomaly_score, combine_scores, combined_risk


def steady(rng: random.Random, n: int, mu: float = 20.0, sigma: float = 0.5) -> list[float]:
    return [rng.gauss(mu, sigma) for _ in range(n)]


# ---------------------------------------------------------------- KeyDetector


def test_key_steady_stream_scores_low() -> None:
    kd = KeyDetector()
    scores = [kd.score_learn(v)[0] for v in steady(random.Random(1), 2000)]
    tail = sorted(scores[100:])
    assert sum(tail) / len(tail) < 0.1
    assert tail[int(0.99 * len(tail))] < 0.5


def test_key_spike_after_steady_scores_high_and_baseline_survives() -> None:
    rng = random.Random(2)
    kd = KeyDetector()
    for v in steady(rng, 500):
        kd.score_learn(v)
    spike, warming = kd.score_learn(20.0 + 10 * 0.5)  # 10 sigma
    assert not warming
    assert spike > 0.8
    after, _ = kd.score_learn(20.0)  # the spike barely moved the baseline
    assert after < 0.1
    assert spike > kd.score_learn(20.0 + 5 * 0.5)[0] > after  # monotone in |z|
    assert kd.score_learn(20.0 - 10 * 0.5)[0] > 0.8  # downward too


def test_key_follows_a_lasting_level_shift() -> None:
    rng = random.Random(4)
    kd = KeyDetector(alpha=0.02)
    for v in steady(rng, 300):
        kd.score_learn(v)
    shifted = [kd.score_learn(v)[0] for v in steady(rng, 600, mu=23.0)]
    assert shifted[0] > 0.5
    assert sum(shifted[-100:]) / 100 < 0.15


def test_key_river_interface() -> None:
    kd = KeyDetector(warmup=3)
    for v in (1.0, 2.0, 3.0, 2.0):
        kd.learn_one({"x": v})  # River passes dicts
    before = kd.snapshot()
    s = kd.score_one({"x": 9.0})
    assert kd.snapshot() == before  # score_one does not learn
    assert kd.score_learn(9.0) == (s, False)
    with pytest.raises(ValueError, match="one variable"):
        kd.score_one({"a": 1.0, "b": 2.0})


def test_key_warmup_flag() -> None:
    kd = KeyDetector(warmup=10)
    flags = [kd.score_learn(float(i % 3))[1] for i in range(15)]
    assert flags == [True] * 10 + [False] * 5
    assert KeyDetector().score_learn(5.0) == (0.0, True)  # no reference yet: a flagged 0.0


def test_key_snapshot_load_gives_identical_next_scores() -> None:
    rng = random.Random(5)
    kd = KeyDetector(alpha=0.05, warmup=7, scale=3.0)
    for v in steady(rng, 123):
        kd.score_learn(v)
    snap = kd.snapshot()
    assert all(isinstance(v, (int, float)) for v in snap) and len(snap) == 3  # state only
    clone = KeyDetector(alpha=0.05, warmup=7, scale=3.0)
    clone.load(json.loads(json.dumps(snap)))
    for v in [20.1, 25.0, None, float("nan"), 19.0]:
        assert clone.score_learn(v) == kd.score_learn(v)
    assert clone.snapshot() == kd.snapshot()


def test_key_load_keeps_the_current_configuration() -> None:
    kd = KeyDetector(alpha=0.02, scale=4.0)
    for v in steady(random.Random(6), 100):
        kd.score_learn(v)
    new = KeyDetector(alpha=0.1, scale=2.0)
    new.load(kd.snapshot())
    assert (new.alpha, new.scale, new.n) == (0.1, 2.0, kd.n)
    assert new.score_one(22.0) > kd.score_one(22.0)  # the new, smaller scale


def test_key_load_rejects_bad_snapshot() -> None:
    with pytest.raises(ValueError, match="KeyDetector.load"):
        KeyDetector().load(("nope", 1))


def test_key_missing_values_are_skipped() -> None:
    kd = KeyDetector(warmup=3)
    for v in (1.0, 2.0, 3.0, 2.0):
        kd.score_learn(v)
    before = kd.snapshot()
    assert kd.score_learn(None) == (0.0, False)
    assert kd.score_learn(float("nan")) == (0.0, False)
    assert kd.snapshot() == before
    with pytest.raises(ValueError, match="infinite"):
        kd.score_learn(float("inf"))


def test_key_scores_stay_in_bounds_on_wild_input() -> None:
    rng = random.Random(6)
    kd = KeyDetector(warmup=2)
    for _ in range(3000):
        v = rng.choice([rng.gauss(0, 1), rng.uniform(-1e12, 1e12), 0.0, 1e-300])
        s, _ = kd.score_learn(v)
        assert 0.0 <= s <= 1.0
    const = KeyDetector(warmup=2)
    for _ in range(10):
        assert const.score_learn(3.0)[0] == 0.0  # constant stream: no deviation
    assert 0.0 <= const.score_learn(3.0001)[0] <= 1.0


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": 1.0}, {"warmup": 1}, {"scale": 0.0}, {"clip": 0.0}])
def test_key_rejects_bad_config(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="KeyDetector"):
        KeyDetector(**kwargs)


def test_z_to_score() -> None:
    assert z_to_score(0.0) == 0.0
    assert z_to_score(4.0) == 0.5
    assert z_to_score(1e200) <= 1.0
    with pytest.raises(ValueError):
        z_to_score(float("nan"))


# -------------------------------------------------------------- StuckDetector


def test_stuck_detector_noisy_low_stuck_high() -> None:
    rng = random.Random(3)
    sd = StuckDetector()
    noisy = [sd.score_learn(round(rng.gauss(20, 0.2), 2))[0] for _ in range(500)]
    assert max(noisy[50:]) < 0.35  # occasional exact repeats happen at this resolution
    run = [sd.score_learn(20.11)[0] for _ in range(15)]
    assert run[0] < 0.35
    assert all(b >= a for a, b in zip(run[1:], run[2:])) and run[-1] > 0.8
    assert sd.score_learn(None) == (0.0, False)
    clone = StuckDetector()
    clone.load(json.loads(json.dumps(sd.snapshot())))
    assert clone.score_learn(20.11) == sd.score_learn(20.11)
    with pytest.raises(ValueError, match="StuckDetector.load"):
        StuckDetector().load((1,))


def test_stuck_detector_warmup_and_config() -> None:
    sd = StuckDetector(warmup=3)
    assert [sd.score_learn(float(i))[1] for i in range(5)] == [True, True, True, True, False]
    with pytest.raises(ValueError, match="beta"):
        StuckDetector(beta=0.0)


# -------------------------------------------------------------- DriftMonitor


def test_drift_monitor_load_and_detection() -> None:
    rng = random.Random(4)
    stream = [abs(rng.gauss(0.05, 0.03)) for _ in range(300)] + [0.6 + rng.random() * 0.2 for _ in range(100)]
    a, fired = DriftMonitor(threshold=5.0), []
    for i, s in enumerate(stream[:200]):
        if a.update(s):
            fired.append(i)
    b = DriftMonitor(threshold=5.0)
    b.load(json.loads(json.dumps(a.snapshot())))
    for i, s in enumerate(stream[200:], 200):
        fa, fb = a.update(s), b.update(s)
        assert fa == fb
        if fb:
            fired.append(i)
    assert fired and all(i >= 300 for i in fired) and fired[0] < 320
    with pytest.raises(ValueError, match="DriftMonitor.load"):
        DriftMonitor().load((1, 2))


# -------------------------------------------------------------- ShardDetector

FEATS = ("t", "h", "p")
LIMITS = {f: (-8.0, 8.0) for f in FEATS}


def normal_vec(rng: random.Random) -> dict[str, float]:
    return {f: rng.gauss(0.0, 1.0) for f in FEATS}


@pytest.mark.parametrize("limits", [None, LIMITS])
def test_shard_warmup_flag_and_bounds(limits) -> None:
    rng = random.Random(7)
    sd = ShardDetector(FEATS, window_size=30, calib_warmup=10, limits=limits)
    out = [sd.score_learn(normal_vec(rng)) for _ in range(100)]
    assert all(o == (0.0, True) for o in out[:30])  # HST's first window scores 0: flagged
    assert all(o[1] for o in out[30:40]) and not any(o[1] for o in out[40:])
    assert all(0.0 <= s <= 1.0 for s, _ in out)


def test_shard_steady_low_spike_high() -> None:
    rng = random.Random(8)
    sd = ShardDetector(FEATS, window_size=100, limits=LIMITS)
    scores = [sd.score_learn(normal_vec(rng))[0] for _ in range(1500)]
    steady_scores = sorted(scores[400:])
    assert sum(steady_scores) / len(steady_scores) < 0.1
    spike, warming = sd.score_learn({"t": 7.0, "h": 0.0, "p": 0.0})
    assert not warming
    assert spike > steady_scores[int(0.99 * len(steady_scores))]
    assert spike > 0.3


@pytest.mark.parametrize("limits", [None, LIMITS])
def test_shard_snapshot_load_gives_identical_next_scores(limits) -> None:
    rng = random.Random(9)
    sd = ShardDetector(FEATS, window_size=50, seed=3, limits=limits)
    for _ in range(200):
        sd.score_learn(normal_vec(rng))
    snap = sd.snapshot()
    assert isinstance(snap, bytes)
    clone = ShardDetector(FEATS, window_size=50, seed=3, limits=limits)
    assert clone.load(snap) is True
    for _ in range(60):  # crosses a window pivot too
        x = normal_vec(rng)
        assert clone.score_learn(x) == sd.score_learn(x)
    again = ShardDetector(FEATS, window_size=50, seed=3, limits=limits)
    again.load(clone.snapshot())
    x = normal_vec(rng)
    assert again.score_learn(x) == sd.score_learn(x)


def test_shard_load_discards_a_snapshot_of_another_configuration() -> None:
    rng = random.Random(12)
    sd = ShardDetector(FEATS, window_size=50, limits=LIMITS)
    for _ in range(120):
        sd.score_learn(normal_vec(rng))
    other = ShardDetector(FEATS, window_size=60, limits=LIMITS)
    assert other.load(sd.snapshot()) is False
    assert other.n == 0 and other.warming_up and other.window_size == 60
    with pytest.raises(TypeError, match="ShardDetector.load"):
        other.load("not bytes")  # type: ignore[arg-type]


def test_shard_score_one_does_not_learn() -> None:
    rng = random.Random(13)
    sd = ShardDetector(FEATS, window_size=20, calib_warmup=5, limits=LIMITS)
    for _ in range(40):
        sd.learn_one(normal_vec(rng))
    n = sd.n
    x = normal_vec(rng)
    assert sd.score_one(x) == sd.score_one(x) and sd.n == n


@pytest.mark.parametrize("limits", [None, LIMITS])
def test_shard_missing_values_are_imputed(limits) -> None:
    rng = random.Random(10)
    sd = ShardDetector(FEATS, window_size=40, limits=limits)
    assert sd.score_learn({"t": None, "h": 0.1, "p": float("nan")}) == (0.0, True)
    gaps = []
    for i in range(600):
        x: dict = normal_vec(rng)
        if i % 7 == 0:
            x["h"] = None
        if i % 11 == 0:
            del x["p"]
        if i % 13 == 0:
            x["t"] = float("nan")
        s, _ = sd.score_learn(x)
        assert 0.0 <= s <= 1.0
        if i > 300 and (i % 7 == 0):
            gaps.append(s)
    assert sum(gaps) / len(gaps) < 0.2  # a gap alone does not look anomalous
    assert sd.score_learn({})[0] <= 1.0  # all missing
    with pytest.raises(ValueError, match="infinite"):
        sd.score_learn({"t": float("inf")})


def test_shard_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="features"):
        ShardDetector([])
    with pytest.raises(ValueError, match="limits"):
        ShardDetector(["a", "b"], limits={"a": (0.0, 1.0)})


# -------------------------------------------------------------- models.status


def test_combine_scores_rules_and_bounds() -> None:
    assert combine_scores({"a": 0.5, "b": 0.5}) == 0.75
    assert combine_scores({"a": 0.9, "b": 0.2}, method="max") == 0.9
    assert combine_scores({"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 0.5}) == 0.75
    assert combine_scores({}) == 0.0
    assert combine_scores({"a": None, "b": math.nan}) == 0.0
    assert combine_scores({"a": 0.3, "shard": 0.9}, warming=["shard"]) == pytest.approx(0.3)
    rng = random.Random(11)
    for _ in range(500):
        scores = {str(i): rng.random() for i in range(rng.randint(1, 8))}
        for method in ("noisy_or", "max", "mean"):
            c = combine_scores(scores, method=method)
            assert 0.0 <= c <= 1.0
            assert c >= max(scores.values()) - 1e-12 or method == "mean"


def test_combine_scores_errors_name_the_culprit() -> None:
    with pytest.raises(ValueError, match="'b'"):
        combine_scores({"a": 0.1, "b": 1.5})
    with pytest.raises(ValueError, match="weight 'a'"):
        combine_scores({"a": 0.1}, {"a": 2.0})
    with pytest.raises(ValueError, match="unknown method"):
        combine_scores({"a": 0.1}, method="median")


def test_anomaly_score_is_none_only_when_no_detector_is_warm() -> None:
    scores = {"a": 0.9, "b": 0.3, "shard": 0.8}
    assert anomaly_score(scores, warming=["a", "b", "shard"]) is None
    assert anomaly_score({}, warming=[]) is None
    assert anomaly_score({"a": None, "b": math.nan}, warming=[]) is None
    assert anomaly_score(scores, warming=["a", "shard"]) == pytest.approx(0.3)
    assert anomaly_score(scores, warming=[], weights={"shard": 0.5}, method="max") == 0.9
    assert anomaly_score({"a": 0.0}, warming=[]) == 0.0  # a warm 0.0 is a score, not None


def test_combined_risk_and_thresholds() -> None:
    assert combined_risk(0.7, None, 0.4) == 0.7  # no anomaly score adds nothing
    assert combined_risk(0.7, 0.9, 0.4) == pytest.approx(1 - 0.3 * (1 - 0.36))
    t = Thresholds(critical=0.8, warning=0.5)
    assert [t.status(s) for s in (0.81, 0.8, 0.51, 0.5, 0.0)] == ["CRITICAL", "WARNING", "WARNING", "NORMAL", "NORMAL"]
    with pytest.raises(ValueError, match="thresholds"):
        Thresholds(critical=0.4, warning=0.5)
    assert pickle.loads(pickle.dumps(t)) == t
