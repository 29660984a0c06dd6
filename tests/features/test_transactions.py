"""Transaction parsing and per-customer streaming features, against brute force."""

from __future__ import annotations

import math
import pickle
import random
import time
from datetime import datetime, timezone

import orjson
import pytest

from features.records import ValidationError
from features.transactions import (
    HORIZONS,
    MAX_AMOUNT,
    STREAM_FEATURES,
    CustomerFeatures,
    Transaction,
    derived_features,
    derived_features_many,
    haversine_km,
    parse_transaction,
)
from tests.conftest import is_plain

NY = (40.71, -74.01)
LONDON = (51.51, -0.13)

GOOD = {
    "transaction_id": "t1",
    "customer_id": "C000001",
    "merchant_id": "M00001",
    "amount": 25.0,
    "merchant_category": "grocery",
    "timestamp": "2026-10-06T12:00:00Z",
    "latitude": 40.7,
    "longitude": -74.0,
}
T_GOOD = datetime(2026, 10, 6, 12, tzinfo=timezone.utc).timestamp()


# --- parse_transaction ----------------------------------------------------------------


def test_valid_event_is_typed():
    tx = parse_transaction(dict(GOOD), arrival=123.5)
    assert isinstance(tx, Transaction)
    assert tx.t == T_GOOD and tx.arrival == 123.5
    assert tx.amount == 25.0 and isinstance(tx.amount, float)
    assert (tx.transaction_id, tx.customer_id, tx.merchant_id, tx.merchant_category) == (
        "t1", "C000001", "M00001", "grocery")
    assert (tx.latitude, tx.longitude) == (40.7, -74.0)
    assert tx.fields == GOOD
    # JSON text and bytes give the same result as a mapping
    assert parse_transaction(orjson.dumps(GOOD), arrival=123.5) == tx
    assert parse_transaction(orjson.dumps(GOOD).decode(), arrival=123.5) == tx
    # the step slots start empty
    assert tx.features == {} and tx.anomaly_score is None and tx.anomaly_warming_up is True


def test_parse_does_not_require_label():
    tx = parse_transaction(dict(GOOD))
    assert tx.is_fraud is None and "is_fraud" not in tx.fields


def test_transaction_survives_pickle():
    """Bytewax moves items between workers by pickling them."""
    tx = parse_transaction({**GOOD, "channel": "web"}, arrival=1.0)
    tx.features = {"amount_count_1h": 3}
    assert pickle.loads(pickle.dumps(tx)) == tx


@pytest.mark.parametrize(
    "change, field",
    [
        ({"customer_id": None}, "customer_id"),
        ({"customer_id": ""}, "customer_id"),
        ({"merchant_id": None}, "merchant_id"),
        ({"transaction_id": ""}, "transaction_id"),
        ({"merchant_category": ""}, "merchant_category"),
        ({"amount": "twelve"}, "amount"),
        ({"amount": -12.5}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": "nan"}, "amount"),
        ({"amount": float("nan")}, "amount"),
        ({"amount": float("inf")}, "amount"),
        ({"amount": "inf"}, "amount"),
        ({"amount": 2e9}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": [1.0]}, "amount"),
        ({"amount": None}, "amount"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": ""}, "timestamp"),
        ({"timestamp": [2026, 10, 6]}, "timestamp"),
        ({"timestamp": 1.7e12}, "timestamp"),
        ({"latitude": 123}, "latitude"),
        ({"latitude": "north"}, "latitude"),
        ({"latitude": float("nan")}, "latitude"),
        ({"longitude": -181.0}, "longitude"),
        ({"customer_id": 1.5}, "customer_id"),
        ({"customer_id": True}, "customer_id"),
        ({"customer_id": {"id": 1}}, "customer_id"),
        ({"is_fraud": "maybe"}, "is_fraud"),
    ],
)
def test_bad_field_raises_naming_the_field(change, field):
    ev = {**GOOD, **change}
    with pytest.raises(ValidationError) as exc:
        parse_transaction(ev)
    assert str(exc.value).startswith(f"field {field!r}: "), str(exc.value)


@pytest.mark.parametrize("field", ["customer_id", "amount", "timestamp", "latitude", "longitude", "merchant_id",
                                   "transaction_id", "merchant_category"])
def test_missing_field_raises_naming_the_field(field):
    ev = {k: v for k, v in GOOD.items() if k != field}
    with pytest.raises(ValidationError, match=f"^field '{field}': missing$"):
        parse_transaction(ev)
    # the same through JSON text
    with pytest.raises(ValidationError, match=f"^field '{field}': missing$"):
        parse_transaction(orjson.dumps(ev))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"amount": "twelve"}, "field 'amount': expected a number, got 'twelve'"),
        ({"amount": " 12.5 "}, "field 'amount': expected a number, got ' 12.5 '"),
        ({"amount": -12.5}, "field 'amount': must be > 0, got -12.5"),
        ({"amount": 2e9}, "field 'amount': 2000000000.0 is over 1e+09, refused as absurd"),
        ({"amount": "nan"}, "field 'amount': expected a finite number, got 'nan'"),
        ({"latitude": 123}, "field 'latitude': 123.0 is outside [-90, 90]"),
        ({"longitude": "-181"}, "field 'longitude': -181.0 is outside [-180, 180]"),
        ({"customer_id": 1.5}, "field 'customer_id': expected text, got 1.5"),
    ],
)
def test_error_messages_say_what_was_wrong(change, message):
    with pytest.raises(ValidationError) as exc:
        parse_transaction({**GOOD, **change})
    assert str(exc.value) == message


