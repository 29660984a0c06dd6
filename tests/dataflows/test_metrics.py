"""dataflows.metrics: a batch of written records counts as each record would."""

from __future__ import annotations

from prometheus_client import REGISTRY

from dataflows.metrics import METRICS


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_observe_many_counts_every_record() -> None:
    flow = "metrics-test"
    records = [
        {"status": "NORMAL", "latency_ms": 4.0, "anomaly_score": 0.1, "model_version": "v1"},
        {"status": "CRITICAL", "latency_ms": 30.0, "anomaly_score": 0.95, "model_version": "v1"},
        {"status": "NORMAL", "latency_ms": 2.0, "anomaly_score": None, "model_version": "v2"},
        {"status": "WARNING", "latency_ms": 600.0, "risk_score": 0.6, "fraud_score": 0.55, "model_version": "v2",
         "shadow_scores": {"v3": 0.4, "v4": None}},
    ]
    METRICS.observe_many(flow, "scored", records)
    METRICS.observe_many(flow, "scored", [])
    METRICS.observe(flow, "alerts", records[1])
    METRICS.observe_many(flow, "dead_letter", [{"error": "bad"}, {"kind": "drift"}])
    assert sample("scoring_records_total", flow=flow, output="scored", status="NORMAL") == 2
    assert sample("scoring_records_total", flow=flow, output="scored", status="CRITICAL") == 1
    assert sample("scoring_records_total", flow=flow, output="alerts", status="CRITICAL") == 1
    assert sample("scoring_records_total", flow=flow, output="dead_letter", status="-") == 1
    assert sample("scoring_records_total", flow=flow, output="dead_letter", status="drift") == 1
    assert sample("scoring_latency_seconds_count", flow=flow) == 4
    assert abs(sample("scoring_latency_seconds_sum", flow=flow) - 0.636) < 1e-12
    assert sample("scoring_latency_seconds_bucket", flow=flow, le="0.005") == 2
    assert sample("scoring_score_count", flow=flow) == 3  # None: not observed
    assert sample("scoring_predictions_total", flow=flow, model_version="v1", role="decide") == 2
    assert sample("scoring_predictions_total", flow=flow, model_version="v2", role="decide") == 2
    assert sample("scoring_predictions_total", flow=flow, model_version="v3", role="shadow") == 1
    assert sample("scoring_predictions_total", flow=flow, model_version="v4", role="shadow") == 1
    assert sample("scoring_model_score_count", flow=flow, model_version="v2", role="decide") == 1
    assert sample("scoring_model_score_count", flow=flow, model_version="v3", role="shadow") == 1
    assert sample("scoring_model_info", flow=flow, model_version="v2") == 1
