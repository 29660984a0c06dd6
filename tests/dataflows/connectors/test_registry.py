"""The flows' Avro records (dataflows/connectors/registry.py) and the Avro dead letter of a
record over Kafka's size limit (dataflows/connectors/outputs.py), on the mock:// registry;
the flows against the real registry are in tests/e2e/test_registry.py."""

from __future__ import annotations

import io
import uuid

import fastavro
from bytewax.connectors.kafka import KafkaSinkMessage

from dataflows.connectors.outputs import too_large
from dataflows.connectors.registry import DEAD_LETTER_FIELDS, avro_record, encoder_of, output_schema
from features.records import dead_letter
from settings.config import FraudConfig, IoTConfig


def cfg_of(cls, **env: str):
    return cls.from_env({"STREAMSCORE_OUTPUT": "kafka", "STREAMSCORE_OUTPUT_FORMAT": "avro",
                         "SCHEMA_REGISTRY_URL": f"mock://{uuid.uuid4().hex}", **env})


def read(schema: dict, data: bytes) -> dict:
    assert data[0] == 0
    return fastavro.schemaless_reader(io.BytesIO(data[5:]), fastavro.parse_schema(schema), None)


def test_the_scored_schema_follows_the_configured_sensors():
    a = output_schema(cfg_of(IoTConfig), "scored")
    b = output_schema(cfg_of(IoTConfig, STREAMSCORE_IOT__SENSOR_FIELDS="voltage,current"), "scored")
    names = lambda s: {f["name"] for f in s["fields"]}  # noqa: E731
    assert {"temperature", "humidity", "pressure"} <= names(a) and not {"voltage", "current"} & names(a)
    assert {"voltage", "current"} <= names(b) and "temperature" not in names(b)


def test_scored_records_keep_every_field_named_or_in_details():
    cfg = cfg_of(FraudConfig)
    schema = output_schema(cfg, "scored")
    encode = encoder_of(cfg, "scored")()
    rec = {"transaction_id": "t1", "status": "CRITICAL", "risk_score": 0.91, "amount": 12, "customer_known": True,
           "anomaly_scores": {"hst": 0.4}, "reasons": [{"feature": "amount", "value": 12}], "channel": "app"}
    out = read(schema, encode(rec))
    assert (out["transaction_id"], out["status"], out["risk_score"], out["amount"], out["customer_known"]) == (
        "t1", "CRITICAL", 0.91, 12.0, True)
    import orjson

    assert orjson.loads(out["details"]) == {"anomaly_scores": {"hst": 0.4}, "reasons": [{"feature": "amount", "value": 12}],
                                            "channel": "app"}


def test_a_scored_record_over_the_size_limit_becomes_an_avro_dead_letter_on_an_avro_topic():
    cfg = cfg_of(FraudConfig)
    letters = encoder_of(cfg, "dead_letter")
    big = KafkaSinkMessage(b"t1", b"\x00" * 2_000_000)
    to, msg = too_large("scored", "scored-tx", "dead-tx", "test", letters)(big, 2_000_040, 1_000_000)
    d = read(output_schema(cfg, "dead_letter"), msg.value)
    assert to == "dead-tx" and d["step"] == "scored_out" and "over the Kafka producer's message.max.bytes" in d["error"]
    assert avro_record(dead_letter(b"\x00\x01", "bad"), DEAD_LETTER_FIELDS)["raw_bytes"] is None
