"""The columnar scored batch (:class:`models.fraud.batch.ScoredBatch`) against a brute-force
path: the scorer as it was before the batch was kept as columns (a record dict per event,
the matrix from the records, every output made record by record). Records, JSON lines of
both outputs, the inference log's table and the drift rows must be the same."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from datagen.transactions import stream_transactions
from features.formats import to_json_line
from features.records import DeadLetter, POSSIBLE_REPEAT
from features.store import fraud_lookups
from models.fraud import LOG_SPEC, MODEL_NAME, FraudModel, FraudPipeline, FraudScorer, FraudScoringConfig
from models.fraud.inputs import MODEL_FEATURES, feature_matrix, feature_row, model_matrix
from models.fraud.scorer import _groups
from models.inference_log import log_row, schema, to_table
from models.status import CRITICAL, NORMAL, alert_of, combined_risk
from features.records import format_time

NOW = 1.8e9 + 0.123456


def brute_force_records(scorer: FraudScorer, txs) -> list[dict]:
    """The scorer's records, built as before the columnar batch: one dict per event."""
    profiles = scorer.customers.get_many([tx.customer_id for tx in txs])
    no_profile = getattr(scorer.customers, "last_fallback", ())
    merchants = scorer.merchants.get_many([tx.merchant_id for tx in txs])
    no_risk = getattr(scorer.merchants, "last_fallback", ())
    records = []
    for tx in txs:
        profile, customer_known = profiles[tx.customer_id]
        risk, merchant_known = merchants[tx.merchant_id]
        rec = feature_row(tx, profile, customer_known, risk, merchant_known)
        rec["feature_fallback"] = tx.customer_id in no_profile or tx.merchant_id in no_risk
        rec["anomaly_scores"] = tx.anomaly_scores
        rec["anomaly_score"] = tx.anomaly_score
        rec["anomaly_warming_up"] = tx.anomaly_warming_up
        records.append(rec)
    X = feature_matrix(records)
    models = scorer.models.current()
    decider = models.decider_of([tx.customer_id for tx in txs])
    fraud, versions = scorer._predict(X, models.deciders, decider)
    stamp = format_time(NOW)
    alerts = []
    for i, (tx, rec, p) in enumerate(zip(txs, records, fraud)):
        risk_score = combined_risk(p, tx.anomaly_score, scorer.anomaly_weight)
        status = scorer.thresholds.status(risk_score)
        rec["fraud_score"] = round(p, 6)
        rec["risk_score"] = round(risk_score, 6)
        rec["status"] = status
        rec["model_version"] = versions[i]
        rec["event_time"] = format_time(tx.t)
        rec["scored_at"] = stamp
        rec["latency_ms"] = round((NOW - tx.arrival) * 1000.0, 3)
        if status != NORMAL:
            alerts.append(i)
    explained = [] if scorer.explain == "none" else (
        alerts if scorer.explain == "alerts" else [i for i in alerts if records[i]["status"] == CRITICAL])
    if len(explained) > scorer.explain_budget:
        explained.sort(key=lambda i: (records[i]["status"] != CRITICAL, -records[i]["risk_score"]))
        skipped = (f"explanation budget: {scorer.explain_budget} of this batch's {len(explained)} "
                   "alerts got top features (fraud.explain_budget)")
        for i in explained[scorer.explain_budget:]:
            records[i]["reasons_skipped"] = skipped
        explained = sorted(explained[: scorer.explain_budget])
    tops = {}
    for m, rows in _groups(explained, decider, len(models.deciders)):
        tops.update(zip(rows, models.deciders[m].explain(X[rows])))
    for i in alerts:
        records[i]["reasons"] = scorer.reasons(records[i], tops.get(i, []))
    return records


@pytest.fixture(scope="module")
def stepped(fraud_env):
    """Demo transactions after the customer and shard steps, in batches of 250, some with
    input fields that collide with computed ones, some marked possible repeats."""
    raws = stream_transactions(1500, seed=21, spec=fraud_env.spec)
    for i, r in enumerate(raws):
        if i % 97 == 0:
            r.update(status="from input", fraud_score="input", shadow="x", note=None)
        if i % 50 == 1:
            r.pop("is_fraud", None)
    pipe = FraudPipeline(FraudScoringConfig())
    batches = []
    for start in range(0, len(raws), 250):
        txs = [tx for tx in pipe.steps(raws[start:start + 250], arrival=NOW - 0.5) if not isinstance(tx, DeadLetter)]
        for j, tx in enumerate(txs):
            if j % 31 == 0:
                tx.fields[POSSIBLE_REPEAT] = True
        batches.append(txs)
    return batches


@pytest.fixture(scope="module")
def scorer_of(fraud_env):
    model = FraudModel.load(f"{MODEL_NAME}@production", fraud_env.registry)
    customers, merchants = fraud_lookups(fraud_env.repo)

    def make(**cfg) -> FraudScorer:
        return FraudScorer(model, customers, merchants, FraudScoringConfig(**cfg))

    return make


