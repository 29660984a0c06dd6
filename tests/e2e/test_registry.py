"""Avro and Protobuf topics with a real schema registry (Apicurio, Confluent API) and a real
Kafka broker, for both flows.

`make test` starts the registry (scripts/registry.sh) when none answers at
SCHEMA_REGISTRY_URL; run alone, the ``registry`` fixture starts it. Each test uses its own
topics, so its own subjects.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any, Callable

import pytest
from confluent_kafka import Producer
from confluent_kafka.serialization import MessageField, SerializationContext

from dataflows.connectors.registry import check_registry, input_schema
from features.wire import WireEncoder, registry_client
from settings.config import FraudConfig, IoTConfig
from tests.conftest import ROOT
from tests.e2e.test_kafka import BROKER, create_topics, kafka_env, topics

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="session")
def registry() -> str:
    """The URL of a running registry: SCHEMA_REGISTRY_URL, else the one scripts/registry.sh
    starts (left running for the rest of the session; `scripts/registry.sh down` stops it)."""
    url = os.environ.get("SCHEMA_REGISTRY_URL") or subprocess.run(
        ["bash", "scripts/registry.sh", "url"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    client = registry_client(url, timeout_s=2.0)
    try:
        client.get_subjects()
    except Exception:
        subprocess.run(["bash", "scripts/registry.sh", "up"], cwd=ROOT, check=True)
    return url


def backward(url: str, subject: str) -> None:
    """Set ``subject``'s compatibility rule to BACKWARD (Apicurio's default is NONE)."""
    registry_client(url, timeout_s=30.0).set_compatibility(subject, "BACKWARD")


def produce_raw(topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": BROKER})
    for v in values:
        p.produce(topic, value=v)
    assert p.flush(30) == 0


def _patiently(call: Callable[[], Any], tries: int = 3) -> Any:
    """``call()``, again after a registry HTTP timeout: the test's reader, not the flow, waits out a
    registry that is slow on a loaded machine (seen twice: a 30 s read timeout). Anything else raises.
    confluent-kafka's registry client is on ``httpx2`` (a fork of ``httpx``): both timeouts count."""
    import importlib
    import importlib.util

    timeouts = tuple(importlib.import_module(m).TimeoutException for m in ("httpx", "httpx2")
                     if importlib.util.find_spec(m) is not None)
    for attempt in range(tries):
        try:
            return call()
        except Exception as exc:  # the deserializer may wrap the HTTP client's error
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, timeouts):
                cause = cause.__cause__ or cause.__context__
            if cause is None or attempt == tries - 1:
                raise
            time.sleep(1.0)


def consume_avro(url: str, topic: str, expected: int | None = None, timeout_s: float = 60.0) -> list[dict]:
    """A plain consumer and confluent-kafka's AvroDeserializer: what any Avro shop would read with."""
    import uuid

    from confluent_kafka import Consumer
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    de = AvroDeserializer(registry_client(url, timeout_s=30.0))  # a reader, not the flow: patient on a busy machine
    c = Consumer({"bootstrap.servers": BROKER, "group.id": f"test-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": "false"})
    c.subscribe([topic])
    out: list[dict] = []
    deadline, last = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                if (expected is None or len(out) >= expected) and time.monotonic() - last > 3.0 and (out or expected == 0):
                    break
                continue
            if msg.error():
                continue
            out.append(_patiently(lambda: de(msg.value(), SerializationContext(topic, MessageField.VALUE))))
            last = time.monotonic()
    finally:
        c.close()
    return out


def fraud_cfg(fraud_env, t: dict[str, str], url: str, **extra: str) -> FraudConfig:
    return FraudConfig.from_env(kafka_env(t, STREAMSCORE_FEAST__REPO=str(fraud_env.repo),
                                          STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry),
                                          SCHEMA_REGISTRY_URL=url, **extra))


