"""The fraud model's input: feature names in order, category codes, and one row or a matrix of them
(for serving and training alike)."""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import structlog

from features.transactions import (
    DERIVED_FEATURES,
    STREAM_FEATURES,
    Transaction,
    derived_features,
)
from models.inference_log import LogSpec

__all__ = ["MODEL_NAME", "MODEL_FEATURES", "PROFILE_FEATURES", "MERCHANT_FEATURES", "CATEGORY_CODES", "feature_row", "feature_matrix", "model_matrix", "LOG_SPEC"]

log = structlog.get_logger("models.fraud")


# --- the model's input ------------------------------------------------------------------

MODEL_NAME = "fraud_model"

#: Feast features the model uses, per entity (their defaults: :mod:`features.store`).
PROFILE_FEATURES = ("avg_transaction_amount", "transaction_frequency")
MERCHANT_FEATURES = ("merchant_risk_score", "chargeback_rate")

#: Merchant categories the model knows; others encode as missing.
CATEGORY_CODES = (
    "grocery", "restaurant", "gas", "retail", "online", "electronics", "travel", "jewelry", "gambling",
)
_CODE = {c: float(i) for i, c in enumerate(CATEGORY_CODES)}
_EMPTY: Mapping[str, Any] = {}

#: Model input, in order. Part of the manifest: a model trained on another list is refused.
MODEL_FEATURES: tuple[str, ...] = (
    *STREAM_FEATURES,
    *DERIVED_FEATURES,
    *PROFILE_FEATURES,
    *MERCHANT_FEATURES,
    "merchant_category_code",
    "customer_known",
    "merchant_known",
)
_N = len(MODEL_FEATURES)
_NUMERIC = MODEL_FEATURES[:-3]

#: What the inference log keeps of a scored record (:mod:`models.inference_log`): ids,
#: scores and the model's numeric inputs.
LOG_SPEC = LogSpec("fraud", "transaction_id", "customer_id", ("fraud_score", "risk_score", "anomaly_score"),
                   _NUMERIC)


