"""Tests for models.detectors.hst (numpy Half-Space Trees) and ShardDetector's batch path:
equal to River's HalfSpaceTrees one by one, ROC AUC within 0.01 of River's on the
project's generated streams in batches, window swaps inside batches, batch = per-event
on batches of one, micro-batch semantics, snapshots."""

from __future__ import annotations

import copy
import pickle
import random

import numpy as np
import msgspec
import pytest
from river import anomaly, preprocessing
from sklearn.metrics import roc_auc_score

from datagen.sensors import generate_readings
from datagen.transactions import stream_transactions
from features.records import ValidationError
from features.sensors import parse_reading
from features.transactions import parse_transaction
from models.detectors import ShardDetector
from models.detectors.hst import HalfSpaceTrees
from models.fraud import SHARD_FEATURES, CustomerState, FraudScoringConfig, shard_vector
from models.iot import DeviceState, IoTScoringConfig

FEATS = ("a", "b", "c")


def stream(n: int, seed: int, gaps: bool = True) -> list[dict]:
    """[0, 1] dicts with outliers and (after the first) some absent keys."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = {f: min(max(rng.gauss(0.5, 0.12), 0.0), 1.0) for f in FEATS}
        if i % 41 == 7:
            x["a"] = rng.choice([0.02, 0.98])
        if gaps and i > 0 and i % 29 == 3:
            del x["b"]
        out.append(x)
    return out


def matrix(rows: list[dict], feats=FEATS) -> np.ndarray:
    return np.array([[x.get(f, np.nan) for f in feats] for x in rows], dtype=float)


def river_progressive(rows: list[dict], **kw) -> list[float]:
    r = anomaly.HalfSpaceTrees(**kw)
    out = []
    for x in rows:
        out.append(float(r.score_one(x)))
        r.learn_one(x)
    return out


def batched(hst: HalfSpaceTrees, M: np.ndarray, size: int) -> list[float]:
    out: list[float] = []
    for i in range(0, len(M), size):
        out += hst.score_learn_many(M[i : i + size]).tolist()
    return out


# ------------------------------------------------------------------ HalfSpaceTrees vs River


@pytest.mark.parametrize("kw", [dict(seed=1), dict(seed=5, n_trees=4, height=5, window_size=40),
                                dict(seed=2, window_size=30, limits={"a": (-1.0, 2.0), "c": (0.0, 4.0)})])
def test_hst_one_by_one_equals_river_exactly(kw) -> None:
    rows = stream(1500, 3)
    expected = river_progressive(rows, **kw)
    ours = HalfSpaceTrees(**kw)  # trees built on the first dict, as River does
    got = []
    for x in rows:
        got.append(ours.score_one(x))
        ours.learn_one(x)
    assert got == expected  # equal, not close: same trees, same masses, same normalisation
    assert max(got) > 0.5 and got[: kw.get("window_size", 250)] == [0.0] * kw.get("window_size", 250)


@pytest.mark.parametrize("size", [2, 5, 17, 40, 333, 1000])
def test_hst_batches_equal_river_micro_batches(size) -> None:
    """score_many then learn_many of a batch == River scoring the batch, then learning it."""
    rows = stream(2100, 4)
    kw = dict(seed=9, n_trees=6, height=6, window_size=40)
    river = anomaly.HalfSpaceTrees(**kw)
    ours = HalfSpaceTrees(**kw, features=FEATS)
    M = matrix(rows)
    for i in range(0, len(rows), size):
        chunk = rows[i : i + size]
        expected = [float(river.score_one(x)) for x in chunk]
        for x in chunk:
            river.learn_one(x)
        assert ours.score_many(M[i : i + size]).tolist() == expected
        ours.learn_many(M[i : i + size])
    # the same masses as River's trees (swaps at the same counts), node by node
    for t, tree in enumerate(river.trees):
        for node, n in zip(_heap_order(tree), range(ours.n_nodes)):
            assert (node.l_mass, node.r_mass) == (ours.l_mass[t, n], ours.r_mass[t, n])


def _heap_order(tree):
    level, out = [tree], []
    while level:
        out += level
        level = [c for node in level for c in getattr(node, "children", ())]
    return out


def test_hst_score_learn_many_equals_score_then_learn_and_swaps_inside_batches() -> None:
    rows = stream(3000, 6, gaps=False)
    M = matrix(rows)
    a = HalfSpaceTrees(window_size=70, seed=3, features=FEATS)
    b = HalfSpaceTrees(window_size=70, seed=3, features=FEATS)
    c = HalfSpaceTrees(window_size=70, seed=3, features=FEATS)
    for i in range(0, 3000, 500):  # 500 rows = 7 swaps and a bit: split at the swap points
        chunk = M[i : i + 500]
        assert a.score_learn_many(chunk).tolist() == b.score_many(chunk).tolist()
        b.learn_many(chunk)
        for row in rows[i : i + 500]:
            c.learn_one(row)
        for other in (b, c):
            assert np.array_equal(a.l_mass, other.l_mass) and np.array_equal(a.r_mass, other.r_mass)
            assert a.counter == other.counter
    assert a.counter == 3000 % 70


def test_hst_snapshot_is_small_and_restores() -> None:
    rows = stream(700, 8)
    hst = HalfSpaceTrees(seed=4, features=FEATS)
    hst.learn_many(matrix(rows[:600]))
    snap = hst.snapshot()
    assert len(pickle.dumps(snap)) < 24 * 1024  # two uint16 arrays of 10 x 511, names, a counter
    fresh = HalfSpaceTrees(seed=4, features=FEATS)
    fresh.load(snap)
    M = matrix(rows[600:])
    assert fresh.score_learn_many(M).tolist() == hst.score_learn_many(M).tolist()
    assert pickle.loads(pickle.dumps(hst)).score_many(M).tolist() == hst.score_many(M).tolist()
    with pytest.raises(ValueError, match="trees differ"):
        HalfSpaceTrees(seed=5, features=FEATS).load(snap)
    with pytest.raises(ValueError, match="shape"):
        HalfSpaceTrees(seed=4, height=3, features=FEATS).load(snap)


# ------------------------------------------------------------------ ROC AUC on the project's streams


@pytest.fixture(scope="module")
def iot_stream() -> tuple[list[dict], list[int], IoTScoringConfig]:
    """The IoT shard detector's inputs (per-device z-scores) and ``is_anomaly``."""
    cfg = IoTScoringConfig()
    devices: dict[str, DeviceState] = {}
    xs, ys = [], []
    for r in generate_readings(100, 20_000, 7):
        try:
            reading = parse_reading(r, cfg.features, 0.0)
        except ValidationError:
            continue
        res = devices.setdefault(reading.device, DeviceState(cfg)).update(reading)
        if res.shard_input:
            xs.append(res.shard_input)
            ys.append(r["is_anomaly"])
    return xs, ys, cfg


