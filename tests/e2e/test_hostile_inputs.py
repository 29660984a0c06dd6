"""Hostile inputs: every one is scored (when valid) or a dead letter naming the field.

The same matrix goes through a JSON Lines file and through Kafka, with the real
flows (``dataflows.fraud.build_flow``, ``dataflows.iot.build_flow``): each input
ends in exactly one output, the flow never stops, scored + dead letters = inputs.
Each case carries a unique marker (``case`` field, or in the text) to find it.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from bytewax.testing import run_main

from settings.config import FraudConfig, IoTConfig
from dataflows.fraud import build_flow as build_fraud_flow
from dataflows.iot import build_flow as build_iot_flow
from dataflows.scoring import reading_parser, transaction_parser
from features.records import ValidationError

BROKER = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
MIB = 1 << 20
#: The Kafka case of a big message: under librdkafka's default message.max.bytes
#: (1,000,000) and the broker's default (1 MiB), which bound a message on Kafka.
KAFKA_BIG = 900_000

NOW = time.time()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expect: str  # "scored", or a text the dead letter's error must contain (the field)
    copies: int = 1  # duplicate ids: the same event sent more than once (scored once, then dead letters "dedup")

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


def _obj(d: dict) -> bytes:
    return orjson.dumps(d)


def _splice(d: dict, field: str, token: str) -> bytes:
    """JSON of ``d`` with ``field``'s value replaced by a raw token (NaN, 1e400)."""
    text = orjson.dumps({**d, field: "__TOKEN__"}).decode()
    return text.replace('"__TOKEN__"', token).encode()


# --- transactions ------------------------------------------------------------------


def _with(d: dict, over: dict) -> dict:
    """``d`` with ``over`` applied; a value of ``...`` removes the field."""
    for k, v in over.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return d


def tx(case: str, **over) -> dict:
    d = {"transaction_id": f"h-{case}", "customer_id": "C000001", "merchant_id": "M00001",
         "merchant_category": "grocery", "amount": 25.5, "timestamp": iso(NOW - 3600),
         "latitude": 40.7, "longitude": -74.0, "channel": "web", "case": case}
    return _with(d, over)