def feature_row(
    tx: Transaction,
    profile: Mapping[str, Any],
    customer_known: bool,
    risk: Mapping[str, Any],
    merchant_known: bool,
    derived: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of one transaction with every model input: the input fields as
    received, the validated values over them (typed ids, amount, coordinates,
    label), the streaming features (``tx.features``), the Feast values with their
    ``*_known`` flags (see :func:`features.store.with_defaults`) and the derived
    features (``derived``: :func:`~features.transactions.derived_features` of the
    transaction and profile, when the caller has them already). The scorer and
    training both build rows with it.

    >>> from features.transactions import parse_transaction
    >>> tx = parse_transaction({"transaction_id": 1, "customer_id": "C1", "merchant_id": "M1",
    ...     "merchant_category": "gas", "amount": "20", "latitude": 0, "longitude": 0,
    ...     "timestamp": 0, "channel": "web"})
    >>> row = feature_row(tx, {"avg_transaction_amount": 10.0}, True, {"merchant_risk_score": 0.1}, False)
    >>> row["transaction_id"], row["amount"], row["channel"], row["amount_to_profile_ratio"], row["merchant_known"]
    ('1', 20.0, 'web', 2.0, False)
    """
    fields = tx.fields
    # one dict display (later parts win, a key keeps its first position): the scorer shapes
    # every output record with it, and one display is faster than a dict and five updates
    return {
        **fields,
        "transaction_id": tx.transaction_id,
        "customer_id": tx.customer_id,
        "merchant_id": tx.merchant_id,
        "merchant_category": tx.merchant_category,
        "amount": tx.amount,
        "latitude": tx.latitude,
        "longitude": tx.longitude,
        **({"is_fraud": tx.is_fraud} if "is_fraud" in fields else _EMPTY),
        **tx.features,
        **profile,
        **risk,
        "customer_known": customer_known,
        "merchant_known": merchant_known,
        **(derived_features(tx, profile) if derived is None else derived),
    }


def feature_matrix(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The ``(len(rows), len(MODEL_FEATURES))`` float matrix, NaN where a value is missing.

    Built once per batch (turning lists into arrays is most of the cost of
    batched scoring).

    >>> X = feature_matrix([{"amount_count_1h": 3, "merchant_category": "travel"}, {}])
    >>> X.shape == (2, len(MODEL_FEATURES))
    True
    >>> X[:, MODEL_FEATURES.index("amount_count_1h")].tolist()
    [3.0, nan]
    """
    code, nan, names = _CODE.get, math.nan, _NUMERIC
    X = np.array(
        [
            [*map(r.get, names), code(r.get("merchant_category"), nan),
             r.get("customer_known", True), r.get("merchant_known", True)]
            for r in rows
        ],
        dtype=float,
    )  # None becomes NaN
    return X.reshape(len(rows), _N)


# The columnar matrix below reads the model's inputs from where they come from, in this order.
assert MODEL_FEATURES == (*STREAM_FEATURES, *DERIVED_FEATURES, *PROFILE_FEATURES, *MERCHANT_FEATURES,
                          "merchant_category_code", "customer_known", "merchant_known")


def model_matrix(
    txs: Sequence[Transaction],
    lookups: Sequence[tuple[Mapping[str, Any], bool, Mapping[str, Any], bool]],
    derived: Sequence[Mapping[str, Any]],
) -> np.ndarray:
    """:func:`feature_matrix` of the :func:`feature_row` records of ``txs``, built from
    their parts without the records: each transaction's streaming features, its
    ``(profile, customer_known, merchant risk, merchant_known)`` and its
    :func:`~features.transactions.derived_features`, in the order of
    :data:`MODEL_FEATURES` (the scorer's matrix; tested equal to the records' one).

    >>> from features.transactions import parse_transaction
    >>> tx = parse_transaction({"transaction_id": 1, "customer_id": "C1", "merchant_id": "M1",
    ...     "merchant_category": "gas", "amount": 20, "latitude": 0, "longitude": 0, "timestamp": 0})
    >>> parts = ({"avg_transaction_amount": 10.0}, True, {"merchant_risk_score": 0.1}, False)
    >>> d = derived_features({"amount": 20.0, "latitude": 0.0, "longitude": 0.0}, parts[0])
    >>> rows = [feature_row(tx, *parts, d)]
    >>> np.array_equal(model_matrix([tx], [parts], [d]), feature_matrix(rows), equal_nan=True)
    True
    """
    code, nan = _CODE.get, math.nan
    stream, derived_names, profile_names, merchant_names = _GETTERS
    values: list[Any] = []  # the matrix's values row by row, then one conversion (no nested lists)
    add = values.extend
    for tx, (profile, customer_known, risk, merchant_known), d in zip(txs, lookups, derived):
        try:
            add(stream(tx.features))
            add(derived_names(d))
            add(profile_names(profile))
            add(merchant_names(risk))
        except KeyError:  # a part without some of its names: those are missing values
            del values[len(values) - len(values) % _N:]
            add(map(tx.features.get, STREAM_FEATURES))
            add(map(d.get, DERIVED_FEATURES))
            add(map(profile.get, PROFILE_FEATURES))
            add(map(risk.get, MERCHANT_FEATURES))
        add((code(tx.merchant_category, nan), customer_known, merchant_known))
    return np.array(values, dtype=float).reshape(len(txs), _N)  # None becomes NaN


def _getter(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple]:
    """``m -> (m[name] for name in names)`` as a tuple, in C (:func:`operator.itemgetter`)."""
    get = itemgetter(*names)
    return get if len(names) > 1 else lambda m: (get(m),)


_GETTERS = tuple(map(_getter, (STREAM_FEATURES, DERIVED_FEATURES, PROFILE_FEATURES, MERCHANT_FEATURES)))
