"""Tests for datagen.sensors: determinism, labels, formats, CLI."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from datagen.sensors import FAULTS, FaultConfig, generate_readings, main
from features.formats import iter_raw, read_rows, write_rows
from features.records import parse_time

SENSORS = ("temperature", "humidity", "pressure")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    # fault rates scaled up so every fault kind shows in a small stream
    return list(generate_readings(devices=20, readings=6000, seed=5, faults=FaultConfig(scale=4.0)))


def test_deterministic_by_seed_and_prefix_stable() -> None:
    a = list(generate_readings(devices=10, readings=500, seed=1))
    assert a == list(generate_readings(devices=10, readings=500, seed=1))
    assert a != list(generate_readings(devices=10, readings=500, seed=2))
    assert a[:200] == list(generate_readings(devices=10, readings=200, seed=1))


def test_shape_order_and_timestamps(rows: list[dict]) -> None:
    assert len(rows) == 6000
    assert len({r["device_id"] for r in rows}) == 20
    times = [parse_time(r["timestamp"]) for r in rows]
    assert times == sorted(times)
    assert all(r["timestamp"].endswith("Z") for r in rows)
    per_dev: dict[str, list[float]] = defaultdict(list)
    for r, t in zip(rows, times):
        assert list(r) == ["device_id", "timestamp", *SENSORS, "is_anomaly", "fault"]
        per_dev[r["device_id"]].append(t)
    for ts in per_dev.values():
        assert all(b > a for a, b in zip(ts, ts[1:]))
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        assert 20 <= min(gaps) and max(gaps) <= 100


def test_labels(rows: list[dict]) -> None:
    faults = {r["fault"] for r in rows}
    assert faults == {"", *FAULTS}
    for r in rows:
        assert r["is_anomaly"] in (0, 1)
        missing = [s for s in SENSORS if r[s] is None]
        if r["fault"] == "dropout":
            assert missing and r["is_anomaly"] == 0  # documented: dropouts are labelled normal
        else:
            assert not missing
        if r["fault"] in ("", "dropout"):
            assert r["is_anomaly"] == 0
        if r["fault"] in ("spike", "stuck"):
            assert r["is_anomaly"] == 1 or r["fault"] == "stuck"
    # stuck readings repeat the device's previous value of some sensor exactly
    last: dict[str, dict] = {}
    stuck_repeats = stuck = 0
    for r in rows:
        prev = last.get(r["device_id"])
        if r["fault"] == "stuck" and r["is_anomaly"] and prev is not None:
            stuck += 1
            stuck_repeats += any(r[s] is not None and r[s] == prev[s] for s in SENSORS)
        last[r["device_id"]] = r
    assert stuck > 0 and stuck_repeats == stuck
    # drift readings: unlabelled at the start of an episode, labelled once visible
    drift = [r["is_anomaly"] for r in rows if r["fault"] == "drift"]
    assert 0 in drift and 1 in drift
    rate = sum(r["is_anomaly"] for r in rows) / len(rows)
    assert 0.02 < rate < 0.4


def test_custom_sensors_and_bad_arguments() -> None:
    rows = list(generate_readings(devices=3, readings=50, seed=1, sensors=("co2", "temperature")))
    assert set(rows[0]) == {"device_id", "timestamp", "co2", "temperature", "is_anomaly", "fault"}
    with pytest.raises(ValueError, match="clash"):
        list(generate_readings(sensors=("fault",)))
    with pytest.raises(ValueError, match="devices"):
        list(generate_readings(devices=0))
    with pytest.raises(ValueError, match="total fault rate"):
        FaultConfig(scale=1000.0)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_write_read_round_trip(tmp_path, suffix: str) -> None:
    rows = list(generate_readings(devices=5, readings=300, seed=3, faults=FaultConfig(scale=10.0)))
    assert any(r["temperature"] is None or r["humidity"] is None or r["pressure"] is None for r in rows)
    path = tmp_path / f"sub/readings{suffix}"
    assert write_rows(rows, path) == 300
    back = read_rows(path)
    assert len(back) == 300
    assert len(list(iter_raw(path))) == 300
    for a, b in zip(rows, back):
        # every format gives the same reading back (CSV gives strings, missing -> None)
        assert list(b) == list(a)
        assert b["device_id"] == a["device_id"] and parse_time(b["timestamp"]) == parse_time(a["timestamp"])
        for s in SENSORS:
            assert (b[s] is None) == (a[s] is None) and (a[s] is None or float(b[s]) == a[s]), (s, a, b)
        assert int(b["is_anomaly"]) == a["is_anomaly"] and (b["fault"] or "") == a["fault"]


def test_unknown_format(tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match="cannot tell the format"):
        write_rows([], tmp_path / "x.txt")
    assert main(["--readings", "5", "--out", str(tmp_path / "r.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot tell the format") and "r.txt" in err and err.count("\n") == 1
    assert not (tmp_path / "r.txt").exists()


def test_cli(tmp_path, capsys) -> None:
    out = tmp_path / "r.jsonl"
    assert main(["--devices", "4", "--readings", "200", "--seed", "7", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 200 and json.loads(lines[0])["timestamp"].endswith("Z")
    assert "wrote 200 readings from 4 devices" in capsys.readouterr().out
    # --format overrides the suffix
    odd = tmp_path / "r.data"
    assert main(["--devices", "2", "--readings", "30", "--out", str(odd), "--format", "csv"]) == 0
    assert len(read_rows(odd, "csv")) == 30 and odd.read_text().startswith("device_id,timestamp,")
