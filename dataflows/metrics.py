"""Prometheus metrics of what was scored, recorded where records leave the flow.

Served by Bytewax at ``/metrics`` when the flow runs with
``BYTEWAX_DATAFLOW_API_ENABLED=1`` (port ``BYTEWAX_DATAFLOW_API_PORT``, 3030):

- ``scoring_records_total{flow, output, status}``: records written to each output
  (``scored``, ``alerts``, ``dead_letter``), by status;
- ``scoring_latency_seconds{flow}``: arrival in the dataflow to scored;
- ``scoring_score{flow}``: the final score (fraud ``risk_score``, IoT ``anomaly_score``);
- ``scoring_model_info{flow, model_version}``: 1 for each model version seen;
- ``scoring_predictions_total{flow, model_version, role}``: scored records by the
  version that decided them (``role="decide"``) and by each shadow version that
  scored them too (``role="shadow"``);
- ``scoring_events_missing_field_total{flow, field}``: input events without a configured
  field (the IoT flow's key, time and sensor fields; see :meth:`_Metrics.missing_fields`);
- ``scoring_model_score{flow, model_version, role}``: the model's own score
  (``fraud_score``; a shadow's score for ``role="shadow"``) by version, so versions
  of a split or a shadow can be compared live;
- ``scoring_gc_pause_seconds{generation}``: the process's garbage-collection pauses
  (:mod:`dataflows.gcwatch`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from typing import Any, Callable, Sequence

import numpy as np

from prometheus_client import Counter, Gauge, Histogram

from features.records import RecordBatch

__all__ = ["METRICS"]


class _Metrics:
    def __init__(self) -> None:
        self.records = Counter("scoring_records_total", "Records written", ["flow", "output", "status"])
        self.latency = Histogram(
            "scoring_latency_seconds", "Arrival in the dataflow to scored", ["flow"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.score = Histogram("scoring_score", "Final risk or anomaly score", ["flow"],
                               buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
        self.model_info = Gauge("scoring_model_info", "Model version in use", ["flow", "model_version"])
        self.model_score = Histogram("scoring_model_score", "Model score by version and role",
                                     ["flow", "model_version", "role"],
                                     buckets=(0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
        self.predictions = Counter("scoring_predictions_total", "Scored records by model version and role",
                                   ["flow", "model_version", "role"])
        self.too_large = Counter(
            "scoring_records_too_large_total",
            "Records over the Kafka producer's message.max.bytes (counted in scoring_records_total "
            "before the sink), by the output they were meant for and what was produced instead",
            ["flow", "output", "instead"])
        self.gc_pause = Histogram("scoring_gc_pause_seconds", "Garbage-collection pauses", ["generation"],
                                  buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
        self.missing_field = Counter("scoring_events_missing_field_total",
                                     "Input events without a configured key, time or sensor field", ["flow", "field"])
        self._seen_versions: set[tuple[str, str]] = set()
        self._children: dict[tuple, Any] = {}  # labelled children, looked up once (labels() is slow)
        self._deferred: list[Callable[[], None]] = []

    def defer(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` before each batch is counted: how observations made where no
        metric may be touched (a garbage-collection callback, :mod:`dataflows.gcwatch`)
        reach their metrics."""
        self._deferred.append(flush)

    def flush_deferred(self) -> None:
        """Run the :meth:`defer` callbacks now (each counted batch does)."""
        for flush in self._deferred:
            flush()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def missing_fields(self, flow: str, fields: list[str]) -> None:
        """Count one input event without each of ``fields``."""
        for f in fields:
            self._child(self.missing_field, flow, f).inc()

    def observe_batch(self, flow: str, output: str, batch: RecordBatch) -> None:
        """Count the records of ``batch`` written to ``output`` (a scored batch's columns, or
        plain records as a :class:`~features.records.RecordList`): by status; scored
        records also feed latency, score, model version and model scores. One increment
        per status, per version and per histogram bucket, not per record."""
        self.flush_deferred()
        for status, n in Tally(batch.output_statuses(output)).items():
            self._child(self.records, flow, output, status or "-").inc(n)
        if output != "scored":
            return
        latency, scores, versions, own, shadows = batch.metric_columns()
        _observe_many(self._child(self.latency, flow), [v / 1000.0 for v in latency])
        _observe_many(self._child(self.score, flow), [v for v in scores if v is not None])
        by_version: dict[str, list[float]] = {}
        if any(p is not None for p in own):
            for v, p in zip(versions, own):
                if p is not None:
                    by_version.setdefault(str(v), []).append(p)
        for v, n in Tally(map(str, versions)).items():
            self._child(self.predictions, flow, v, "decide").inc(n)
            _observe_many(self._child(self.model_score, flow, v, "decide"), by_version.get(v, ()))
            if (flow, v) not in self._seen_versions:
                self._seen_versions.add((flow, v))
                self.model_info.labels(flow=flow, model_version=v).set(1)
        by_shadow: dict[str, list[float | None]] = {}
        for row in shadows:
            if row:
                for name, value in row.items():
                    by_shadow.setdefault(str(name), []).append(value)
        for name, values in by_shadow.items():
            self._child(self.predictions, flow, name, "shadow").inc(len(values))
            _observe_many(self._child(self.model_score, flow, name, "shadow"), [x for x in values if x is not None])


def _observe_many(child: Any, values: Sequence[float]) -> None:
    """``child.observe(v)`` for every value, with one increment per bucket and one of the
    sum (prometheus_client's histogram keeps per-bucket counts and a sum, ``_buckets``
    and ``_sum``; tests/dataflows/test_metrics.py checks it against ``observe``)."""
    if not len(values):
        return
    bounds = child._upper_bounds
    total = 0.0
    for v in values:  # in order, as observe() adds them
        total += v
    child._sum.inc(total)
    if len(values) > 16:  # bisect_left of each value at once (NaN lands in no bucket, as with observe())
        a = np.asarray(values, dtype=np.float64)
        a = a[~np.isnan(a)]
        counts = np.bincount(np.searchsorted(bounds, a, side="left"), minlength=len(bounds)).tolist()
    else:
        counts = [0] * len(bounds)
        for v in values:
            i = bisect_left(bounds, v)
            if i < len(bounds) and v <= bounds[i]:
                counts[i] += 1
    for i, n in enumerate(counts[:len(bounds)]):
        if n:
            child._buckets[i].inc(n)


METRICS = _Metrics()