@pytest.mark.parametrize("cfg", [{}, {"explain_budget": 2, "critical": 0.3, "warning": 0.05},
                                 {"explain": "none", "warning": 0.0}])
def test_scored_batch_equals_the_brute_force_records_lines_and_log(stepped, scorer_of, monkeypatch, cfg):
    from models.status import Thresholds

    crit, warn = cfg.pop("critical", 0.8), cfg.pop("warning", 0.5)
    scorer = scorer_of(thresholds=Thresholds(crit, warn), **cfg)
    monkeypatch.setattr(time, "time", lambda: NOW)
    seen_alerts = seen_repeats = seen_skipped = 0
    for txs in stepped:
        expected = brute_force_records(scorer, txs)
        batch = scorer.score_columns(txs)
        # the records, their fields in the same order
        assert [list(r.items()) for r in batch.records()] == [list(r.items()) for r in expected]
        assert [list(r.items()) for r in scorer.score_batch(txs)] == [list(r.items()) for r in expected]
        # both outputs' lines, byte for byte, and their keys
        assert batch.lines("scored") == [to_json_line(r) for r in expected]
        alerts = [a for a in map(alert_of, expected) if a is not None]
        assert batch.lines("alerts") == [to_json_line(a) for a in alerts]
        assert batch.keys("alerts") == [a["transaction_id"] for a in alerts]
        assert batch.keys("scored") == [r["transaction_id"] for r in expected]
        assert batch.output_statuses("alerts") == [a["status"] for a in alerts]
        assert [list(r.items()) for r in batch.output_records("alerts")] == [list(a.items()) for a in alerts]
        # the model matrix from the columns is the records' matrix
        np.testing.assert_array_equal(batch.X, feature_matrix(expected))
        # the inference log's table is the rows' table
        sch = schema(LOG_SPEC)
        assert batch.log_table(LOG_SPEC).equals(to_table([log_row(r, LOG_SPEC) for r in expected], sch))
        assert batch.log_date() == expected[0]["scored_at"][:10]
        # the drift step's rows, per version, in order
        drift = {v: rows for v, rows in batch.drift_columns()}
        assert drift == {expected[0]["model_version"]: [(r["fraud_score"], r["transaction_id"], r["event_time"])
                                                        for r in expected]}
        seen_alerts += len(alerts)
        seen_repeats += sum(1 for a in alerts if a.get("update"))
        seen_skipped += sum(1 for r in expected if "reasons_skipped" in r)
    assert seen_alerts and (seen_repeats or warn == 0.0)
    if cfg.get("explain_budget") == 2:
        assert seen_skipped


def test_model_matrix_equals_the_records_matrix_with_missing_values(stepped, scorer_of):
    scorer = scorer_of()
    txs = stepped[0]
    batch = scorer.score_columns(txs)
    X = model_matrix(txs, batch.lookups, batch.derived)
    np.testing.assert_array_equal(X, feature_matrix(batch.records()))
    assert np.isnan(X).any()  # first transactions of customers: no previous one
    row = orjson.loads(batch.lines("scored")[0])
    assert row["transaction_id"] == txs[0].transaction_id


def test_combined_risk_equals_the_noisy_or_of_combine_scores():
    import random

    from models.status import combine_scores

    rng = random.Random(3)
    values = [0.0, 1.0, 0.5, 1e-300, 1 - 1e-16, *(rng.random() for _ in range(60))]
    for p in values:
        for a in values[:25]:
            for w in (0.0, 0.4, 1.0, rng.random()):
                assert combined_risk(p, a, w) == combine_scores({"fraud": p, "anomaly": a}, {"anomaly": w})
    assert combined_risk(0.1, None, 0.4) == 0.1
    assert combined_risk(0.1, float("nan"), 0.4) == combine_scores({"fraud": 0.1, "anomaly": float("nan")})


def test_model_matrix_reads_parts_missing_some_names_as_missing_values(stepped, scorer_of):
    """A transaction whose features, derived values or Feast values lack some of the model's
    names (a caller's own parts): those are NaN, as in the records' matrix."""
    scorer = scorer_of()
    txs = stepped[1][:20]
    batch = scorer.score_columns(txs)
    lookups, derived = list(batch.lookups), list(batch.derived)
    txs = list(txs)
    txs[3] = txs[3].__copy__()
    txs[3].features = {k: v for k, v in txs[3].features.items() if k != "amount_sum_24h"}
    derived[5] = {}
    profile, customer_known, risk, merchant_known = lookups[7]
    lookups[7] = ({}, customer_known, {"chargeback_rate": 0.5}, merchant_known)
    X = model_matrix(txs, lookups, derived)
    rows = [feature_row(tx, *parts, d) for tx, parts, d in zip(txs, lookups, derived)]
    np.testing.assert_array_equal(X, feature_matrix(rows))
    assert np.isnan(X[3]).sum() > np.isnan(batch.X[3]).sum()
    assert np.isnan(X[7, MODEL_FEATURES.index("merchant_risk_score")])
