"""Synthetic transactions: determinism, fraud share and patterns, corruption, file round trips, CLI.

Events are checked with plain rules (:func:`problem`) on top of ``features.records``
(``decode``, ``parse_time``), not with the flow's validator, so these tests do not
depend on how the scoring code parses transactions.
"""

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
    main,
    stream_transactions,
    write_events,
)
from features.formats import read_rows, write_rows
from features.records import ValidationError, decode, parse_time

SPEC = DatasetSpec(seed=7, n_customers=300, n_merchants=60, history_days=21)
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
REQUIRED = ("transaction_id", "customer_id", "merchant_id", "amount", "timestamp", "latitude", "longitude")


def problem(raw) -> str | None:
    """What is wrong with a raw event (JSON text or a row), or None: the rules the
    corruptions of :func:`corrupt_events` break. CSV strings are accepted as numbers."""
    try:
        ev = decode(raw)
    except ValidationError:
        return "json"
    for f in REQUIRED:
        if ev.get(f) is None or ev.get(f) == "":
            return f"missing {f}"
    try:
        amount = float(ev["amount"])
    except (TypeError, ValueError):
        return "amount not a number"
    if not amount > 0:
        return "amount not positive"
    try:
        parse_time(ev["timestamp"])
    except ValidationError:
        return "timestamp"
    if not -90 <= float(ev["latitude"]) <= 90 or not -180 <= float(ev["longitude"]) <= 180:
        return "coordinates"
    return None


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


def test_generated_events_are_well_formed(big_stream):
    for e in big_stream[:3000]:
        assert problem(e) is None, e
        assert problem(orjson.dumps(e)) is None


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
    kinds = {problem(out[i]) for i in corrupted}
    assert None not in kinds
    assert len(kinds) >= 5  # customer_id, amount (2 ways), timestamp, latitude, JSON
    for i, e in enumerate(out):
        if i not in set(corrupted):
            assert problem(e) is None
    # the input list is left alone, and corruption is deterministic by seed
    assert all(isinstance(e, dict) and "customer_id" in e for e in events)
    assert corrupt_events(events, rate=0.1, seed=9) == out
    assert corrupt_events(events, rate=0.0, seed=9) == events


def test_corrupt_events_every_one_rejected_at_full_rate():
    events = stream_transactions(300, seed=2, spec=SPEC)
    for bad in corrupt_events(events, rate=1.0, seed=2):
        assert problem(bad) is not None, bad


def test_corrupt_events_rows_only():
    """raw_lines=False: the same events are corrupted, every one stays a (bad) row."""
    events = stream_transactions(2_000, seed=9, spec=SPEC)
    lines = corrupt_events(events, rate=0.1, seed=9)
    rows = corrupt_events(events, rate=0.1, seed=9, raw_lines=False)
    assert any(isinstance(e, str) for e in lines)
    assert all(isinstance(e, dict) for e in rows)
    for a, b, e in zip(lines, rows, events):
        assert (a is e) == (b is e)
        if b is not e:
            assert problem(b) is not None
            if isinstance(a, str):
                assert b["amount"] is None


KEY_FIELDS = ["transaction_id", "customer_id", "merchant_id", "amount", "merchant_category", "timestamp",
              "latitude", "longitude", "is_fraud"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_write_rows_round_trip(tmp_path, suffix):
    events = stream_transactions(500, seed=3, spec=SPEC, fraud_rate=0.1)
    assert any(e["is_fraud"] for e in events)
    path = tmp_path / "sub" / f"events{suffix}"
    assert write_rows(events, path) == len(events)
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
    # every row read back (CSV: strings) has the same event time, amount and label
    for row, ev in zip(read_rows(path), events):
        assert problem(row) is None
        assert parse_time(row["timestamp"]) == parse_time(ev["timestamp"])
        assert float(row["amount"]) == ev["amount"] and int(row["is_fraud"]) == ev["is_fraud"]


def test_jsonl_keeps_malformed_lines(tmp_path):
    events = corrupt_events(stream_transactions(300, seed=4, spec=SPEC), rate=0.3, seed=4)
    raw = [e for e in events if isinstance(e, str)]
    assert raw
    path = tmp_path / "bad.jsonl"
    assert write_rows(events, path) == len(events)
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(events)
    for line, ev in zip(lines, events):
        if isinstance(ev, str):
            assert line.decode() == ev
        else:
            assert orjson.loads(line) == ev
    for suffix in (".csv", ".parquet"):
        with pytest.raises(ValueError, match="only be written to .jsonl"):
            write_rows(events, tmp_path / f"bad{suffix}")
        assert not (tmp_path / f"bad{suffix}").exists()
    with pytest.raises(ValueError, match="cannot tell the format"):
        write_rows([e for e in events if isinstance(e, dict)], tmp_path / "x.txt")
    # the old name still writes the same file (kept for callers outside datagen)
    assert write_events(events, tmp_path / "again.jsonl") == len(events)
    assert (tmp_path / "again.jsonl").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_cli_stream_with_bad_rate(tmp_path, capsys, suffix):
    """--bad-rate works with every format: JSON Lines may get lines that are not JSON;
    CSV and Parquet get rows with bad values instead."""
    out = tmp_path / f"tx{suffix}"
    assert main(["stream", "--events", "400", "--seed", "5", "--bad-rate", "0.2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 400 events to {out}"
    if suffix == ".jsonl":
        lines = out.read_bytes().splitlines()
        assert len(lines) == 400
        kinds = [problem(line) for line in lines]
    else:
        rows = read_rows(out)
        assert len(rows) == 400
        kinds = [problem(r) for r in rows]
        assert "json" not in kinds
    bad = [k for k in kinds if k is not None]
    assert 40 <= len(bad) <= 130
    assert len(set(bad)) >= 4


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["stream", "--events", "10", "--out", str(tmp_path / "tx.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot tell the format") and "tx.txt" in err and err.count("\n") == 1
    assert main(["stream", "--events", "10", "--bad-rate", "1.5", "--out", str(tmp_path / "tx.csv")]) == 2
    assert "--bad-rate" in capsys.readouterr().err
    assert not (tmp_path / "tx.csv").exists()
