"""Synthetic transactions: determinism, fraud share and patterns, corruption, file round trips."""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import orjson
import pandas as pd
import pytest

from datagen.transactions import (
    FRAUD_PATTERNS,
    HISTORY_START,
    DatasetSpec,
    World,
    corrupt_events,
    generate_transactions,
    stream_transactions,
    write_events,
)
from features.validation import ValidationError
from features.transactions import validate_transaction

SPEC = DatasetSpec(seed=7, n_customers=300, n_merchants=60, history_days=21)
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def world() -> World:
    return World.create(seed=SPEC.seed, n_customers=SPEC.n_customers, n_merchants=SPEC.n_merchants)


@pytest.fixture(scope="module")
def big_stream(world) -> list[dict]:
    """About 20k transactions (28 days of 300 customers)."""
    return generate_transactions(world, HISTORY_START, days=28, seed=3)


def test_same_seed_same_output(world):
    a = generate_transactions(world, HISTORY_START, days=3, seed=11)
    b = generate_transactions(World.create(SPEC.seed, SPEC.n_customers, SPEC.n_merchants), HISTORY_START, days=3, seed=11)
    assert a == b and len(a) > 500
    assert stream_transactions(300, seed=5, spec=SPEC) == stream_transactions(300, seed=5, spec=SPEC)


def test_different_seed_different_output(world):
    a = generate_transactions(world, HISTORY_START, days=3, seed=11)
    b = generate_transactions(world, HISTORY_START, days=3, seed=12)
    assert a != b
    assert [e["amount"] for e in a[:50]] != [e["amount"] for e in b[:50]]
    other_world = World.create(seed=8, n_customers=SPEC.n_customers, n_merchants=SPEC.n_merchants)
    assert generate_transactions(other_world, HISTORY_START, days=3, seed=11) != a
    assert stream_transactions(300, seed=5, spec=SPEC) != stream_transactions(300, seed=6, spec=SPEC)


def test_world_is_deterministic_and_checks_sizes():
    a, b = World.create(seed=1, n_customers=50, n_merchants=20), World.create(seed=1, n_customers=50, n_merchants=20)
    pd.testing.assert_frame_equal(a.customers, b.customers)
    pd.testing.assert_frame_equal(a.merchants, b.merchants)
    assert a.customers["customer_id"].is_unique and a.merchants["merchant_id"].is_unique
    with pytest.raises(ValueError, match="n_merchants"):
        World.create(seed=1, n_customers=10, n_merchants=3)


@pytest.mark.parametrize("fraud_rate", [0.015, 0.05])
def test_fraud_share_near_target(world, fraud_rate):
    txs = generate_transactions(world, HISTORY_START, days=20, seed=4, fraud_rate=fraud_rate)
    share = np.mean([e["is_fraud"] for e in txs])
    assert 0.5 * fraud_rate <= share <= 2 * fraud_rate
    # labels and patterns agree
    for e in txs:
        assert e["is_fraud"] in (0, 1)
        assert (e["fraud_pattern"] != "") == (e["is_fraud"] == 1)


def test_no_fraud_when_rate_is_zero(world):
    txs = generate_transactions(world, HISTORY_START, days=2, seed=4, fraud_rate=0.0)
    assert txs and not any(e["is_fraud"] for e in txs)


def test_all_four_patterns_present(big_stream):
    assert len(big_stream) > 15_000
    patterns = {e["fraud_pattern"] for e in big_stream if e["is_fraud"]}
    assert patterns == set(FRAUD_PATTERNS)


def test_patterns_look_like_their_description(big_stream, world):
    by_pattern: dict[str, list[dict]] = {}
    for e in big_stream:
        by_pattern.setdefault(e["fraud_pattern"], []).append(e)
    risky = set(world.merchants.loc[world.merchants["risk"] > 0.5, "merchant_id"])
    assert all(e["merchant_id"] in risky for e in by_pattern["risky_merchant"])
    assert {e["merchant_category"] for e in by_pattern["high_amount"]} <= {"electronics", "jewelry", "travel"}
    legit_median = np.median([e["amount"] for e in by_pattern[""]])
    assert np.median([e["amount"] for e in by_pattern["high_amount"]]) > 5 * legit_median


def test_timestamps_sorted_iso_utc_and_in_span(big_stream):
    ts = [e["timestamp"] for e in big_stream]
    assert all(ISO_Z.match(t) for t in ts)
    epochs = [datetime.fromisoformat(t).timestamp() for t in ts]
    assert epochs == sorted(epochs)
    assert HISTORY_START.timestamp() <= epochs[0] and epochs[-1] < HISTORY_START.timestamp() + 28 * 86_400
    ids = [e["transaction_id"] for e in big_stream]
    assert len(set(ids)) == len(ids)


