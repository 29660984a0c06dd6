"""Tests for models.iot: DeviceState, ShardState, IoTPipeline, the output records,
restore under the same and under a new configuration, the warm-up rule."""

from __future__ import annotations

import json
import pickle
import random

import msgspec
import pytest

from features.records import ValidationError, format_time, parse_time
from features.sensors import SensorConfig, feature_names, parse_reading
from models.iot import DeviceResult, DeviceState, IoTPipeline, IoTScoringConfig, ShardState, detector_version
from models.status import Thresholds
from tests.conftest import is_plain

T0 = parse_time("2024-01-01T00:00:00Z")
SENSORS = ("temperature", "humidity", "pressure")
VOLATILE = ("scored_at", "latency_ms")  # wall-clock fields of the records


def noisy_values(rng: random.Random, base=(20.0, 50.0, 1000.0), sd=(0.2, 1.0, 0.3)) -> dict:
    return {s: round(rng.gauss(b, d), 2) for s, b, d in zip(SENSORS, base, sd)}


def row(device: str, i: int, values: dict, **extra) -> dict:
    return {"device_id": device, "timestamp": format_time(T0 + 60 * i), **values, **extra}


def stable(obj):
    """``obj`` without the wall-clock fields, DeviceResults as dicts."""
    if isinstance(obj, msgspec.Struct):
        obj = msgspec.structs.asdict(obj)
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj




def reading(cfg: IoTScoringConfig, device: str, i: int, values: dict, **extra):
    return parse_reading(row(device, i, values, **extra), cfg.features, arrival=T0 + 60 * i)


def warm_device(cfg: IoTScoringConfig, n: int = 200, seed: int = 5, device: str = "dev-1"):
    rng = random.Random(seed)
    dev = DeviceState(cfg)
    for i in range(n):
        dev.update(reading(cfg, device, i, noisy_values(rng)))
    return dev, rng


class FixedShardDetector:
    """Stands in for the shard's detector: a fixed score, warm."""

    warming_up = False

    def __init__(self, score: float, warming: bool = False) -> None:
        self.score, self.warming = score, warming

    def score_learn(self, x):
        return self.score, self.warming


# ------------------------------------------------------------------ device step


def test_device_result_shape_and_spike() -> None:
    cfg = IoTScoringConfig()
    dev, rng = warm_device(cfg)
    res = dev.update(reading(cfg, "dev-1", 200, noisy_values(rng)))
    assert isinstance(res, DeviceResult) and pickle.loads(pickle.dumps(res)) == res  # crosses keyed exchanges
    assert res.warming == [] and res.missing == [] and res.drifts == []
    assert res.id == f"dev-1@{format_time(T0 + 60 * 200)}" and res.id.endswith(".000Z")
    assert set(res.scores) == {f"{s}{suf}" for s in SENSORS for suf in ("", "_slow", "_stuck")}
    assert all(abs(z) <= cfg.z_clip for z in res.shard_input.values())
    assert list(res.features) == feature_names(cfg.features)
    spike = dict(noisy_values(rng), humidity=50.0 + 12.0)
    res = dev.update(reading(cfg, "dev-1", 201, spike))
    assert res.scores["humidity"] > 0.8 and res.scores["temperature"] < 0.5
    shard = ShardState(cfg)
    shard.detector, shard.shard = FixedShardDetector(0.1), res.shard
    rec = shard.update(res)
    assert rec["reasons"][0] == "humidity" and rec["anomaly_score"] > 0.9 and rec["status"] == "CRITICAL"


def test_missing_sensors_scored_on_present_ones() -> None:
    cfg = IoTScoringConfig()
    dev, rng = warm_device(cfg)
    before = dev.snapshot()
    vals = dict(noisy_values(rng), pressure=None)
    del vals["humidity"]
    res = dev.update(reading(cfg, "dev-1", 200, vals))
    assert res.missing == ["humidity", "pressure"]
    assert set(res.shard_input) == {"temperature"}
    assert not any(k.startswith(("humidity", "pressure")) for k in res.scores)
    # detectors of missing sensors were not touched
    after = dev.snapshot()
    assert after["level"]["humidity"] == before["level"]["humidity"]
    assert after["stuck"]["pressure"] == before["stuck"]["pressure"]
    rec = ShardState(cfg).update(res)
    assert rec["missing"] == ["humidity", "pressure"] and rec["pressure"] is None and "humidity" not in rec


