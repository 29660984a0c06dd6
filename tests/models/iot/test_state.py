"""models.iot.state: the columnar device and shard steps give, record for record, what the
per-reading steps they replaced gave (digests recorded from those steps), and the pieces
they are built of (exact rounding, DeviceBatch rows, pickling)."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import msgspec
import orjson
import pytest

from features.records import DeadLetter, ValidationError, format_time, parse_time, shard_of
from features.sensors import SensorConfig, parse_reading
from models.iot import DeviceBatch, DeviceState, IoTScoringConfig, ShardState

GOLDEN = Path(__file__).parent / "data" / "records_before_columns.json"
T0 = parse_time("2024-01-01T00:00:00Z")
VOLATILE = ("scored_at", "latency_ms", "received_at")

CONFIGS = {
    "default": IoTScoringConfig(),
    "custom": IoTScoringConfig(
        features=SensorConfig(key_field="sid", time_field="ts", sensors=("vib", "temp", "rpm", "amps"),
                              windows_s=(30.0, 600.0)),
        slow_weight=0.0, combine="noisy_or", drift_on="fast", drift_threshold=1.0, drift_min_instances=10,
        warmup=8, n_shards=3, shard_window=40, shard_calib_warmup=10, idle_expiry_s=3600.0,
    ),
    "mean_slow_drift": IoTScoringConfig(combine="mean", drift_threshold=2.0, drift_min_instances=10, warmup=5,
                                        shard_window=30, shard_calib_warmup=5),
}


def stream(cfg: IoTScoringConfig, n: int = 6000, seed: int = 3) -> list:
    """Readings (parsed, arrival fixed) of many devices and one hot one: faults, missing
    and NaN sensors, duplicates, late readings, readings timed by arrival, an idle gap."""
    from datagen.sensors import generate_readings

    f = cfg.features
    names = dict(zip(("temperature", "humidity", "pressure"), f.sensors))
    rng = random.Random(seed)
    raw = []
    for i, r in enumerate(generate_readings(devices=12, readings=n, seed=seed)):
        x = {f.key_field: r["device_id"], f.time_field: r["timestamp"], "label": r["is_anomaly"]}
        x.update({names[k]: r[k] for k in names if k in r})
        if len(f.sensors) > 3:
            x[f.sensors[3]] = round(rng.gauss(10.0, 1.0), 2) if i % 7 else None
        raw.append((x, parse_time(r["timestamp"])))
        if i % 3 == 0:  # the hot device, 10 readings a second
            t = T0 + 0.1 * i
            h = {f.key_field: "hot", f.time_field: format_time(t), f.sensors[0]: round(20 + rng.gauss(0, 0.3), 2),
                 f.sensors[1]: 50.0 if i % 11 else None, f.sensors[2]: float(i % 13)}
            if 3000 < i < 3300:
                h[f.sensors[0]] += 5.0  # a shift
            raw.append((h, t))
        if i % 41 == 0:
            raw.append((dict(x), parse_time(r["timestamp"])))  # a re-delivery
        if i % 59 == 0:
            late = dict(x, **{f.time_field: format_time(parse_time(r["timestamp"]) - 40.0)})
            raw.append((late, parse_time(r["timestamp"])))
        if i % 67 == 0:
            y = dict(x)
            y.pop(f.time_field)
            raw.append((y, parse_time(r["timestamp"]) + 0.5))  # timed by arrival
        if i == n // 2:  # a device back after a long gap
            raw.append(({f.key_field: "gap", f.time_field: format_time(T0), f.sensors[0]: 1.0}, T0))
            raw.append(({f.key_field: "gap", f.time_field: format_time(T0 + 90000.0), f.sensors[0]: 1.5}, T0))
    out = []
    for x, arrival in raw:
        try:
            out.append(parse_reading(x, f, arrival))
        except ValidationError:
            continue
    return out


def run_steps(cfg: IoTScoringConfig, readings: list, shard_step: Callable[[ShardState, list], list],
              batch: int = 500) -> list:
    """Run the flow's two steps as the dataflow runs them: per upstream batch, each device's
    readings together (``stateful_batch``), then each shard's results together through
    ``shard_step``. Returns the dead letters (as dicts) and drift records of the device step,
    and what ``shard_step`` returned, in the order the flow emits them."""
    devices: dict[str, DeviceState] = {}
    shards: dict[int, ShardState] = {}
    out: list = []
    for b in range(0, len(readings), batch):
        by_dev: dict[str, list] = defaultdict(list)
        for r in readings[b:b + batch]:
            by_dev[r.device].append(r)
        by_shard: dict[int, list] = defaultdict(list)
        for dev, rs in by_dev.items():
            for item in devices.setdefault(dev, DeviceState(cfg)).score_batch(rs):
                if isinstance(item, DeadLetter):
                    out.append(item.to_dict())
                else:
                    by_shard[item.shard].append(item)
                    out.extend(item.drifts)
        for sh, items in by_shard.items():
            out.extend(shard_step(shards.setdefault(sh, ShardState(cfg)), items))
    return out


def flow_outputs(cfg: IoTScoringConfig, readings: list, batch: int = 500) -> list:
    """The records the flow writes (:func:`run_steps` with the shard step's records)."""
    return run_steps(cfg, readings, ShardState.update_batches, batch)


def digests(outputs: list, chunk: int = 100) -> list[str]:
    """A digest per ``chunk`` outputs in order (each output without the wall-clock fields,
    its keys sorted), so a difference is found and placed without storing the records."""
    out = []
    for i in range(0, len(outputs), chunk):
        h = hashlib.sha256()
        for o in outputs[i:i + chunk]:
            h.update(orjson.dumps({k: v for k, v in o.items() if k not in VOLATILE}, option=orjson.OPT_SORT_KEYS))
            h.update(b"\n")
        out.append(h.hexdigest()[:16])
    return out


def by_output(outputs: list) -> dict[str, list]:
    """The outputs as the flow writes them: reading records (scored), drift records
    (alerts) and dead letters, each in order."""
    out: dict[str, list] = {"reading": [], "drift": [], "dead": []}
    for o in outputs:
        out[o.get("kind", "dead")].append(o)
    return out


def golden(outputs: list) -> dict:
    return {k: {"outputs": len(v), "digests": digests(v)} for k, v in by_output(outputs).items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_columnar_steps_give_the_records_of_the_per_reading_steps(name: str, monkeypatch) -> None:
    """The digests were recorded with the per-reading steps of before (commit 09e3bf5:
    DeviceState.update_many -> DeviceResult per reading, ShardState.update_many -> a
    record per result, same batches): every record, drift record and dead letter is
    identical, each output in the same order. (That commit's devices went to their
    shard by crc32; the shard rule is now Bytewax's SipHash, features/keyhash.py, so
    the comparison routes as it did.)"""
    import zlib

    import models.iot.state as state

    monkeypatch.setattr(state, "shard_of", lambda key, shards: zlib.crc32(str(key).encode("utf-8")) % shards)
    cfg = CONFIGS[name]
    outputs = by_output(flow_outputs(cfg, stream(cfg)))
    want = json.loads(GOLDEN.read_text())[name]
    assert all(outputs.values()) and any(o["missing"] for o in outputs["reading"])
    assert any(o["status"] != "NORMAL" for o in outputs["reading"])
    for kind, out in outputs.items():
        assert len(out) == want[kind]["outputs"], kind
        for i, (g, w) in enumerate(zip(digests(out), want[kind]["digests"], strict=True)):
            assert g == w, f"{kind} {100 * i}-{100 * i + 99} differ (first: {out[100 * i].get('id')!r})"


def test_device_batch_rows_round_trip_and_pickle() -> None:
    cfg = CONFIGS["custom"]
    readings = [r for r in stream(cfg, n=2000) if r.device == "dev-0001" and not r.time_from_arrival]
    items = DeviceState(cfg).score_batch(readings)
    (batch,) = [b for b in items if isinstance(b, DeviceBatch)]
    assert len(batch) == len(readings) - sum(isinstance(d, DeadLetter) for d in items) > 100 and batch.shard == shard_of("dev-0001", 3)
    results = batch.results(cfg)
    assert any(r.missing for r in results) and any(not r.missing for r in results)
    again = DeviceBatch.of(results, cfg)
    assert again.results(cfg) == results
    copy = pickle.loads(pickle.dumps(batch))  # crosses the keyed exchange to the shard's worker
    assert copy.results(cfg) == results and msgspec.structs.asdict(copy)["ids"] == batch.ids
    # update_many (rows of the batch) and update_batches (the columns) give the same records
    a, b = ShardState(cfg), ShardState(cfg)
    strip = lambda recs: [{k: v for k, v in r.items() if k not in VOLATILE} for r in recs]  # noqa: E731
    assert strip(a.update_many(results)) == strip(b.update_batches([batch]))