def tx_cases(big: int) -> list[Case]:
    c: list[Case] = [
        Case("valid", _obj(tx("valid")), "scored"),
        Case("bad_json", b'{"transaction_id": "h-bad_json", "amount": 5,', "not valid JSON"),
        Case("bad_json2", b"case-bad_json2 is not json", "not valid JSON"),
        Case("non_utf8", b'{"transaction_id": "h-non_utf8", "customer_id": "C\xff\xfe"}', "not valid UTF-8"),
        Case("array", b'["case-array", 1, 2]', "expected a JSON object, got list"),
        Case("scalar_str", b'"case-scalar_str"', "expected a JSON object, got str"),
        Case("scalar_num", b"424242", "expected a JSON object, got int"),
        Case("scalar_null", b"null", "expected a JSON object"),
    ]
    for f in ("transaction_id", "customer_id", "merchant_id", "merchant_category", "amount",
              "latitude", "longitude", "timestamp"):
        c.append(Case(f"missing_{f}", _obj(tx(f"missing_{f}", **{f: ...})), f"'{f}'"))
        c.append(Case(f"null_{f}", _obj(tx(f"null_{f}", **{f: None})), f"'{f}'"))
    for f in ("transaction_id", "customer_id", "amount", "latitude", "timestamp"):
        c.append(Case(f"list_{f}", _obj(tx(f"list_{f}", **{f: [1, 2]})), f"'{f}'"))
        c.append(Case(f"dict_{f}", _obj(tx(f"dict_{f}", **{f: {"v": 1}})), f"'{f}'"))
        c.append(Case(f"bool_{f}", _obj(tx(f"bool_{f}", **{f: True})), f"'{f}'"))
    c += [
        Case("float_id", _obj(tx("float_id", merchant_id=1.5)), "'merchant_id'"),
        Case("int_ids", _obj(tx("int_ids", customer_id=17, merchant_id=42)), "scored"),
        Case("amount_text", _obj(tx("amount_text", amount="twelve")), "'amount'"),
        Case("amount_numeric_text", _obj(tx("amount_numeric_text", amount="12.5")), "scored"),
        Case("amount_NaN", _obj(tx("amount_NaN", amount="NaN")), "'amount'"),
        Case("amount_Infinity", _obj(tx("amount_Infinity", amount="Infinity")), "'amount'"),
        Case("amount_-Infinity", _obj(tx("amount_-Infinity", amount="-Infinity")), "'amount'"),
        Case("amount_1e400", _splice(tx("amount_1e400"), "amount", "1e400"), "'amount'"),
        Case("amount_bare_NaN", _splice(tx("amount_bare_NaN"), "amount", "NaN"), "'amount'"),
        Case("lat_bare_-Infinity", _splice(tx("lat_bare_-Infinity"), "latitude", "-Infinity"), "'latitude'"),
        Case("lat_1e400", _splice(tx("lat_1e400"), "latitude", "-1e400"), "'latitude'"),
        Case("extra_1e400", _splice(tx("extra_1e400"), "note", "1e400"), "'note'"),
        Case("amount_zero", _obj(tx("amount_zero", amount=0)), "'amount'"),
        Case("amount_negative", _obj(tx("amount_negative", amount=-5.0)), "'amount'"),
        Case("amount_absurd", _obj(tx("amount_absurd", amount=5e12)), "'amount'"),
        Case("amount_max", _obj(tx("amount_max", amount=1e9)), "scored"),
        Case("amount_tiny", _obj(tx("amount_tiny", amount=0.01)), "scored"),
        Case("lat_out", _obj(tx("lat_out", latitude=90.5)), "'latitude'"),
        Case("lon_out", _obj(tx("lon_out", longitude=-180.01)), "'longitude'"),
        Case("lat_edge", _obj(tx("lat_edge", latitude=-90, longitude=180)), "scored"),
        Case("ts_text", _obj(tx("ts_text", timestamp="yesterday")), "'timestamp'"),
        Case("ts_NaN", _obj(tx("ts_NaN", timestamp="NaN")), "'timestamp'"),
        Case("ts_millis", _obj(tx("ts_millis", timestamp=NOW * 1000)), "'timestamp'"),
        Case("ts_year_9999", _obj(tx("ts_year_9999", timestamp="9999-12-31T23:59:59-01:00")), "'timestamp'"),
        Case("ts_year_1", _obj(tx("ts_year_1", timestamp="0001-01-01T00:00:00+01:00")), "'timestamp'"),
        Case("ts_1e400", _splice(tx("ts_1e400"), "timestamp", "1e400"), "'timestamp'"),
        Case("ts_epoch_seconds", _obj(tx("ts_epoch_seconds", timestamp=NOW - 60)), "scored"),
        Case("is_fraud_bad", _obj(tx("is_fraud_bad", is_fraud=[1])), "'is_fraud'"),
        Case("extra_fields", _obj(tx("extra_fields", nested={"a": [1, {"b": None}]}, error="none",
                                     status="spoofed-input")), "scored"),
        Case("duplicate_id", _obj(tx("duplicate_id")), "scored", copies=3),
        Case("big_valid", _obj(tx("big_valid", blob="x" * big)), "scored"),
        Case("big_invalid", _obj(tx("big_invalid", amount="lots", blob="y" * big)), "'amount'"),
        Case("valid_last", _obj(tx("valid_last")), "scored"),
    ]
    return c


# --- sensor readings (other field names: sensor / ts / a, b, c) --------------------

IOT_FIELDS = {"STREAMSCORE_IOT__KEY_FIELD": "sensor", "STREAMSCORE_IOT__TIME_FIELD": "ts", "STREAMSCORE_IOT__SENSOR_FIELDS": "a,b,c",
              "STREAMSCORE_IOT__DEVICE_PROFILE": "false"}


def rd(case: str, i: int = 0, **over) -> dict:
    d = {"sensor": "dev-1", "ts": iso(NOW - 600 + i), "a": 20.0 + i % 3, "b": 40.0, "c": 1013.0, "case": case}
    return _with(d, over)