@pytest.fixture(scope="module")
def fraud_stream() -> tuple[list[dict], list[int]]:
    """The fraud shard detector's inputs (:func:`shard_vector`) and ``is_fraud``."""
    cfg = FraudScoringConfig()
    customers: dict[str, CustomerState] = {}
    xs, ys = [], []
    for e in stream_transactions(20_000, seed=3):
        tx = parse_transaction(e, 0.0)
        xs.append(shard_vector(customers.setdefault(tx.customer_id, CustomerState(cfg)).update(tx)))
        ys.append(e["is_fraud"])
    return xs, ys


def auc(y, s, skip: int = 0) -> float:
    return float(roc_auc_score(y[skip:], s[skip:]))


def test_auc_iot_numpy_hst_vs_river(iot_stream) -> None:
    xs, ys, cfg = iot_stream
    assert sum(ys) > 300
    zc = cfg.z_clip
    limits = {s: (-zc, zc) for s in cfg.sensors}
    clipped = [{k: min(max(v, -zc), zc) for k, v in x.items()} for x in xs]  # as ShardDetector clips
    river = river_progressive(clipped, seed=42, limits=limits)
    M = matrix(clipped, cfg.sensors)
    assert np.isnan(M).any()  # readings with missing sensors: River's missing-value rule
    base = auc(ys, river)
    assert base > 0.55
    assert batched(HalfSpaceTrees(seed=42, limits=limits, features=cfg.sensors), M, 1) == river
    for size in (100, 1000):
        got = auc(ys, batched(HalfSpaceTrees(seed=42, limits=limits, features=cfg.sensors), M, size))
        assert abs(got - base) <= 0.01, (size, got, base)


