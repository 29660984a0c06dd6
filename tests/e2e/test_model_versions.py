"""Model versions on a live stream: the hot switch, a refused bad version, the traffic
split (proportions, stickiness), shadows that never decide, MLflow-style references."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from bytewax.testing import run_main

from settings.config import ConfigError, FraudConfig
from dataflows.fraud import build_flow as build_fraud_flow
from datagen.transactions import stream_transactions, write_events
from features.store import MERCHANT_DEFAULTS, PROFILE_DEFAULTS, CachedLookup
from models.fraud import MODEL_FEATURES, MODEL_NAME, FraudModel, FraudPipeline, FraudScoringConfig, feature_matrix
from models.registry import Registry, Routes
from models.serving import ModelRouter

ROOT = Path(__file__).resolve().parents[2]


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()] if path.exists() else []


def publish_other_model(registry: Path, seed: int, alias: str | None = None) -> int:
    """A small, genuinely different model over the same features (so which version
    scored a record shows in its score)."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, len(MODEL_FEATURES)))
    y = (X[:, seed % len(MODEL_FEATURES)] + rng.normal(scale=0.5, size=600) > 0.8).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": seed},
                        lgb.Dataset(X, y), num_boost_round=10)
    manifest = {"feature_names": list(MODEL_FEATURES), "metrics": {"roc_auc": 0.5 + seed / 1000},
                "training_window": {"start": "2026-01-01", "end": "2026-02-01"}}
    return Registry(registry).publish(MODEL_NAME, booster.model_to_string().encode(), manifest, alias=alias)


@pytest.fixture
def registry(fraud_env, tmp_path) -> Path:
    dest = tmp_path / "registry"
    shutil.copytree(fraud_env.registry, dest)
    return dest


def pipeline(router: ModelRouter) -> FraudPipeline:
    nowhere = lambda keys: {}  # noqa: E731 - a store that knows nobody: defaults for all
    return FraudPipeline(FraudScoringConfig(), router, CachedLookup(nowhere, PROFILE_DEFAULTS),
                         CachedLookup(nowhere, MERCHANT_DEFAULTS))


def router_for(registry: Path, ref: str = f"{MODEL_NAME}@production", routes: Routes | None = None,
               poll_s: float | None = None) -> ModelRouter:
    return ModelRouter(Registry(registry), ref, routes, load=lambda n, v: FraudModel.load(f"{n}/{v}", registry),
                       poll_s=poll_s)


def events(n: int, fraud_env, seed: int = 5) -> list[bytes]:
    return [orjson.dumps(e) for e in stream_transactions(n, seed=seed, spec=fraud_env.spec)]


# --- traffic split and shadows -----------------------------------------------------


def test_split_is_sticky_by_customer_proportional_and_each_record_names_its_decider(fraud_env, registry):
    v2 = publish_other_model(registry, seed=3)
    routes = Routes.parse(f"{MODEL_NAME}/1:90,{MODEL_NAME}/{v2}:10")
    router = router_for(registry, routes=routes)
    pipe = pipeline(router)
    raw = events(6000, fraud_env)
    out = [r for i in range(0, len(raw), 500) for r in pipe.process(raw[i:i + 500])]
    recs = [r for r in out if isinstance(r, dict)]
    by_customer: dict[str, set[str]] = {}
    for r in recs:
        by_customer.setdefault(r["customer_id"], set()).add(r["model_version"])
    assert all(len(v) == 1 for v in by_customer.values())  # sticky: a customer stays on one version
    share = sum(v == {f"{MODEL_NAME}/{v2}"} for v in by_customer.values()) / len(by_customer)
    assert 0.05 < share < 0.15, share  # 10 % of customers (binomial over the customers seen)
    # the score is the deciding version's own prediction
    models = {m.version: m for m in router.assignment.deciders}
    X = feature_matrix(recs)
    for version, model in models.items():
        rows = [i for i, r in enumerate(recs) if r["model_version"] == version]
        assert np.allclose([recs[i]["fraud_score"] for i in rows], model.predict(X[rows]), atol=1e-6)