def reading_cases(big: int) -> list[Case]:
    c: list[Case] = [Case(f"valid_{i}", _obj(rd(f"valid_{i}", i)), "scored") for i in range(20)]
    c += [
        Case("bad_json", b'{"sensor": "case-bad_json", "a": ', "not valid JSON"),
        Case("non_utf8", b'{"sensor": "case-non_utf8", "a": "\xff"}', "not valid UTF-8"),
        Case("array", b'["case-array"]', "expected a JSON object, got list"),
        Case("scalar", b"3.25", "expected a JSON object, got float"),
        Case("missing_key", _obj(rd("missing_key", 30, sensor=...)), "'sensor'"),
        Case("null_key", _obj(rd("null_key", 31, sensor=None)), "'sensor'"),
        Case("bool_key", _obj(rd("bool_key", 32, sensor=False)), "'sensor'"),
        Case("list_key", _obj(rd("list_key", 33, sensor=["d"])), "'sensor'"),
        Case("dict_key", _obj(rd("dict_key", 34, sensor={"d": 1})), "'sensor'"),
        Case("int_key", _obj(rd("int_key", 35, sensor=7)), "scored"),
        Case("text_sensor", _obj(rd("text_sensor", 36, a="hot")), "'a'"),
        Case("bool_sensor", _obj(rd("bool_sensor", 37, b=True)), "'b'"),
        Case("list_sensor", _obj(rd("list_sensor", 38, c=[1.0])), "'c'"),
        Case("dict_sensor", _obj(rd("dict_sensor", 39, c={"v": 1})), "'c'"),
        Case("inf_text_sensor", _obj(rd("inf_text_sensor", 40, a="Infinity")), "'a'"),
        Case("inf_1e400_sensor", _splice(rd("inf_1e400_sensor", 41), "b", "-1e400"), "'b'"),
        Case("bare_nan_sensor", _splice(rd("bare_nan_sensor", 42), "c", "NaN"), "'c'"),
        # "NaN" text is a missing value (as an empty CSV cell): scored on the other sensors
        Case("nan_text_one_sensor", _obj(rd("nan_text_one_sensor", 43, a="NaN")), "scored"),
        Case("nan_text_all_sensors", _obj(rd("nan_text_all_sensors", 44, a="NaN", b="nan", c=None)),
             "none of the sensor fields"),
        Case("no_sensor", _obj(rd("no_sensor", 45, a=..., b=..., c=...)), "none of the sensor fields"),
        Case("numeric_text_sensor", _obj(rd("numeric_text_sensor", 46, a="21.5")), "scored"),
        Case("bad_time", _obj(rd("bad_time", 47, ts="soon")), "'ts'"),
        Case("bool_time", _obj(rd("bool_time", 48, ts=True)), "'ts'"),
        Case("list_time", _obj(rd("list_time", 49, ts=[1])), "'ts'"),
        Case("time_1e400", _splice(rd("time_1e400", 50), "ts", "1e400"), "'ts'"),
        Case("time_millis", _obj(rd("time_millis", 51, ts=NOW * 1000)), "'ts'"),
        Case("time_year_9999", _obj(rd("time_year_9999", 52, ts="9999-12-31T23:59:59-01:00")), "'ts'"),
        Case("no_time", _obj(rd("no_time", 53, ts=...)), "scored"),  # timed by arrival
        Case("extra_fields", _obj(rd("extra_fields", 54, site={"room": [1, 2]}, error="none")), "scored"),
        Case("duplicate", _obj(rd("duplicate", 55)), "scored", copies=3),
        Case("big_valid", _obj(rd("big_valid", 56, blob="x" * big)), "scored"),
        Case("big_invalid", _obj(rd("big_invalid", 57, a="warm", blob="y" * big)), "'a'"),
        Case("valid_last", _obj(rd("valid_last", 58)), "scored"),
    ]
    return c


# --- matching outputs to inputs --------------------------------------------------


def lines(cases: list[Case]) -> list[bytes]:
    return [c.raw for c in cases for _ in range(c.copies)]


def owner(cases: list[Case], record: dict) -> Case:
    """The case a scored record or dead letter came from (by its ``case`` field, else its raw text)."""
    by_name = {c.name: c for c in cases}
    if "case" in record:
        return by_name[record["case"]]
    raw = record["raw"]
    if isinstance(raw, dict):
        return by_name[raw["case"]]
    exact = [c for c in cases if c.text == raw]
    if exact:
        return exact[0]
    head = raw[:400]
    found = [c for c in cases if f'"case": "{c.name}"' in head or f'"case":"{c.name}"' in head
             or f"h-{c.name}\"" in head or f"case-{c.name}\"" in head or f"case-{c.name} " in head]
    assert len(found) == 1, (head[:200], [c.name for c in found])
    return found[0]