def test_auc_fraud_numpy_hst_vs_river(fraud_stream) -> None:
    xs, ys = fraud_stream
    assert sum(ys) > 200
    # same scaling for both: River's MinMaxScaler, learned before transforming (no gap:
    # absent gaps / distances count 0, so River's trees get every feature from the first dict)
    scaler = preprocessing.MinMaxScaler()
    scaled = []
    for x in xs:
        x = {k: 0.0 if v is None else v for k, v in x.items()}
        scaler.learn_one(x)
        scaled.append(scaler.transform_one(x))
    river = river_progressive(scaled, seed=42)
    base = auc(ys, river)
    assert base > 0.8
    M = matrix(scaled, SHARD_FEATURES)
    assert batched(HalfSpaceTrees(seed=42, features=SHARD_FEATURES), M, 1) == river
    assert abs(auc(ys, batched(HalfSpaceTrees(seed=42, features=SHARD_FEATURES), M, 100)) - base) <= 0.01
    # batches of 1,000 (4 windows): the first 1,000 readings score 0 instead of 250, so
    # compare once both are warm
    got = batched(HalfSpaceTrees(seed=42, features=SHARD_FEATURES), M, 1000)
    assert abs(auc(ys, got, 2000) - auc(ys, river, 2000)) <= 0.01


def test_auc_shard_detector_batches_vs_per_event(fraud_stream, iot_stream) -> None:
    """The whole detector (scaling, imputation, calibration) in batches keeps its quality."""
    xs, ys, cfg = iot_stream
    fx, fy = fraud_stream
    cases = [(fx, fy, SHARD_FEATURES, None), (xs, ys, cfg.sensors, {s: (-8.0, 8.0) for s in cfg.sensors})]
    for rows, y, feats, limits in cases:
        one = ShardDetector(feats, limits=limits)
        per_event = [one.score_learn(x)[0] for x in rows]
        for size in (100, 1000):
            sd = ShardDetector(feats, limits=limits)
            got = [s for i in range(0, len(rows), size) for s, _ in sd.score_learn_many(rows[i : i + size])]
            assert abs(auc(y, got, 3000) - auc(y, per_event, 3000)) <= 0.01, (feats, size)


# ------------------------------------------------------------------ ShardDetector batch path

LIMITS = {f: (-4.0, 4.0) for f in FEATS}


