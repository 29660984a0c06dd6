"""The fraud dataflow end to end with bytewax.testing: real files, real Feast, real model.

Every input event must end in exactly one of scored / dead letter, and the
alert output must hold exactly the scored records whose status is not NORMAL.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from bytewax.testing import cluster_main, run_main

from settings.config import FraudConfig
from dataflows.fraud import build_flow
from datagen.transactions import corrupt_events, stream_transactions, write_events

HAND_MADE_BAD = [
    "not json at all",
    "[1, 2, 3]",
    '{"transaction_id": "bad-1"}',
    '{"transaction_id": "bad-2", "customer_id": "C000001", "merchant_id": "M00001", "amount": 0,'
    ' "merchant_category": "gas", "timestamp": "2026-10-06T00:00:00Z", "latitude": 1, "longitude": 1}',
    "",
]


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def config(env, tmp_path: Path, **extra: str) -> FraudConfig:
    return FraudConfig.from_env(
        {
            "STREAMSCORE_IO__OUTPUT_DIR": str(tmp_path / "out"),
            "STREAMSCORE_FEAST__REPO": str(env.repo),
            "STREAMSCORE_MODEL__REGISTRY": str(env.registry),
            "STREAMSCORE_IO__BATCH_SIZE": "200",
            **extra,
        }
    )


def outputs(tmp_path: Path) -> tuple[list[dict], list[dict], list[dict]]:
    out = tmp_path / "out"
    return read_jsonl(out / "scored.jsonl"), read_jsonl(out / "alerts.jsonl"), read_jsonl(out / "dead_letter.jsonl")


def check_accounting(inputs: list, scored: list[dict], alerts: list[dict], dead: list[dict]) -> None:
    assert len(scored) + len(dead) == len(inputs)
    scored_ids = [r["transaction_id"] for r in scored]
    assert len(set(scored_ids)) == len(scored_ids), "an event was scored twice"
    non_normal = [r for r in scored if r["status"] != "NORMAL"]
    assert sorted(map(orjson.dumps, alerts)) == sorted(
        orjson.dumps(r) for r in non_normal
    ), "alerts must be exactly the non-NORMAL scored records"
    for r in dead:
        assert set(r) >= {"error", "raw", "received_at"} and r["error"]


@pytest.fixture(scope="module")
def events(fraud_env) -> list:
    clean = stream_transactions(1500, seed=3, spec=fraud_env.spec)
    return corrupt_events(clean, rate=0.03, seed=3) + HAND_MADE_BAD


def test_jsonl_file_accounting_and_records(fraud_env, events, tmp_path):
    path = tmp_path / "in.jsonl"
    write_events(events, path)
    n_lines = len([ln for ln in path.read_bytes().splitlines() if ln.strip()])
    run_main(build_flow(config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))))
    scored, alerts, dead = outputs(tmp_path)
    check_accounting(range(n_lines), scored, alerts, dead)

    # Everything that validates is scored; every corrupted event is a dead letter with its reason.
    bad_ids = {e["transaction_id"] for e in events if isinstance(e, dict) and (
        "customer_id" not in e or not isinstance(e["amount"], float) or e["amount"] <= 0
        or e["timestamp"] == "yesterday" or e["latitude"] > 90)}
    assert bad_ids and bad_ids.isdisjoint(r["transaction_id"] for r in scored)
    reasons = " | ".join(r["error"] for r in dead)
    for fragment in ("not valid JSON", "field 'customer_id': missing", "field 'amount'", "field 'timestamp'",
                     "field 'latitude'", "expected a JSON object"):
        assert fragment in reasons

    rec = scored[0]
    for field in ("transaction_id", "customer_id", "merchant_id", "amount", "merchant_category", "timestamp",
                  "latitude", "longitude", "is_fraud", "time_since_last_transaction", "amount_mean_24h",
                  "distance_from_home_km", "speed_kmh", "fraud_score", "anomaly_score", "status",
                  "model_version", "scored_at", "latency_ms"):
        assert field in rec, field
    assert all(not k.startswith("_") for k in rec)
    assert rec["model_version"] == f"fraud_model/{fraud_env.manifest['version']}"
    assert alerts and all(a["reasons"] and a["status"] in ("WARNING", "CRITICAL") for a in alerts)
    # The flow catches injected fraud: most CRITICALs are labelled fraud.
    critical = [r for r in scored if r["status"] == "CRITICAL"]
    assert sum(r["is_fraud"] for r in critical) >= 0.8 * len(critical)


def test_csv_and_parquet_inputs(fraud_env, tmp_path):
    clean = stream_transactions(300, seed=5, spec=fraud_env.spec)
    for suffix in (".csv", ".parquet"):
        path = tmp_path / f"in{suffix}"
        write_events(clean, path)
        run_dir = tmp_path / suffix.strip(".")
        run_main(build_flow(config(fraud_env, run_dir, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))))
        scored, alerts, dead = outputs(run_dir)
        check_accounting(clean, scored, alerts, dead)
        assert not dead, dead[:1]
        assert {r["transaction_id"] for r in scored} == {e["transaction_id"] for e in clean}


def test_two_workers_partition_state_and_lose_nothing(fraud_env, events, tmp_path):
    path = tmp_path / "in.jsonl"
    write_events(events, path)
    cfg = config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))
    cluster_main(build_flow(cfg), addresses=[], proc_id=0, worker_count_per_proc=2)
    scored, alerts, dead = outputs(tmp_path)
    check_accounting(range(len([ln for ln in path.read_bytes().splitlines() if ln.strip()])), scored, alerts, dead)

    # Per-customer features do not depend on how keys are spread over workers.
    one = tmp_path / "one"
    run_main(build_flow(config(fraud_env, one, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))))
    single = {r["transaction_id"]: r["amount_count_24h"] for r in outputs(one)[0]}
    assert {r["transaction_id"]: r["amount_count_24h"] for r in scored} == single


def test_each_message_is_parsed_on_its_customers_worker(fraud_env, events, tmp_path, monkeypatch):
    """What crosses workers on the way to a customer's state is the message, not a parsed
    transaction: the worker that keeps a customer's state parses its messages (the input is
    read by one worker; half of the customers live on the other)."""
    import threading

    from models.fraud import CustomerState, FraudScoringConfig

    parsed: dict[str, set[int]] = {}
    kept: dict[str, set[int]] = {}
    parse, update_many = FraudScoringConfig.parse, CustomerState.update_many

    def parse_here(self, raw, arrival):
        tx = parse(self, raw, arrival)
        parsed.setdefault(tx.customer_id, set()).add(threading.get_ident())
        return tx

    def update_here(self, txs):
        for tx in txs:
            kept.setdefault(tx.customer_id, set()).add(threading.get_ident())
        return update_many(self, txs)

    monkeypatch.setattr(FraudScoringConfig, "parse", parse_here)
    monkeypatch.setattr(CustomerState, "update_many", update_here)
    path = tmp_path / "in.jsonl"
    write_events(events, path)
    cfg = config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))
    cluster_main(build_flow(cfg), addresses=[], proc_id=0, worker_count_per_proc=2)
    scored, alerts, dead = outputs(tmp_path)
    check_accounting([ln for ln in path.read_bytes().splitlines() if ln.strip()], scored, alerts, dead)
    assert len({t for ts in kept.values() for t in ts}) == 2  # both workers keep customers
    assert all(len(ts) == 1 for ts in kept.values())
    assert {c: ts for c, ts in parsed.items() if c in kept} == kept


def test_generator_source_unknown_keys_are_flagged(fraud_env, tmp_path):
    # The default generator's world is larger than the test repo's: most keys are unknown to Feast.
    run_main(build_flow(config(fraud_env, tmp_path, STREAMSCORE_SOURCE="generator", STREAMSCORE_IO__GENERATOR_EVENTS="400",
                               STREAMSCORE_IO__GENERATOR_BAD_RATE="0.02")))
    scored, alerts, dead = outputs(tmp_path)
    check_accounting(range(400), scored, alerts, dead)
    unknown = [r for r in scored if not r["customer_known"]]
    assert unknown and all(r["avg_transaction_amount"] == 40.0 for r in unknown)


def test_missing_model_fails_with_a_clear_error(fraud_env, tmp_path):
    path = tmp_path / "in.jsonl"
    write_events(stream_transactions(10, seed=1, spec=fraud_env.spec), path)
    cfg = config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path),
                 STREAMSCORE_MODEL__REF="fraud_model@nope")
    with pytest.raises(Exception) as info:
        run_main(build_flow(cfg))
    chain, exc = [], info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__
    assert any("no alias 'nope'" in m and "streamscore train" in m for m in chain), chain


def test_an_input_field_named_error_is_scored_not_dead_lettered(fraud_env, tmp_path):
    """Regression: the flow used to branch on ``"error" not in record``."""
    clean = stream_transactions(50, seed=8, spec=fraud_env.spec)
    for e in clean:
        e["error"] = "none"
    path = tmp_path / "in.jsonl"
    write_events(clean, path)
    run_main(build_flow(config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))))
    scored, alerts, dead = outputs(tmp_path)
    check_accounting(clean, scored, alerts, dead)
    assert not dead and len(scored) == 50 and all(r["error"] == "none" for r in scored)


def test_known_keys_carry_feast_values(fraud_env, tmp_path):
    """The records hold what Feast serves for known customers and merchants, not defaults."""
    from feast import FeatureStore

    clean = stream_transactions(300, seed=9, spec=fraud_env.spec)
    path = tmp_path / "in.jsonl"
    write_events(clean, path)
    run_main(build_flow(config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))))
    scored, _, _ = outputs(tmp_path)
    store = FeatureStore(repo_path=str(fraud_env.repo))
    customers = sorted({r["customer_id"] for r in scored})[:20]
    merchants = sorted({r["merchant_id"] for r in scored})[:20]
    prof = store.get_online_features(
        features=["customer_profile:avg_transaction_amount", "customer_profile:transaction_frequency",
                  "customer_profile:home_latitude"],
        entity_rows=[{"customer_id": c} for c in customers]).to_dict()
    risk = store.get_online_features(features=["merchant_risk:merchant_risk_score", "merchant_risk:chargeback_rate"],
                                     entity_rows=[{"merchant_id": m} for m in merchants]).to_dict()
    by_customer = {r["customer_id"]: r for r in scored}
    by_merchant = {r["merchant_id"]: r for r in scored}
    assert all(v is not None for v in prof["avg_transaction_amount"])  # the test world knows them
    for i, c in enumerate(customers):
        rec = by_customer[c]
        assert rec["customer_known"] is True
        assert rec["avg_transaction_amount"] == pytest.approx(prof["avg_transaction_amount"][i])
        assert rec["transaction_frequency"] == pytest.approx(prof["transaction_frequency"][i])
        assert rec["home_latitude"] == pytest.approx(prof["home_latitude"][i])
    for i, m in enumerate(merchants):
        rec = by_merchant[m]
        assert rec["merchant_known"] is True
        assert rec["merchant_risk_score"] == pytest.approx(risk["merchant_risk_score"][i])
        assert rec["chargeback_rate"] == pytest.approx(risk["chargeback_rate"][i])


def test_metrics_count_every_record_written(fraud_env, events, tmp_path):
    from prometheus_client import REGISTRY

    def count(output: str, status: str) -> float:
        return REGISTRY.get_sample_value("scoring_records_total",
                                         {"flow": "fraud_scoring", "output": output, "status": status}) or 0.0

    statuses = ("CRITICAL", "WARNING", "NORMAL")
    before = {s: count("scored", s) for s in statuses}
    dead_before = count("dead_letter", "-")
    lat_before = REGISTRY.get_sample_value("scoring_latency_seconds_count", {"flow": "fraud_scoring"}) or 0.0
    path = tmp_path / "in.jsonl"
    write_events(events, path)
    run_main(build_flow(config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))))
    scored, _, dead = outputs(tmp_path)
    for s in statuses:
        assert count("scored", s) - before[s] == sum(r["status"] == s for r in scored)
    assert count("dead_letter", "-") - dead_before == len(dead)
    assert REGISTRY.get_sample_value("scoring_latency_seconds_count", {"flow": "fraud_scoring"}) - lat_before \
        == len(scored)
    version = scored[0]["model_version"]
    assert REGISTRY.get_sample_value("scoring_model_info", {"flow": "fraud_scoring", "model_version": version}) == 1


@pytest.mark.parametrize("explain", ["critical", "none"])
def test_explanations_can_be_limited(fraud_env, events, tmp_path, explain):
    path = tmp_path / "in.jsonl"
    write_events(events, path)
    run_main(build_flow(config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path),
                               STREAMSCORE_FRAUD__EXPLAIN=explain)))
    scored, alerts, dead = outputs(tmp_path)
    assert alerts and all(a["reasons"] for a in alerts if a["fraud_score"] > 0.5)
    model_named = [a for a in alerts if any(not r.startswith(("fraud_score=", "anomaly_score=")) for r in a["reasons"])]
    if explain == "none":
        assert not model_named
    else:
        assert model_named and all(a["status"] == "CRITICAL" for a in model_named)


def test_an_alert_storm_gets_reasons_or_a_marker_for_every_alert(fraud_env, events, tmp_path):
    """Every event alerts (thresholds at 0): the explanation budget bounds the work per batch,
    and every alert still carries the model's top features or says why it has none."""
    path = tmp_path / "in.jsonl"
    write_events(events, path)
    run_main(build_flow(config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path),
                               STREAMSCORE_FRAUD__WARNING="0.0", STREAMSCORE_FRAUD__CRITICAL="0.0",
                               STREAMSCORE_FRAUD__EXPLAIN_BUDGET="20")))
    scored, alerts, dead = outputs(tmp_path)
    check_accounting(range(len([ln for ln in path.read_bytes().splitlines() if ln.strip()])), scored, alerts, dead)
    assert len(alerts) == len(scored)  # a storm: everything alerts
    explained = [a for a in alerts if "reasons_skipped" not in a]
    skipped = [a for a in alerts if "reasons_skipped" in a]
    assert all(a["reasons"] for a in alerts)  # the scores over their thresholds, at least
    model_named = [a for a in explained if any(not r.startswith(("fraud_score=", "anomaly_score="))
                                               for r in a["reasons"])]
    # the model's top features for the explained ones it drives (some alert on the anomaly score alone)
    assert model_named and all(a in model_named for a in explained if a["fraud_score"] > 0.5)
    assert skipped and all("fraud.explain_budget" in a["reasons_skipped"] for a in skipped)
    # at most the budget per batch of 200 (STREAMSCORE_IO__BATCH_SIZE): the rest are marked, not explained
    assert len(explained) <= 20 * -(-len(scored) // 200) + 20


def test_outputs_equal_the_per_record_path(fraud_env, events, tmp_path, monkeypatch):
    """The flow scores batches as columns (models.fraud.batch.ScoredBatch) and writes their
    lines; its scored and alerts outputs hold exactly what the per-record path (the scorer as
    it was: a dict per event, every output record by record) makes of the batches the scoring
    step got, field order included, and its dead letters are the plain-loop pipeline's; only
    times differ."""
    from dataflows.scoring import fraud_scoring_config
    from features.formats import to_json_line
    from features.records import DeadLetter
    from models.fraud import FraudPipeline, FraudScorer
    from models.status import alert_of
    from tests.models.fraud.test_batch import brute_force_records

    seen: list = []
    score_columns = FraudScorer.score_columns

    def tapped(self, txs):
        seen.append((self, list(txs)))
        return score_columns(self, txs)

    monkeypatch.setattr(FraudScorer, "score_columns", tapped)
    path = tmp_path / "in.jsonl"
    write_events(events, path)
    cfg = config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))
    run_main(build_flow(cfg))
    scored, alerts, dead = outputs(tmp_path)

    want_scored = [r for scorer, txs in seen for r in brute_force_records(scorer, txs)]
    want_alerts = [a for a in map(alert_of, want_scored) if a is not None]
    pipe = FraudPipeline(fraud_scoring_config(cfg))
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    want_dead = [x.to_dict() for start in range(0, len(lines), cfg.io.batch_size)  # the flow's batches
                 for x in pipe.steps(lines[start:start + cfg.io.batch_size]) if isinstance(x, DeadLetter)]

    def items(records: list[dict], drop=("scored_at", "latency_ms", "received_at")) -> list[str]:
        """Each record's fields in order, times left out; sorted (the keyed steps regroup a batch)."""
        return sorted(repr([(k, v) for k, v in orjson.loads(to_json_line(r)).items() if k not in drop])
                      for r in records)

    assert items(scored) == items(want_scored) and len(scored) > 1000
    assert items([a for a in alerts if a.get("kind") != "drift"]) == items(want_alerts) and want_alerts
    assert items(dead) == items(want_dead) and len(dead) > 40


