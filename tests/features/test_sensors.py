"""Tests for features.sensors: the typed Reading and its parser, per-device features."""

from __future__ import annotations

import json
import math
import pickle
import random

import pytest

from features.records import Raw, ValidationError, format_time, parse_time
from features.sensors import DeviceFeatures, Reading, SensorConfig, feature_names, parse_reading
from features.windows import summarize
from tests.conftest import is_plain

T0 = parse_time("2024-01-01T00:00:00Z")
SENSORS = ("temperature", "humidity", "pressure")




def noisy_values(rng: random.Random, base=(20.0, 50.0, 1000.0), sd=(0.2, 1.0, 0.3)) -> dict:
    return {s: round(rng.gauss(b, d), 2) for s, b, d in zip(SENSORS, base, sd)}


# ------------------------------------------------------------------ parsing


def test_parse_reading_defaults_and_missing_values() -> None:
    rec = {"device_id": "d1", "timestamp": "2024-01-01T00:00:05Z", "temperature": 21, "humidity": None,
           "pressure": float("nan"), "label": "x"}
    r = parse_reading(rec, SensorConfig(), arrival=99.0)
    assert isinstance(r, Reading)
    assert (r.device, r.t, r.arrival, r.time_from_arrival) == ("d1", T0 + 5, 99.0, False)
    assert r.values == {"temperature": 21.0, "humidity": None, "pressure": None}
    assert set(r.fields) == set(rec) and r.fields["label"] == "x"  # the input as received
    assert r.timestamp == "2024-01-01T00:00:05.000Z"
    rec2 = {"device_id": 3, "timestamp": T0, "temperature": "", "pressure": " 1000.5 "}  # humidity absent
    r2 = parse_reading(rec2, SensorConfig(), arrival=0.0)
    assert (r2.device, r2.t, r2.values) == ("3", T0, {"temperature": None, "humidity": None, "pressure": 1000.5})


def test_parse_reading_json_bytes_and_raw() -> None:
    text = '{"device_id": "d", "timestamp": "2024-01-01T00:00:00Z", "temperature": 1.5, "extra": [1, 2]}'
    a = parse_reading(text, SensorConfig(), arrival=1.0)
    b = parse_reading(text.encode(), SensorConfig(), arrival=1.0)
    c = parse_reading(Raw(text.encode(), topic="t", partition=0, offset=3), SensorConfig(), arrival=1.0)
    assert a == b == c and a.fields["extra"] == [1, 2]
    # typed, picklable (crosses Bytewax's keyed exchanges and snapshots)
    assert pickle.loads(pickle.dumps(a)) == a


def test_naive_time_is_utc_by_the_one_policy() -> None:
    cfg = SensorConfig()
    naive = parse_reading({"device_id": "d", "timestamp": "2024-01-01T00:00:30", "temperature": 1}, cfg, 0.0)
    aware = parse_reading({"device_id": "d", "timestamp": "2024-01-01T01:00:30+01:00", "temperature": 1}, cfg, 0.0)
    assert naive.t == aware.t == T0 + 30
    assert naive.timestamp == "2024-01-01T00:00:30.000Z"


def test_parse_reading_custom_fields_any_number_of_sensors() -> None:
    cfg = SensorConfig(key_field="sensor_id", time_field="ts", sensors=("a", "b", "c", "d", "e"))
    rec = {"sensor_id": "x", "ts": "2024-01-01T01:00:00+01:00", "a": 1, "b": 2.5, "e": None, "other": "kept"}
    r = parse_reading(rec, cfg, arrival=0.0)
    assert (r.device, r.t) == ("x", T0)
    assert r.values == {"a": 1.0, "b": 2.5, "c": None, "d": None, "e": None}
    assert r.fields["other"] == "kept"


@pytest.mark.parametrize("missing", [{}, {"timestamp": None}, {"timestamp": ""}])
def test_reading_without_time_is_time_from_arrival(missing: dict) -> None:
    r = parse_reading({"device_id": "d", "temperature": 1.0, **missing}, SensorConfig(), arrival=T0 + 7)
    assert r.t == T0 + 7 and r.arrival == T0 + 7 and r.time_from_arrival
    with pytest.raises(ValidationError, match="'timestamp' is missing"):
        parse_reading({"device_id": "d", "temperature": 1.0}, SensorConfig())