def test_shadow_scores_are_recorded_and_never_change_the_decision(fraud_env, registry):
    v2 = publish_other_model(registry, seed=4)
    raw = events(3000, fraud_env, seed=6)
    plain = pipeline(router_for(registry)).process(raw)
    full = pipeline(router_for(registry, routes=Routes.parse(f"{MODEL_NAME}/1", f"{MODEL_NAME}/{v2}"))).process(raw)
    some = pipeline(router_for(registry, routes=Routes.parse(f"{MODEL_NAME}/1", f"{MODEL_NAME}/{v2}:20"))).process(raw)
    decided = ("fraud_score", "risk_score", "status", "model_version", "reasons")
    for a, b, c in zip(plain, full, some):
        if not isinstance(a, dict):
            continue
        assert [a.get(k) for k in decided] == [b.get(k) for k in decided] == [c.get(k) for k in decided]
        assert "shadow_scores" not in a and set(b["shadow_scores"]) == {f"{MODEL_NAME}/{v2}"}
    shadowed = [r for r in some if isinstance(r, dict) and "shadow_scores" in r]
    assert 0.12 < len(shadowed) / sum(isinstance(r, dict) for r in some) < 0.28
    assert any(b["shadow_scores"][f"{MODEL_NAME}/{v2}"] != b["fraud_score"] for b in full if isinstance(b, dict))


def test_mlflow_style_references_resolve(fraud_env, registry):
    cfg = FraudConfig.from_env({"STREAMSCORE_MODEL__REF": "models:/fraud_model@production",
                                "STREAMSCORE_MODEL__ROUTES": "models:/fraud_model/1:70,fraud_model@production:30"})
    assert cfg.model == "fraud_model@production"
    assert Routes.parse(cfg.model_routes).refs() == ("fraud_model/1", "fraud_model@production")
    assert router_for(registry, "models:/fraud_model/1").assignment.label == "fraud_model/1"


def test_bad_route_settings_are_config_errors():
    with pytest.raises(ConfigError, match="STREAMSCORE_MODEL__ROUTES='fraud_model/1:90,fraud_model/2:x'"):
        FraudConfig.from_env({"STREAMSCORE_MODEL__ROUTES": "fraud_model/1:90,fraud_model/2:x"})
    with pytest.raises(ConfigError, match="STREAMSCORE_MODEL__SHADOW"):
        FraudConfig.from_env({"STREAMSCORE_MODEL__SHADOW": "fraud_model/2:150"})


def test_split_in_the_flow_by_setting(fraud_env, registry, tmp_path):
    v2 = publish_other_model(registry, seed=5)
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    write_events(stream_transactions(3000, seed=8, spec=fraud_env.spec), src)
    cfg = FraudConfig.from_env({
        "STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src), "STREAMSCORE_IO__OUTPUT_DIR": str(out),
        "STREAMSCORE_FEAST__REPO": str(fraud_env.repo), "STREAMSCORE_MODEL__REGISTRY": str(registry),
        "STREAMSCORE_MODEL__ROUTES": f"fraud_model/1:50,fraud_model/{v2}:50",
        "STREAMSCORE_MODEL__SHADOW": "fraud_model@production:100"})
    from prometheus_client import REGISTRY

    def count(version: str, role: str) -> float:
        labels = {"flow": "fraud_scoring", "model_version": version, "role": role}
        return REGISTRY.get_sample_value("scoring_predictions_total", labels) or 0.0

    def scores(version: str, role: str) -> float:
        labels = {"flow": "fraud_scoring", "model_version": version, "role": role}
        return REGISTRY.get_sample_value("scoring_model_score_count", labels) or 0.0

    keys = [("fraud_model/1", "decide"), (f"fraud_model/{v2}", "decide"), ("fraud_model/1", "shadow")]
    before = {k: (count(*k), scores(*k)) for k in keys}
    run_main(build_fraud_flow(cfg))
    scored = read_jsonl(out / "scored.jsonl")
    # the metrics count by version and role, shadows included; production (= 1) shadows
    # 100 % of the keys, but never those its own version decides: it shadows v2's keys only
    for version, role in keys:
        n = sum(r["model_version"] == (f"fraud_model/{v2}" if role == "shadow" else version) for r in scored)
        assert count(version, role) - before[(version, role)][0] == n > 0
        assert scores(version, role) - before[(version, role)][1] == n
    versions = {r["model_version"] for r in scored}
    assert versions == {"fraud_model/1", f"fraud_model/{v2}"}
    assert all(set(r["shadow_scores"]) == {"fraud_model/1"} for r in scored if r["model_version"] != "fraud_model/1")
    assert not any("shadow_scores" in r for r in scored if r["model_version"] == "fraud_model/1")


