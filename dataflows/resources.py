"""Resources kept for the process: the Feast store, the fraud models and the model router.

The start checks open them (:mod:`dataflows.startup`) and the steps reuse them, so the
workers of a single-process run share one store and one loaded model per version
instead of opening them again. Nothing here checks or runs anything.

A forked child (a pre-forking server's worker) starts with none: each process opens its
own store and loads its own models (an inherited store's connections are the parent's).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from features.store import open_store
from models.registry import Registry, Routes
from models.serving import ModelRouter
from settings.config import FraudConfig
from settings import environment

__all__ = ["feature_store", "fraud_model", "fraud_router"]

_STORES: dict[tuple[str, str | None], Any] = {}
_MODELS: dict[tuple[str, str], Any] = {}


def _forget() -> None:
    _STORES.clear()
    _MODELS.clear()


os.register_at_fork(after_in_child=_forget)


def feature_store(repo: Path, yaml_file: str | None = None, where: str | None = None) -> Any:
    """The Feast ``FeatureStore`` of ``repo`` (``yaml_file`` inside it, or its
    ``feature_store.yaml``), opened once per process. Raises ``ValueError`` naming
    the setting at fault: ``where`` (the store setting as the user gave it, see
    :func:`dataflows.startup.store_name`), else ``feast.store_yaml`` / ``feast.repo``."""
    key = (str(repo), yaml_file)
    if key not in _STORES:
        var = where or (f"feast.store_yaml={yaml_file!r}" if yaml_file else f"feast.repo={str(repo)!r}")
        if not Path(repo).is_dir():
            raise ValueError(f"{var if not yaml_file else f'feast.repo={str(repo)!r}'}: no such folder")
        try:
            _STORES[key] = open_store(repo, yaml_file, environment.variables())
        except ValueError as exc:
            if ": not set, but" in str(exc):
                raise  # names the environment variable itself
            raise ValueError(f"{var}: {exc}") from None
        except Exception as exc:
            raise ValueError(f"{var}: cannot open the feature store: {type(exc).__name__}: {exc}") from None
    return _STORES[key]


def fraud_model(ref: str, registry: Path) -> Any:
    """The verified fraud model ``ref``, loaded once per process."""
    key = (ref, str(registry))
    if key not in _MODELS:
        from models.fraud import FraudModel  # lazy: pulls river (~6 s)

        _MODELS[key] = FraudModel.load(ref, registry)
    return _MODELS[key]


def fraud_router(cfg: FraudConfig) -> Any:
    """A :class:`~models.serving.ModelRouter` of the flow's model settings (one per
    worker: each polls the registry; loaded versions are shared by the process)."""
    routes = None
    if cfg.model_routes:
        routes = Routes.parse(cfg.model_routes, cfg.model_shadow)
    elif cfg.model_shadow:
        routes = Routes.parse(cfg.model, cfg.model_shadow)
    registry = cfg.model_registry
    return ModelRouter(Registry(registry), cfg.model, routes,
                       load=lambda name, version: fraud_model(f"{name}/{version}", registry),
                       poll_s=cfg.model_poll_s or None)