def check_matrix(cases: list[Case], scored: list[dict], dead: list[dict]) -> None:
    """Every input in exactly one output; each bad one's error names its field."""
    n = sum(c.copies for c in cases)
    assert len(scored) + len(dead) == n, (len(scored), len(dead), n)
    seen: dict[str, int] = {}
    scored_copies: dict[str, int] = {}
    for r in scored:
        c = owner(cases, r)
        assert c.expect == "scored", f"{c.name} was scored, expected a dead letter with {c.expect!r}"
        seen[c.name] = seen.get(c.name, 0) + 1
        scored_copies[c.name] = scored_copies.get(c.name, 0) + 1
    for d in dead:
        c = owner(cases, d["raw"] if isinstance(d["raw"], dict) else d)
        if c.copies > 1 and c.expect == "scored":  # re-delivered copies of a valid event: refused as duplicates
            assert d["step"] == "dedup" and d["error"].startswith("duplicate: "), (c.name, d)
        else:
            assert c.expect != "scored", f"{c.name} is a dead letter ({d['error']}), expected scored"
            assert c.expect in d["error"], (c.name, d["error"])
        assert len(d["error"]) < 400, (c.name, len(d["error"]))  # never the whole input
        seen[c.name] = seen.get(c.name, 0) + 1
    assert seen == {c.name: c.copies for c in cases}
    # a valid event sent several times is scored exactly once
    assert all(scored_copies[c.name] == 1 for c in cases if c.expect == "scored")


def _by_case(records: list[dict]) -> dict[str, dict]:
    return {r["case"]: r for r in records if "case" in r}


# --- files ------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(ln) for ln in path.read_bytes().splitlines() if ln.strip()] if path.exists() else []


def run_file(build, cfg_cls, tmp_path: Path, cases: list[Case], **env: str) -> tuple[list, list, list]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines(cases)) + b"\n")
    out = tmp_path / "out"
    cfg = cfg_cls.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src),
                            "STREAMSCORE_IO__OUTPUT_DIR": str(out), "STREAMSCORE_IO__BATCH_SIZE": "16", **env})
    run_main(build(cfg))
    return read_jsonl(out / "scored.jsonl"), read_jsonl(out / "alerts.jsonl"), read_jsonl(out / "dead_letter.jsonl")


def fraud_env_vars(env) -> dict[str, str]:
    return {"STREAMSCORE_FEAST__REPO": str(env.repo), "STREAMSCORE_MODEL__REGISTRY": str(env.registry)}


def test_transactions_file(fraud_env, tmp_path):
    cases = tx_cases(MIB)
    scored, alerts, dead = run_file(build_fraud_flow, FraudConfig, tmp_path, cases, **fraud_env_vars(fraud_env))
    check_matrix(cases, scored, dead)
    ok = _by_case(scored)
    # Extra fields are carried through unchanged; the 1 MiB event is scored whole.
    assert ok["extra_fields"]["nested"] == {"a": [1, {"b": None}]} and ok["extra_fields"]["error"] == "none"
    assert ok["big_valid"]["blob"] == "x" * MIB
    assert ok["int_ids"]["customer_id"] == "17" or ok["int_ids"]["customer_id"] == 17
    assert sum(r["transaction_id"] == "h-duplicate_id" for r in scored) == 1  # the copies are duplicates
    assert {a["transaction_id"] for a in alerts} <= {r["transaction_id"] for r in scored}


def test_readings_file(tmp_path):
    cases = reading_cases(MIB)
    scored, alerts, dead = run_file(build_iot_flow, IoTConfig, tmp_path, cases, **IOT_FIELDS)
    check_matrix(cases, scored, dead)
    ok = _by_case(scored)
    assert ok["extra_fields"]["site"] == {"room": [1, 2]} and ok["extra_fields"]["error"] == "none"
    assert ok["big_valid"]["blob"] == "x" * MIB
    assert ok["nan_text_one_sensor"]["b"] == 40.0