def test_drift_record_on_lasting_shift() -> None:
    cfg = IoTScoringConfig()
    dev, rng = warm_device(cfg, n=300)
    records = []
    for i in range(300, 500):
        vals = noisy_values(rng)
        vals["pressure"] += 0.02 * (i - 300)  # slow drift: 13 noise sd over 200 readings
        records += dev.update(reading(cfg, "dev-1", i, vals)).drifts
    assert records, "expected a drift record"
    d = records[0]
    assert d["kind"] == "drift" and d["device_id"] == "dev-1" and d["sensor"] == "pressure"
    assert d["detector"] == "pressure_slow" and d["method"] == "PageHinkley"
    assert d["timestamp"].endswith(".000Z") and d["id"] == f"dev-1@{d['timestamp']}#drift:pressure_slow"
    assert d["model_version"] == detector_version(cfg) and d["scored_at"].endswith("Z")
    json.dumps(d)


# ------------------------------------------------------------------ warm-up rule


def test_first_reading_of_a_fresh_device_and_shard_has_no_score() -> None:
    cfg = IoTScoringConfig()
    dev, shard = DeviceState(cfg), ShardState(cfg)
    rec = shard.update(dev.update(reading(cfg, "d1", 0, {"temperature": 20.0, "humidity": 50.0, "pressure": 1e3})))
    assert rec["anomaly_score"] is None and rec["status"] == "NORMAL" and rec["warming_up"] is True
    assert "reasons" not in rec
    # still warming with a wild value: no best-effort score either
    for i in range(1, 6):
        shard.update(dev.update(reading(cfg, "d1", i, {"temperature": 20.0 + i % 2, "humidity": 50.0, "pressure": 1e3})))
    rec = shard.update(dev.update(reading(cfg, "d1", 6, {"temperature": 90.0, "humidity": 50.0, "pressure": 1e3})))
    assert rec["anomaly_score"] is None and rec["status"] == "NORMAL"
    assert max(rec["scores"].values()) > 0.5  # the detectors did score it; the record just does not trust them


def test_warm_device_on_a_warming_shard_is_scored() -> None:
    cfg = IoTScoringConfig(warmup=5)
    scorer = IoTPipeline(cfg)
    rng = random.Random(1)
    recs = [scorer.process(row("d1", i, noisy_values(rng)), arrival=0.0)[0] for i in range(12)]
    assert all(r["anomaly_score"] is None for r in recs[:5])
    assert all(r["anomaly_score"] is not None and r["warming_up"] for r in recs[6:])  # shard still warming
    assert "shard" in recs[-1]["scores"]


def test_iot_pipeline_fresh_device_first_reading_is_null_everywhere() -> None:
    scorer = IoTPipeline(IoTScoringConfig(warmup=3))
    rng = random.Random(2)
    for dev in ("a", "b", "c"):
        first = scorer.process(row(dev, 0, noisy_values(rng)), arrival=0.0)[0]
        assert first["anomaly_score"] is None and first["status"] == "NORMAL" and first["warming_up"]


# ------------------------------------------------------------------ shard step / record


