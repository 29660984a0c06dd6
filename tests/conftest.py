"""Shared fixtures: a real Feast repo (SQLite online store) and a trained model.

The session fixture builds a small synthetic world, copies ``feature_repo/``'s
definitions into a temporary repo, runs ``feast apply`` and materialization
for real, and trains a small model into a temporary registry. Tests that need
Feast or a model share it (about 15 s once per session).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import settings.logs

# capture_logs() in any test, whichever tests configured logging before it in this worker
settings.logs.CACHE_LOGGERS = False

ROOT = Path(__file__).resolve().parents[1]


def _kafka() -> str:
    import os

    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def pytest_sessionstart(session):
    import os

    # the process that runs the suite (not an xdist worker), under scripts/test.sh (tests/topics.py)
    if not hasattr(session.config, "workerinput") and os.environ.get("TESTS_DELETE_KAFKA_TOPICS") == "1":
        from tests.topics import listed

        session.config._topics_before = listed(_kafka())


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_topics_before", None)
    if before is not None:  # the suite's own topics go (tests/topics.py)
        from tests.topics import delete_new

        delete_new(_kafka(), before)


@pytest.fixture(autouse=True)
def _no_feast_metrics_dir():
    """Importing Feast sets ``PROMETHEUS_MULTIPROC_DIR`` in this process (for its own feature
    server); the flows a test starts get the environment a flow gets in production."""
    import os

    for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        os.environ.pop(name, None)
    yield

#: A small universe: fast to build, big enough to train a useful model.
SMALL = dict(seed=7, n_customers=300, n_merchants=60, history_days=21)


@dataclass(frozen=True)
class FraudEnv:
    repo: Path
    registry: Path
    history: Path
    spec: object
    manifest: dict


def is_plain(obj) -> bool:
    """Only builtin scalars, str, bytes, and tuples / lists / dicts of them: what a state snapshot may hold."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return True
    if isinstance(obj, (tuple, list)):
        return all(is_plain(o) for o in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in obj.items())
    return False


def make_feature_repo(dest: Path, feature_data: Path | None = None) -> Path:
    """A copy of the project's Feast repo (definitions and both store configs) in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("definitions.py", "feature_store.yaml", "feature_store.redis.yaml"):
        shutil.copy(ROOT / "feature_repo" / name, dest / name)
    if feature_data is not None:
        shutil.copytree(feature_data, dest / "data", dirs_exist_ok=True)
    return dest


def apply_and_materialize(repo: Path, yaml_file: str | None = None) -> None:
    """``feast apply`` + ``materialize-incremental``, in-process (the CLI does the same)."""
    import importlib.util
    from datetime import datetime, timezone

    from feast import Entity, FeatureService, FeatureStore, FeatureView

    spec = importlib.util.spec_from_file_location(f"feature_defs_{abs(hash(repo))}", repo / "definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    objects = [v for v in vars(module).values() if isinstance(v, (Entity, FeatureView, FeatureService))]
    store = FeatureStore(repo_path=str(repo), fs_yaml_file=None if yaml_file is None else repo / yaml_file)
    store.apply(objects)
    store.materialize_incremental(end_date=datetime(2026, 12, 1, tzinfo=timezone.utc))


@pytest.fixture(scope="session")
def fraud_env(tmp_path_factory) -> FraudEnv:
    from datagen.transactions import DatasetSpec, build_dataset
    from models.train import train

    base = tmp_path_factory.mktemp("fraud_env")
    spec = DatasetSpec(**SMALL)
    repo = make_feature_repo(base / "feature_repo")
    history = base / "history.parquet"
    build_dataset(spec, repo / "data", history)
    apply_and_materialize(repo)
    manifest = train(history, repo, base / "registry", eval_fraction=0.3)
    return FraudEnv(repo, base / "registry", history, spec, manifest)