def test_generated_events_validate(big_stream):
    for e in big_stream[:3000]:
        ev = validate_transaction(e)
        assert ev["amount"] > 0


def test_stream_transactions_returns_exactly_n():
    for n in (1, 7, 250, 1_000):
        txs = stream_transactions(n, seed=42, spec=SPEC)
        assert len(txs) == n
    first = stream_transactions(1_000, seed=42, spec=SPEC)
    # the stream starts where the history ends
    start = datetime.fromisoformat(first[0]["timestamp"]).timestamp()
    assert start >= HISTORY_START.timestamp() + SPEC.history_days * 86_400
    stamps = [e["timestamp"] for e in first]
    assert stamps == sorted(stamps)


def test_corrupt_events_are_rejected_and_untouched_ones_pass():
    events = stream_transactions(2_000, seed=9, spec=SPEC)
    out = corrupt_events(events, rate=0.1, seed=9)
    assert len(out) == len(events)
    corrupted = [i for i, (o, e) in enumerate(zip(out, events)) if o is not e]
    assert 100 <= len(corrupted) <= 320
    assert all(out[i] is events[i] for i in range(len(out)) if i not in set(corrupted))
    kinds = set()
    for i in corrupted:
        with pytest.raises(ValidationError) as exc:
            validate_transaction(out[i])
        kinds.add(str(exc.value).split(":")[0])
    assert len(kinds) >= 5  # customer_id, amount, timestamp, latitude, JSON
    for i, e in enumerate(out):
        if i not in set(corrupted):
            validate_transaction(e)
    # the input list is left alone, and corruption is deterministic by seed
    assert all(isinstance(e, dict) and "customer_id" in e for e in events)
    assert corrupt_events(events, rate=0.1, seed=9) == out
    assert corrupt_events(events, rate=0.0, seed=9) == events


def test_corrupt_events_every_one_rejected_at_full_rate():
    events = stream_transactions(300, seed=2, spec=SPEC)
    for bad in corrupt_events(events, rate=1.0, seed=2):
        with pytest.raises(ValidationError):
            validate_transaction(bad)


KEY_FIELDS = ["transaction_id", "customer_id", "merchant_id", "amount", "merchant_category", "timestamp",
              "latitude", "longitude", "is_fraud"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_write_events_round_trip(tmp_path, suffix):
    events = stream_transactions(500, seed=3, spec=SPEC, fraud_rate=0.1)
    assert any(e["is_fraud"] for e in events)
    path = tmp_path / "sub" / f"events{suffix}"
    write_events(events, path)
    if suffix == ".jsonl":
        back = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    elif suffix == ".csv":
        back = pd.read_csv(path, keep_default_na=False)
    else:
        back = pd.read_parquet(path)
    assert len(back) == len(events)
    expected = pd.DataFrame(events)
    for col in KEY_FIELDS:
        got = back[col].tolist()
        exp = expected[col].tolist()
        if col in ("amount", "latitude", "longitude"):
            assert np.allclose(np.asarray(got, dtype=float), np.asarray(exp, dtype=float)), col
        else:
            assert [str(v) for v in got] == [str(v) for v in exp], col
    # every row read back validates to the same event time and amount
    for row, ev in zip(back.to_dict("records"), events):
        a, b = validate_transaction(row), validate_transaction(ev)
        assert a["_t"] == b["_t"] and a["amount"] == b["amount"] and a["is_fraud"] == b["is_fraud"]


def test_write_events_jsonl_keeps_malformed_lines(tmp_path):
    events = corrupt_events(stream_transactions(300, seed=4, spec=SPEC), rate=0.3, seed=4)
    raw = [e for e in events if isinstance(e, str)]
    assert raw
    path = tmp_path / "bad.jsonl"
    write_events(events, path)
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(events)
    for line, ev in zip(lines, events):
        if isinstance(ev, str):
            assert line.decode() == ev
        else:
            assert orjson.loads(line) == ev
    for suffix in (".csv", ".parquet"):
        with pytest.raises(ValueError, match="only be written to .jsonl"):
            write_events(events, tmp_path / f"bad{suffix}")
    with pytest.raises(ValueError, match="unsupported suffix"):
        write_events([e for e in events if isinstance(e, dict)], tmp_path / "x.txt")
