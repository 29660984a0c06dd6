"""Status decision shared by every dataflow: CRITICAL / WARNING / NORMAL.

>>> t = Thresholds(critical=0.8, warning=0.5)
>>> [t.status(s) for s in (0.95, 0.8, 0.6, 0.1)]
['CRITICAL', 'WARNING', 'WARNING', 'NORMAL']
>>> round(combined_risk(fraud_score=0.7, anomaly_score=0.9, anomaly_weight=0.4), 3)
0.808
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CRITICAL", "WARNING", "NORMAL", "Thresholds", "combined_risk"]

CRITICAL, WARNING, NORMAL = "CRITICAL", "WARNING", "NORMAL"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A score strictly above ``critical`` is CRITICAL, above ``warning`` WARNING."""

    critical: float = 0.8
    warning: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.warning <= self.critical <= 1.0:
            raise ValueError(
                f"thresholds must satisfy 0 <= warning <= critical <= 1, "
                f"got warning={self.warning}, critical={self.critical}"
            )

    def status(self, score: float) -> str:
        if score > self.critical:
            return CRITICAL
        if score > self.warning:
            return WARNING
        return NORMAL


def combined_risk(fraud_score: float, anomaly_score: float | None, anomaly_weight: float) -> float:
    """Noisy-OR of the model's probability and the weighted anomaly score.

    ``1 - (1 - fraud) * (1 - weight * anomaly)``: never below ``fraud_score``,
    so ``fraud_score > critical`` is always CRITICAL; an anomaly alone can lift
    a borderline event by at most ``weight``. A detector still warming up
    (``anomaly_score is None``) adds nothing.
    """
    if anomaly_score is None:
        return fraud_score
    return 1.0 - (1.0 - fraud_score) * (1.0 - anomaly_weight * anomaly_score)