def test_dead_letters_of_huge_inputs_stay_small(fraud_env, tmp_path):
    """The 1 MiB invalid event is a dead letter whose ``raw`` is cut, with a marker."""
    cases = [c for c in tx_cases(MIB) if c.name in ("valid", "big_invalid")]
    scored, _, dead = run_file(build_fraud_flow, FraudConfig, tmp_path, cases, **fraud_env_vars(fraud_env))
    assert len(scored) == 1 and len(dead) == 1 and "'amount'" in dead[0]["error"]
    assert len(orjson.dumps(dead[0])) < 100_000
    assert "truncated" in str(dead[0]["raw"])


# --- configured bounds -------------------------------------------------------------


def test_bounds_are_settings_the_parsers_take_as_arguments():
    cfg = FraudConfig.from_env({"STREAMSCORE_FRAUD__MIN_AMOUNT": "1", "STREAMSCORE_FRAUD__MAX_AMOUNT": "1000",
                                "STREAMSCORE_STATE__MAX_FUTURE_S": "3600"})
    parse = transaction_parser(cfg)
    assert parse(_obj(tx("ok", amount=1000)), NOW).amount == 1000.0
    for over, field in (({"amount": 1}, "'amount'"), ({"amount": 1000.5}, "'amount'"),
                        ({"timestamp": iso(NOW + 7200)}, "'timestamp'")):
        with pytest.raises(ValidationError, match=field):
            parse(_obj(tx("bad", **over)), NOW)
    assert parse(_obj(tx("soon", timestamp=iso(NOW + 1800))), NOW).t > NOW  # clock skew within bound
    read = reading_parser(IoTConfig.from_env({**IOT_FIELDS, "STREAMSCORE_STATE__MAX_FUTURE_S": "60"}))
    assert read(_obj(rd("ok")), NOW).device == "dev-1"
    with pytest.raises(ValidationError, match="'ts'"):
        read(_obj(rd("future", ts=iso(NOW + 120))), NOW)


def test_configured_bounds_and_future_times_in_the_fraud_flow(fraud_env, tmp_path):
    cases = [
        Case("valid", _obj(tx("valid", amount=50)), "scored"),
        Case("below_min", _obj(tx("below_min", amount=0.5)), "'amount'"),
        Case("above_max", _obj(tx("above_max", amount=5000)), "'amount'"),
        Case("far_future", _obj(tx("far_future", timestamp=iso(NOW + 2 * 86400))), "'timestamp'"),
        Case("year_2999", _obj(tx("year_2999", timestamp="2999-01-01T00:00:00Z")), "'timestamp'"),
        Case("skewed_clock", _obj(tx("skewed_clock", timestamp=iso(NOW + 600))), "scored"),
    ]
    scored, _, dead = run_file(build_fraud_flow, FraudConfig, tmp_path, cases, **fraud_env_vars(fraud_env),
                               STREAMSCORE_FRAUD__MIN_AMOUNT="1", STREAMSCORE_FRAUD__MAX_AMOUNT="1000")
    check_matrix(cases, scored, dead)


def test_future_times_in_the_iot_flow(tmp_path):
    cases = [
        Case("valid", _obj(rd("valid")), "scored"),
        Case("far_future", _obj(rd("far_future", 1, ts=iso(NOW + 2 * 86400))), "'ts'"),
        Case("year_2999", _obj(rd("year_2999", 2, ts="2999-01-01T00:00:00Z")), "'ts'"),
    ]
    scored, _, dead = run_file(build_iot_flow, IoTConfig, tmp_path, cases, **IOT_FIELDS)
    check_matrix(cases, scored, dead)


# --- Kafka ------------------------------------------------------------------------


def _topics(prefix: str) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {k: f"hostile-{prefix}-{k}-{run}" for k in ("in", "scored", "alerts", "dead")}