def test_amount_limit():
    assert parse_transaction({**GOOD, "amount": MAX_AMOUNT}).amount == 1e9
    with pytest.raises(ValidationError, match="'amount'"):
        parse_transaction({**GOOD, "amount": MAX_AMOUNT * 1.000001})
    with pytest.raises(ValidationError, match="'amount'"):
        parse_transaction({**GOOD, "amount": 10**30})


@pytest.mark.parametrize("raw", ['{"transaction_id": "t1", "amount": 1', "not json at all", "", b"{\xff\xfe"])
def test_non_json_text_is_rejected(raw):
    with pytest.raises(ValidationError, match="not valid JSON|not valid UTF-8"):
        parse_transaction(raw)


@pytest.mark.parametrize("raw, kind", [("[1, 2, 3]", "list"), ('"text"', "str"), ("42", "int"), ("null", "NoneType")])
def test_json_that_is_not_an_object_is_rejected(raw, kind):
    with pytest.raises(ValidationError, match=f"expected a JSON object, got {kind}"):
        parse_transaction(raw)


def test_csv_style_strings_are_coerced():
    row = {k: str(v) for k, v in GOOD.items()}
    row["amount"] = "12.5"
    row["is_fraud"] = "1"
    tx = parse_transaction(row)
    assert tx.amount == 12.5
    assert tx.latitude == 40.7 and tx.longitude == -74.0
    assert tx.is_fraud == 1
    assert tx.fields == row  # as received: text
    assert parse_transaction({**row, "is_fraud": "0"}).is_fraud == 0
    assert parse_transaction({**row, "is_fraud": " True "}).is_fraud == 1
    assert parse_transaction({**row, "is_fraud": "false"}).is_fraud == 0
    assert parse_transaction({**row, "is_fraud": 0}).is_fraud == 0
    assert parse_transaction({**row, "is_fraud": True}).is_fraud == 1
    # an empty label (CSV cell) is a missing label: null
    assert parse_transaction({**row, "is_fraud": ""}).is_fraud is None
    # numeric ids (a CSV read with type inference) become text
    assert parse_transaction({**GOOD, "customer_id": 12}).customer_id == "12"
    assert parse_transaction({**GOOD, "transaction_id": 7, "merchant_id": 3}).transaction_id == "7"
    # numeric text in scientific notation is a number too
    assert parse_transaction({**row, "amount": "1.25e2"}).amount == 125.0


def test_csv_float_label_zero_is_not_fraud():
    """A CSV whose label column was written as floats ("0.0" / "1.0") must keep 0 as 0."""
    row = {k: str(v) for k, v in GOOD.items()}
    assert parse_transaction({**row, "is_fraud": "1.0"}).is_fraud == 1
    assert parse_transaction({**row, "is_fraud": "0.0"}).is_fraud == 0


