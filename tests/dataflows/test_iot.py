"""The IoT dataflow end to end with bytewax.testing: any field names, bad readings,
warm-up, thresholds, drift records, and exact accounting."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest
from bytewax.testing import run_main

from settings.config import ConfigError, IoTConfig
from dataflows.iot import build_flow
from datagen.sensors import generate_readings
from datagen.transactions import write_events


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def run(tmp_path: Path, events: list, **env: str) -> tuple[list[dict], list[dict], list[dict]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "in.jsonl"
    write_events(events, path)
    out = tmp_path / "out"
    env = {"STREAMSCORE_IOT__DEVICE_PROFILE": "false", **env}
    cfg = IoTConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(path),
                              "STREAMSCORE_IO__OUTPUT_DIR": str(out), "STREAMSCORE_IO__BATCH_SIZE": "300", **env})
    run_main(build_flow(cfg))
    return read_jsonl(out / "scored.jsonl"), read_jsonl(out / "alerts.jsonl"), read_jsonl(out / "dead_letter.jsonl")


def check_accounting(n: int, scored: list[dict], alerts: list[dict], dead: list[dict]) -> None:
    assert len(scored) + len(dead) == n
    assert len({r["id"] for r in scored}) == len(scored)
    readings = [a for a in alerts if a["kind"] == "reading"]
    assert sorted(map(orjson.dumps, readings)) == sorted(orjson.dumps(r) for r in scored if r["status"] != "NORMAL")
    assert all(a["kind"] in ("reading", "drift") for a in alerts)


def renamed(readings: list[dict]) -> list[dict]:
    """Readings with other field names: sensor/ts and sensors a, b, c."""
    names = {"device_id": "sensor", "timestamp": "ts", "temperature": "a", "humidity": "b", "pressure": "c"}
    return [{names.get(k, k): v for k, v in r.items()} for r in readings]


IOT_ABC = {"STREAMSCORE_IOT__KEY_FIELD": "sensor", "STREAMSCORE_IOT__TIME_FIELD": "ts", "STREAMSCORE_IOT__SENSOR_FIELDS": "a,b,c"}


def test_arbitrary_fields_bad_readings_and_accounting(tmp_path):
    events: list = renamed(list(generate_readings(devices=8, readings=3000, seed=3)))
    events[100]["a"] = "hot"                              # non-numeric
    events[200]["b"] = True                               # boolean
    events[300] = {"ts": "2024-01-01T00:00:00Z", "a": 1.0}  # no key
    events[400]["ts"] = "soon"                            # bad time
    events[500]["c"] = None                               # one sensor missing: scored on the others
    events.append("{broken json")
    scored, alerts, dead = run(tmp_path, events, **IOT_ABC)
    check_accounting(len(events), scored, alerts, dead)
    errors = " | ".join(d["error"] for d in dead)
    for fragment in ("sensor 'a' is not a number: 'hot'", "sensor 'b' is a boolean", "no 'sensor' field",
                     "'soon'", "not valid JSON"):
        assert fragment in errors
    by_id = {r["id"]: r for r in scored}
    partial = by_id[f"{events[500]['sensor']}@{events[500]['ts']}"]
    assert partial["missing"] == ["c"] and "c" not in partial["scores"] and partial["c"] is None
    rec = scored[-1]
    # Input fields the flow does not use (the labels) are carried through unchanged.
    assert {"sensor", "ts", "a", "b", "c", "is_anomaly", "fault"} <= set(rec)
    for field in ("anomaly_score", "status", "scores", "model_version", "scored_at", "latency_ms", "warming_up"):
        assert field in rec
    assert rec["model_version"].startswith("iot-detectors/")
    assert {"a", "a_slow", "a_stuck", "shard"} <= set(rec["scores"])
    assert "a_mean_300s" in rec["features"] and "dt_s" in rec["features"]
    for a in alerts:
        if a["kind"] == "reading":
            assert a["reasons"] and set(a["reasons"]) <= {"a", "b", "c"}
    # Scoring beats chance on the labelled faults.
    hit = [r for r in scored if r["status"] == "CRITICAL"]
    assert hit and sum(r["is_anomaly"] for r in hit) >= 0.7 * len(hit)


def test_time_field_absent_uses_arrival(tmp_path):
    events = [{k: v for k, v in r.items() if k != "timestamp"} for r in generate_readings(devices=3, readings=300, seed=1)]
    scored, alerts, dead = run(tmp_path, events)
    check_accounting(len(events), scored, alerts, dead)
    assert not dead and all(r["time_from_arrival"] for r in scored)
    assert "timestamp" not in scored[0]


def test_configured_fields_that_never_appear_are_logged_once_and_counted(tmp_path):
    """A typo in the sensor fields, and a time field the data does not have: one warning
    per field naming the setting (after the first iot.field_check_events events), and a
    counter of the events without each field."""
    from prometheus_client import REGISTRY
    from structlog.testing import capture_logs

    def count(field: str) -> float:
        return REGISTRY.get_sample_value("scoring_events_missing_field_total", {"flow": "iot", "field": field}) or 0.0

    events = list(generate_readings(devices=3, readings=300, seed=4))
    before = {f: count(f) for f in ("vibraton", "ts", "temperature")}
    with capture_logs() as logs:
        scored, alerts, dead = run(tmp_path, events, STREAMSCORE_IOT__SENSOR_FIELDS="temperature,vibraton",
                                   STREAMSCORE_IOT__TIME_FIELD="ts", STREAMSCORE_IOT__FIELD_CHECK_EVENTS="100")
    check_accounting(len(events), scored, alerts, dead)
    warned = {e["field"]: e for e in logs if e["event"] == "configured_field_absent"}
    assert sorted(warned) == ["ts", "vibraton"] and len(warned) == sum(e["event"] == "configured_field_absent" for e in logs)
    assert warned["vibraton"]["setting"] == "STREAMSCORE_IOT__SENSOR_FIELDS" and warned["vibraton"]["log_level"] == "warning"
    assert "field 'ts' is absent from all of the first 100 events" in warned["ts"]["detail"]
    assert "timed by its arrival" in warned["ts"]["detail"]
    assert count("vibraton") - before["vibraton"] == count("ts") - before["ts"] == len(events)
    assert count("temperature") - before["temperature"] == sum(e.get("temperature") is None for e in events)


def test_warm_up_is_marked_not_a_confident_zero(tmp_path):
    events = list(generate_readings(devices=2, readings=200, seed=2))
    scored, _, _ = run(tmp_path, events)
    first = [r for r in scored if r["device_id"] == scored[0]["device_id"]][:5]
    assert all(r["warming_up"] and r["anomaly_score"] is None and r["status"] == "NORMAL" for r in first)
    later = scored[-1]
    assert later["anomaly_score"] is not None and 0.0 <= later["anomaly_score"] <= 1.0


@pytest.mark.parametrize("critical,warning", [(0.8, 0.5), (0.3, 0.1)])
def test_status_follows_the_configured_thresholds(tmp_path, critical, warning):
    events = list(generate_readings(devices=5, readings=1500, seed=4))
    scored, alerts, dead = run(tmp_path, events, STREAMSCORE_IOT__CRITICAL=str(critical),
                               STREAMSCORE_IOT__WARNING=str(warning))
    check_accounting(len(events), scored, alerts, dead)
    for r in scored:
        s = r["anomaly_score"]
        expected = "NORMAL" if s is None else "CRITICAL" if s > critical else "WARNING" if s > warning else "NORMAL"
        assert r["status"] == expected
    assert any(r["status"] == "CRITICAL" for r in scored)


def test_drift_record_on_a_level_shift(tmp_path):
    events = []
    for i in range(900):
        level = 20.0 if i < 500 else 20.0 + (i - 500) * 0.05   # slow drift after reading 500
        events.append({"device_id": "d1", "timestamp": 1_700_000_000 + 60 * i,
                       "temperature": level + 0.1 * math.sin(i), "humidity": 50 + 0.2 * math.cos(i),
                       "pressure": 1000 + 0.1 * math.sin(i / 3)})
    scored, alerts, dead = run(tmp_path, events)
    check_accounting(len(events), scored, alerts, dead)
    drifts = [a for a in alerts if a["kind"] == "drift"]
    assert drifts and drifts[0]["sensor"] == "temperature" and drifts[0]["device_id"] == "d1"
    assert all(1_700_000_000 + 60 * 500 <= _epoch(d["timestamp"]) for d in drifts)
    assert {"id", "detector", "method", "model_version"} <= set(drifts[0])


def _epoch(iso: str) -> float:
    from features.records import parse_time

    return parse_time(iso)


def test_config_errors_name_the_variable():
    with pytest.raises(ConfigError, match="STREAMSCORE_IOT__SENSOR_FIELDS"):
        IoTConfig.from_env({"STREAMSCORE_IOT__SENSOR_FIELDS": "a,a"})
    with pytest.raises(ConfigError, match="STREAMSCORE_IOT__WINDOWS_S"):
        IoTConfig.from_env({"STREAMSCORE_IOT__WINDOWS_S": "5m"})


def test_device_profile_from_feast_when_the_repo_defines_it(fraud_env, tmp_path):
    events = list(generate_readings(devices=4, readings=200, seed=6))
    scored, alerts, dead = run(tmp_path / "with", events, STREAMSCORE_FEAST__REPO=str(fraud_env.repo),
                               STREAMSCORE_IOT__DEVICE_PROFILE="true")
    check_accounting(len(events), scored, alerts, dead)
    assert all(r["device_known"] for r in scored)
    assert scored[0]["device_profile"]["site"] in ("plant-north", "plant-south", "warehouse-east", "lab-west")
    # Feast's own answer for one device is what the record carries.
    from dataflows.resources import feature_store

    store = feature_store(fraud_env.repo)
    dev = scored[0]["device_id"]
    online = store.get_online_features(features=["device_profile:site", "device_profile:model"],
                                       entity_rows=[{"device_id": dev}]).to_dict()
    assert scored[0]["device_profile"]["site"] == online["site"][0]
    assert scored[0]["device_profile"]["model"] == online["model"][0]
    # Switched off, the flow works the same, without the profile.
    scored, alerts, dead = run(tmp_path / "without", events, STREAMSCORE_IOT__DEVICE_PROFILE="false")
    check_accounting(len(events), scored, alerts, dead)
    assert "device_profile" not in scored[0]


def test_flow_and_quality_benchmark_give_the_same_scores(tmp_path):
    """The benchmark's figures come from the flow's own path: same records, field by field.

    Exactly equal with one event per batch. With larger batches Bytewax hands a keyed
    step each batch's items grouped by key, so the shared shard detector sees readings
    grouped by device instead of interleaved: only its score may then differ."""
    from models.iot import IoTPipeline

    from settings.config import IoTConfig as Cfg
    from dataflows.scoring import iot_scoring_config

    from features.records import ValidationError

    events = list(generate_readings(devices=6, readings=1500, seed=11))
    scored, _, dead = run(tmp_path, events, STREAMSCORE_IO__BATCH_SIZE="1")
    scorer = IoTPipeline(iot_scoring_config(Cfg.from_env({})))
    plain = {}
    for e in events:
        try:
            rec = scorer.process(e, arrival=0.0)[0]
        except ValidationError:
            continue
        plain[rec["id"]] = rec
    keep = ("anomaly_score", "status", "scores", "warming_up", "missing", "features", "model_version")
    flow = {r["id"]: {k: r.get(k) for k in keep} for r in scored}
    assert len(flow) == len(plain) == len(events) - len(dead)
    assert flow == {i: {k: r.get(k) for k in keep} for i, r in plain.items()}
    assert sum(r["anomaly_score"] is not None for r in scored) > 1000
    batched, _, _ = run(tmp_path / "batched", events, STREAMSCORE_IO__BATCH_SIZE="300")
    per_device = [{k: v for k, v in r["scores"].items() if k != "shard"} for r in batched]
    assert per_device == [{k: v for k, v in plain[r["id"]]["scores"].items() if k != "shard"} for r in batched]