def test_combination_and_reasons() -> None:
    cfg = IoTScoringConfig(combine="noisy_or")
    base = DeviceResult(
        reading=parse_reading({"device_id": "d", "timestamp": T0, "temperature": 1.0}, cfg.features, arrival=T0),
        id="d@x", shard=1, features={}, missing=[],
        scores={"temperature": 0.6, "temperature_stuck": 0.0, "humidity": 0.1}, warming=[],
        shard_input={"temperature": 5.0, "humidity": -0.5},
    )

    def record(result: DeviceResult, shard_score: float, shard_warming: bool = False, c=cfg) -> dict:
        state = ShardState(c)
        state.detector, state.shard = FixedShardDetector(shard_score, shard_warming), 1
        return state.update(result)

    rec = record(base, 0.9)
    expected = 1 - (1 - 0.6) * (1 - 0.1) * (1 - cfg.shard_weight * 0.9)
    assert rec["anomaly_score"] == pytest.approx(expected, abs=1e-6)
    assert rec["reasons"] == ["temperature"] and rec["warming_up"] is False and rec["scores"]["shard"] == 0.9
    # a warming shard is left out and flags the record
    rec = record(base, 0.9, True)
    assert rec["anomaly_score"] == pytest.approx(1 - 0.4 * 0.9) and rec["warming_up"] is True
    # everything warming: no score (the one rule of models.status.anomaly_score)
    allwarm = msgspec.structs.replace(base, warming=["temperature", "temperature_stuck", "humidity"])
    rec = record(allwarm, 0.9, True)
    assert rec["warming_up"] is True and rec["anomaly_score"] is None and rec["status"] == "NORMAL"
    # reasons via the shard detector: sensors with large |z|
    quiet = msgspec.structs.replace(base, scores={"temperature": 0.05, "humidity": 0.0})
    assert record(quiet, 0.95)["reasons"] == ["temperature"]
    assert "reasons" not in record(quiet, 0.05)  # NORMAL records carry no reasons
    # the default rule: the strongest weighted detector
    dflt = IoTScoringConfig()
    assert dflt.combine == "max"
    assert record(base, 0.9, c=dflt)["anomaly_score"] == pytest.approx(max(0.6, dflt.shard_weight * 0.9))
    slow = msgspec.structs.replace(base, scores={"temperature": 0.1, "temperature_slow": 0.99})
    rec = record(slow, 0.0, c=dflt)
    assert rec["anomaly_score"] == pytest.approx(dflt.slow_weight * 0.99) and rec["reasons"] == ["temperature"]


def test_record_fields_thresholds_and_input_carried_through() -> None:
    cfg = IoTScoringConfig(warmup=3, shard_window=10, shard_calib_warmup=3)
    scorer = IoTPipeline(cfg, Thresholds(critical=0.6, warning=0.3))
    rng = random.Random(3)
    for i in range(40):
        scorer.process(row("d1", i, noisy_values(rng), label=0, note={"k": [1]}), arrival=T0)
    rec = scorer.process(row("d1", 40, dict(noisy_values(rng), temperature=30.0), label=1, note={"k": [1]}),
                         arrival=T0)[0]
    expected_input = row("d1", 40, {}, label=1, note={"k": [1]})
    assert {k: rec[k] for k in expected_input} == expected_input and rec["temperature"] == 30.0
    assert rec["kind"] == "reading" and rec["id"] == f"d1@{rec['timestamp']}"
    assert rec["status"] == ("CRITICAL" if rec["anomaly_score"] > 0.6 else "WARNING") and rec["reasons"]
    assert rec["model_version"] == detector_version(cfg) and rec["scored_at"].endswith("Z")
    assert rec["latency_ms"] >= 0 and "time_from_arrival" not in rec
    json.loads(json.dumps(rec))


def test_readings_time_from_arrival_get_unique_ids() -> None:
    cfg = IoTScoringConfig()
    scorer = IoTPipeline(cfg)
    recs = [scorer.process({"device_id": "d1", "temperature": 20.0 + i}, arrival=T0)[0] for i in range(3)]
    assert [r["id"] for r in recs] == [f"d1@{format_time(T0)}#{i}" for i in (1, 2, 3)]
    assert all(r["time_from_arrival"] is True and "timestamp" not in r for r in recs)


# ------------------------------------------------------------------ restore


def test_device_state_snapshot_is_plain_data_without_configuration() -> None:
    cfg = IoTScoringConfig()
    dev, _ = warm_device(cfg, n=30)
    snap = dev.snapshot()
    assert is_plain(snap)
    text = repr(snap)
    assert "config" not in snap and "windows_s" not in text and "alpha" not in text
    with pytest.raises(ValueError, match="DeviceState.load"):
        DeviceState(cfg).load({"version": "nope"})