@pytest.mark.parametrize(
    "rec, match",
    [
        ({"timestamp": "2024-01-01T00:00:00Z", "temperature": 1}, "no 'device_id' field"),
        ({"device_id": "", "temperature": 1}, "no 'device_id' field"),
        ({"device_id": "d9", "timestamp": "yesterday", "temperature": 1}, "d9.*field 'timestamp'.*'yesterday'"),
        ({"device_id": "d9", "timestamp": 1.7e12, "temperature": 1}, "d9.*epoch milliseconds"),
        ({"device_id": "d9", "timestamp": 0, "humidity": "wet"}, "d9.*sensor 'humidity' is not a number: 'wet'"),
        ({"device_id": "d9", "timestamp": 0, "humidity": [1]}, "d9.*sensor 'humidity' is not a number"),
        ({"device_id": "d9", "timestamp": 0, "pressure": float("inf")}, "d9.*sensor 'pressure' is infinite"),
        ({"device_id": "d9", "timestamp": 0, "pressure": "-inf"}, "d9.*sensor 'pressure' is infinite"),
        ({"device_id": "d9", "timestamp": 0, "temperature": True}, "d9.*sensor 'temperature' is a boolean"),
        ({"device_id": "d9", "timestamp": 0, "temperature": None}, "d9.*none of the sensor fields"),
        ({"device_id": "d9", "timestamp": 0}, "d9.*none of the sensor fields"),
    ],
)
def test_parse_reading_errors_name_field_and_device(rec: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_reading(rec, SensorConfig(), arrival=0.0)


@pytest.mark.parametrize("raw, match", [("{broken", "not valid JSON"), ("[1]", "JSON object"), (5, "expected JSON")])
def test_parse_reading_undecodable(raw, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_reading(raw, SensorConfig(), arrival=0.0)


def test_time_output_always_has_milliseconds() -> None:
    assert format_time(parse_time("2024-03-05T06:07:08Z")) == "2024-03-05T06:07:08.000Z"
    assert format_time(T0 + 0.5) == "2024-01-01T00:00:00.500Z"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sensors": ()}, "at least one"),
        ({"sensors": ("a", "a")}, "duplicate"),
        ({"sensors": ("device_id",)}, "other than the key"),
        ({"windows_s": (0,)}, "windows_s"),
        ({"lateness_s": -1}, "lateness_s"),
        ({"max_events": 1}, "max_events"),
    ],
)
def test_sensor_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SensorConfig(**kwargs)


def test_sensor_config_round_trip() -> None:
    cfg = SensorConfig(key_field="k", sensors=("a", "b"), windows_s=(60, 600))
    assert SensorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


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
                # the documented tile rule: whole tiles of w/60 from the one holding t - w
                a = math.floor((t - w) / (w / 60))
                inside = [v[s] if v[s] is not None else math.nan for tt, v in seen
                          if math.ceil(tt / (w / 60)) - 1 >= a and tt <= t]
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
    seen_late = False
    for i in [0, 1, 2, 4, 5, 3, 6, 7, 9, 8]:
        f = shuffled.update(ts[i], {"x": float(i)})
        if i == 3:  # arrives 120 s late
            seen_late = True
            assert f["late_s"] == 120.0
            assert f["x_mean_600s"] == ref[ts[3]]["x_mean_600s"]
            assert f["dt_s"] == 60.0 and f["x_delta"] == 1.0
    assert seen_late


def test_all_sensors_missing_gives_none_features() -> None:
    dev = DeviceFeatures(SensorConfig(sensors=("x",), windows_s=(60.0,)))
    f = dev.update(T0, {"x": None})
    assert f["x_delta"] is None and f["x_mean_60s"] is None and f["dt_s"] is None


def test_device_features_snapshot_load_round_trip() -> None:
    rng = random.Random(2)
    dev = DeviceFeatures()
    for i in range(50):
        dev.update(T0 + 45 * i, noisy_values(rng))
    snap = dev.snapshot()
    assert is_plain(snap)
    assert "windows_s" not in repr(snap) and "sensors" not in repr(snap)  # state only
    clone = DeviceFeatures()
    clone.load(pickle.loads(pickle.dumps(snap)))
    for i in range(50, 60):
        vals = noisy_values(rng)
        assert clone.update(T0 + 45 * i, vals) == dev.update(T0 + 45 * i, vals)
    with pytest.raises(ValueError, match="TiledWindows.load"):
        DeviceFeatures().load(("x",))


def test_device_features_load_under_a_new_configuration_uses_it() -> None:
    old_cfg = SensorConfig(sensors=("x", "y"), windows_s=(60.0,))
    new_cfg = SensorConfig(sensors=("x", "z"), windows_s=(300.0, 900.0))
    old = DeviceFeatures(old_cfg)
    for i in range(20):
        old.update(T0 + 30 * i, {"x": float(i), "y": 1.0})
    new = DeviceFeatures(new_cfg)
    new.load(old.snapshot())
    f = new.update(T0 + 30 * 20, {"x": 20.0, "z": 5.0})
    assert list(f) == feature_names(new_cfg)
    assert f["x_mean_300s"] == pytest.approx(sum(range(11, 21)) / 10)  # the new window over the kept history
    assert f["z_mean_300s"] == 5.0 and f["z_delta"] is None  # a new sensor starts empty
