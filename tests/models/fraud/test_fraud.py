"""Model registry, the fraud model, the scoring steps and their restore, the scorer and
pipeline, status thresholds, the trained manifest, point-in-time joins, train/serve parity."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import random
import shutil
from pathlib import Path
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from datagen.transactions import HISTORY_START, stream_transactions
from features.records import DeadLetter, shard_of
from features.store import MERCHANT_DEFAULTS, PROFILE_DEFAULTS, CachedLookup, fraud_lookups
from features.transactions import Transaction, parse_transaction
from models.fraud import (
    MODEL_FEATURES,
    MODEL_NAME,
    CustomerState,
    FraudModel,
    FraudPipeline,
    FraudScorer,
    FraudScoringConfig,
    ShardState,
    feature_matrix,
)
from models.registry import IntegrityError, Registry, RegistryError
from models.status import CRITICAL, NORMAL, WARNING, Thresholds, combined_risk
from models.train import build_training_rows, load_history, point_in_time_features

# --- Registry -------------------------------------------------------------------------


@pytest.fixture
def registry_copy(fraud_env, tmp_path):
    dest = tmp_path / "registry"
    shutil.copytree(fraud_env.registry, dest)
    return dest


def model_dir(root: Path, manifest: dict) -> Path:
    return root / MODEL_NAME / str(manifest["version"])


def test_tampered_artifact_is_refused(fraud_env, registry_copy):
    # the untouched copy loads
    FraudModel.load(f"{MODEL_NAME}@production", registry_copy)
    path = model_dir(registry_copy, fraud_env.manifest) / "model.txt"
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    data[i] ^= 0x01  # one byte, one bit
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as exc:
        Registry(registry_copy).load(f"{MODEL_NAME}@production")
    assert "sha256" in str(exc.value) and str(path) in str(exc.value)
    with pytest.raises(IntegrityError):
        FraudModel.load(f"{MODEL_NAME}/{fraud_env.manifest['version']}", registry_copy)


def _edit_manifest(registry_copy, manifest, names):
    path = model_dir(registry_copy, manifest) / "manifest.json"
    m = json.loads(path.read_text())
    m["feature_names"] = names
    path.write_text(json.dumps(m))


def test_model_with_other_feature_list_is_refused(fraud_env, registry_copy):
    names = list(MODEL_FEATURES)
    names[0] = "seconds_since_previous"  # renamed
    _edit_manifest(registry_copy, fraud_env.manifest, names)
    with pytest.raises(RegistryError) as exc:
        FraudModel.load(f"{MODEL_NAME}@production", registry_copy)
    msg = str(exc.value)
    assert not isinstance(exc.value, IntegrityError)  # the artifact itself is intact
    assert "time_since_last_transaction" in msg and "seconds_since_previous" in msg
    assert str(registry_copy) in msg


def test_model_with_reordered_features_is_refused(fraud_env, registry_copy):
    names = list(MODEL_FEATURES)
    names[1], names[2] = names[2], names[1]
    _edit_manifest(registry_copy, fraud_env.manifest, names)
    with pytest.raises(RegistryError, match="another order"):
        FraudModel.load(f"{MODEL_NAME}@production", registry_copy)


def test_manifest_feature_count_must_match_booster(fraud_env, registry_copy):
    names = list(MODEL_FEATURES)[:-1]
    _edit_manifest(registry_copy, fraud_env.manifest, names)
    n = len(MODEL_FEATURES)
    with pytest.raises(RegistryError, match=f"booster has {n} features, manifest lists {n - 1}"):
        FraudModel.load(f"{MODEL_NAME}@production", registry_copy, expected_features=names)


# --- the trained model on real rows ---------------------------------------------------


@pytest.fixture(scope="module")
def model(fraud_env) -> FraudModel:
    return FraudModel.load(f"{MODEL_NAME}@production", fraud_env.registry)


@pytest.fixture(scope="module")
def real_rows(fraud_env) -> list[dict]:
    """200 training rows (all frauds in the sample first) built the way training builds them."""
    txs = load_history(fraud_env.history)
    rows = build_training_rows(txs, point_in_time_features(txs, fraud_env.repo))
    fraud = [r for r in rows if r["is_fraud"]][:60]
    legit = [r for r in rows if not r["is_fraud"]]
    legit = legit[:: len(legit) // 140][:140]
    assert len(fraud) == 60 and len(fraud) + len(legit) == 200
    return fraud + legit


def test_model_version(model, fraud_env):
    assert model.version == f"{MODEL_NAME}/{fraud_env.manifest['version']}"
    assert model.feature_names == MODEL_FEATURES


def test_vectorised_scoring_equals_single_row_scoring(model, real_rows):
    X = feature_matrix(real_rows)
    assert X.shape == (200, len(MODEL_FEATURES))
    assert np.isnan(X).any() and not np.isnan(X).all(axis=0).any()
    batch = model.predict(X)
    single = np.array([model.predict(X[i : i + 1])[0] for i in range(len(X))])
    one_by_one = np.array([model.predict(feature_matrix([r]))[0] for r in real_rows])
    assert batch.shape == (200,)
    assert np.allclose(batch, single)
    assert np.allclose(batch, one_by_one)
    assert ((batch >= 0) & (batch <= 1)).all()
    # the model separates the sample: frauds score higher on average
    y = np.array([r["is_fraud"] for r in real_rows])
    assert batch[y == 1].mean() > batch[y == 0].mean() + 0.3


def test_predict_shape_checks(model):
    assert model.predict(np.empty((0, len(MODEL_FEATURES)))).shape == (0,)
    with pytest.raises(ValueError, match=f"expected a \\(n, {len(MODEL_FEATURES)}\\) matrix"):
        model.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError):
        model.predict(np.zeros(len(MODEL_FEATURES)))


def test_explain_returns_positive_contributions_naming_model_features(model, real_rows):
    X = feature_matrix(real_rows)
    p = model.predict(X)
    explained = model.explain(X)
    assert len(explained) == len(X)
    for top in explained:
        assert len(top) <= 3
        names = [n for n, _ in top]
        assert len(set(names)) == len(names)
        assert all(n in MODEL_FEATURES for n in names)
        values = [v for _, v in top]
        assert all(v > 0 for v in values)
        assert values == sorted(values, reverse=True)
    riskiest = int(np.argmax(p))
    assert p[riskiest] > 0.5 and len(explained[riskiest]) >= 1
    # a larger ``top`` extends the same ranking
    five = model.explain(X[riskiest : riskiest + 1], top=5)[0]
    assert five[: len(explained[riskiest])] == explained[riskiest]
    assert model.explain(X[:0]) == []
    # asked for every feature, only the ones pushing the score up come back
    everything = model.explain(X, top=len(MODEL_FEATURES))
    assert all(v > 0 for top in everything for _, v in top)
    safest = int(np.argmin(p))
    assert len(everything[safest]) < len(MODEL_FEATURES)
    assert everything[riskiest][:3] == explained[riskiest]


# --- Thresholds and combined risk -------------------------------------------------------


def test_status_boundaries():
    t = Thresholds(critical=0.8, warning=0.5)
    assert t.status(0.8) == WARNING
    assert t.status(0.8000001) == CRITICAL
    assert t.status(1.0) == CRITICAL
    assert t.status(0.5) == NORMAL
    assert t.status(0.5000001) == WARNING
    assert t.status(0.0) == NORMAL
    assert Thresholds() == t


def test_thresholds_must_be_ordered():
    for warning, critical in [(0.9, 0.8), (-0.1, 0.5), (0.5, 1.1)]:
        with pytest.raises(ValueError, match="warning"):
            Thresholds(critical=critical, warning=warning)
    equal = Thresholds(critical=0.7, warning=0.7)
    assert [equal.status(s) for s in (0.7, 0.71)] == [NORMAL, CRITICAL]


def test_combined_risk():
    grid = np.linspace(0, 1, 11)
    for f in grid:
        assert combined_risk(f, None, 0.4) == pytest.approx(f, abs=1e-15)  # noisy-OR: 1 - (1 - f)
        assert combined_risk(f, 0.0, 0.4) == pytest.approx(f)
        for a in grid:
            for w in (0.0, 0.4, 1.0):
                r = combined_risk(f, a, w)
                assert f - 1e-12 <= r <= 1.0 + 1e-12
                assert r - f <= w * a + 1e-12  # an anomaly adds at most weight * anomaly
    assert combined_risk(0.7, 0.9, 0.4) == pytest.approx(1 - 0.3 * (1 - 0.36))
    t = Thresholds()
    # a fraud score over the critical threshold stays CRITICAL whatever the anomaly says
    assert t.status(combined_risk(0.81, 0.0, 0.4)) == CRITICAL
    assert t.status(combined_risk(0.81, None, 0.4)) == CRITICAL


# --- the trained manifest --------------------------------------------------------------


def test_trained_manifest(fraud_env):
    m = fraud_env.manifest
    assert isinstance(m["version"], int) and m["version"] >= 1
    assert m["name"] == MODEL_NAME
    assert m["feature_names"] == list(MODEL_FEATURES)
    assert m["metrics"]["roc_auc"] > 0.8
    assert 0 < m["metrics"]["pr_auc"] <= 1
    assert m["metrics"]["positives"] > 0
    train_end = pd.Timestamp(m["training_window"]["end"])
    eval_start = pd.Timestamp(m["evaluation_window"]["start"])
    assert pd.Timestamp(m["training_window"]["start"]) < train_end <= eval_start
    assert eval_start < pd.Timestamp(m["evaluation_window"]["end"])
    assert m["training_window"]["events"] > 0 and m["evaluation_window"]["events"] > 0
    total = len(pd.read_parquet(fraud_env.history))
    assert m["training_window"]["events"] + m["evaluation_window"]["events"] == total
    path = fraud_env.registry / MODEL_NAME / str(m["version"]) / m["artifact"]
    assert m["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert Registry(fraud_env.registry).aliases(MODEL_NAME)["production"] == m["version"]


# --- point-in-time join ----------------------------------------------------------------


def tx_at(tid: str, cid: str, mid: str, t: float) -> Transaction:
    return Transaction(tid, cid, mid, "gas", 10.0, 40.7, -74.0, t=t)


def _snapshot(df: pd.DataFrame, key: str, value: str, day: int) -> pd.Series:
    at = pd.Timestamp(HISTORY_START + timedelta(days=day))
    row = df[(df[key] == value) & (df["event_timestamp"] == at)]
    assert len(row) == 1
    return row.iloc[0]


def test_point_in_time_join_uses_the_earlier_snapshot(fraud_env):
    profiles = pd.read_parquet(fraud_env.repo / "data" / "customer_profile.parquet")
    merchants = pd.read_parquet(fraud_env.repo / "data" / "merchant_risk.parquet")
    day = 10
    # customers whose profile changes between day 10 and day 11, so the test can tell them apart
    d10 = profiles[profiles["event_timestamp"] == pd.Timestamp(HISTORY_START + timedelta(days=day))]
    d11 = profiles[profiles["event_timestamp"] == pd.Timestamp(HISTORY_START + timedelta(days=day + 1))]
    both = d10.merge(d11, on="customer_id", suffixes=("_10", "_11"))
    changing = both[both["avg_transaction_amount_10"] != both["avg_transaction_amount_11"]]["customer_id"]
    cids = list(changing.iloc[:3])
    assert len(cids) == 3
    mid = "M00003"
    assert _snapshot(merchants, "merchant_id", mid, day)["merchant_risk_score"] != _snapshot(
        merchants, "merchant_id", mid, day + 1
    )["merchant_risk_score"]

    base = (HISTORY_START + timedelta(days=day)).timestamp()
    times = [base + 12 * 3600, base + 86_399, base + 1]  # between the day-10 and day-11 snapshots
    txs = [tx_at(f"pit-{i}", cid, mid, t) for i, (cid, t) in enumerate(zip(cids, times))]
    pit = point_in_time_features(txs, fraud_env.repo)
    assert list(pit["transaction_id"]) == [tx.transaction_id for tx in txs]  # same order as the events
    for i, cid in enumerate(cids):
        earlier = _snapshot(profiles, "customer_id", cid, day)
        later = _snapshot(profiles, "customer_id", cid, day + 1)
        row = pit.iloc[i]
        assert row["customer_id"] == cid
        assert row["avg_transaction_amount"] == pytest.approx(earlier["avg_transaction_amount"])
        assert row["avg_transaction_amount"] != pytest.approx(later["avg_transaction_amount"])
        assert row["transaction_frequency"] == pytest.approx(earlier["transaction_frequency"])
        assert row["home_latitude"] == pytest.approx(earlier["home_latitude"])
        assert row["merchant_risk_score"] == pytest.approx(_snapshot(merchants, "merchant_id", mid, day)["merchant_risk_score"])
        assert row["chargeback_rate"] == pytest.approx(_snapshot(merchants, "merchant_id", mid, day)["chargeback_rate"])


def test_point_in_time_join_unknown_keys_are_missing(fraud_env):
    t = (HISTORY_START + timedelta(days=5, hours=3)).timestamp()
    txs = [tx_at("u1", "C999999", "M00001", t), tx_at("u2", "C000001", "M99999", t)]
    pit = point_in_time_features(txs, fraud_env.repo)
    assert math.isnan(pit.loc[0, "avg_transaction_amount"])
    assert not math.isnan(pit.loc[0, "merchant_risk_score"])
    assert not math.isnan(pit.loc[1, "avg_transaction_amount"])
    assert math.isnan(pit.loc[1, "merchant_risk_score"])
    rows = build_training_rows(txs, pit)
    assert rows[0]["customer_known"] is False and rows[0]["avg_transaction_amount"] == 40.0
    assert rows[1]["merchant_known"] is False and rows[1]["merchant_risk_score"] == 0.5
    assert rows[1]["customer_known"] is True


# --- the scoring steps: state, snapshots, restore -----------------------------------------

SMALL_CFG = FraudScoringConfig(amount_warmup=5, shard_window=30, shard_calib_warmup=10, shards=3)


def synthetic_raw(n: int, seed: int, customers: int = 6) -> list[dict]:
    """Raw transactions of a few customers, arriving up to 5 minutes out of order."""
    rng = random.Random(seed)
    t0 = 1_790_000_000.0
    out = []
    t = t0
    for i in range(n):
        t += rng.expovariate(1 / 40.0)
        c = rng.randrange(customers)
        out.append({
            "transaction_id": f"s{seed}-{i}",
            "customer_id": f"C{c:06d}",
            "merchant_id": f"M{rng.randrange(40):05d}",
            "merchant_category": rng.choice(["grocery", "gas", "online", "travel"]),
            "amount": round(math.exp(rng.gauss(3.3 + 0.2 * c, 0.8)), 2),
            "timestamp": t + rng.uniform(-300, 0),
            "latitude": 40.7 + rng.gauss(0, 0.5),
            "longitude": -74.0 + rng.gauss(0, 0.5),
            "channel": rng.choice(["web", "pos"]),
        })
    return out


def run_states(txs, customers: dict, shards: dict, cfg: FraudScoringConfig) -> list[tuple]:
    """The flow's two keyed steps over ``txs``; returns what each step added to each transaction."""
    out = []
    for tx in txs:
        cust = customers.get(tx.customer_id) or customers.setdefault(tx.customer_id, CustomerState(cfg))
        cust.update(tx)
        k = shard_of(tx.customer_id, cfg.shards)
        shard = shards.get(k) or shards.setdefault(k, ShardState(cfg))
        shard.update(tx)
        out.append((tx.transaction_id, tx.features, tx.amount_score, tx.amount_warming,
                    tx.anomaly_scores, tx.anomaly_score, tx.anomaly_warming_up))
    return out


