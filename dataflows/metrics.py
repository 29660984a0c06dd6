"""Prometheus metrics of what was scored.

Served by Bytewax at ``/metrics`` when the flow runs with
``BYTEWAX_DATAFLOW_API_ENABLED=1`` (port ``BYTEWAX_DATAFLOW_API_PORT``, 3030).
"""

from __future__ import annotations

from typing import Any, Sequence

from prometheus_client import Counter, Gauge, Histogram


class _Metrics:
    def __init__(self) -> None:
        self.scored = Counter("scoring_events_scored_total", "Events scored", ["flow", "status", "model_version"])
        self.dead_letters = Counter("scoring_dead_letters_total", "Events sent to the dead letter", ["flow", "stage"])
        self.latency = Histogram(
            "scoring_latency_seconds", "Arrival in the dataflow to scored", ["flow"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.score = Histogram("scoring_score", "Final risk or anomaly score", ["flow"],
                               buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
        self.model_info = Gauge("scoring_model_info", "Model version in use", ["flow", "model_version"])

    def observe(self, flow: str, records: Sequence[dict[str, Any]]) -> None:
        """Count scored records by status and record their latency and score."""
        lat = self.latency.labels(flow=flow)
        sc = self.score.labels(flow=flow)
        for r in records:
            if "error" in r:
                self.dead_letters.labels(flow=flow, stage="score").inc()
                continue
            self.scored.labels(flow=flow, status=r.get("status"), model_version=r.get("model_version")).inc()
            lat.observe(r.get("latency_ms", 0.0) / 1000.0)
            s = r.get("risk_score", r.get("anomaly_score"))
            if s is not None:
                sc.observe(s)


METRICS = _Metrics()
