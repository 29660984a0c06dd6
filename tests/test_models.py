"""Model registry, the fraud model, status thresholds, the trained manifest, point-in-time joins."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from datagen.transactions import HISTORY_START
from models.fraud import MODEL_FEATURES, MODEL_NAME, FraudModel, feature_matrix
from models.registry import IntegrityError, Registry, RegistryError, parse_ref
from models.status import CRITICAL, NORMAL, WARNING, Thresholds, combined_risk
from models.train import build_training_rows, point_in_time_features

# --- Registry -------------------------------------------------------------------------


def test_publish_versions_and_aliases(tmp_path):
    reg = Registry(tmp_path / "reg")
    assert reg.versions("m") == [] and reg.aliases("m") == {}
    meta = {"feature_names": ["a", "b"], "metrics": {"roc_auc": 0.9}}
    v1 = reg.publish("m", b"one", meta, alias="production")
    v2 = reg.publish("m", b"two", meta)
    v3 = reg.publish("m", b"three", meta, alias="candidate")
    assert (v1, v2, v3) == (1, 2, 3)
    assert reg.versions("m") == [1, 2, 3]
    assert reg.aliases("m") == {"production": 1, "candidate": 3}
    assert meta == {"feature_names": ["a", "b"], "metrics": {"roc_auc": 0.9}}  # input not modified
    art, manifest = reg.load("m/2")
    assert art == b"two"
    assert manifest["version"] == 2 and manifest["name"] == "m" and manifest["artifact"] == "model.txt"
    assert manifest["sha256"] == hashlib.sha256(b"two").hexdigest()
    assert manifest["feature_names"] == ["a", "b"] and manifest["metrics"] == {"roc_auc": 0.9}
    datetime.fromisoformat(manifest["created_at"])
    # moving an alias
    reg.set_alias("m", "production", 3)
    assert reg.aliases("m") == {"production": 3, "candidate": 3}
    # other models are independent
    assert reg.publish("other", b"x", {}) == 1
    assert reg.versions("m") == [1, 2, 3]


def test_resolve_references(tmp_path):
    reg = Registry(tmp_path)
    for art in (b"a", b"b", b"c"):
        reg.publish("fraud_model", art, {})
    reg.set_alias("fraud_model", "production", 2)
    reg.set_alias("fraud_model", "shadow", 3)
    assert reg.resolve("fraud_model@production") == ("fraud_model", 2)
    assert reg.resolve("fraud_model@shadow") == ("fraud_model", 3)
    assert reg.resolve("fraud_model/1") == ("fraud_model", 1)
    assert reg.resolve("fraud_model") == ("fraud_model", 2)  # bare name: production
    assert reg.resolve("  fraud_model/3 ") == ("fraud_model", 3)
    assert reg.load("fraud_model")[0] == b"b"
    assert reg.load("fraud_model@shadow")[0] == b"c"


def test_parse_ref():
    assert parse_ref("m@prod") == ("m", "prod", None)
    assert parse_ref("m/12") == ("m", None, 12)
    assert parse_ref("m") == ("m", "production", None)
    for bad in ("", "m@", "m/x", "m@a/1", "a b", "m/1/2"):
        with pytest.raises(RegistryError, match="bad model reference"):
            parse_ref(bad)


def test_unknown_alias_names_model_and_registry(tmp_path):
    reg = Registry(tmp_path / "registry_root")
    reg.publish("m", b"a", {}, alias="production")
    with pytest.raises(RegistryError) as exc:
        reg.resolve("m@staging")
    msg = str(exc.value)
    assert "'m'" in msg and "'staging'" in msg and str(tmp_path / "registry_root") in msg
    assert "production" in msg  # lists the aliases it has
    with pytest.raises(RegistryError) as exc:
        reg.load("nomodel")  # bare name without any production alias
    assert "'nomodel'" in str(exc.value) and str(tmp_path / "registry_root") in str(exc.value)


def test_unknown_version_names_model_and_registry(tmp_path):
    reg = Registry(tmp_path / "registry_root")
    reg.publish("m", b"a", {})
    with pytest.raises(RegistryError) as exc:
        reg.load("m/7")
    msg = str(exc.value)
    assert "'m'" in msg and "7" in msg and str(tmp_path / "registry_root") in msg
    with pytest.raises(RegistryError, match="no version 9"):
        reg.set_alias("m", "production", 9)


def test_alias_pointing_at_a_deleted_version_is_an_error(tmp_path):
    reg = Registry(tmp_path)
    reg.publish("m", b"a", {}, alias="production")
    shutil.rmtree(tmp_path / "m" / "1")
    with pytest.raises(RegistryError, match="no version 1"):
        reg.load("m")


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
    events = pd.read_parquet(fraud_env.history)
    events["_t"] = pd.to_datetime(events["timestamp"], utc=True, format="ISO8601").astype("int64") / 1e9
    events = events.sort_values("_t", kind="stable", ignore_index=True)
    rows = build_training_rows(events, point_in_time_features(events, fraud_env.repo))
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
        assert combined_risk(f, None, 0.4) == f
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
    events = pd.DataFrame(
        {
            "transaction_id": [f"pit-{i}" for i in range(3)],
            "customer_id": cids,
            "merchant_id": [mid] * 3,
            "_t": times,
        }
    )
    pit = point_in_time_features(events, fraud_env.repo)
    assert list(pit["transaction_id"]) == list(events["transaction_id"])  # same order as the events
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
    events = pd.DataFrame(
        {"transaction_id": ["u1", "u2"], "customer_id": ["C999999", "C000001"],
         "merchant_id": ["M00001", "M99999"], "_t": [t, t]}
    )
    pit = point_in_time_features(events, fraud_env.repo)
    assert math.isnan(pit.loc[0, "avg_transaction_amount"])
    assert not math.isnan(pit.loc[0, "merchant_risk_score"])
    assert not math.isnan(pit.loc[1, "avg_transaction_amount"])
    assert math.isnan(pit.loc[1, "merchant_risk_score"])
    rows = build_training_rows(
        events.assign(amount=[10.0, 10.0], latitude=[40.7, 40.7], longitude=[-74.0, -74.0]), pit
    )
    assert rows[0]["customer_known"] is False and rows[0]["avg_transaction_amount"] == 40.0
    assert rows[1]["merchant_known"] is False and rows[1]["merchant_risk_score"] == 0.5
    assert rows[1]["customer_known"] is True