def _run_kafka(build, cfg_cls, prefix: str, cases: list[Case], **env: str) -> tuple[list, list]:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    t = _topics(prefix)
    admin = AdminClient({"bootstrap.servers": BROKER})
    futures = admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1) for name in t.values()])
    for f in futures.values():
        f.result(timeout=30)
    p = Producer({"bootstrap.servers": BROKER})
    for value in lines(cases):
        p.produce(t["in"], value=value)
        p.poll(0)
    assert p.flush(30) == 0
    cfg = cfg_cls.from_env({
        "STREAMSCORE_SOURCE": "kafka", "STREAMSCORE_OUTPUT": "kafka", "KAFKA_BOOTSTRAP_SERVERS": BROKER,
        "STREAMSCORE_INPUT_TOPIC": t["in"], "STREAMSCORE_SCORED_TOPIC": t["scored"], "STREAMSCORE_ALERTS_TOPIC": t["alerts"],
        "STREAMSCORE_DEAD_LETTER_TOPIC": t["dead"], "STREAMSCORE_KAFKA__TAIL": "false", "STREAMSCORE_IO__BATCH_SIZE": "16",
        "STREAMSCORE_KAFKA__GROUP": f"hostile-{uuid.uuid4().hex[:8]}", **env})
    run_main(build(cfg))
    n = sum(c.copies for c in cases)
    scored = _consume(t["scored"])
    dead = _consume(t["dead"], expected=n - len(scored))
    return scored, dead


def _consume(topic: str, expected: int | None = None, timeout_s: float = 60.0, idle_s: float = 3.0) -> list[dict]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": BROKER, "group.id": f"test-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": "false"})
    c.subscribe([topic])
    out: list[dict] = []
    deadline = last = time.monotonic()
    deadline += timeout_s
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                done = expected is None or len(out) >= expected
                if done and (out or expected == 0) and time.monotonic() - last > idle_s:
                    break
                continue
            if msg.error():
                continue
            out.append(orjson.loads(msg.value()))
            last = time.monotonic()
    finally:
        c.close()
    return out


@pytest.mark.kafka
def test_transactions_kafka(fraud_env):
    cases = tx_cases(KAFKA_BIG)
    scored, dead = _run_kafka(build_fraud_flow, FraudConfig, "tx", cases, **fraud_env_vars(fraud_env))
    check_matrix(cases, scored, dead)
    # refused inputs name where they were read; duplicates are refused after parsing, by their id
    assert all(d["offset"] is not None and d["partition"] is not None for d in dead if d["step"] != "dedup")
    assert _by_case(scored)["big_valid"]["blob"] == "x" * KAFKA_BIG


@pytest.mark.kafka
def test_readings_kafka():
    cases = reading_cases(KAFKA_BIG)
    scored, dead = _run_kafka(build_iot_flow, IoTConfig, "iot", cases, **IOT_FIELDS)
    check_matrix(cases, scored, dead)
    assert all(d["offset"] is not None for d in dead if d["step"] != "dedup")


def test_records_over_the_kafka_limit_are_replaced_and_counted():
    """What each Kafka output produces in place of a record over the producer's
    ``message.max.bytes`` (the broker run is in ``tests/e2e/test_broker_outages.py``), and the
    counter that says so."""
    from bytewax.connectors.kafka import KafkaSinkMessage
    from prometheus_client import REGISTRY

    from dataflows.connectors.outputs import too_large

    def counted(output: str, instead: str) -> float:
        return REGISTRY.get_sample_value("scoring_records_too_large_total",
                                         {"flow": "hostile", "output": output, "instead": instead}) or 0.0

    big = KafkaSinkMessage(b"t1", orjson.dumps({"transaction_id": "t1", "note": "x" * 2 * MIB}))
    size = len(big.value) + 2
    before = {k: counted(*k) for k in [("scored", "dead_letter"), ("alerts", "none"), ("dead_letter", "dead_letter")]}
    to, msg = too_large("scored", "scored-t", "dead-t", "hostile")(big, size, 1_000_000)
    letter = orjson.loads(msg.value)
    assert (to, msg.key, letter["step"]) == ("dead-t", b"t1", "scored_out")
    assert f"{size:,} bytes" in letter["error"] and "1,000,000" in letter["error"]
    assert letter["raw"].startswith('{"transaction_id":"t1"') and "[truncated:" in letter["raw"]
    assert len(msg.value) < 70_000
    assert too_large("alerts", "alerts-t", "dead-t", "hostile")(big, size, 1_000_000) is None
    to, msg = too_large("dead_letter", "dead-t", "dead-t", "hostile")(big, size, 1_000_000)
    assert to == "dead-t" and orjson.loads(msg.value)["step"] == "dead_letter_out" and len(msg.value) < 70_000
    assert {k: counted(*k) - v for k, v in before.items()} == {k: 1.0 for k in before}
    # under a low limit the replacement is cut to fit, even when every byte needs escaping
    evil = KafkaSinkMessage(b"t2", b"\x01" * MIB)
    to, msg = too_large("scored", "scored-t", "dead-t", "hostile")(evil, MIB + 2, 65_536)
    assert len(msg.value) < 65_536 and "\\u0001" in msg.value.decode()