def test_device_state_restore_gives_identical_outputs() -> None:
    cfg = IoTScoringConfig(drift_threshold=2.0, drift_min_instances=10)
    dev, rng = warm_device(cfg, n=80)
    snap = pickle.loads(pickle.dumps(dev.snapshot()))  # as Bytewax stores it
    clone = DeviceState(cfg)
    clone.load(snap)
    outputs = []
    for i in range(80, 160):
        vals = noisy_values(rng)
        if i % 10 == 0:
            vals["temperature"] += 5.0
        if i > 120:
            vals["pressure"] += 0.1 * (i - 120)
        r = reading(cfg, "dev-1", i, vals)
        a, b = dev.update(r), clone.update(r)
        assert stable(a) == stable(b)
        outputs.append(a)
    assert any(o.drifts for o in outputs)  # the drift monitors were restored too


def run_devices(cfg, devices, states, shards, rng, start, stop):
    out = []
    for i in range(start, stop):
        for d in devices:
            vals = noisy_values(rng)
            if (i + len(d)) % 17 == 0:
                vals["humidity"] += 8.0
            r = reading(cfg, d, i, vals)
            res = states.setdefault(d, DeviceState(cfg)).update(r)
            out.append(shards.setdefault(str(res.shard), ShardState(cfg)).update(res))
            out.extend(res.drifts)
    return out


def test_device_and_shard_state_restore_gives_identical_records() -> None:
    cfg = IoTScoringConfig(n_shards=2, shard_window=30, shard_calib_warmup=10, warmup=10)
    devices = [f"dev-{k}" for k in range(6)]
    states: dict[str, DeviceState] = {}
    shards: dict[str, ShardState] = {}
    rng = random.Random(11)
    run_devices(cfg, devices, states, shards, rng, 0, 40)  # past the shard window
    assert set(shards) == {"0", "1"} and all(not s.detector.warming_up for s in shards.values())
    dev_snaps = {d: pickle.loads(pickle.dumps(s.snapshot())) for d, s in states.items()}
    shard_snaps = {k: pickle.loads(pickle.dumps(s.snapshot())) for k, s in shards.items()}
    states2, shards2 = {}, {}
    for d, snap in dev_snaps.items():
        states2[d] = DeviceState(cfg)
        states2[d].load(snap)
    for k, snap in shard_snaps.items():
        shards2[k] = ShardState(cfg)
        shards2[k].load(snap)
    state_rng = rng.getstate()
    uninterrupted = run_devices(cfg, devices, states, shards, rng, 40, 80)
    rng.setstate(state_rng)
    restored = run_devices(cfg, devices, states2, shards2, rng, 40, 80)
    assert len(restored) >= 240
    assert stable(restored) == stable(uninterrupted)
    assert any(r["kind"] == "reading" and r["status"] != "NORMAL" for r in restored)
    # a shard restarted from nothing scores differently (so the test would notice a no-op load)
    fresh_shards = {k: ShardState(cfg) for k in shards}
    rng.setstate(state_rng)
    states3 = {}
    for d, snap in dev_snaps.items():
        states3[d] = DeviceState(cfg)
        states3[d].load(snap)
    assert stable(run_devices(cfg, devices, states3, fresh_shards, rng, 40, 80)) != stable(uninterrupted)