def parsed(raws: list[dict]) -> list[Transaction]:
    return [parse_transaction(r, arrival=0.0) for r in raws]


def test_customer_and_shard_state_restore_continue_exactly():
    raws = synthetic_raw(400, seed=1)
    n = 250
    # uninterrupted
    whole = run_states(parsed(raws), {}, {}, SMALL_CFG)
    # interrupted after n events: snapshot, pickle (as the recovery store does), load into fresh states
    customers: dict = {}
    shards: dict = {}
    first = run_states(parsed(raws[:n]), customers, shards, SMALL_CFG)
    assert first == whole[:n]
    cust_snaps = pickle.loads(pickle.dumps({k: s.snapshot() for k, s in customers.items()}))
    shard_snaps = pickle.loads(pickle.dumps({k: s.snapshot() for k, s in shards.items()}))
    restored_c: dict = {}
    for k, snap in cust_snaps.items():
        restored_c[k] = CustomerState(SMALL_CFG)
        restored_c[k].load(snap)
    restored_s: dict = {}
    for k, snap in shard_snaps.items():
        restored_s[k] = ShardState(SMALL_CFG)
        assert restored_s[k].load(snap) is True
    rest = run_states(parsed(raws[n:]), restored_c, restored_s, SMALL_CFG)
    assert rest == whole[n:]
    # the comparison is not vacuous: the detectors were warm and scoring by then
    assert any(r[5] is not None and r[5] > 0 for r in rest)
    assert any(r[4]["multivariate"] is not None for r in rest)
    assert len(restored_s) == SMALL_CFG.shards


