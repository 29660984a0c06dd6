"""The static fraud model: feature vector, vectorised scoring, explanations.

The model is a LightGBM booster stored in LightGBM's text format (loading it
parses numbers; it never executes code), published in the :mod:`models.registry`
with a manifest naming the features in order. :meth:`FraudModel.load` refuses an
artifact whose sha256 or feature list does not match.

>>> rows = [{"amount_count_1h": 3, "merchant_category": "travel"}, {}]
>>> X = feature_matrix(rows)
>>> X.shape == (2, len(MODEL_FEATURES))
True
>>> X[:, MODEL_FEATURES.index("amount_count_1h")].tolist()
[3.0, nan]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from features.transactions import DERIVED_FEATURES, STREAM_FEATURES
from models.registry import Registry, RegistryError

__all__ = [
    "MODEL_NAME",
    "MODEL_FEATURES",
    "PROFILE_FEATURES",
    "MERCHANT_FEATURES",
    "CATEGORY_CODES",
    "feature_matrix",
    "PROFILE_DEFAULTS",
    "MERCHANT_DEFAULTS",
    "FraudModel",
]

MODEL_NAME = "fraud_model"

#: Feast features the model uses, per entity.
PROFILE_FEATURES = ("avg_transaction_amount", "transaction_frequency")
MERCHANT_FEATURES = ("merchant_risk_score", "chargeback_rate")

#: Values the scorer uses when Feast does not know a key (training applies the same).
PROFILE_DEFAULTS: dict[str, Any] = {
    "avg_transaction_amount": 40.0,
    "transaction_frequency": 2.0,
    "home_latitude": None,
    "home_longitude": None,
}
MERCHANT_DEFAULTS: dict[str, Any] = {"merchant_risk_score": 0.5, "chargeback_rate": 0.02}

#: Merchant categories the model knows; others encode as missing.
CATEGORY_CODES = (
    "grocery", "restaurant", "gas", "retail", "online", "electronics", "travel", "jewelry", "gambling",
)
_CODE = {c: float(i) for i, c in enumerate(CATEGORY_CODES)}

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


def feature_matrix(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The ``(len(rows), len(MODEL_FEATURES))`` float matrix, NaN where a value is missing.

    Built once per batch (turning lists into arrays is most of the cost of
    batched scoring).
    """
    X = np.full((len(rows), _N), np.nan)
    for i, r in enumerate(rows):
        row = X[i]
        for j, name in enumerate(_NUMERIC):
            v = r.get(name)
            if v is not None:
                row[j] = v
        row[_N - 3] = _CODE.get(r.get("merchant_category"), math.nan)
        row[_N - 2] = float(r.get("customer_known", True))
        row[_N - 1] = float(r.get("merchant_known", True))
    return X


class FraudModel:
    """A loaded, verified fraud model. ``version`` is ``name/number``."""

    def __init__(self, model_text: bytes, manifest: Mapping[str, Any]) -> None:
        import lightgbm as lgb

        self.manifest = dict(manifest)
        self.version = f"{manifest['name']}/{manifest['version']}"
        self.feature_names = tuple(manifest["feature_names"])
        self._booster = lgb.Booster(model_str=model_text.decode("utf-8"))
        if self._booster.num_feature() != len(self.feature_names):
            raise RegistryError(
                f"{self.version}: booster has {self._booster.num_feature()} features, "
                f"manifest lists {len(self.feature_names)}"
            )

    @classmethod
    def load(
        cls, ref: str, registry: Registry | str | Path = "model_registry",
        expected_features: Sequence[str] = MODEL_FEATURES,
    ) -> "FraudModel":
        """Load ``ref`` from the registry; refuse a tampered artifact or another feature list."""
        reg = registry if isinstance(registry, Registry) else Registry(registry)
        data, manifest = reg.load(ref)
        names = tuple(manifest.get("feature_names", ()))
        if names != tuple(expected_features):
            missing = [f for f in expected_features if f not in names]
            extra = [f for f in names if f not in expected_features]
            raise RegistryError(
                f"{ref} ({reg.root}): manifest features differ from what the scorer computes "
                f"(missing {missing}, unexpected {extra}, or another order); retrain with `python -m models.train`"
            )
        return cls(data, manifest)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Fraud probability per row, vectorised, on one thread (stream workers share cores)."""
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected a (n, {len(self.feature_names)}) matrix, got shape {X.shape}")
        if len(X) == 0:
            return np.empty(0)
        return self._booster.predict(X, num_threads=1)

    def explain(self, X: np.ndarray, top: int = 3) -> list[list[tuple[str, float]]]:
        """The ``top`` features pushing each row's score up (TreeSHAP contributions)."""
        if len(X) == 0:
            return []
        contrib = self._booster.predict(X, pred_contrib=True, num_threads=1)[:, :-1]
        order = np.argsort(-contrib, axis=1)[:, :top]
        return [
            [(self.feature_names[j], float(contrib[i, j])) for j in order[i] if contrib[i, j] > 0]
            for i in range(len(X))
        ]