def test_restore_under_a_new_configuration_uses_it() -> None:
    old = IoTScoringConfig(features=SensorConfig(windows_s=(300.0,)), shard_window=20, shard_calib_warmup=5)
    new = IoTScoringConfig(features=SensorConfig(windows_s=(60.0, 900.0)), alpha=0.05, shard_window=20,
                        shard_calib_warmup=5)
    dev, rng = warm_device(old, n=60)
    shard = ShardState(old)
    for i in range(60, 100):
        shard.update(dev.update(reading(old, "dev-1", i, noisy_values(rng))))
    dev2 = DeviceState(new)
    dev2.load(dev.snapshot())
    assert dev2.level["temperature"].alpha == 0.05 and not dev2.level["temperature"].warming_up
    res = dev2.update(reading(new, "dev-1", 100, noisy_values(rng)))
    assert list(res.features) == feature_names(new.features)
    assert "temperature_mean_900s" in res.features and "temperature_mean_300s" not in res.features
    assert res.features["temperature_mean_900s"] is not None and res.features["dt_s"] == 60.0  # history kept
    assert res.warming == []  # learned state kept
    # the shard detector settings did not change: its learned state is kept, records carry the new version
    shard2 = ShardState(new)
    shard2.load(shard.snapshot())
    assert shard2.detector.n == shard.detector.n
    rec = shard2.update(res)
    assert rec["model_version"] == detector_version(new) != detector_version(old)
    assert set(rec["features"]) == set(feature_names(new.features))
    # another shard detector configuration: the old state is discarded, not loaded
    other = IoTScoringConfig(features=new.features, shard_window=40, shard_calib_warmup=5)
    shard3 = ShardState(other)
    shard3.load(shard.snapshot())
    assert shard3.detector.n == 0 and shard3.detector.window_size == 40
    # a sensor removed from the configuration is dropped; a new one starts fresh
    fewer = IoTScoringConfig(features=SensorConfig(sensors=("temperature", "co2")))
    dev3 = DeviceState(fewer)
    dev3.load(dev.snapshot())
    assert set(dev3.level) == {"temperature", "co2"} and dev3.level["co2"].n == 0
    assert dev3.level["temperature"].n == dev.level["temperature"].n


def test_shard_state_snapshot_and_load_checks() -> None:
    cfg = IoTScoringConfig()
    assert ShardState(cfg).snapshot() is None
    s = ShardState(cfg)
    s.load(None)
    assert s.detector is None
    with pytest.raises(ValueError, match="ShardState.load"):
        s.load({"nope": 1})


# ------------------------------------------------------------------ the driver


def test_iot_pipeline_gives_the_same_records_as_the_two_states() -> None:
    cfg = IoTScoringConfig(n_shards=3, shard_window=25, shard_calib_warmup=5, warmup=8,
                        drift_threshold=2.0, drift_min_instances=10)
    rng = random.Random(8)
    rows = []
    for i in range(120):
        for d in ("a", "bb", "ccc", "dddd"):
            vals = noisy_values(rng)
            if i > 80 and d == "a":
                vals["temperature"] += 0.2 * (i - 80)
            rows.append(row(d, i, vals, seq=i))
    rows.insert(50, {"device_id": "a", "timestamp": 0})  # invalid: no sensors
    scorer = IoTPipeline(cfg)
    states: dict[str, DeviceState] = {}
    shards: dict[str, ShardState] = {}
    via_scorer, direct = [], []
    for r in rows:
        try:
            via_scorer += scorer.process(json.dumps(r), arrival=T0)
        except ValidationError:
            via_scorer.append("dead")
        try:
            rd = parse_reading(r, cfg.features, arrival=T0)
        except ValidationError:
            direct.append("dead")
            continue
        res = states.setdefault(rd.device, DeviceState(cfg)).update(rd)
        direct.append(shards.setdefault(str(res.shard), ShardState(cfg)).update(res))
        direct.extend(res.drifts)
    assert stable(via_scorer) == stable(direct)
    assert "dead" in via_scorer and any(r != "dead" and r["kind"] == "drift" for r in via_scorer)
    assert set(scorer.shards) == set(shards) and set(scorer.devices) == {"a", "bb", "ccc", "dddd"}