def test_snapshots_are_plain_data_without_configuration():
    customers: dict = {}
    shards: dict = {}
    run_states(parsed(synthetic_raw(50, seed=2)), customers, shards, SMALL_CFG)
    snap = next(iter(customers.values())).snapshot()
    assert set(snap) == {"features", "amount", "ids"}

    def plain(x) -> bool:
        if isinstance(x, (list, tuple)):
            return all(plain(v) for v in x)
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        return x is None or isinstance(x, (int, float, str, bool, bytes))

    assert plain(snap)
    assert isinstance(next(iter(shards.values())).snapshot(), bytes)


def test_restored_customer_state_uses_the_new_lateness():
    old_cfg = FraudScoringConfig(lateness_s=600.0)
    new_cfg = FraudScoringConfig(lateness_s=60.0)
    base = {"transaction_id": "t", "customer_id": "C1", "merchant_id": "M1", "merchant_category": "gas",
            "amount": 10.0, "latitude": 40.7, "longitude": -74.0}
    state = CustomerState(old_cfg)
    state.update(parse_transaction({**base, "timestamp": 10_000.0}))
    snap = state.snapshot()
    late = {**base, "transaction_id": "t2", "timestamp": 9_900.0}  # 100 s behind the newest: late only under the new config
    assert state.update(parse_transaction(late)).features["late_event"] is False
    restored = CustomerState(new_cfg)
    restored.load(snap)
    assert restored.features.lateness_s == 60.0
    assert restored.update(parse_transaction(late)).features["late_event"] is True
    with pytest.raises(ValueError, match="CustomerState.load"):
        CustomerState(new_cfg).load((1, 2))