def test_the_prefetch_reads_customer_and_merchant_before_the_parse():
    """What the prefetch step hands the scorer for a keyed message (dataflows/fraud.py):
    the merchant read from the raw message, from a decoded record, or from an event the
    reading worker already parsed; None where the message has no readable merchant."""
    from dataflows.fraud import _lookup_keys
    from features.transactions import parse_transaction

    keys = _lookup_keys()
    tx = parse_transaction({"transaction_id": "t1", "customer_id": "C1", "merchant_id": "M9", "merchant_category": "gas",
                            "amount": 5.0, "latitude": 1.0, "longitude": 2.0, "timestamp": "2026-10-06T00:00:00Z"})
    assert keys(("C1", (b'{"customer_id": "C1", "merchant_id": "M7"}', 0.0))) == ("C1", "M7")
    assert keys(("C1", ({"customer_id": "C1", "merchant_id": "M8"}, 0.0, "tx", 0, 5, False, None))) == ("C1", "M8")
    assert keys(("C1", tx)) == ("C1", "M9")
    assert keys(("C1", (b'{"customer_id": "C1"}', 0.0))) == ("C1", None)


def test_the_flow_prefetches_every_customer_before_scoring_it(fraud_env, events, tmp_path, monkeypatch):
    """The fraud flow wires the prefetch step (one worker: it owns every key): each scored
    customer's Feast lookup was started by :meth:`FraudScorer.prefetch` before the batch that
    scores it. (Without the step the flow scores the same, with its lookups inline.)"""
    from models.fraud import FraudScorer

    prefetched: set[str] = set()
    missed: list[str] = []
    prefetch, score_columns = FraudScorer.prefetch, FraudScorer.score_columns

    def spy_prefetch(self, keys):
        prefetched.update(c for c, _ in keys)
        return prefetch(self, keys)

    def spy_score(self, txs):
        missed.extend(tx.customer_id for tx in txs if tx.customer_id not in prefetched)
        return score_columns(self, txs)

    monkeypatch.setattr(FraudScorer, "prefetch", spy_prefetch)
    monkeypatch.setattr(FraudScorer, "score_columns", spy_score)
    path = tmp_path / "in.jsonl"
    write_events(events, path)
    run_main(build_flow(config(fraud_env, tmp_path, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(path))))
    scored, _, _ = outputs(tmp_path)
    assert len(scored) > 1000 and prefetched >= {r["customer_id"] for r in scored}
    assert missed == []