def test_iot_pipeline_custom_schema_end_to_end() -> None:
    cfg = IoTScoringConfig(
        features=SensorConfig(key_field="sid", time_field="ts", sensors=("a", "b", "c", "d"), windows_s=(120.0,)),
        n_shards=2, shard_window=50, shard_calib_warmup=10, warmup=10,
    )
    scorer = IoTPipeline(cfg)
    rng = random.Random(6)
    out = []
    for i in range(300):
        for dev in ("s1", "s2", "s3"):
            r = {"sid": dev, "ts": format_time(T0 + 30 * i), **{k: rng.gauss(10, 1) for k in "abcd"}}
            out += scorer.process(r)
    readings = [r for r in out if r["kind"] == "reading"]
    assert len(readings) == 900 and all(r["kind"] in ("reading", "drift") for r in out)
    assert readings[0]["warming_up"] and not readings[-1]["warming_up"]
    assert {"a_mean_120s", "d_delta"} <= set(readings[-1]["features"])
    assert set(scorer.shards) <= {"0", "1"}
    rec = scorer.process({"sid": "s1", "ts": format_time(T0 + 30 * 300), "a": 10.0, "b": 10.0, "c": 30.0, "d": 10.0})[0]
    assert rec["anomaly_score"] > 0.9 and rec["reasons"][0] == "c"
    with pytest.raises(ValidationError, match="'s1'.*'b' is not a number"):
        scorer.process({"sid": "s1", "ts": 0, "b": "n/a"})


def test_scoring_config_validation_and_round_trip() -> None:
    cfg = IoTScoringConfig(features=SensorConfig(sensors=("a", "b")), n_shards=8, shard_weight=0.3)
    assert IoTScoringConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert detector_version(IoTScoringConfig.from_dict(cfg.to_dict())) == detector_version(cfg)
    with pytest.raises(ValueError, match="shard_weight"):
        IoTScoringConfig(shard_weight=2.0)
    with pytest.raises(ValueError, match="clash"):
        IoTScoringConfig(features=SensorConfig(sensors=("a", "a_slow")))
    with pytest.raises(ValueError, match="KeyDetector: alpha"):
        IoTScoringConfig(alpha=0.0)
    with pytest.raises(ValueError, match="StuckDetector: beta"):
        IoTScoringConfig(stuck_beta=1.0)
    with pytest.raises(ValueError, match="window_size"):
        IoTScoringConfig(shard_window=1)


# --- DeviceState.update_many: the flow's batch step gives exactly what update gives one by one


def reference_update(dev: DeviceState, reading) -> DeviceResult:
    """DeviceState.update as it was before update_many (every detector through its own
    score_learn): the reference the batch step must reproduce exactly."""
    from features.records import shard_of

    c = dev.config
    ts = format_time(reading.t)
    if not reading.time_from_arrival:  # the stream has no duplicate ids: every one is remembered
        import zlib

        import msgspec

        key = f"{reading.device}@{ts}|{zlib.crc32(msgspec.json.encode(reading.values)):08x}"
        assert dev.ids.check(key, reading.t) is None
    dev.seq += 1
    feats = dev.features.update(reading.t, reading.values)
    rid = f"{reading.device}@{ts}" + (f"#{dev.seq}" if reading.time_from_arrival else "")
    scores, warming, shard_input, missing, drifts = {}, [], {}, [], []
    zc = c.z_clip
    for s in c.sensors:
        v = reading.values.get(s)
        if v is None or v != v:
            missing.append(s)
            continue
        kd = dev.level[s]
        z = kd.z(v)
        shard_input[s] = zc if z > zc else -zc if z < -zc else z
        for name, det in ((s, kd), (f"{s}_slow", dev.slow.get(s)), (f"{s}_stuck", dev.stuck[s])):
            if det is None:
                continue
            scores[name], w = det.score_learn(v)
            if w:
                warming.append(name)
        watched = f"{s}_slow" if c.drift_on == "slow" and s in dev.slow else s
        if watched not in warming and dev.drift[s].update(scores[watched]):
            drifts.append({"kind": "drift", "id": f"{rid}#drift:{watched}", "device_id": reading.device,
                           "timestamp": ts, "sensor": s, "detector": watched, "method": "PageHinkley",
                           "score": round(scores[watched], 6), "model_version": detector_version(c),
                           "scored_at": "-"})
    return DeviceResult(reading, rid, shard_of(reading.device, c.n_shards), feats, missing, scores, warming,
                        shard_input, drifts, ts)


