"""Smoke test of the benchmark harness (``python -m benchmarks.run``): every
measurement of the quick bench runs on tiny inputs, against the test session's
Feast repo and model, and the table and the JSON hold every row and key.
No figure is asserted: timings depend on the machine."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import common, run as bench

TINY = dict(fraud_events=600, iot_events=400, iot_devices=10, hot_events=400, stage_events=300, naive_events=10,
            memory_keys=500, distinct_customers=700, quality_readings=1500,
            gc_events=0,  # two more flow runs: the policy is tested in tests/dataflows/test_gcwatch.py
            snapshot_flow_inputs="")  # the recovery section's flow runs: tests/benchmarks/test_snapshots.py


def test_quick_bench_runs_on_tiny_inputs(fraud_env, tmp_path: Path) -> None:
    doc = bench.run(quick=True, kafka=False, work=tmp_path / "work", sizes=TINY,
                    feature_repo=fraud_env.repo, registry=fraud_env.registry)
    res = doc["results"]
    failed = {k: v["error"] for k, v in res.items() if isinstance(v, dict) and "error" in v}
    assert not failed, failed
    assert {"file_fraud", "file_iot_many", "file_iot_hot", "river_hot_loop", "naive", "reference", "stage_costs",
            "memory_customer_state", "file_fraud_distinct_customers", "iot_quality", "fraud_model", "decoding"} <= res.keys()
    assert "kafka" not in res  # kafka=False skips it
    for name in ("file_fraud", "file_iot_many", "file_iot_hot", "file_fraud_distinct_customers"):
        r = res[name]
        assert {"events_per_s", "latency_ms", "startup_s", "first_scored_s", "wall_s", "peak_rss_mb"} <= r.keys()
        assert r["scored"] + r["dead_letters"] == r["input_events"]
    assert res["file_fraud"]["input_events"] == TINY["fraud_events"]
    assert res["file_fraud_distinct_customers"]["customers"] == TINY["distinct_customers"]
    assert res["reference"]["events"] == TINY["fraud_events"]
    assert res["naive"]["feast_calls"] == 2 * TINY["naive_events"]
    assert all(res["decoding"][f]["refused"] == 0 for f in ("json", "avro", "protobuf"))
    assert res["decoding"]["avro_over_json"] > 0
    assert {"roc_auc", "pr_auc"} <= res["iot_quality"]["project"].keys()
    assert {"roc_auc", "pr_auc", "recall_at_critical"} <= res["fraud_model"].keys()
    assert set(doc["ratios"]) == {"project_over_naive", "project_over_reference",
                                  "project_functions_over_reference", "hot_device_over_river"}
    assert {"cpu", "cores", "python", "bytewax"} <= doc["machine"].keys()

    text = bench.format_table(doc)
    assert doc["machine"]["cpu"] in text and "bytewax" in text
    for row in doc["table"]:
        assert row["row"] in text
    assert any(r["row"].startswith("2 Kafka") and r["notes"] == "skipped" for r in doc["table"])
    assert not any(r["notes"].startswith("FAILED") for r in doc["table"])
    json.loads(json.dumps(doc, default=str))  # JSON-ready
    assert not list((tmp_path / "work").glob("*.jsonl"))  # generated inputs removed


def test_steady_rate_leaves_out_the_first_instant() -> None:
    rate, span = common.steady_rate([10.0, 10.0, 10.0, 10.5, 11.0])
    assert (rate, span) == (2.0, 1.0)
    assert common.steady_rate([5.0]) == (None, 0.0)


def test_hot_device_readings_are_one_device_at_10_hz() -> None:
    from features.records import parse_time

    rows = common.hot_device_readings(5)
    assert {r["device_id"] for r in rows} == {rows[0]["device_id"]}
    times = [parse_time(r["timestamp"]) for r in rows]
    assert [round(b - a, 3) for a, b in zip(times, times[1:])] == [0.1] * 4


def test_distinct_customer_events() -> None:
    base = common.fraud_events(3)
    evs = list(common.distinct_customer_events(7, base))
    assert len({e["customer_id"] for e in evs}) == 7
    assert len({e["transaction_id"] for e in evs}) == 7


def test_breakdown_says_when_the_slowest_events_were_produced() -> None:
    """A tail bunched at the start of the live phase (a start-up transient) is told apart
    from one spread over the run."""
    from benchmarks.kafka_bench import breakdown

    produced = {f"e{i}": 1_000_000 + 10 * i for i in range(1000)}  # 100/s for 10 s
    # the first 20 events wait 500 ms in the source; the rest 10 ms; 5 ms in the flow, 2 in the sink
    scored = {k: (t + (500 if i < 20 else 10) + 7, t + (500 if i < 20 else 10) + 5.0, 5.0)
              for i, (k, t) in enumerate(produced.items())}
    b = breakdown(produced, scored, list(produced))
    slow = b["slowest_1pct"]
    assert slow["mean_source_ms"] == 500.0 and slow["mean_flow_ms"] == 5.0
    assert slow["produced_s_into_run"]["max"] < 0.2  # all within the first 0.2 s of 10