def bad_records(good: bytes) -> dict[str, bytes]:
    """One record of each kind the decoder refuses, made from a good framed record."""
    return {
        "unknown schema id": b"\x00" + (987_654).to_bytes(4, "big") + good[5:],
        "truncated": good[: len(good) // 2],
        "wrong magic byte": b'{"transaction_id": "json-on-avro"}',
        "too short": b"\x00\x00\x01",
    }


def test_fraud_avro_v1_and_v2_in_one_topic_scored_bad_records_dead_lettered_avro_out(fraud_env, registry):
    """Producers on v1 and v2 of the transaction schema share one topic: both scored. The four
    bad records are dead letters (step decode) keeping their bytes; the outputs are Avro that a
    plain consumer reads; every input is exactly one of scored or dead letter."""
    from bytewax.testing import run_main

    from dataflows.fraud import build_flow
    from datagen.transactions import stream_transactions

    t = topics("avro")
    create_topics(t)
    client = registry_client(registry)
    v1 = WireEncoder(client, "avro", input_schema("fraud", "avro", version=1), t["in"])
    v2 = WireEncoder(client, "avro", input_schema("fraud", "avro", version=2), t["in"])
    events = stream_transactions(400, seed=31, spec=fraud_env.spec)
    values = [v1(e) for e in events[:200]]
    backward(registry, f"{t['in']}-value")
    values += [v2({**e, "channel": "app"}) for e in events[200:]]
    assert values[0][1:5] != values[-1][1:5], "v1 and v2 have schema ids of their own"
    bad = bad_records(values[0])
    produce_raw(t["in"], values + list(bad.values()))

    cfg = fraud_cfg(fraud_env, t, registry, STREAMSCORE_INPUT_FORMAT="avro", STREAMSCORE_OUTPUT_FORMAT="avro")
    check_registry(cfg)  # what the start does: the registry answers, the input subject exists, outputs register
    run_main(build_flow(cfg))

    scored = consume_avro(registry, t["scored"])
    dead = consume_avro(registry, t["dead"], expected=len(bad))
    assert len(scored) + len(dead) == len(values) + len(bad)  # the balance
    ids = {r["transaction_id"] for r in scored} | {d["raw"] for d in dead}
    assert {e["transaction_id"] for e in events[:200]} & ids and {e["transaction_id"] for e in events[200:]} & ids
    decode_errors = {d["raw_bytes"]: d["error"] for d in dead if d["step"] == "decode"}
    assert set(decode_errors) == set(bad.values())  # the bytes as received, not a decoded guess
    errors = {what: decode_errors[b] for what, b in bad.items()}
    assert "schema id 987654: unknown to the schema registry" in errors["unknown schema id"]
    assert "does not decode" in errors["truncated"]
    assert "expected the magic byte 0x00" in errors["wrong magic byte"]
    assert errors["too short"].startswith("truncated record: 3 bytes")
    # v2's added field reaches the scored record (in details: it is no field of the scored schema)
    v2_scored = [r for r in scored if r["transaction_id"] in {e["transaction_id"] for e in events[200:]}]
    assert v2_scored and all('"channel":"app"' in (r["details"] or "") for r in v2_scored)
    assert all(r["status"] in ("NORMAL", "WARNING", "CRITICAL") and r["model_version"] for r in scored)


def test_fraud_protobuf_in(fraud_env, registry):
    from bytewax.testing import run_main

    from dataflows.fraud import build_flow
    from datagen.transactions import stream_transactions
    from tests.e2e.test_kafka import consume_all

    t = topics("proto")
    create_topics(t)
    enc = WireEncoder(registry_client(registry), "protobuf", input_schema("fraud", "protobuf"), t["in"])
    events = stream_transactions(300, seed=32, spec=fraud_env.spec)
    values = [enc(e) for e in events]
    bad = bad_records(values[0])
    produce_raw(t["in"], values + list(bad.values()))
    cfg = fraud_cfg(fraud_env, t, registry, STREAMSCORE_INPUT_FORMAT="protobuf")
    check_registry(cfg)
    run_main(build_flow(cfg))
    scored = consume_all(t["scored"], ended=True)
    dead = consume_all(t["dead"], expected=len(bad), ended=True)
    assert len(scored) + len(dead) == len(values) + len(bad)
    assert {v["transaction_id"] for _, v in scored} == {e["transaction_id"] for e in events}
    assert sorted(d["step"] for _, d in dead) == ["decode"] * 4 and all(d["raw_base64"] for _, d in dead)


@pytest.mark.parametrize("fmt", ["avro", "protobuf"])
def test_iot_avro_and_protobuf_in_avro_out(registry, fmt):
    from bytewax.testing import run_main

    from dataflows.iot import build_flow
    from datagen.sensors import generate_readings

    t = topics(f"iot-{fmt}")
    create_topics(t)
    cfg = IoTConfig.from_env(kafka_env(t, STREAMSCORE_IOT__DEVICE_PROFILE="false", SCHEMA_REGISTRY_URL=registry,
                                       STREAMSCORE_INPUT_FORMAT=fmt, STREAMSCORE_OUTPUT_FORMAT="avro"))
    enc = WireEncoder(registry_client(registry), fmt, input_schema("iot", fmt, cfg), t["in"])
    readings = list(generate_readings(devices=5, readings=600, seed=6))
    del readings[7]["temperature"]  # a sensor may be missing: still scored
    values = [enc(r) for r in readings]
    produce_raw(t["in"], values + [values[3][:7]])
    check_registry(cfg)
    run_main(build_flow(cfg))
    scored = consume_avro(registry, t["scored"])
    dead = consume_avro(registry, t["dead"], expected=1)
    assert len(scored) + len(dead) == len(values) + 1
    assert [d["raw_bytes"] for d in dead] == [values[3][:7]]
    assert {r["id"] for r in scored} == {f"{r['device_id']}@{r['timestamp']}" for r in readings}
    assert all(r["device_id"] and r["status"] for r in scored)


def test_incompatible_output_schema_is_refused_at_start_naming_subject_and_rule(fraud_env, registry):
    from confluent_kafka.schema_registry import Schema

    t = topics("compat")
    client = registry_client(registry)
    subject = f"{t['scored']}-value"
    old = '{"type": "record", "name": "Scored", "namespace": "streamscore.fraud", "fields": [{"name": "status", "type": "long"}]}'
    client.register_schema(subject, Schema(old, "AVRO"))
    backward(registry, subject)
    cfg = fraud_cfg(fraud_env, t, registry, STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT="x.jsonl",
                    STREAMSCORE_OUTPUT_FORMAT="avro")
    with pytest.raises(ValueError) as err:
        check_registry(cfg)
    msg = str(err.value)
    assert "\n" not in msg and f"subject {subject!r}" in msg and "BACKWARD" in msg, msg


def test_start_checks_name_a_missing_input_subject_and_a_registry_that_is_down(fraud_env, registry):
    t = topics("subject")
    cfg = fraud_cfg(fraud_env, t, registry, STREAMSCORE_INPUT_FORMAT="avro")
    with pytest.raises(ValueError, match=f"no subject '{t['in']}-value'"):
        check_registry(cfg)
    down = fraud_cfg(fraud_env, t, "http://127.0.0.1:9/apis/ccompat/v7", STREAMSCORE_INPUT_FORMAT="avro",
                     STREAMSCORE_REGISTRY__TIMEOUT_S="1")
    with pytest.raises(ValueError, match="the schema registry did not answer within 1s"):
        check_registry(down)


def test_registry_down_during_a_run_every_uncached_record_is_a_dead_letter_in_bounded_time(fraud_env, registry):
    """Records whose schema the flow never saw, while the registry does not answer: dead letters
    (the breaker stops asking after 3 failed lookups), the run ends, the balance holds."""
    from bytewax.testing import run_main

    from dataflows.fraud import build_flow
    from datagen.transactions import stream_transactions
    from tests.e2e.test_kafka import consume_all

    t = topics("regdown")
    create_topics(t)
    enc = WireEncoder(registry_client(registry), "avro", input_schema("fraud", "avro"), t["in"])
    values = [enc(e) for e in stream_transactions(200, seed=33, spec=fraud_env.spec)]
    produce_raw(t["in"], values)
    cfg = fraud_cfg(fraud_env, t, "http://127.0.0.1:9/apis/ccompat/v7", STREAMSCORE_INPUT_FORMAT="avro",
                    STREAMSCORE_REGISTRY__TIMEOUT_S="1", STREAMSCORE_REGISTRY__RETRY_S="600")
    run_main(build_flow(cfg))
    scored = consume_all(t["scored"], ended=True)
    dead = consume_all(t["dead"], expected=len(values), ended=True)
    assert not scored and len(dead) == len(values)
    reasons = [d["error"] for _, d in dead]
    assert sum("did not answer" in r for r in reasons) == 3  # 3 lookups waited (at most 1 s each) ...
    assert sum("breaker open" in r for r in reasons) == len(values) - 3  # ... then none


@pytest.mark.parametrize("flow,fmt", [("fraud", "avro"), ("iot", "protobuf")])
def test_replay_writes_framed_records_the_flows_decoder_reads(registry, flow, fmt):
    import sys
    import uuid

    from confluent_kafka import Consumer

    from dataflows.connectors.registry import input_decoder

    topic = f"replay-{fmt}-{uuid.uuid4().hex[:8]}"
    done = subprocess.run([sys.executable, "-m", "cli.replay", "--flow", flow, "--format", fmt, "--events", "40",
                           "--bad-rate", "0.1", "--topic", topic, "--no-progress"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BROKER, "SCHEMA_REGISTRY_URL": registry})
    assert done.returncode == 0, done.stderr
    sent = int(done.stdout.split()[1])
    cfg = (FraudConfig if flow == "fraud" else IoTConfig).from_env(
        {"SCHEMA_REGISTRY_URL": registry, "STREAMSCORE_INPUT_FORMAT": fmt})
    decode = input_decoder(cfg)
    c = Consumer({"bootstrap.servers": BROKER, "group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    records = [decode(m.value()) for m in iter(lambda: c.poll(5), None) if not m.error()]
    c.close()
    assert len(records) == sent and sent > 30
    key = "transaction_id" if flow == "fraud" else "device_id"
    assert all(r[key] for r in records)
