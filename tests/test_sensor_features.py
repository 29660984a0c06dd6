"""Tests for features.sensors (parsing, per-device features) and
models.sensor_scoring (per-device scorer, shard step, finalize, drift)."""

from __future__ import annotations

import copy
import json
import math
import pickle
import random

import pytest

from features.sensors import (
    DeviceFeatures,
    SensorConfig,
    feature_names,
    format_time,
    parse_reading,
    parse_time,
    shard_of,
)
from features.windows import summarize
from models.sensor_scoring import (
    DeviceScorer,
    DriftMonitor,
    IoTScorer,
    ScoringConfig,
    StuckDetector,
    finalize,
    make_shard_detector,
    score_shard,
)

T0 = parse_time("2024-01-01T00:00:00Z")
SENSORS = ("temperature", "humidity", "pressure")


def is_plain(obj) -> bool:
    """Only builtin scalars, str, and tuples / lists / dicts of them."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return True
    if isinstance(obj, (tuple, list)):
        return all(is_plain(o) for o in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in obj.items())
    return False


def noisy_values(rng: random.Random, base=(20.0, 50.0, 1000.0), sd=(0.2, 1.0, 0.3)) -> dict:
    return {s: round(rng.gauss(b, d), 2) for s, b, d in zip(SENSORS, base, sd)}


# ------------------------------------------------------------------ parsing


def test_parse_reading_defaults_and_missing_values() -> None:
    rec = {"device_id": "d1", "timestamp": "2024-01-01T00:00:05Z", "temperature": 21, "humidity": None,
           "pressure": float("nan")}
    assert parse_reading(rec) == ("d1", T0 + 5, {"temperature": 21.0, "humidity": None, "pressure": None})
    rec2 = {"device_id": 3, "timestamp": T0, "temperature": "", "pressure": "1000.5"}  # humidity absent
    assert parse_reading(rec2) == ("3", T0, {"temperature": None, "humidity": None, "pressure": 1000.5})


def test_parse_reading_custom_fields_any_number_of_sensors() -> None:
    cfg = SensorConfig(key_field="sensor_id", time_field="ts", sensors=("a", "b", "c", "d", "e"))
    rec = {"sensor_id": "x", "ts": "2024-01-01T01:00:00+01:00", "a": 1, "b": 2.5, "e": None, "other": "ignored"}
    assert parse_reading(rec, cfg) == ("x", T0, {"a": 1.0, "b": 2.5, "c": None, "d": None, "e": None})


@pytest.mark.parametrize(
    "rec, match",
    [
        ({"timestamp": "2024-01-01T00:00:00Z"}, "no 'device_id' field"),
        ({"device_id": "d9"}, "d9.*no 'timestamp' field"),
        ({"device_id": "d9", "timestamp": "yesterday"}, "d9.*not ISO-8601"),
        ({"device_id": "d9", "timestamp": "2024-01-01T00:00:00"}, "d9.*no time zone"),
        ({"device_id": "d9", "timestamp": 0, "humidity": "wet"}, "d9.*'humidity' is not a number"),
        ({"device_id": "d9", "timestamp": 0, "pressure": float("inf")}, "d9.*'pressure' is infinite"),
        ({"device_id": "d9", "timestamp": 0, "temperature": True}, "d9.*'temperature' is a boolean"),
    ],
)
def test_parse_reading_errors_name_field_and_device(rec: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_reading(rec)


def test_time_round_trip_and_sharding() -> None:
    assert format_time(parse_time("2024-03-05T06:07:08Z")) == "2024-03-05T06:07:08Z"
    assert format_time(T0 + 0.5) == "2024-01-01T00:00:00.500Z"
    shards = [shard_of(f"dev-{i:04d}", 4) for i in range(200)]
    assert set(shards) == {0, 1, 2, 3}
    assert shards == [shard_of(f"dev-{i:04d}", 4) for i in range(200)]
    with pytest.raises(ValueError, match="n_shards"):
        shard_of("d", 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sensors": ()}, "at least one"),
        ({"sensors": ("a", "a")}, "duplicate"),
        ({"sensors": ("device_id",)}, "other than the key"),
        ({"windows_s": (0,)}, "windows_s"),
    ],
)
def test_sensor_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SensorConfig(**kwargs)


# ------------------------------------------------------------------ features


def test_device_features_match_brute_force() -> None:
    cfg = SensorConfig(windows_s=(300.0, 3600.0))
    dev = DeviceFeatures(cfg)
    rng = random.Random(1)
    seen: list[tuple[float, dict]] = []
    t = T0
    for i in range(120):
        t += rng.choice([30.0, 60.0, 90.0])
        vals = noisy_values(rng)
        if i % 9 == 0:
            vals["humidity"] = None
        f = dev.update(t, vals)
        assert list(f) == feature_names(cfg)
        prev_t = seen[-1][0] if seen else None
        assert f["dt_s"] == (t - prev_t if prev_t is not None else None)
        assert f["late_s"] == 0.0
        seen.append((t, vals))
        for s in SENSORS:
            prev = [v[s] for _, v in seen[:-1] if v[s] is not None]
            if vals[s] is None or not prev:
                assert f[f"{s}_delta"] is None
            else:
                assert f[f"{s}_delta"] == pytest.approx(vals[s] - prev[-1])
            for w in (300, 3600):
                inside = [v[s] if v[s] is not None else math.nan for tt, v in seen if t - w < tt <= t]
                st = summarize(inside)
                if st.count == 0:  # undefined statistics are None, not NaN (JSON-safe)
                    assert all(f[f"{s}_{k}_{w}s"] is None for k in ("mean", "std", "min", "max"))
                    continue
                assert f[f"{s}_mean_{w}s"] == pytest.approx(st.mean)
                assert f[f"{s}_std_{w}s"] == pytest.approx(st.std, abs=1e-9)
                assert f[f"{s}_min_{w}s"] == st.min and f[f"{s}_max_{w}s"] == st.max


def test_late_reading_gets_in_order_windows() -> None:
    cfg = SensorConfig(sensors=("x",), windows_s=(600.0,))
    in_order, shuffled = DeviceFeatures(cfg), DeviceFeatures(cfg)
    ts = [T0 + 60 * i for i in range(10)]
    ref = {t: in_order.update(t, {"x": float(i)}) for i, t in enumerate(ts)}
    order = [0, 1, 2, 4, 5, 3, 6, 7, 9, 8]
    for i in order:
        f = shuffled.update(ts[i], {"x": float(i)})
        if i == 3:  # arrives 120 s late
            assert f["late_s"] == 120.0
            assert f["x_mean_600s"] == ref[ts[3]]["x_mean_600s"]
            assert f["dt_s"] == 60.0 and f["x_delta"] == 1.0


def test_all_sensors_missing_gives_none_features() -> None:
    dev = DeviceFeatures(SensorConfig(sensors=("x",), windows_s=(60.0,)))
    f = dev.update(T0, {"x": None})
    assert f["x_delta"] is None and f["x_mean_60s"] is None and f["dt_s"] is None


def test_device_features_snapshot_round_trip() -> None:
    rng = random.Random(2)
    dev = DeviceFeatures()
    for i in range(50):
        dev.update(T0 + 45 * i, noisy_values(rng))
    snap = dev.snapshot()
    assert is_plain(snap)
    clone = DeviceFeatures.restore(pickle.loads(pickle.dumps(snap)))
    vals = noisy_values(rng)
    assert clone.update(T0 + 45 * 50, vals) == dev.update(T0 + 45 * 50, vals)
    with pytest.raises(ValueError, match="DeviceFeatures.restore"):
        DeviceFeatures.restore(("x",))


# ------------------------------------------------------------ small detectors


def test_stuck_detector_noisy_low_stuck_high() -> None:
    rng = random.Random(3)
    sd = StuckDetector()
    noisy = [sd.score_learn(round(rng.gauss(20, 0.2), 2))[0] for _ in range(500)]
    assert max(noisy[50:]) < 0.35  # occasional exact repeats happen at this resolution
    run = [sd.score_learn(20.11)[0] for _ in range(15)]
    assert run[0] == 0.0 or run[0] < 0.35
    assert all(b >= a for a, b in zip(run[1:], run[2:])) and run[-1] > 0.8
    assert sd.score_learn(None) == (0.0, False)
    assert StuckDetector.restore(sd.snapshot()).score_learn(20.11) == sd.score_learn(20.11)


def test_drift_monitor_round_trip_and_detection() -> None:
    rng = random.Random(4)
    stream = [abs(rng.gauss(0.05, 0.03)) for _ in range(300)] + [0.6 + rng.random() * 0.2 for _ in range(100)]
    a, fired = DriftMonitor(threshold=5.0), []
    for i, s in enumerate(stream[:200]):
        if a.update(s):
            fired.append(i)
    b = DriftMonitor.restore(a.snapshot())
    for i, s in enumerate(stream[200:], 200):
        assert a.update(s) == b.update(s)
        if b.ph.drift_detected:
            fired.append(i)
    assert fired and all(i >= 300 for i in fired) and fired[0] < 320


# ------------------------------------------------------------ device scorer


def warm_device(config: ScoringConfig, n: int = 200, seed: int = 5) -> tuple[DeviceScorer, random.Random]:
    rng = random.Random(seed)
    dev = DeviceScorer("dev-1", config)
    for i in range(n):
        dev.update(T0 + 60 * i, noisy_values(rng))
    return dev, rng


def test_device_result_shape_and_spike() -> None:
    cfg = ScoringConfig()
    dev, rng = warm_device(cfg)
    res, drifts = dev.update(T0 + 60 * 200, noisy_values(rng))
    assert set(res) == {"device_id", "timestamp", "t", "shard", "values", "features", "missing", "scores",
                        "warming", "shard_input"}
    assert res["warming"] == [] and res["missing"] == [] and drifts == []
    assert set(res["scores"]) == {f"{s}{suf}" for s in SENSORS for suf in ("", "_slow", "_stuck")}
    assert all(abs(z) <= cfg.z_clip for z in res["shard_input"].values())
    spike = dict(noisy_values(rng), humidity=50.0 + 12.0)
    res, _ = dev.update(T0 + 60 * 201, spike)
    assert res["scores"]["humidity"] > 0.8 and res["scores"]["temperature"] < 0.5
    rec = finalize(res, 0.1, False, cfg)
    assert rec["reasons"][0] == "humidity" and rec["anomaly_score"] > 0.9


def test_missing_sensors_scored_on_present_ones() -> None:
    cfg = ScoringConfig()
    dev, rng = warm_device(cfg)
    before = DeviceScorer.restore(dev.snapshot())
    vals = dict(noisy_values(rng), pressure=None)
    del vals["humidity"]
    res, _ = dev.update(T0 + 60 * 200, vals)
    assert res["missing"] == ["humidity", "pressure"]
    assert set(res["shard_input"]) == {"temperature"}
    assert not any(k.startswith(("humidity", "pressure")) for k in res["scores"])
    # detectors of missing sensors were not touched
    assert dev.level["humidity"].snapshot() == before.level["humidity"].snapshot()
    assert dev.stuck["pressure"].snapshot() == before.stuck["pressure"].snapshot()
    rec = finalize(res, 0.0, False, cfg)
    assert rec["missing"] == ["humidity", "pressure"] and rec["values"]["pressure"] is None
    # nothing at all: a flagged 0, not a confident one; the shard is not touched
    empty, _ = dev.update(T0 + 60 * 201, {})
    det = make_shard_detector(cfg, 0)
    rec = score_shard(det, empty, cfg)
    assert rec["anomaly_score"] == 0.0 and rec["warming_up"] is True and det.n == 0


def test_device_scorer_snapshot_restore_identical_outputs() -> None:
    cfg = ScoringConfig()
    dev, rng = warm_device(cfg, n=80)
    snap = dev.snapshot()
    assert is_plain(snap)
    json.dumps(snap)  # plain enough for any state store
    clone = DeviceScorer.restore(pickle.loads(pickle.dumps(snap)))
    for i in range(80, 140):
        vals = noisy_values(rng)
        if i % 10 == 0:
            vals["temperature"] += 5.0
        assert clone.update(T0 + 60 * i, vals) == dev.update(T0 + 60 * i, vals)
    with pytest.raises(ValueError, match="DeviceScorer.restore"):
        DeviceScorer.restore({"version": "nope"})


def test_drift_record_on_lasting_shift() -> None:
    cfg = ScoringConfig()
    dev, rng = warm_device(cfg, n=300)
    records = []
    for i in range(300, 500):
        vals = noisy_values(rng)
        vals["pressure"] += 0.02 * (i - 300)  # slow drift: 13 noise sd over 200 readings
        records += dev.update(T0 + 60 * i, vals)[1]
    assert records, "expected a drift record"
    d = records[0]
    assert d["kind"] == "drift" and d["device_id"] == "dev-1" and d["sensor"] == "pressure"
    assert d["detector"] == "pressure_slow" and d["method"] == "PageHinkley"
    assert d["timestamp"].endswith("Z") and d["id"].startswith("dev-1@")


# ------------------------------------------------------------ finalize / shard


def test_finalize_rules() -> None:
    cfg = ScoringConfig(combine="noisy_or")
    base = {"device_id": "d", "timestamp": "2024-01-01T00:00:00Z", "t": T0, "shard": 1, "values": {},
            "features": {}, "missing": [], "shard_input": {"temperature": 5.0, "humidity": -0.5},
            "scores": {"temperature": 0.6, "temperature_stuck": 0.0, "humidity": 0.1}, "warming": []}
    frozen = copy.deepcopy(base)
    rec = finalize(base, 0.9, False, cfg)
    assert base == frozen  # pure
    expected = 1 - (1 - 0.6) * (1 - 0.1) * (1 - cfg.shard_weight * 0.9)
    assert rec["anomaly_score"] == pytest.approx(expected)
    assert rec["kind"] == "reading" and rec["id"] == "d@2024-01-01T00:00:00Z" and rec["shard"] == 1
    assert rec["reasons"] == ["temperature"] and rec["warming_up"] is False
    # a warming shard is left out and flags the record
    rec = finalize(base, 0.9, True, cfg)
    assert rec["anomaly_score"] == pytest.approx(1 - 0.4 * 0.9) and rec["warming_up"] is True
    # everything warming: best effort over all, flagged
    allwarm = dict(base, warming=["temperature", "temperature_stuck", "humidity"])
    rec = finalize(allwarm, 0.0, True, cfg)
    assert rec["warming_up"] is True and rec["anomaly_score"] == pytest.approx(1 - 0.4 * 0.9)
    # reasons via the shard detector: sensors with large |z|
    quiet = dict(base, scores={"temperature": 0.05, "humidity": 0.0})
    assert finalize(quiet, 0.95, False, cfg)["reasons"] == ["temperature"]
    assert finalize(quiet, 0.05, False, cfg)["reasons"] == []
    for s in (0.0, 0.5, 1.0):
        assert 0.0 <= finalize(base, s, False, cfg)["anomaly_score"] <= 1.0
    # the default rule: the strongest weighted detector
    dflt = ScoringConfig()
    assert dflt.combine == "max"
    assert finalize(base, 0.9, False, dflt)["anomaly_score"] == pytest.approx(max(0.6, dflt.shard_weight * 0.9))
    slow = dict(base, scores={"temperature": 0.1, "temperature_slow": 0.9})
    rec = finalize(slow, 0.0, False, dflt)
    assert rec["anomaly_score"] == pytest.approx(dflt.slow_weight * 0.9) and rec["reasons"] == ["temperature"]


def test_scoring_config_validation_and_round_trip() -> None:
    cfg = ScoringConfig(features=SensorConfig(sensors=("a", "b")), n_shards=8, shard_weight=0.3)
    assert ScoringConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="shard_weight"):
        ScoringConfig(shard_weight=2.0)
    with pytest.raises(ValueError, match="clash"):
        ScoringConfig(features=SensorConfig(sensors=("a", "a_slow")))
    with pytest.raises(ValueError, match="KeyDetector: alpha"):
        ScoringConfig(alpha=0.0)


def test_iot_scorer_custom_schema_end_to_end() -> None:
    cfg = ScoringConfig(
        features=SensorConfig(key_field="sid", time_field="ts", sensors=("a", "b", "c", "d"), windows_s=(120.0,)),
        n_shards=2, shard_window=50, shard_calib_warmup=10, warmup=10,
    )
    scorer = IoTScorer(cfg)
    rng = random.Random(6)
    out = []
    for i in range(300):
        for dev in ("s1", "s2", "s3"):
            row = {"sid": dev, "ts": format_time(T0 + 30 * i), **{k: rng.gauss(10, 1) for k in "abcd"}}
            out += scorer.process(row)
    readings = [r for r in out if r["kind"] == "reading"]
    assert len(readings) == 900 and all(r["kind"] in ("reading", "drift") for r in out)
    assert readings[0]["warming_up"] and not readings[-1]["warming_up"]
    assert {"a_mean_120s", "d_delta"} <= set(readings[-1]["features"])
    assert set(scorer.shards) <= {0, 1}
    rec = scorer.process({"sid": "s1", "ts": format_time(T0 + 30 * 300), "a": 10.0, "b": 10.0, "c": 30.0, "d": 10.0})[0]
    assert rec["anomaly_score"] > 0.9 and rec["reasons"][0] == "c"
    with pytest.raises(ValueError, match="'s1'.*'b' is not a number"):
        scorer.process({"sid": "s1", "ts": 0, "b": "n/a"})


def test_shard_detector_snapshot_in_the_flow() -> None:
    cfg = ScoringConfig(shard_window=30, shard_calib_warmup=5)
    dev, rng = warm_device(cfg, n=40)
    det = make_shard_detector(cfg, 3)
    for i in range(40, 100):
        score_shard(det, dev.update(T0 + 60 * i, noisy_values(rng))[0], cfg)
    clone = type(det).restore(det.snapshot())
    res, _ = dev.update(T0 + 60 * 100, noisy_values(rng))
    assert score_shard(clone, res, cfg) == score_shard(det, res, cfg)