# --- the hot switch, for real --------------------------------------------------------


def test_alias_moves_during_a_run_switch_once_and_a_bad_version_is_refused(fraud_env, registry, tmp_path):
    """A running flow (its own process) notices the alias moving to a new version
    and switches between two batches: every event scored once, versions change at
    one point. Then the alias moves to a tampered version: refused, loudly, and
    the flow keeps the good one."""
    v2 = publish_other_model(registry, seed=6)
    v3 = publish_other_model(registry, seed=7)
    artifact = registry / MODEL_NAME / str(v3) / "model.txt"
    artifact.write_bytes(artifact.read_bytes()[:-200])  # truncated after publishing
    reg = Registry(registry)
    n = 40_000
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    write_events(stream_transactions(n, seed=9, spec=fraud_env.spec), src)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_", "IOT_", "BYTEWAX_"))}
    env = {**base, "STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src), "STREAMSCORE_IO__OUTPUT_DIR": str(out),
           "STREAMSCORE_FEAST__REPO": str(fraud_env.repo), "STREAMSCORE_MODEL__REGISTRY": str(registry),
           "STREAMSCORE_MODEL__POLL_S": "0.05", "STREAMSCORE_IO__BATCH_SIZE": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.fraud:get_flow()"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    scored = out / "scored.jsonl"

    def wait_for(lines: int) -> None:
        deadline = time.monotonic() + 120
        while (scored.read_bytes().count(b"\n") if scored.exists() else 0) < lines:
            assert proc.poll() is None, "the run ended before the alias moved: make it longer"
            assert time.monotonic() < deadline
            time.sleep(0.01)

    wait_for(3000)
    reg.set_alias(MODEL_NAME, "production", v2)
    wait_for(12_000)
    reg.set_alias(MODEL_NAME, "production", v3)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]

    recs = read_jsonl(scored)
    dead = read_jsonl(out / "dead_letter.jsonl")
    ids = [r["transaction_id"] for r in recs]
    assert len(ids) == len(set(ids)) and len(recs) + len(dead) == n  # none lost, none twice
    versions = [r["model_version"] for r in recs]
    first_v2 = versions.index(f"{MODEL_NAME}/{v2}")
    assert 0 < first_v2 < 12_000
    assert set(versions[:first_v2]) == {f"{MODEL_NAME}/1"} and set(versions[first_v2:]) == {f"{MODEL_NAME}/{v2}"}
    logs = [orjson.loads(x) for x in err.splitlines() if x.startswith(b"{")]
    switched = [x for x in logs if x.get("event") == "model_switched"]
    refused = [x for x in logs if x.get("event") == "model_switch_refused"]
    assert [(x["from"], x["to"]) for x in switched] == [(f"{MODEL_NAME}/1", f"{MODEL_NAME}/{v2}")]
    assert switched[0]["event_time"] is not None
    assert len(refused) == 1 and refused[0]["keeping"] == f"{MODEL_NAME}/{v2}" and "sha256" in refused[0]["error"]
    assert refused[0]["level"] == "error"


def test_a_failing_shadow_never_costs_the_decision(fraud_env, registry):
    v2 = publish_other_model(registry, seed=9)
    router = router_for(registry, routes=Routes.parse(f"{MODEL_NAME}/1", f"{MODEL_NAME}/{v2}"))

    def broken(X):
        raise RuntimeError("shadow exploded")

    router.assignment.shadows[f"{MODEL_NAME}/{v2}"].predict = broken
    raw = events(500, fraud_env, seed=10)
    plain = pipeline(router_for(registry)).process(raw)
    got = pipeline(router).process(raw)
    assert [r.get("status") if isinstance(r, dict) else r.step for r in got] == \
        [r.get("status") if isinstance(r, dict) else r.step for r in plain]
    assert not any(isinstance(r, dict) and "shadow_scores" in r for r in got)