def gappy(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []
    for i in range(n):
        x: dict = {f: rng.gauss(0.0, 1.0) for f in FEATS}
        if i % 7 == 0:
            x["b"] = None
        if i % 11 == 0:
            del x["c"]
        if i % 13 == 0:
            x["a"] = float("nan")
        if i % 97 == 0:
            x["a"] = 9.0
        out.append(x)
    return out


@pytest.mark.parametrize("limits", [None, LIMITS])
@pytest.mark.parametrize("calibrate", [True, False])
def test_shard_numpy_path_on_batches_of_one_equals_score_learn(limits, calibrate) -> None:
    """score_learn (plain Python) == the numpy batch path with batches of 1: outputs and state."""
    a = ShardDetector(FEATS, window_size=40, calib_warmup=10, limits=limits, calibrate=calibrate)
    b = ShardDetector(FEATS, window_size=40, calib_warmup=10, limits=limits, calibrate=calibrate)
    for x in gappy(400, 1):
        scores, warming = b._score_learn_np(b._matrix([x]))
        assert [(s, warming) for s in scores.tolist()] == [a.score_learn(x)]
        assert b.last_raw_score == a.last_raw_score
    assert (a._min, a._max, a._mean, a._count, a.n) == (b._min, b._max, b._mean, b._count, b.n)
    assert a.snapshot() == b.snapshot()
    assert a.score_learn_many([{"a": 1.0}]) == [b.score_learn({"a": 1.0})]


def test_shard_batch_is_a_micro_batch() -> None:
    """Scores of a batch = scores against the state before it, whatever the order inside it."""
    rows = gappy(900, 2)
    sd = ShardDetector(FEATS, window_size=50, calib_warmup=20, limits=LIMITS)
    sd.score_learn_many(rows[:300])
    sd.score_learn_many(rows[300:400])
    before = copy.deepcopy(sd)
    batch = rows[400:450]  # one micro-batch: at most window_size readings
    out = sd.score_learn_many(batch)
    assert [s for s, _ in out] == [before.score_one(x) for x in batch]  # fixed limits: no scaler to learn
    assert all(w is False for _, w in out)
    shuffled = copy.deepcopy(before)
    order = list(range(len(batch)))
    random.Random(3).shuffle(order)
    out2 = shuffled.score_learn_many([batch[i] for i in order])
    assert [out2[order.index(i)] for i in range(len(batch))] == out
    # without gaps (imputed with the means before the batch), learning a batch == learning
    # its readings one by one: trees, swaps at the same counts, means up to rounding
    full = [{f: rng_x for f, rng_x in x.items() if rng_x is not None and rng_x == rng_x} for x in rows[700:900]]
    full = [x for x in full if len(x) == len(FEATS)]
    one = copy.deepcopy(sd)
    sd.score_learn_many(full)
    for x in full:
        one.learn_one(x)
    assert np.array_equal(one.hst.l_mass, sd.hst.l_mass) and np.array_equal(one.hst.r_mass, sd.hst.r_mass)
    assert one.n == sd.n and one.hst.counter == sd.hst.counter
    assert np.allclose(one._mean, sd._mean, rtol=0, atol=1e-12) and one._count == sd._count


def test_shard_batch_warmup_flags_follow_the_state_before_the_batch() -> None:
    sd = ShardDetector(FEATS, window_size=50, calib_warmup=20)
    rows = gappy(200, 4)
    first = sd.score_learn_many(rows[:50])  # the first window: warming
    assert first == [(0.0, True)] * 50
    second = sd.score_learn_many(rows[50:70])  # trees ready, calibrator not: warming, scores 0
    assert second == [(0.0, True)] * 20 and sd.calibrator.n == 20
    third = sd.score_learn_many(rows[70:200])  # micro-batches of 50, 50, 30
    assert not any(w for _, w in third) and all(0.0 <= s <= 1.0 for s, _ in third)
    # a batch longer than the window is taken in window-sized micro-batches
    long = ShardDetector(FEATS, window_size=50, calib_warmup=20)
    chunked = ShardDetector(FEATS, window_size=50, calib_warmup=20)
    assert long.score_learn_many(rows[:200]) == [o for i in range(0, 200, 50)
                                                 for o in chunked.score_learn_many(rows[i:i + 50])]
    assert sd.score_learn_many([]) == []
    with pytest.raises(ValueError, match="infinite"):
        sd.score_learn_many([{"a": 1.0}, {"b": float("inf")}])
    with pytest.raises(TypeError, match="mapping"):
        sd.score_learn_many([{"a": 1.0}, [1.0]])  # type: ignore[list-item]
    assert sd.n == 200  # the refused batches changed nothing


def test_shard_snapshot_size_and_old_format_discarded() -> None:
    sd = ShardDetector(SHARD_FEATURES)
    rng = random.Random(5)
    sd.score_learn_many([{f: rng.random() for f in SHARD_FEATURES} for _ in range(1000)])
    snap = sd.snapshot()
    assert len(snap) < 32 * 1024  # River's pickled ensemble was ~166 KiB
    # a snapshot of the River-object format (another fingerprint) is discarded, not misread
    old = pickle.dumps((("features",), None, None, {}, {}, 0, None, 0.0))
    fresh = ShardDetector(SHARD_FEATURES)
    assert fresh.load(old) is False and fresh.n == 0
    # same settings, other trees (e.g. a changed random generator): discarded too
    state = msgspec.msgpack.decode(snap)
    state[1] = dict(state[1], digest="0" * 16)
    assert fresh.load(msgspec.msgpack.encode(state)) is False and fresh.n == 0
    assert fresh.load(snap) is True and fresh.n == 1000
