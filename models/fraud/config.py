"""Settings of the fraud scoring steps (:class:`FraudScoringConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from features.defaults import DEDUP_HORIZON_S, DEDUP_MAX_IDS
from features.transactions import IDLE_EXPIRY_S, LATENESS_S, MAX_AMOUNT, MIN_AMOUNT, Transaction, parse_transaction
from models.status import Thresholds

__all__ = ["FraudScoringConfig", "EXPLAIN_MODES", "EXPLAIN_METHODS"]

#: Which alerts get the model's top features in their reasons.
EXPLAIN_MODES = ("alerts", "critical", "none")
#: How the top features are found: path contributions (O(depth) per tree, all rows of a
#: batch at once) or exact TreeSHAP (about 1.2 ms a row for the 300-tree model).
EXPLAIN_METHODS = ("paths", "treeshap")


@dataclass(frozen=True, slots=True)
class FraudScoringConfig:
    """Settings of the fraud scoring steps; the builder gives them to every state
    object (state snapshots never carry them, so a new value applies on restart).

    Args:
        lateness_s: how late an event may arrive and still get exact windows.
        max_events: cap on the exact tail of newest events kept per customer (the
            previous event for time/distance/speed); windows are tiled and uncapped.
        shards: number of shards of customers, one shared detector each.
        amount_warmup, amount_alpha: the per-customer amount detector
            (:class:`~models.detectors.KeyDetector`).
        shard_window, shard_calib_warmup, shard_seed: the shared detector
            (:class:`~models.detectors.ShardDetector`).
        anomaly_method: how detector scores combine (:func:`models.status.combine_scores`).
        anomaly_weight: how much the anomaly score may add to the risk
            (:func:`models.status.combined_risk`).
        explain: which alerts get the model's top features in their ``reasons``:
            ``"alerts"`` (every non-NORMAL record), ``"critical"`` (CRITICAL only) or
            ``"none"`` (reasons name the scores only).
        explain_method: ``"paths"`` (path contributions, the default) or
            ``"treeshap"`` (exact, ~20x the cost): see :data:`EXPLAIN_METHODS`.
        explain_budget: at most this many alerts of one batch get top features,
            CRITICAL first, then by risk; the others carry ``reasons_skipped`` saying
            why. The cost of explaining is bounded per batch whatever the alert rate.
        thresholds: status thresholds on the risk.
        dedup_horizon_s, dedup_max_ids: a transaction id seen again for the same
            customer within this much event time (and among the customer's last
            ``dedup_max_ids`` ids) is a duplicate: a dead letter (step ``dedup``),
            never counted twice (:class:`~features.dedup.RecentIds`). ``0`` turns it off.
        idle_expiry_s: a customer idle this long in event time starts afresh (its
            state is dropped, so memory follows active customers); ``0`` keeps
            every customer forever.
        min_amount, max_amount, max_future_s: the input bounds of :meth:`parse`
            (:func:`~features.transactions.parse_transaction`); ``max_future_s=None``
            accepts any future time (offline replays of old data).
    """

    lateness_s: float = LATENESS_S
    max_events: int = 512
    shards: int = 4
    amount_warmup: int = 5
    amount_alpha: float = 0.02
    shard_window: int = 250
    shard_calib_warmup: int = 50
    shard_seed: int = 42
    anomaly_method: str = "noisy_or"
    anomaly_weight: float = 0.4
    thresholds: Thresholds = Thresholds()
    explain: str = "alerts"
    explain_method: str = "paths"
    explain_budget: int = 64
    dedup_horizon_s: float = DEDUP_HORIZON_S
    dedup_max_ids: int = DEDUP_MAX_IDS
    idle_expiry_s: float = IDLE_EXPIRY_S
    min_amount: float = MIN_AMOUNT
    max_amount: float = MAX_AMOUNT
    max_future_s: float | None = None

    def __post_init__(self) -> None:
        if self.explain not in EXPLAIN_MODES:
            raise ValueError(f"FraudScoringConfig: explain must be one of {EXPLAIN_MODES}, got {self.explain!r}")
        if self.explain_method not in EXPLAIN_METHODS:
            raise ValueError(f"FraudScoringConfig: explain_method must be one of {EXPLAIN_METHODS}, "
                             f"got {self.explain_method!r}")
        if self.explain_budget < 0:
            raise ValueError(f"FraudScoringConfig: explain_budget must be >= 0, got {self.explain_budget!r}")
        if not self.lateness_s >= 0:
            raise ValueError(f"FraudScoringConfig: lateness_s must be >= 0, got {self.lateness_s!r}")
        if self.shards < 1:
            raise ValueError(f"FraudScoringConfig: shards must be >= 1, got {self.shards!r}")
        if not 0.0 <= self.anomaly_weight <= 1.0:
            raise ValueError(f"FraudScoringConfig: anomaly_weight must be in [0, 1], got {self.anomaly_weight!r}")
        if self.anomaly_method not in ("noisy_or", "max", "mean"):
            raise ValueError(f"FraudScoringConfig: unknown anomaly_method {self.anomaly_method!r}")
        if not (self.dedup_horizon_s >= 0 and self.dedup_max_ids >= 0 and self.idle_expiry_s >= 0):
            raise ValueError(
                "FraudScoringConfig: dedup_horizon_s, dedup_max_ids and idle_expiry_s must be >= 0, got "
                f"{self.dedup_horizon_s!r}, {self.dedup_max_ids!r}, {self.idle_expiry_s!r}"
            )

    def parse(self, raw: Any, arrival: float) -> Transaction:
        """One raw input as a :class:`~features.transactions.Transaction`, within this
        configuration's bounds; raises :class:`~features.records.ValidationError`.
        The flow's validate step and :class:`~models.fraud.FraudPipeline` both parse with it."""
        return parse_transaction(raw, arrival, min_amount=self.min_amount, max_amount=self.max_amount,
                                 max_future_s=self.max_future_s)