def test_unknown_fields_are_carried_through_unchanged():
    extra = {"device": {"os": "ios", "v": [1, 2]}, "channel": "web", "score_hint": 3, "error": "none",
             "status": "pending", "t": "not the event time", "fields": [1]}
    tx = parse_transaction({**GOOD, **extra, "fraud_pattern": ""})
    for k, v in extra.items():
        assert tx.fields[k] == v
    assert tx.fields["fraud_pattern"] == ""
    assert tx.t == T_GOOD  # an input field named like a slot does not reach the slot
    tx2 = parse_transaction(orjson.dumps({**GOOD, **extra}))
    assert tx2.fields["device"] == {"os": "ios", "v": [1, 2]}
    assert tx2.fields["error"] == "none"


@pytest.fixture
def non_utc_local_time(monkeypatch):
    """Run with a local time zone far from UTC, so "naive means local" would show."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_naive_timestamp_is_utc_and_offsets_are_honoured(non_utc_local_time):
    assert time.localtime(T_GOOD).tm_hour != 12  # the fixture took effect
    assert parse_transaction({**GOOD, "timestamp": "2026-10-06T12:00:00"}).t == T_GOOD
    assert parse_transaction({**GOOD, "timestamp": "2026-10-06T14:00:00+02:00"}).t == T_GOOD
    assert parse_transaction({**GOOD, "timestamp": "2026-10-06T12:00:00.250Z"}).t == pytest.approx(T_GOOD + 0.25)
    # epoch seconds are accepted as-is
    assert parse_transaction({**GOOD, "timestamp": T_GOOD}).t == T_GOOD
    assert parse_transaction({**GOOD, "timestamp": datetime(2026, 10, 6, 12)}).t == T_GOOD


def test_parse_does_not_mutate_a_mapping_input():
    row = {k: str(v) for k, v in GOOD.items()}
    before = dict(row)
    tx = parse_transaction(row)
    assert row == before
    assert tx.fields is not row


# --- brute-force reference -------------------------------------------------------


def pstd(vals: list[float]) -> float:
    m = sum(vals) / len(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))


#: Tile width of each horizon (60 tiles per horizon): the documented window rule reads whole tiles
#: from the one holding t - H, i.e. event time (floor((t - H) / w) * w, t].
WIDTHS = {name: hz / 60 for name, hz in HORIZONS.items()}


def in_window(ts: float, t: float, name: str) -> bool:
    w = WIDTHS[name]
    return math.ceil(ts / w) - 1 >= math.floor((t - HORIZONS[name]) / w) and ts <= t


def brute_features(arrived: list[tuple[float, float, float, float]], cur: tuple[float, float, float, float]) -> dict:
    """The features of ``cur`` given every event that has arrived so far (``cur`` included),
    windows by the documented tile rule."""
    t, amount, lat, lon = cur
    out: dict = {}
    earlier = [e for e in arrived if e is not cur and e[0] <= t]
    if earlier:
        prev = max(earlier, key=lambda e: e[0])
        gap = t - prev[0]
        dist = haversine_km(prev[2], prev[3], lat, lon)
        out["time_since_last_transaction"] = gap
        out["distance_from_previous_km"] = dist
        out["speed_kmh"] = dist / (max(gap, 60.0) / 3600.0)
    else:
        out["time_since_last_transaction"] = out["distance_from_previous_km"] = out["speed_kmh"] = None
    for name in HORIZONS:
        vals = [e[1] for e in arrived if in_window(e[0], t, name)]
        out[f"amount_count_{name}"] = len(vals)
        out[f"amount_sum_{name}"] = sum(vals)
        out[f"amount_mean_{name}"] = sum(vals) / len(vals)
        out[f"amount_std_{name}"] = pstd(vals)
        out[f"amount_max_{name}"] = max(vals)
    others = [e[1] for e in arrived if e is not cur and in_window(e[0], t, "7d")]
    if others:
        m = sum(others) / len(others)
        out["amount_deviation"] = (amount - m) / max(pstd(others), 1.0)
        out["amount_to_mean_ratio"] = amount / max(m, 0.01)
    else:
        out["amount_deviation"] = out["amount_to_mean_ratio"] = None
    return out


def assert_features_match(got: dict, expected: dict, where: str = "") -> None:
    for name in STREAM_FEATURES:
        g, e = got[name], expected[name]
        if e is None:
            assert g is None, f"{where}{name}: expected None, got {g}"
        elif name.startswith("amount_count"):
            assert g == e, f"{where}{name}"
        else:
            assert g == pytest.approx(e, rel=1e-7, abs=1e-6), f"{where}{name}: {g} != {e}"


def random_customer(seed: int, n: int, mean_gap: float) -> list[tuple[float, float, float, float]]:
    rng = random.Random(seed)
    t = 1_790_000_000.0
    out = []
    for _ in range(n):
        t += rng.expovariate(1.0 / mean_gap) + 0.5
        city = NY if rng.random() < 0.8 else LONDON
        out.append(
            (
                t,
                round(math.exp(rng.gauss(3.5, 0.9)), 2),
                city[0] + rng.gauss(0, 0.05),
                city[1] + rng.gauss(0, 0.05),
            )
        )
    return out


# --- CustomerFeatures ---------------------------------------------------------------


def test_update_returns_every_stream_feature_and_late_flag():
    f = CustomerFeatures().update(T_GOOD, 10.0, *NY)
    assert set(f) == set(STREAM_FEATURES) | {"late_event"}


@pytest.mark.parametrize("seed", [3, 4])
def test_in_order_features_match_brute_force(seed):
    # ~10 days of activity: the 1h, 24h and 7d windows all hold several events
    events = random_customer(seed, n=300, mean_gap=2_900.0)
    state = CustomerFeatures()
    arrived: list = []
    for i, ev in enumerate(events):
        arrived.append(ev)
        got = state.update(*ev)
        assert got["late_event"] is False
        assert_features_match(got, brute_features(arrived, ev), where=f"event {i}: ")


def test_windows_hold_several_events_in_the_random_sequence():
    """Guard for the brute-force test: the sequence really exercises multi-event windows."""
    events = random_customer(3, n=300, mean_gap=2_900.0)
    state = CustomerFeatures()
    feats = [state.update(*ev) for ev in events]
    assert max(f["amount_count_1h"] for f in feats) >= 3
    assert max(f["amount_count_24h"] for f in feats) >= 30
    assert max(f["amount_count_7d"] for f in feats) >= 150
    # the 7d window has started to drop old events
    assert feats[-1]["amount_count_7d"] < len(events)


def test_time_since_last_transaction():
    s = CustomerFeatures()
    first = s.update(1000.0, 10.0, *NY)
    assert first["time_since_last_transaction"] is None
    assert first["distance_from_previous_km"] is None and first["speed_kmh"] is None
    assert first["amount_deviation"] is None and first["amount_to_mean_ratio"] is None
    assert s.update(1090.5, 10.0, *NY)["time_since_last_transaction"] == 90.5
    assert s.update(5000.0, 10.0, *NY)["time_since_last_transaction"] == 3909.5
    # a late event measures the gap to the event just before it in event time
    assert s.update(4000.0, 10.0, *NY)["time_since_last_transaction"] == 2909.5


def test_late_event_gets_in_order_features_and_later_events_are_unaffected():
    events = random_customer(9, n=120, mean_gap=200.0)
    k = 60  # this one arrives late: after the next events up to < lateness behind
    lateness = 600.0
    delayed_until = max(j for j in range(k + 1, len(events)) if events[j][0] - events[k][0] < lateness)
    assert delayed_until > k  # at least one event overtakes it
    arrival = events[:k] + events[k + 1 : delayed_until + 1] + [events[k]] + events[delayed_until + 1 :]

    in_order = CustomerFeatures(lateness_s=lateness)
    expected = {ev: in_order.update(*ev) for ev in events}

    state = CustomerFeatures(lateness_s=lateness)
    arrived: list = []
    late_run = {}
    for ev in arrival:
        arrived.append(ev)
        got = late_run[ev] = state.update(*ev)
        assert got["late_event"] is False
        assert_features_match(got, brute_features(arrived, ev), where=f"t={ev[0]}: ")
        if ev is events[k] or events.index(ev) > delayed_until:
            # the late one, and everything after it, is what in-order arrival gives (float rounding aside)
            assert_features_match(got, expected[ev], where=f"t={ev[0]}: ")
            assert got["late_event"] == expected[ev]["late_event"]
    # the events that overtook it could not count it yet
    overtaker = events[k + 1]
    assert late_run[overtaker]["amount_count_1h"] == expected[overtaker]["amount_count_1h"] - 1
    assert late_run[events[k]]["time_since_last_transaction"] == events[k][0] - events[k - 1][0]


@pytest.mark.parametrize("seed", [12, 13])
def test_random_lateness_within_bound_matches_brute_force(seed):
    lateness = 900.0
    events = random_customer(seed, n=250, mean_gap=400.0)
    rng = random.Random(seed)
    arrival = [ev for _, ev in sorted(((ev[0] + rng.uniform(0, lateness), ev) for ev in events))]
    assert arrival != events
    state = CustomerFeatures(lateness_s=lateness)
    arrived: list = []
    for ev in arrival:
        arrived.append(ev)
        got = state.update(*ev)
        assert got["late_event"] is False
        assert_features_match(got, brute_features(arrived, ev))


def test_late_event_flag_beyond_lateness():
    s = CustomerFeatures(lateness_s=600.0)
    s.update(10_000.0, 10.0, *NY)
    assert s.update(9_400.0, 10.0, *NY)["late_event"] is False  # exactly at the bound
    late = s.update(9_399.0, 20.0, *NY)
    assert late["late_event"] is True
    # still within retention (7d + lateness): stored, with windows computed
    assert late["amount_count_1h"] == 1 and late["amount_sum_1h"] == 20.0
    assert s.update(10_001.0, 5.0, *NY)["amount_count_1h"] == 4


def test_event_beyond_retention_gets_no_window_features():
    s = CustomerFeatures(lateness_s=600.0)
    now = 2_000_000.0
    s.update(now, 10.0, *NY)
    too_old = now - HORIZONS["7d"] - 600.0 - 1.0
    f = s.update(too_old, 50.0, *NY)
    assert f["late_event"] is True
    assert f["amount_count_7d"] is None and f["time_since_last_transaction"] is None
    assert len(s.windows) == 1  # not stored


def test_haversine_new_york_london():
    d = haversine_km(*NY, *LONDON)
    assert d == pytest.approx(5570, abs=10)
    assert haversine_km(*LONDON, *NY) == pytest.approx(d)
    assert haversine_km(*NY, *NY) == 0.0
    # a quarter of the equator
    assert haversine_km(0, 0, 0, 90) == pytest.approx(2 * math.pi * 6371.0088 / 4)


def test_distance_and_speed():
    s = CustomerFeatures()
    s.update(0.0, 10.0, *NY)
    f = s.update(3600.0, 10.0, *LONDON)
    d = haversine_km(*NY, *LONDON)
    assert f["distance_from_previous_km"] == pytest.approx(d)
    assert f["speed_kmh"] == pytest.approx(d)  # one hour
    f2 = s.update(3610.0, 10.0, *NY)  # 10 s later: speed uses 60 s
    assert f2["distance_from_previous_km"] == pytest.approx(d)
    assert f2["speed_kmh"] == pytest.approx(d * 60)
    f3 = s.update(3610.0, 10.0, *NY)  # same instant, same place
    assert f3["time_since_last_transaction"] == 0.0
    assert f3["distance_from_previous_km"] == 0.0 and f3["speed_kmh"] == 0.0


def test_amount_deviation_and_ratio_leave_the_current_amount_out():
    s = CustomerFeatures()
    for i, a in enumerate([10.0, 20.0, 30.0]):
        s.update(1000.0 + i * 60, a, *NY)
    f = s.update(1200.0, 100.0, *NY)
    # others: 10, 20, 30 -> mean 20, population std sqrt(200/3)
    assert f["amount_to_mean_ratio"] == pytest.approx(5.0)
    assert f["amount_deviation"] == pytest.approx(80.0 / math.sqrt(200.0 / 3.0))
    # identical others: std 0 is floored at 1
    s2 = CustomerFeatures()
    s2.update(0.0, 50.0, *NY)
    s2.update(60.0, 50.0, *NY)
    f2 = s2.update(120.0, 53.0, *NY)
    assert f2["amount_deviation"] == pytest.approx(3.0)
    assert f2["amount_to_mean_ratio"] == pytest.approx(53.0 / 50.0)


def test_amount_deviation_on_large_amounts_matches_brute_force():
    rng = random.Random(77)
    s = CustomerFeatures()
    arrived: list = []
    for i in range(200):
        ev = (float(i * 1800), round(100_000 + rng.uniform(-3, 3), 2), *NY)
        arrived.append(ev)
        got = s.update(*ev)
        exp = brute_features(arrived, ev)
        if exp["amount_deviation"] is not None:
            assert got["amount_deviation"] == pytest.approx(exp["amount_deviation"], rel=1e-5, abs=1e-4)
            assert got["amount_to_mean_ratio"] == pytest.approx(exp["amount_to_mean_ratio"], rel=1e-9)


def test_state_is_bounded_and_windows_are_not_capped():
    s = CustomerFeatures(lateness_s=600.0, max_events=512)
    t = 0.0
    events = []
    for i in range(10_000):
        t += 5.0  # a hot key: 10k events in 14 hours
        events.append(t)
        f = s.update(t, 10.0, *NY)
        assert len(s.windows) <= 512
    # every event of the rule's window, not a cap: the 720 of the last hour plus the oldest tile's part
    assert f["amount_count_1h"] == sum(1 for e in events if in_window(e, t, "1h")) == 724
    assert 720 <= f["amount_count_1h"] <= 720 + 60 // 5
    assert f["amount_count_24h"] == sum(1 for e in events if in_window(e, t, "24h")) == 10_000
    assert s.windows.tile_count() <= (60 + 10 + 2) + (60 + 1 + 2) + 10_000 * 5 // 10_080 + 2
    s2 = CustomerFeatures(lateness_s=600.0)
    t = 0.0
    for i in range(2_000):
        t += 3_600.0  # one an hour for ~83 days: bounded by retention, few tiles, a tiny tail
        s2.update(t, 10.0, *NY)
    assert s2.windows.tile_count() <= 2 + (60 + 2) + (60 + 2)
    assert len(s2.windows) <= 5


def test_merchant_like_customer_gets_amount_count_7d_right():
    """5,000 transactions in a week: the old exact history capped the count at 512."""
    rng = random.Random(5)
    s = CustomerFeatures(lateness_s=600.0)
    t0 = 1_790_000_000.0
    times = sorted(t0 + rng.uniform(0, HORIZONS["7d"]) for _ in range(5_000))
    for t in times:
        f = s.update(t, 10.0 + rng.random(), *NY)
    t = times[-1]
    exact = sum(1 for x in times if t - HORIZONS["7d"] < x <= t)
    assert exact == 5_000
    assert f["amount_count_7d"] == sum(1 for x in times if in_window(x, t, "7d")) == 5_000
    # and one tile later, the window has moved by the documented rule
    later = t + 3 * WIDTHS["7d"]
    g = s.update(later, 10.0, *NY)
    assert g["amount_count_7d"] == sum(1 for x in times if in_window(x, later, "7d")) + 1
    assert sum(1 for x in times if later - HORIZONS["7d"] < x <= later) + 1 <= g["amount_count_7d"]
    assert g["amount_count_7d"] <= sum(1 for x in times if later - HORIZONS["7d"] - WIDTHS["7d"] < x <= later) + 1


def test_snapshot_load_gives_identical_features():
    events = random_customer(31, n=400, mean_gap=1_500.0)
    rng = random.Random(31)
    arrival = [ev for _, ev in sorted(((ev[0] + rng.uniform(0, 600), ev) for ev in events))]
    a = CustomerFeatures(lateness_s=600.0)
    for ev in arrival[:200]:
        a.update(*ev)
    snap = pickle.loads(pickle.dumps(a.snapshot()))
    b = CustomerFeatures(lateness_s=600.0)
    b.load(snap)
    for ev in arrival[200:]:
        assert a.update(*ev) == b.update(*ev)  # identical, bit for bit
    assert a.snapshot() == b.snapshot()
    assert is_plain(snap)


def test_snapshot_holds_no_configuration_and_load_uses_the_new_one():
    a = CustomerFeatures(lateness_s=600.0)
    a.update(10_000.0, 10.0, *NY)
    b = CustomerFeatures(lateness_s=60.0)
    b.load(a.snapshot())
    assert b.lateness_s == 60.0
    # 100 s late: within the old lateness, beyond the new one
    assert a.update(9_900.0, 10.0, *NY)["late_event"] is False
    assert b.update(9_900.0, 10.0, *NY)["late_event"] is True
    assert "lateness" not in repr(a.snapshot()) and "3600" not in repr(a.snapshot())


def test_load_of_a_snapshot_of_the_previous_exact_history_replays_it():
    old = (7_200.0, [3_600.0, 7_200.0], {"amount": [10.0, 30.0], "lat": [NY[0]] * 2, "lon": [NY[1]] * 2})
    s = CustomerFeatures()
    s.load(old)
    f = s.update(7_260.0, 20.0, *NY)
    assert f["amount_count_24h"] == 3 and f["time_since_last_transaction"] == 60.0


def test_derived_features():
    out = derived_features(
        {"amount": 50.0, "latitude": LONDON[0], "longitude": LONDON[1]},
        {"home_latitude": NY[0], "home_longitude": NY[1], "avg_transaction_amount": 25.0},
    )
    assert out["distance_from_home_km"] == pytest.approx(haversine_km(*NY, *LONDON))
    assert out["amount_to_profile_ratio"] == 2.0
    unknown = derived_features({"amount": 50.0, "latitude": 1.0, "longitude": 1.0},
                               {"home_latitude": None, "home_longitude": None, "avg_transaction_amount": None})
    assert unknown == {"distance_from_home_km": None, "amount_to_profile_ratio": None}


def test_derived_features_many_are_each_transactions_derived_features_bit_for_bit():
    """The batch's distances come from one compiled call: the same floats as the plain
    formula, and the rows it cannot take (no home, NaN, infinities, ints, odd values)
    are what derived_features makes of them."""
    rng = random.Random(11)
    txs, profiles = [], []
    odd = [{}, {"home_latitude": None, "home_longitude": 1.0}, {"home_latitude": math.nan, "home_longitude": 2.0,
           "avg_transaction_amount": math.nan},
           {"home_latitude": 10, "home_longitude": -20, "avg_transaction_amount": 7},
           {"home_latitude": True, "home_longitude": 0.5, "avg_transaction_amount": 0.0},
           {"home_latitude": 90.0, "home_longitude": 180.0, "avg_transaction_amount": -0.0}]
    for i in range(3000):
        lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
        txs.append(parse_transaction({"transaction_id": i, "customer_id": "C", "merchant_id": "M",
                                      "merchant_category": "gas", "amount": round(rng.uniform(0.01, 5000), 2),
                                      "latitude": lat, "longitude": lon, "timestamp": 0}))
        if i % 50 < len(odd):
            profiles.append(odd[i % 50])
        else:
            near = rng.choice([0.0, 1e-9, 1e-4, 0.5, 30.0])
            profiles.append({"home_latitude": max(-90.0, min(90.0, lat + rng.uniform(-near, near))),
                             "home_longitude": lon + rng.uniform(-near, near) if i % 3 else -lon,
                             "avg_transaction_amount": rng.choice([rng.uniform(1, 300), 25.0, None])})
    want = [derived_features(tx, p) for tx, p in zip(txs, profiles)]
    got = derived_features_many(txs, profiles)
    assert [repr(list(d.items())) for d in got] == [repr(list(d.items())) for d in want]  # NaN, -0.0 too
    assert orjson.dumps(got) == orjson.dumps(want)  # NaN as NaN: the same null, -0.0 as -0.0
    assert derived_features_many([], []) == []
    # a stored profile whose home or average is no usable number: no distance or ratio, not an
    # error (it failed every batch its customer was in: the whole batch went to dead letters)
    odd = [("x", 1.0), (math.inf, 0.0), (10 ** 400, 1.0), (math.nan, 1.0), (91.0, 0.0), (0.0, -180.5), (None, 1.0)]
    for home_lat, home_lon in odd:
        profile = {"home_latitude": home_lat, "home_longitude": home_lon, "avg_transaction_amount": 40.0}
        assert derived_features(txs[0], profile)["distance_from_home_km"] is None
        got = derived_features_many(txs[:3], [profiles[100], profile, profiles[101]])
        assert got[1]["distance_from_home_km"] is None and got[1]["amount_to_profile_ratio"] is not None
        assert got[0] == derived_features(txs[0], profiles[100])
    for avg in ("x", math.inf, math.nan, -5.0, 0, True, 10 ** 400):
        profile = {"home_latitude": 1.0, "home_longitude": 1.0, "avg_transaction_amount": avg}
        assert derived_features(txs[0], profile)["amount_to_profile_ratio"] is None
        assert derived_features_many(txs[:1], [profile])[0]["amount_to_profile_ratio"] is None
    with pytest.raises(ValueError, match="profiles"):
        derived_features_many(txs[:2], profiles[:1])