def test_shard_state_under_another_detector_configuration_starts_afresh():
    shards: dict = {}
    run_states(parsed(synthetic_raw(60, seed=3)), {}, shards, SMALL_CFG)
    snap = next(iter(shards.values())).snapshot()
    other = ShardState(FraudScoringConfig(shard_window=31, shard_calib_warmup=10))
    assert other.load(snap) is False
    assert other.detector.n == 0


def test_anomaly_score_follows_the_warm_up_rule():
    cfg = FraudScoringConfig(amount_warmup=3, shard_window=10, shard_calib_warmup=5)
    customers: dict = {}
    shards: dict = {}
    raws = [r | {"customer_id": "C000001"} for r in synthetic_raw(40, seed=4)]
    out = run_states(parsed(raws), customers, shards, cfg)
    for i, (_, _, amount, amount_warming, scores, combined, warming_up) in enumerate(out):
        assert amount_warming == (i < 3)
        shard_warming = i < 15
        assert warming_up == (amount_warming or shard_warming)
        if amount_warming and shard_warming:
            assert combined is None and scores == {"amount": None, "multivariate": None}
        elif shard_warming:  # only the amount detector is warm: it alone is the anomaly score
            assert scores["multivariate"] is None
            assert combined == round(amount, 4) == scores["amount"]
        else:
            assert None not in scores.values() and combined is not None


