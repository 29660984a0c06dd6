"""Tests for models.anomaly: KeyDetector, ShardDetector, combine_scores."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from models.anomaly import KeyDetector, ShardDetector, combine_scores, z_to_score


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


def test_key_downward_spike_also_scores_high() -> None:
    kd = KeyDetector()
    for v in steady(random.Random(3), 300):
        kd.score_learn(v)
    assert kd.score_learn(20.0 - 10 * 0.5)[0] > 0.8


def test_key_follows_a_lasting_level_shift() -> None:
    rng = random.Random(4)
    kd = KeyDetector(alpha=0.02)
    for v in steady(rng, 300):
        kd.score_learn(v)
    shifted = [kd.score_learn(v)[0] for v in steady(rng, 600, mu=23.0)]
    assert shifted[0] > 0.5
    assert sum(shifted[-100:]) / 100 < 0.15


def test_key_warmup_flag() -> None:
    kd = KeyDetector(warmup=10)
    flags = [kd.score_learn(float(i % 3))[1] for i in range(15)]
    assert flags == [True] * 10 + [False] * 5
    # the very first value has no reference at all: a 0.0 that is flagged, never confident
    assert KeyDetector().score_learn(5.0) == (0.0, True)


def test_key_snapshot_restore_gives_identical_next_score() -> None:
    rng = random.Random(5)
    kd = KeyDetector(alpha=0.05, warmup=7, scale=3.0)
    for v in steady(rng, 123):
        kd.score_learn(v)
    snap = kd.snapshot()
    assert all(isinstance(v, (str, int, float)) for v in snap)  # plain data
    clone = KeyDetector.restore(pickle.loads(pickle.dumps(snap)))
    for v in [20.1, 25.0, None, float("nan"), 19.0]:
        assert clone.score_learn(v) == kd.score_learn(v)
    assert clone.snapshot() == kd.snapshot()


def test_key_restore_rejects_bad_snapshot() -> None:
    with pytest.raises(ValueError, match="KeyDetector.restore"):
        KeyDetector.restore(("nope", 1, 2))


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


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": 1.0}, {"warmup": 1}, {"scale": 0.0}])
def test_key_rejects_bad_config(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="KeyDetector"):
        KeyDetector(**kwargs)


def test_z_to_score() -> None:
    assert z_to_score(0.0) == 0.0
    assert z_to_score(4.0) == 0.5
    assert z_to_score(1e200) <= 1.0
    with pytest.raises(ValueError):
        z_to_score(float("nan"))


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
def test_shard_snapshot_restore_gives_identical_next_score(limits) -> None:
    rng = random.Random(9)
    sd = ShardDetector(FEATS, window_size=50, seed=3, limits=limits)
    for _ in range(200):
        sd.score_learn(normal_vec(rng))
    snap = sd.snapshot()
    assert isinstance(snap, bytes)
    clone = ShardDetector.restore(snap)
    for _ in range(60):  # crosses a window pivot too
        x = normal_vec(rng)
        assert clone.score_learn(x) == sd.score_learn(x)
    # pickle bytes may differ (memo layout), the restored state must not
    again = ShardDetector.restore(clone.snapshot())
    x = normal_vec(rng)
    assert again.score_learn(x) == sd.score_learn(x)


def test_shard_restore_rejects_non_bytes() -> None:
    with pytest.raises(TypeError, match="ShardDetector.restore"):
        ShardDetector.restore("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("limits", [None, LIMITS])
def test_shard_missing_values_are_imputed(limits) -> None:
    rng = random.Random(10)
    sd = ShardDetector(FEATS, window_size=40, limits=limits)
    # the very first reading misses a feature: the trees must still split on it
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


# -------------------------------------------------------------- combine_scores


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