def test_a_failed_replacement_names_the_topic_it_was_for():
    """A replacement goes to another topic (a dead letter for a scored record): if the broker
    refuses it, the failure names that topic, not the sink's own."""
    from confluent_kafka import Producer

    from dataflows.connectors.kafka.sink import KafkaDeliveryError, _ReliablePartition

    part = _ReliablePartition(Producer({"bootstrap.servers": "127.0.0.1:9"}), "scored-t", 1.0)
    with pytest.raises(KafkaDeliveryError, match="'dead-t'"):
        part._fail("refused", 1, [("refused", b"t1", 10, "dead-t")])
    with pytest.raises(KafkaDeliveryError, match="'scored-t'"):
        part._fail("timed out", 3, [])


def _csv_with_undecodable_bytes(rows: list[dict], bad: dict[int, dict[str, bytes]], path: Path) -> None:
    """``rows`` as a CSV file, with the cells of ``bad`` (row -> field -> raw bytes) replaced
    by bytes that are not UTF-8."""
    fields = list(rows[0])
    out = [",".join(fields).encode()]
    for i, r in enumerate(rows):
        cells = {f: str(r[f]).encode() for f in fields}
        cells.update(bad.get(i, {}))
        out.append(b",".join(cells[f] for f in fields))
    path.write_bytes(b"\n".join(out) + b"\n")


def _log_keys(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [k for p in sorted((out / "inference_log").rglob("*.parquet")) for k in pq.read_table(p).column("key").to_pylist()]


@pytest.mark.parametrize("flow", ["fraud", "iot"])
def test_csv_bytes_that_are_not_utf8_in_keys_and_ids(flow, fraud_env, tmp_path):
    """A CSV file that is not all UTF-8: its undecodable bytes survive reading as lone
    surrogates, also in the entity key and the event id. Bytewax refuses such a key and Arrow
    such text, which stopped the whole flow. Now every row is scored, the two spellings of
    a bad key stay two entities, the outputs and the inference log show U+FFFD, and the Feast
    lookup does not fail its batch over a key it cannot hold."""
    from benchmarks.common import fraud_events, iot_readings

    key, ident = ("customer_id", "transaction_id") if flow == "fraud" else ("device_id", "device_id")
    rows = fraud_events(60) if flow == "fraud" else iot_readings(60, 3)
    bad = {10: {key: b"K\xff\xfe"}, 11: {key: b"K\xff\xfe"}, 12: {key: b"K\xfe\xff"}}
    if flow == "fraud":
        bad[13] = {ident: b"T\xe9", "merchant_id": b"M\xe9"}
    src, out = tmp_path / "in.csv", tmp_path / "out"
    _csv_with_undecodable_bytes(rows, bad, src)
    env = {"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src), "STREAMSCORE_IO__OUTPUT_DIR": str(out),
           "STREAMSCORE_IO__BATCH_SIZE": "16"}
    build, cfg_cls = (build_fraud_flow, FraudConfig) if flow == "fraud" else (build_iot_flow, IoTConfig)
    env.update(fraud_env_vars(fraud_env) if flow == "fraud" else {"STREAMSCORE_IOT__DEVICE_PROFILE": "false"})
    run_main(build(cfg_cls.from_env(env)))
    scored, dead = read_jsonl(out / "scored.jsonl"), read_jsonl(out / "dead_letter.jsonl")
    assert len(scored) == 60 and dead == []
    odd = [r for r in scored if r[key] == "K\ufffd\ufffd"]
    assert len(odd) == 3
    assert sorted(_log_keys(out)) == sorted(r[key] for r in scored)
    if flow == "fraud":
        # K\xff\xfe twice is one customer (its second transaction has a previous one); K\xfe\xff another
        assert sorted(r["time_since_last_transaction"] is None for r in odd) == [False, True, True]
        assert any(r[ident] == "T\ufffd" and r["merchant_id"] == "M\ufffd" for r in scored)
        assert not any(r["feature_fallback"] for r in scored)  # no failed store call
