"""Metrics counted per batch (:meth:`dataflows.metrics._Metrics.observe_batch`) equal the
same records counted one by one (:meth:`~dataflows.metrics._Metrics.observe`)."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram

from dataflows.metrics import METRICS, _observe_many
from features.records import RecordBatch


def test_observe_many_equals_observe_one_by_one():
    values = [0.0, 0.001, 0.0049, 0.005, 0.3, 2.0, 11.0, 1e9, -1.0, math.nan]
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
        METRICS.observe("one_by_one", "scored", r)
        if r["status"] != "NORMAL":
            METRICS.observe("one_by_one", "alerts", r)
    METRICS.observe_batch("per_batch", "scored", _Batch(recs))
    METRICS.observe_batch("per_batch", "alerts", _Batch([r for r in recs if r["status"] != "NORMAL"]))
    one = [(n, tuple((k, v) for k, v in labels if k != "flow"), x) for n, labels, x in state("one_by_one")]
    per = [(n, tuple((k, v) for k, v in labels if k != "flow"), x) for n, labels, x in state("per_batch")]
    assert sorted(per) == sorted(one) and len(one) > 20
