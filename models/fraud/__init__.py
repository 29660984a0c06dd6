"""Fraud scoring, free of any stream engine: the model and the steps the dataflow wires up.

Per transaction (a :class:`features.transactions.Transaction`), in order:

1. :class:`CustomerState`, one per customer (keyed by ``customer_id``): streaming
   features (:class:`~features.transactions.CustomerFeatures`) and a cheap
   per-customer :class:`~models.detectors.KeyDetector` on the log amount.
2. :class:`ShardState`, one per shard of customers (keyed by
   ``features.records.shard_of(customer_id, shards)``): one shared multivariate
   :class:`~models.detectors.ShardDetector` over :data:`SHARD_FEATURES` (never one
   heavy model per customer), and the anomaly score by the warm-up rule of
   :func:`models.status.anomaly_score`.
3. :class:`FraudScorer`, per batch: one (cached) Feast lookup per batch of distinct
   customers and merchants (:mod:`features.store`), derived features, the static
   :class:`FraudModel` on one matrix, the combined risk
   (:func:`models.status.combined_risk`), the status and, for alerts, reasons.

All three take one :class:`FraudScoringConfig`. State objects hold state only:
``snapshot()`` is plain data, restored with ``load()`` into an object built from
the *current* configuration. :class:`FraudPipeline` runs exactly these classes in
a plain loop (tests, benchmark, backfills).

The model: a LightGBM booster in LightGBM's text format (loading parses numbers,
never executes code), published in the :mod:`models.registry` with a manifest
naming its features in order; :meth:`FraudModel.load` refuses an artifact whose
sha256 or feature list does not match. :func:`feature_row` and
:func:`feature_matrix` build its input, for serving and for training alike.

>>> cfg = FraudScoringConfig(amount_warmup=2, shard_window=4, shard_calib_warmup=2)
>>> cust, shard = CustomerState(cfg), ShardState(cfg)
>>> for i in range(8):
...     tx = parse_transaction({"transaction_id": f"t{i}", "customer_id": "C1", "merchant_id": "M1",
...         "merchant_category": "gas", "amount": 20 + i, "latitude": 40.7, "longitude": -74.0,
...         "timestamp": 1.79e9 + 60 * i}, arrival=0.0)
...     tx = shard.update(cust.update(tx))
...     if i in (0, 7):
...         print(tx.features["amount_count_1h"], tx.anomaly_warming_up, tx.anomaly_score is None)
1 True True
8 False False
>>> fresh = CustomerState(cfg)
>>> fresh.load(cust.snapshot())
>>> fresh.snapshot() == cust.snapshot()
True
"""


from __future__ import annotations

from features.transactions import parse_transaction  # noqa: F401  (the example above uses it)
from models.fraud.artifact import FraudModel
from models.fraud.config import FraudScoringConfig
from models.fraud.inputs import (
    CATEGORY_CODES,
    LOG_SPEC,
    MERCHANT_FEATURES,
    MODEL_FEATURES,
    MODEL_NAME,
    PROFILE_FEATURES,
    feature_matrix,
    feature_row,
)
from models.fraud.pipeline import FraudPipeline
from models.fraud.scorer import FraudScorer
from models.fraud.state import SHARD_FEATURES, CustomerState, ScoreDrift, ShardState, shard_vector
from models.fraud.state import warm_up as _warm_state
from models.fraud.trees import warm_up as _warm_trees

__all__ = [
    "MODEL_NAME",
    "MODEL_FEATURES",
    "PROFILE_FEATURES",
    "MERCHANT_FEATURES",
    "CATEGORY_CODES",
    "feature_row",
    "feature_matrix",
    "FraudModel",
    "FraudScoringConfig",
    "CustomerState",
    "SHARD_FEATURES",
    "shard_vector",
    "warm_up",
    "ShardState",
    "FraudScorer",
    "FraudPipeline",
    "LOG_SPEC",
    "ScoreDrift",
]


def warm_up() -> None:
    """Load (or, the first time on a machine, compile) the fraud flow's kernels: the windows'
    (one transaction through a throwaway :class:`CustomerState`), the scorer's distances from
    home (:func:`~features.transactions.derived_features_many`) and the model's tree walk
    (:func:`models.fraud.trees.warm_up`), so a flow's first batch does not wait for them."""
    from features.transactions import Transaction, derived_features_many

    _warm_state()
    derived_features_many([Transaction("warm-up", "warm-up", "M", "c", 1.0, 0.0, 0.0, t=0.0)],
                          [{"home_latitude": 0.0, "home_longitude": 0.0}])
    _warm_trees()