def generated_stream(cfg: IoTScoringConfig, n: int = 3000, seed: int = 11) -> list:
    """One hot device at 10 Hz from the generator (faults: spikes, drifts, stuck, dropouts),
    plus readings timed by arrival, out of order, with missing / NaN / int values."""
    from datagen.sensors import generate_readings

    out = []
    for i, raw in enumerate(generate_readings(devices=1, readings=n, seed=seed)):
        raw = dict(raw, timestamp=format_time(T0 + 0.1 * i))
        if i % 97 == 0:
            raw.pop("timestamp")  # timed by arrival
        if i % 89 == 5:
            raw["timestamp"] = format_time(T0 + 0.1 * i - 30.0)  # late
        if i % 61 == 3:
            raw["humidity"] = None
        try:
            r = parse_reading(raw, cfg.features, arrival=T0 + 0.1 * i)
        except ValidationError:
            continue  # no sensor at all
        if i % 53 == 7:  # values the parser would not give: the detectors' own checks
            r = msgspec.structs.replace(r, values=dict(r.values, temperature=20, pressure=float("nan")))
        out.append(r)
    return out


def comparable(res: DeviceResult) -> dict:
    d = msgspec.structs.asdict(res)
    d["drifts"] = [{k: v for k, v in x.items() if k != "scored_at"} for x in d["drifts"]]
    return d


@pytest.mark.parametrize("cfg", [
    IoTScoringConfig(),
    IoTScoringConfig(drift_on="fast", warmup=5, drift_min_instances=10, drift_threshold=2.0),
    IoTScoringConfig(slow_weight=0.0, warmup=5, drift_threshold=2.0),
], ids=["default", "drift_on_fast", "no_slow"])
def test_update_many_equals_update_one_by_one(cfg: IoTScoringConfig) -> None:
    stream = generated_stream(cfg)
    ref_dev = DeviceState(cfg)
    ref = [comparable(reference_update(ref_dev, r)) for r in stream]
    assert any(r["drifts"] for r in ref) == (cfg.drift_threshold < 20.0)  # default: no drift in this stream
    assert any(r["missing"] for r in ref)
    assert any(r["warming"] for r in ref) and any(not r["warming"] for r in ref)

    one = DeviceState(cfg)
    assert [comparable(one.update(r)) for r in stream] == ref
    for size in (1, 7, 1000, len(stream)):
        dev, got = DeviceState(cfg), []
        for i in range(0, len(stream), size):
            got.extend(comparable(x) for x in dev.update_many(stream[i:i + size]))
        for g, e in zip(got, ref, strict=True):  # field by field, to name the first difference
            for k in e:
                assert g[k] == e[k], (size, e["id"], k)
        assert repr(dev.snapshot()) == repr(ref_dev.snapshot()) == repr(one.snapshot())  # repr: NaN == NaN
    assert DeviceState(cfg).update_many([]) == []


def test_update_many_after_restore_and_bad_values_like_update() -> None:
    cfg = IoTScoringConfig(warmup=5)
    stream = generated_stream(cfg, n=600)
    ref_dev, dev = DeviceState(cfg), DeviceState(cfg)
    for r in stream[:300]:
        reference_update(ref_dev, r)
    dev.update_many(stream[:300])
    restored = DeviceState(cfg)
    restored.update_many(stream[:10])  # the plan survives load (detectors are loaded in place)
    restored.load(dev.snapshot())
    ref = [comparable(reference_update(ref_dev, r)) for r in stream[300:]]
    assert [comparable(x) for x in restored.update_many(stream[300:])] == ref
    # an infinite value (the parser refuses it) raises as before, after the same state changes
    bad = msgspec.structs.replace(stream[-1], t=stream[-1].t + 1.0, values={"temperature": float("inf")})
    with pytest.raises(ValueError):
        reference_update(ref_dev, bad)
    with pytest.raises(ValueError):
        restored.update_many([bad])
    assert repr(restored.snapshot()) == repr(ref_dev.snapshot())