def test_config_is_checked():
    for bad in ({"shards": 0}, {"lateness_s": -1.0}, {"anomaly_weight": 1.5}, {"anomaly_method": "sum"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FraudScoringConfig(**bad)


# --- the scorer and the plain-loop pipeline ---------------------------------------------


class StubModel:
    """A model stand-in: probability = min(amount / 1000, 1); explains with the amount."""

    version = "stub/1"

    def predict(self, X):
        return np.minimum(X[:, MODEL_FEATURES.index("amount_sum_1h")] / 1000.0, 1.0)

    def explain(self, X, top=3):
        return [[("amount_sum_1h", 1.0)] for _ in range(len(X))]


def fake_lookups(known_customers=("C000001",), known_merchants=("M00001",)):
    def customers(keys):
        return {k: {"avg_transaction_amount": 20.0, "transaction_frequency": 3.0, "home_latitude": 40.7,
                    "home_longitude": None} for k in keys if k in known_customers}

    def merchants(keys):
        return {k: {"merchant_risk_score": 0.9, "chargeback_rate": float("nan")} for k in keys if k in known_merchants}

    return CachedLookup(customers, PROFILE_DEFAULTS), CachedLookup(merchants, MERCHANT_DEFAULTS)


RAW = {"transaction_id": "t1", "customer_id": "C000001", "merchant_id": "M00001", "merchant_category": "gas",
       "amount": "900", "timestamp": "2026-10-06T12:00:00Z", "latitude": 40.7, "longitude": -74.0,
       "error": "none", "channel": "web", "is_fraud": "1", "status": "from the input", "fraud_score": "input"}


def test_scored_record_carries_every_input_field_and_the_scores():
    customers, merchants = fake_lookups()
    pipe = FraudPipeline(SMALL_CFG, StubModel(), customers, merchants)
    other = {**RAW, "transaction_id": "t2", "customer_id": "C000002", "merchant_id": "M00002", "amount": 5.0}
    out = pipe.process([json.dumps(RAW).encode(), other], arrival=1.0)
    assert not any(isinstance(r, DeadLetter) for r in out)
    rec, rec2 = out
    # input fields, extra ones included: an input field named "error" is just a field
    assert rec["error"] == "none" and rec["channel"] == "web" and rec["timestamp"] == RAW["timestamp"]
    # validated values replace the text; computed fields win over input fields of the same name
    assert rec["amount"] == 900.0 and rec["is_fraud"] == 1
    assert rec["fraud_score"] == 0.9 and rec["status"] == CRITICAL and rec["risk_score"] >= 0.9
    assert rec2["is_fraud"] == 1 and rec2["amount"] == 5.0
    for field in ("time_since_last_transaction", "amount_mean_24h", "speed_kmh", "late_event", "anomaly_scores",
                  "anomaly_score", "anomaly_warming_up", "distance_from_home_km", "amount_to_profile_ratio",
                  "customer_known", "merchant_known", "model_version", "scored_at", "latency_ms"):
        assert field in rec, field
    assert all(not k.startswith("_") for k in rec)
    assert rec["model_version"] == "stub/1" and rec["scored_at"].endswith("Z")
    # Feast values through the defaults rule
    assert rec["customer_known"] is True and rec["avg_transaction_amount"] == 20.0
    assert rec["home_longitude"] is None and rec["distance_from_home_km"] is None
    assert rec["merchant_known"] is True and rec["chargeback_rate"] == MERCHANT_DEFAULTS["chargeback_rate"]
    assert rec2["customer_known"] is False and rec2["avg_transaction_amount"] == 40.0
    assert rec2["merchant_known"] is False and rec2["merchant_risk_score"] == 0.5
    # alerts explain themselves, normal records do not
    assert rec["reasons"][0] == "fraud_score=0.900" and "amount_sum_1h=900" in rec["reasons"]
    assert rec2["status"] == NORMAL and "reasons" not in rec2
    # the output is JSON-ready
    json.dumps(out)


def test_pipeline_dead_letters_in_place():
    customers, merchants = fake_lookups()
    pipe = FraudPipeline(SMALL_CFG, StubModel(), customers, merchants)
    out = pipe.process([RAW, "not json", {**RAW, "amount": "twelve"}, {**RAW, "transaction_id": "t3"}])
    assert [type(r).__name__ for r in out] == ["dict", "DeadLetter", "DeadLetter", "dict"]
    assert out[2].error == "field 'amount': expected a number, got 'twelve'" and out[2].step == "validate"
    assert out[2].raw["transaction_id"] == "t1"

    class Broken(StubModel):
        def predict(self, X):
            raise RuntimeError("model exploded")

    broken = FraudPipeline(SMALL_CFG, Broken(), customers, merchants)
    out = broken.process([RAW])
    assert isinstance(out[0], DeadLetter) and "model exploded" in out[0].error and out[0].raw == RAW


def test_pipeline_restore_gives_identical_outputs(fraud_env):
    model = FraudModel.load(f"{MODEL_NAME}@production", fraud_env.registry)
    customers, merchants = fraud_lookups(fraud_env.repo)
    raws = stream_transactions(900, seed=11, spec=fraud_env.spec)
    n = 600

    def strip(records):
        return [{k: v for k, v in r.items() if k not in ("scored_at", "latency_ms")} for r in records]

    whole = FraudPipeline(SMALL_CFG, model, customers, merchants)
    expected = strip(whole.process(raws[:n]) + whole.process(raws[n:]))
    first = FraudPipeline(SMALL_CFG, model, customers, merchants)
    assert strip(first.process(raws[:n])) == expected[:n]
    snap = pickle.loads(pickle.dumps(first.snapshot()))
    resumed = FraudPipeline(SMALL_CFG, model, customers, merchants)
    resumed.load(snap)
    assert strip(resumed.process(raws[n:])) == expected[n:]
    assert sum(r["anomaly_score"] is not None for r in expected[n:]) > 100
    assert any(r["status"] != NORMAL for r in expected)


def test_training_rows_equal_served_records_for_the_same_feast_answer(fraud_env, tmp_path):
    """One defaults rule and one row builder: for the same Feast answer, training and
    serving produce identical model inputs, values and *_known flags."""
    raws = synthetic_raw(120, seed=5, customers=4)
    raws = [r | {"is_fraud": 0, "customer_id": c, "merchant_id": m}
            for r, c, m in zip(raws, ["C000001", "C999999"] * 60, ["M00001", "M00002", "M99999"] * 40)]
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(json.dumps(r) for r in raws))
    txs = load_history(history)
    answer = {
        "C000001": {"avg_transaction_amount": 33.0, "transaction_frequency": None, "home_latitude": 41.0,
                    "home_longitude": -73.0},
        "M00001": {"merchant_risk_score": 0.7, "chargeback_rate": 0.05},
        "M00002": {"merchant_risk_score": None, "chargeback_rate": 0.01},
    }
    # what a point-in-time join returns for that answer: NaN where Feast has nothing
    pit = pd.DataFrame([
        {**{f: answer.get(tx.customer_id, {}).get(f) for f in PROFILE_DEFAULTS},
         **{f: answer.get(tx.merchant_id, {}).get(f) for f in MERCHANT_DEFAULTS}} for tx in txs
    ]).astype(float)
    train_rows = build_training_rows(txs, pit, SMALL_CFG)

    fetch = lambda keys: {k: answer[k] for k in keys if k in answer}  # noqa: E731
    pipe = FraudPipeline(SMALL_CFG, StubModel(), CachedLookup(fetch, PROFILE_DEFAULTS),
                         CachedLookup(fetch, MERCHANT_DEFAULTS))
    order = sorted(raws, key=lambda r: r["timestamp"])  # served in event-time order, as training replays
    served = {r["transaction_id"]: r for r in pipe.process(order)}
    for row in train_rows:
        rec = served[row["transaction_id"]]
        for f in (*PROFILE_DEFAULTS, *MERCHANT_DEFAULTS, "customer_known", "merchant_known"):
            assert rec[f] == row[f], f
    X_train = feature_matrix(train_rows)
    X_served = feature_matrix([served[r["transaction_id"]] for r in train_rows])
    assert np.array_equal(X_train, X_served, equal_nan=True)
    flags = {(r["customer_known"], r["merchant_known"]) for r in train_rows}
    assert flags == {(True, True), (True, False), (False, True), (False, False)}


# --- a broken model artifact or manifest is refused at start ---------------------------------
# Each case: the real start (`dataflows.fraud:get_flow()`), exit 2, exactly one `error:` line
# naming the setting and what is wrong, everything else on stderr JSON logs (no traceback, no
# library chatter), and no input read (no output record; the flow is never built).


def _resign(d: Path, data: bytes) -> None:
    """Write ``data`` as the artifact and its sha256 into the manifest: an artifact that
    passes the integrity check but is not a (whole) model."""
    (d / "model.txt").write_bytes(data)
    m = json.loads((d / "manifest.json").read_text())
    m["sha256"] = hashlib.sha256(data).hexdigest()
    (d / "manifest.json").write_text(json.dumps(m))


def _flip_a_bit(d: Path) -> None:
    data = bytearray((d / "model.txt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / "model.txt").write_bytes(bytes(data))


_BROKEN_MODELS = {
    # case: (how to break the published version's folder, what the error line must say)
    "artifact_tampered": (_flip_a_bit, ("model.txt", "sha256", "does not match")),
    "artifact_truncated": (lambda d: (d / "model.txt").write_bytes((d / "model.txt").read_bytes()[:4096]),
                           ("model.txt", "sha256", "does not match")),
    "artifact_empty": (lambda d: (d / "model.txt").write_bytes(b""), ("model.txt", "sha256", "does not match")),
    "artifact_missing": (lambda d: (d / "model.txt").unlink(), ("model.txt", "missing")),
    "artifact_not_a_model": (lambda d: _resign(d, b"not a LightGBM model\n"), ("model.txt",)),
    "manifest_missing": (lambda d: (d / "manifest.json").unlink(), ("manifest.json", "missing")),
    "manifest_invalid_json": (lambda d: (d / "manifest.json").write_text('{"version": 1, "sha256": '),
                              ("manifest.json", "not valid JSON")),
    "manifest_empty": (lambda d: (d / "manifest.json").write_text(""), ("manifest.json", "not valid JSON")),
    "manifest_not_an_object": (lambda d: (d / "manifest.json").write_text("[]"), ("manifest.json",)),
    "manifest_not_utf8": (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe{}"), ("manifest.json",)),
    "aliases_invalid_json": (lambda d: (d.parent / "aliases.json").write_text('{"production": '),
                             ("aliases.json",)),
}
@pytest.fixture
def broken_model_start(fraud_env, registry_copy, tmp_path, monkeypatch):
    """A valid file-to-file run on ``registry_copy``; returns ``start(case)``: break the
    copy, run the start, return the stderr lines (the start must exit 2, print nothing on
    stdout and read no input)."""
    import os

    from dataflows import resources

    for k in list(os.environ):
        if k.startswith(("STREAMSCORE_", "SCORING_", "KAFKA_OPT_", "IOT_", "BYTEWAX_")):
            monkeypatch.delenv(k)
    src = tmp_path / "in.jsonl"
    src.write_text('{"transaction_id": "t1"}\nnot json\n')  # read, these would be dead letters
    out = tmp_path / "out"
    for k, v in {"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src), "STREAMSCORE_IO__OUTPUT_DIR": str(out),
                 "STREAMSCORE_FEAST__REPO": str(fraud_env.repo), "STREAMSCORE_MODEL__REGISTRY": str(registry_copy)}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(resources, "_MODELS", {})

    def start(case: str, capfd) -> list[str]:
        from dataflows.fraud import get_flow

        breaks, _ = _BROKEN_MODELS[case]
        breaks(model_dir(registry_copy, fraud_env.manifest))
        capfd.readouterr()
        with pytest.raises(SystemExit) as info:
            get_flow()
        assert info.value.code == 2
        captured = capfd.readouterr()
        err = captured.err.strip().splitlines()
        assert all(p.stat().st_size == 0 for p in out.glob("*.jsonl")), "input was read"
        assert captured.out == "", captured.out[-2000:]
        return err

    return start


@pytest.mark.parametrize("case", list(_BROKEN_MODELS))
def test_broken_model_is_refused_at_start_with_one_clear_error(case, broken_model_start, capfd):
    err = broken_model_start(case, capfd)
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    [line] = errors
    assert line.startswith("error: model.ref='fraud_model@production' (STREAMSCORE_MODEL__REGISTRY="), line
    for words in _BROKEN_MODELS[case][1]:
        assert words in line, (words, line)
    for other in err:
        if not other.startswith("error: "):
            rec = json.loads(other)  # the rest is JSON log lines: no traceback, no library chatter
            assert rec["event"] != "flow_ready", other  # the flow was not built


def test_truncated_artifact_with_a_matching_sha256_is_refused_not_a_crash(fraud_env, registry_copy, tmp_path):
    """A model text cut short but published with its own sha256 (written by a broken
    copy, then re-signed): one error line and exit 2, not a crash of the process.
    Run in a subprocess: LightGBM takes the whole process down."""
    import os
    import subprocess
    import sys

    d = model_dir(registry_copy, fraud_env.manifest)
    data = (d / "model.txt").read_bytes()
    _resign(d, data[: len(data) // 2])
    src = tmp_path / "in.jsonl"
    src.write_text('{"transaction_id": "t1"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_", "KAFKA_OPT_", "IOT_", "BYTEWAX_"))}
    env.update(STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(src), STREAMSCORE_IO__OUTPUT_DIR=str(tmp_path / "out"),
               STREAMSCORE_FEAST__REPO=str(fraud_env.repo), STREAMSCORE_MODEL__REGISTRY=str(registry_copy))
    done = subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.fraud:get_flow()"],
                          cwd=Path(__file__).resolve().parents[3], env=env, capture_output=True, text=True,
                          timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(errors) == 1 and "model.txt" in errors[0], errors


def _customer_out(x) -> tuple:
    if isinstance(x, DeadLetter):
        return ("dead", x.step, x.error)
    return (x.transaction_id, x.features, x.amount_score, x.amount_warming)


@pytest.mark.parametrize("seed", range(3))
def test_customer_update_many_equals_update_one_by_one(seed):
    """The flow's customer step (a key's batch through the windows' kernel in one call) gives
    what update gives event by event: re-delivered ids, idle restarts inside a batch, late
    events, events past the retention, any batch split."""
    cfg = FraudScoringConfig(amount_warmup=5, idle_expiry_s=6 * 3600.0, lateness_s=600.0)
    rng = random.Random(seed)
    raws = synthetic_raw(600, seed=seed, customers=2)
    for i, r in enumerate(raws):
        if i % 97 == 50:  # an idle gap past the expiry (later events shift with it)
            for later in raws[i:]:
                later["timestamp"] += 8 * 3600.0
        if i % 41 == 7:  # far behind: past the lateness, or past the retention (7 d + lateness)
            r["timestamp"] -= rng.choice([3600.0, 8 * 86400.0])
    for j in sorted(rng.sample(range(len(raws)), 40), reverse=True):  # re-delivered ids, a few events later
        raws.insert(j + rng.randint(1, 6), dict(raws[j]))
    by_customer: dict[str, list[dict]] = {}
    for r in raws:
        by_customer.setdefault(r["customer_id"], []).append(r)
    for stream in by_customer.values():
        one = CustomerState(cfg)
        want = [_customer_out(one.update(tx)) for tx in parsed(stream)]
        assert {"dead"} < {w[0] for w in want}  # duplicates refused
        assert any(w[1]["late_event"] for w in want if w[0] != "dead")
        assert any(w[1]["amount_count_1h"] is None for w in want if w[0] != "dead")  # past the retention
        for cuts in ([], sorted(rng.sample(range(1, len(stream)), 9))):
            many = CustomerState(cfg)
            got = []
            txs = parsed(stream)
            for lo, hi in zip([0, *cuts], [*cuts, len(txs)]):
                got += [_customer_out(x) for x in many.update_many(txs[lo:hi])]
            assert got == want
            assert repr(many.snapshot()) == repr(one.snapshot())
    assert CustomerState(cfg).update_many([]) == []


def test_shard_state_batches_keep_the_per_event_rule():
    """ShardState.update_many feeds the detector a matrix of shard_row tuples and combines
    the warm detectors as columns: the same scores as the detector's mappings
    (shard_vector) and models.status.anomaly_score per event, rounded as before."""
    from models.detectors import ShardDetector
    from models.fraud.state import SHARD_FEATURES, shard_row, shard_vector
    from models.status import anomaly_score

    cfg = FraudScoringConfig()
    customers: dict[str, CustomerState] = {}
    txs = []
    for e in stream_transactions(3000, seed=11):
        tx = parse_transaction(e, 0.0)
        out = customers.setdefault(tx.customer_id, CustomerState(cfg)).update(tx)
        if not isinstance(out, DeadLetter):
            txs.append(out)
    state = ShardState(cfg)
    twin = ShardDetector(SHARD_FEATURES, seed=cfg.shard_seed, window_size=cfg.shard_window,
                         calib_warmup=cfg.shard_calib_warmup)
    warm = 0
    for lo in range(0, len(txs), 250):
        batch = txs[lo:lo + 250]
        assert all(shard_vector(tx) == dict(zip(SHARD_FEATURES, shard_row(tx))) for tx in batch)
        expected = twin.score_learn_many([shard_vector(tx) for tx in batch])
        assert state.update_many(batch) is batch
        for tx, (score, warming) in zip(batch, expected):
            scores = {"amount": tx.amount_score, "multivariate": score}
            skip = [k for k, w in (("amount", tx.amount_warming), ("multivariate", warming)) if w]
            combined = anomaly_score(scores, skip, method=cfg.anomaly_method)
            assert tx.anomaly_scores == {k: None if k in skip or v is None else round(v, 4) for k, v in scores.items()}
            assert tx.anomaly_score == (None if combined is None else round(combined, 4))
            assert tx.anomaly_warming_up is bool(skip)
            warm += tx.anomaly_score is not None
    assert warm > 1000  # the combined rule was exercised, not only warm-up


@pytest.mark.parametrize("seed", range(2))
def test_customer_state_kernel_equals_features_and_amount_detector(seed):
    """CustomerState's one compiled call per customer and batch (models.fraud.kernel: windows,
    features and the amount detector together) gives exactly what the per-event classes give:
    CustomerFeatures.update, then KeyDetector.score_learn of log1p(amount); late events and
    events past the retention included, in batches split anywhere."""
    from models.detectors import KeyDetector
    from features.transactions import CustomerFeatures
    from models.fraud.state import shard_row

    cfg = FraudScoringConfig(amount_warmup=5, idle_expiry_s=0.0, lateness_s=600.0)
    rng = random.Random(seed)
    raws = synthetic_raw(500, seed=seed, customers=1)
    for i, r in enumerate(raws):
        if i % 37 == 9:  # far behind: past the lateness, or past the retention
            r["timestamp"] -= rng.choice([3600.0, 8 * 86400.0])
    txs = parsed(raws)
    feats = CustomerFeatures(cfg.lateness_s, cfg.max_events)
    det = KeyDetector(warmup=cfg.amount_warmup, alpha=cfg.amount_alpha)
    want = []
    for tx in txs:
        f = feats.update(tx.t, tx.amount, tx.latitude, tx.longitude)
        want.append((f, *det.score_learn(math.log1p(tx.amount))))
    assert any(f["late_event"] for f, _, _ in want) and any(f["amount_count_1h"] is None for f, _, _ in want)
    state = CustomerState(cfg)
    got = []
    cuts = sorted(rng.sample(range(1, len(txs)), 30))
    for lo, hi in zip([0, *cuts], [*cuts, len(txs)]):
        for x in state.update_many(parsed(raws[lo:hi])):
            got.append((x.features, x.amount_score, x.amount_warming))
            # the shard step's input, worked out in the same call: shard_row's values (NaN: None)
            assert [None if v != v else v for v in x.shard_input] == list(shard_row(x))
    assert got == want
    assert state.amount_detector.snapshot() == det.snapshot()
    assert type(state.amount_detector.n) is int
