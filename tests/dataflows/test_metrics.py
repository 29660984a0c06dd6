"""dataflows.metrics: a batch of written records counts as each record would
(:meth:`~dataflows.metrics._Metrics.observe_batch`), whether the batch is a scored batch's
columns or single records (:class:`~features.records.RecordList`)."""

from __future__ import annotations

import math

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from dataflows.metrics import METRICS, _observe_many
import pytest

from features.records import RecordBatch, RecordList


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_single_records_count_every_record() -> None:
    flow = "metrics-test"
    records = [
        {"status": "NORMAL", "latency_ms": 4.0, "anomaly_score": 0.1, "model_version": "v1"},
        {"status": "CRITICAL", "latency_ms": 30.0, "anomaly_score": 0.95, "model_version": "v1"},
        {"status": "NORMAL", "latency_ms": 2.0, "anomaly_score": None, "model_version": "v2"},
        {"status": "WARNING", "latency_ms": 600.0, "risk_score": 0.6, "fraud_score": 0.55, "model_version": "v2",
         "shadow_scores": {"v3": 0.4, "v4": None}},
    ]
    METRICS.observe_batch(flow, "scored", RecordList(records))
    METRICS.observe_batch(flow, "scored", RecordList([]))
    METRICS.observe_batch(flow, "alerts", RecordList([records[1]]))
    METRICS.observe_batch(flow, "dead_letter", RecordList([{"error": "bad"}, {"kind": "drift"}]))
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


@pytest.mark.parametrize("repeat", [1, 5])  # 10 values (one by one) and 50 (at once, numpy)
def test_observe_many_equals_observe_one_by_one(repeat):
    values = [0.0, 0.001, 0.0049, 0.005, 0.3, 2.0, 11.0, 1e9, -1.0, math.nan] * repeat + [math.inf] * (repeat > 1)
    one, many = CollectorRegistry(), CollectorRegistry()
    a = Histogram("h", "h", buckets=(0.001, 0.005, 0.01, 0.5, 1, 10), registry=one)
    b = Histogram("h", "h", buckets=(0.001, 0.005, 0.01, 0.5, 1, 10), registry=many)
    for v in values:
        a.observe(v)
    _observe_many(b, values)

    def samples(reg):
        return [(s.name, tuple(sorted(s.labels.items())), repr(s.value)) for m in reg.collect() for s in m.samples
                if not s.name.endswith("_created")]

    assert samples(many) == samples(one)


class _Batch(RecordBatch):
    def __init__(self, records):
        self.recs = records

    def output_statuses(self, kind):
        return [r["status"] for r in self.recs]

    def metric_columns(self):
        r = self.recs
        return ([x["latency_ms"] for x in r], [x["risk_score"] for x in r], [x["model_version"] for x in r],
                [x["fraud_score"] for x in r], [x.get("shadow_scores") for x in r])


def test_a_batch_counts_as_its_records_one_by_one():
    from prometheus_client import REGISTRY

    recs = [{"status": s, "latency_ms": 10.0 * i, "risk_score": i / 7, "fraud_score": i / 9,
             "model_version": f"m/{1 + i % 2}", **({"shadow_scores": {"m/9": 0.5}} if i % 3 == 0 else {})}
            for i, s in enumerate(["NORMAL", "WARNING", "CRITICAL", "NORMAL", "NORMAL", "WARNING", "NORMAL"])]

    def state(flow):
        return [(s.name, tuple(sorted(s.labels.items())), round(s.value, 9)) for m in REGISTRY.collect()
                for s in m.samples if s.labels.get("flow") == flow and not s.name.endswith("_created")]

    for r in recs:
        METRICS.observe_batch("one_by_one", "scored", RecordList([r]))
        if r["status"] != "NORMAL":
            METRICS.observe_batch("one_by_one", "alerts", RecordList([r]))
    METRICS.observe_batch("per_batch", "scored", _Batch(recs))
    METRICS.observe_batch("per_batch", "alerts", _Batch([r for r in recs if r["status"] != "NORMAL"]))
    one = [(n, tuple((k, v) for k, v in labels if k != "flow"), x) for n, labels, x in state("one_by_one")]
    per = [(n, tuple((k, v) for k, v in labels if k != "flow"), x) for n, labels, x in state("per_batch")]
    assert sorted(per) == sorted(one) and len(one) > 20
