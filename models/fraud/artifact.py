"""The fraud model artifact: a LightGBM booster in text form, verified against its manifest,
with predictions and per-row explanations (by :mod:`models.fraud.trees`' compiled walk of
its trees; by LightGBM itself for a model the walk does not support)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import structlog

from models.fraud.trees import TreePaths
from models.fraud.inputs import MODEL_FEATURES
from models.registry import Registry, RegistryError

__all__ = ["FraudModel"]

log = structlog.get_logger("models.fraud")


def _whole_model_text(data: bytes, where: str) -> str:
    """The LightGBM model text, refused (:class:`RegistryError`) unless it is whole:
    LightGBM's parser crashes the process on some truncated texts, so its end
    markers are checked first."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RegistryError(f"{where}: the artifact is not a LightGBM model text (not UTF-8)") from None
    if not text.startswith("tree\n") or "\nend of trees\n" not in text or "\nend of parameters\n" not in text:
        raise RegistryError(f"{where}: the artifact is not a whole LightGBM model text (truncated or another "
                            "format: no 'end of trees' / 'end of parameters'); publish it again")
    return text


class FraudModel:
    """A loaded, verified fraud model. ``version`` is ``name/number``."""

    def __init__(self, model_text: bytes, manifest: Mapping[str, Any]) -> None:
        import lightgbm as lgb

        self.manifest = dict(manifest)
        self.version = f"{manifest['name']}/{manifest['version']}"
        self.feature_names = tuple(manifest.get("feature_names") or ())
        text = _whole_model_text(model_text, self.version)
        lgb.register_logger(logging.getLogger("lightgbm"))  # its messages join the JSON log, not stdout
        try:
            self._booster = lgb.Booster(model_str=text)
        except lgb.basic.LightGBMError as exc:
            raise RegistryError(f"{self.version}: LightGBM cannot read the artifact: {exc}") from None
        if self._booster.num_feature() != len(self.feature_names):
            raise RegistryError(
                f"{self.version}: booster has {self._booster.num_feature()} features, "
                f"manifest lists {len(self.feature_names)}"
            )
        try:  # the trees as flat arrays: predictions and path contributions (models.fraud.trees)
            self._paths: TreePaths | None = TreePaths(self._booster.dump_model())
        except ValueError as exc:  # categorical splits, linear trees...: LightGBM predicts and explains
            log.info("model_walked_by_lightgbm", model=self.version, reason=str(exc))
            self._paths = None
        self._unexplained = False  # set when LightGBM refuses to explain this model

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
                f"(missing {missing}, unexpected {extra}, or another order); retrain with `streamscore train`"
            )
        try:
            return cls(data, manifest)
        except RegistryError as exc:  # name the file
            path = reg.root / str(manifest.get("name")) / str(manifest.get("version")) / str(
                manifest.get("artifact", "model.txt"))
            raise RegistryError(f"{path}: {exc}") from None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Fraud probability per row, on one thread (stream workers share cores): LightGBM's
        ``predict``, to the bit, computed by the compiled walk of the trees
        (:meth:`~models.fraud.trees.TreePaths.probabilities`, about half the cost) when the
        model is one it supports."""
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected a (n, {len(self.feature_names)}) matrix, got shape {X.shape}")
        if len(X) == 0:
            return np.empty(0)
        if self._paths is not None and self._paths.sigmoid is not None:
            return self._paths.probabilities(X)
        return self._booster.predict(X, num_threads=1)

    def explain(self, X: np.ndarray, top: int = 3) -> list[list[tuple[str, float]]]:
        """The ``top`` features pushing each row's score up, largest first: path
        contributions (:class:`~models.fraud.trees.TreePaths`, O(depth) per tree, all
        rows at once), or exact TreeSHAP for a model the walk does not support."""
        if len(X) == 0:
            return []
        if self._paths is None:
            return self.explain_exact(X, top)
        return self._top(self._paths.contributions(X), top)

    def explain_exact(self, X: np.ndarray, top: int = 3) -> list[list[tuple[str, float]]]:
        """As :meth:`explain`, with exact TreeSHAP (LightGBM ``pred_contrib``): about
        1.2 ms a row for the 300-tree model, so only where its cost is budgeted. A model
        LightGBM cannot explain (linear trees) gets no top features, and a warning once:
        its alerts keep the reasons of their scores."""
        import lightgbm as lgb

        if len(X) == 0 or self._unexplained:
            return [[] for _ in range(len(X))]
        try:
            contrib = self._booster.predict(X, pred_contrib=True, num_threads=1)
        except lgb.basic.LightGBMError as exc:
            self._unexplained = True
            log.warning("model_cannot_be_explained", model=self.version, error=str(exc)[:300],
                        detail="alerts of this model carry the reasons of their scores, no top features")
            return [[] for _ in range(len(X))]
        return self._top(contrib[:, :-1], top)

    def _top(self, contrib: np.ndarray, top: int) -> list[list[tuple[str, float]]]:
        order = np.argsort(-contrib, axis=1)[:, :top]
        return [
            [(self.feature_names[j], float(contrib[i, j])) for j in order[i] if contrib[i, j] > 0]
            for i in range(len(contrib))
        ]
