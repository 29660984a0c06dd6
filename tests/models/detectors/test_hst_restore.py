"""Tests for ShardState.update_many (fraud and IoT): equal to the shard detector's batch
path, update = update_many of one, restore (snapshot -> fresh -> identical next outputs),
snapshot size."""

from __future__ import annotations

import copy
import pickle

import msgspec
import pytest

from datagen.sensors import generate_readings
from datagen.transactions import stream_transactions
from features.records import ValidationError, shard_of
from features.sensors import parse_reading
from features.transactions import parse_transaction
from models.detectors import ShardDetector
from models.fraud import SHARD_FEATURES, CustomerState, FraudScoringConfig, shard_vector
from models.fraud import ShardState as FraudShardState
from models.iot import DeviceState, IoTScoringConfig
from models.iot import ShardState as IoTShardState

FCFG = FraudScoringConfig(shard_window=60, shard_calib_warmup=20, shards=2)
ICFG = IoTScoringConfig(warmup=5, shard_window=60, shard_calib_warmup=20, n_shards=2)
RIVER_HST_SNAPSHOT = 166 * 1024  # what one River HalfSpaceTrees pickled to


@pytest.fixture(scope="module")
def fraud_txs():
    """Transactions of shard 0 after CustomerState (the shard step's input)."""
    customers: dict[str, CustomerState] = {}
    out = []
    for e in stream_transactions(3000, seed=11):
        tx = parse_transaction(e, 0.0)
        if shard_of(tx.customer_id, FCFG.shards) == 0:
            out.append(customers.setdefault(tx.customer_id, CustomerState(FCFG)).update(tx))
    return out


@pytest.fixture(scope="module")
def iot_results():
    """DeviceResults of shard 1, some without any sensor for the shard detector."""
    devices: dict[str, DeviceState] = {}
    out = []
    for r in generate_readings(20, 4000, 5):
        try:
            reading = parse_reading(r, ICFG.features, 0.0)
        except ValidationError:
            continue
        res = devices.setdefault(reading.device, DeviceState(ICFG)).update(reading)
        if res.shard == 1:
            if len(out) % 37 == 5:  # as a reading whose sensors are all warming or missing
                res = msgspec.structs.replace(res, shard_input={})
            out.append(res)
    return out


def batches(items: list, sizes=(1, 7, 50, 1, 200, 3)):
    i, k = 0, 0
    while i < len(items):
        n = sizes[k % len(sizes)]
        yield items[i : i + n]
        i, k = i + n, k + 1


def fraud_fields(tx) -> tuple:
    return (tx.anomaly_scores, tx.anomaly_score, tx.anomaly_warming_up)


def iot_fields(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("scored_at", "latency_ms")}


# ------------------------------------------------------------------ fraud


def test_fraud_update_many_is_the_detectors_batch_path(fraud_txs) -> None:
    txs = copy.deepcopy(fraud_txs)
    state = FraudShardState(FCFG)
    twin = ShardDetector(SHARD_FEATURES, seed=FCFG.shard_seed, window_size=FCFG.shard_window,
                         calib_warmup=FCFG.shard_calib_warmup)
    warm_scores = 0
    for batch in batches(txs):
        expected = twin.score_learn_many([shard_vector(tx) for tx in batch])
        out = state.update_many(batch)
        assert out is batch and len(out) == len(batch)
        for tx, (score, warming) in zip(out, expected):
            assert tx.anomaly_scores["multivariate"] == (None if warming else round(score, 4))
            assert tx.anomaly_warming_up == (warming or tx.amount_warming)
            warm_scores += tx.anomaly_score is not None
    assert warm_scores > len(txs) // 2


def test_fraud_update_is_update_many_of_one(fraud_txs) -> None:
    a, b = FraudShardState(FCFG), FraudShardState(FCFG)
    for tx in fraud_txs[:400]:
        ta, tb = copy.deepcopy(tx), copy.deepcopy(tx)
        assert fraud_fields(a.update(ta)) == fraud_fields(b.update_many([tb])[0])
    assert a.snapshot() == b.snapshot()


def test_fraud_restore_gives_identical_next_outputs_and_small_snapshot(fraud_txs) -> None:
    txs = copy.deepcopy(fraud_txs)
    state = FraudShardState(FCFG)
    for batch in batches(txs[:500]):
        state.update_many(batch)
    snap = state.snapshot()
    assert len(pickle.dumps(snap)) < 32 * 1024 < RIVER_HST_SNAPSHOT
    fresh = FraudShardState(FCFG)
    assert fresh.load(pickle.loads(pickle.dumps(snap))) is True
    rest = txs[500:]
    for batch in batches(rest, (40, 1, 9)):
        got = [fraud_fields(t) for t in fresh.update_many(copy.deepcopy(batch))]
        assert got == [fraud_fields(t) for t in state.update_many(batch)]
    assert fresh.snapshot() == state.snapshot()
    other = FraudShardState(FraudScoringConfig(shard_window=61, shard_calib_warmup=20, shards=2))
    assert other.load(snap) is False  # another configuration: discarded


# ------------------------------------------------------------------ IoT


def test_iot_update_many_is_the_detectors_batch_path(iot_results) -> None:
    assert any(not r.shard_input for r in iot_results) and any(r.shard_input for r in iot_results)
    state = IoTShardState(ICFG)
    zc = ICFG.z_clip
    twin = ShardDetector(ICFG.sensors, seed=ICFG.seed + 1, window_size=ICFG.shard_window,
                         limits={s: (-zc, zc) for s in ICFG.sensors}, scale=ICFG.scale,
                         calib_warmup=ICFG.shard_calib_warmup)
    for batch in batches(iot_results):
        recs = state.update_many(batch)
        assert [r["id"] for r in recs] == [res.id for res in batch]
        expected = iter(twin.score_learn_many([r.shard_input for r in batch if r.shard_input]))
        for res, rec in zip(batch, recs):
            if res.shard_input:
                score, warming = next(expected)
                assert rec["scores"]["shard"] == round(score, 6)
                assert rec["warming_up"] is (warming or bool(res.warming))
            else:
                assert "shard" not in rec["scores"]  # the detector was not touched
    assert state.detector.n == twin.n == sum(1 for r in iot_results if r.shard_input)
    assert state.update_many([]) == []


def test_iot_update_is_update_many_of_one(iot_results) -> None:
    a, b = IoTShardState(ICFG), IoTShardState(ICFG)
    for res in iot_results[:400]:
        assert iot_fields(a.update(res)) == iot_fields(b.update_many([res])[0])
    assert a.snapshot() == b.snapshot()


def test_iot_restore_gives_identical_next_outputs_and_small_snapshot(iot_results) -> None:
    state = IoTShardState(ICFG)
    for batch in batches(iot_results[:600]):
        state.update_many(batch)
    snap = state.snapshot()
    assert len(pickle.dumps(snap)) < 32 * 1024 < RIVER_HST_SNAPSHOT
    fresh = IoTShardState(ICFG)
    fresh.load(pickle.loads(pickle.dumps(snap)))
    for batch in batches(iot_results[600:], (30, 1, 11)):
        assert [iot_fields(r) for r in fresh.update_many(batch)] == [iot_fields(r) for r in state.update_many(batch)]
    assert fresh.snapshot() == state.snapshot()
