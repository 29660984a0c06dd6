"""The flows' Avro and Protobuf records: which schema each topic's values have, the decoder
of the input, the encoders of the outputs, and the registry checks at start.

The machinery (framing, schema cache, breaker, serializers) is :mod:`features.wire`; this
module only says what each flow reads and writes:

- input: fraud reads ``streamscore.Transaction`` (v1 or v2, :data:`~features.wire.TRANSACTION_V2_FIELDS`),
  IoT reads ``streamscore.Reading`` of its configured fields (:func:`~features.wire.reading_fields`).
  Avro is read with the writer's schema (any registered version); Protobuf with the flow's
  message built from the same field list.
- outputs (``{flow}.formats.output = "avro"``): the scored and alerts topics carry
  ``streamscore.<flow>.Scored``, whose fields follow from the flow's configuration: the ids,
  status and scores, every model feature (fraud) or every sensor (IoT), each nullable, and
  ``details`` (the JSON of whatever else the record holds: anomaly scores per detector, reasons,
  drift records' fields). A model with other features or an IoT flow with other sensors
  registers a new version of that subject. The dead-letter topic carries
  ``streamscore.DeadLetter``, whose ``raw_bytes`` are the input's bytes as received.
- checks at start (:func:`check_registry`): the registry answers, the input's subject
  exists (topic strategy), and each output schema is accepted by its subject's
  compatibility rule: a change that breaks it is refused with one line naming the subject
  and the rule.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import orjson

from features.records import DeadLetter
from features.wire import (
    TRANSACTION_FIELDS,
    TRANSACTION_V2_FIELDS,
    FieldSpec,
    WireDecoder,
    avro_schema,
    avro_writer,
    protobuf_message,
    reading_fields,
    registry_client,
    subject_name,
)
from settings.config import FraudConfig, IoTConfig, KafkaConfig

__all__ = ["input_fields", "input_decoder", "register_output", "scored_fields", "DEAD_LETTER_FIELDS",
           "output_schema", "avro_record", "check_registry", "client_of", "encoder_of",
           "input_schema"]

FlowConfig = FraudConfig | IoTConfig


def _flow(cfg: FlowConfig) -> str:
    return "iot" if isinstance(cfg, IoTConfig) else "fraud"


def client_of(k: KafkaConfig) -> Any:
    """The registry client of the settings (``registry.url``, ``registry.auth``, ``registry.timeout_s``)."""
    return registry_client(k.registry_url, k.registry_auth.get_secret_value(), k.registry_timeout_s)


def input_fields(cfg: FlowConfig) -> tuple[str, tuple[FieldSpec, ...]]:
    """(record name, fields) of the flow's input (the newest version the flow knows)."""
    if isinstance(cfg, IoTConfig):
        return "Reading", reading_fields(cfg.key_field, cfg.time_field, cfg.sensors)
    return "Transaction", TRANSACTION_V2_FIELDS


def input_schema(flow: str, fmt: str, cfg: FlowConfig | None = None, version: int = 1) -> Any:
    """What a producer of the flow's input writes with: the Avro schema (a dict) or the
    Protobuf message class. Fraud: ``version`` 1 or 2 of ``streamscore.Transaction``; IoT: the
    configured fields (defaults without ``cfg``)."""
    if flow == "iot":
        iot = cfg if isinstance(cfg, IoTConfig) else IoTConfig.from_env({})
        name, fields = "Reading", reading_fields(iot.key_field, iot.time_field, iot.sensors)
    else:
        name, fields = "Transaction", TRANSACTION_FIELDS if version == 1 else TRANSACTION_V2_FIELDS
    if fmt == "avro":
        schema = avro_schema(name, fields)
        if flow == "fraud" and version == 2:  # the added field has a default: v1 readers and data stay valid
            schema["fields"][-1] = {"name": "channel", "type": "string", "default": "unknown"}
        return schema
    return protobuf_message(name, fields)


def input_decoder(cfg: FlowConfig) -> Callable[[Any], dict[str, Any]]:
    """The decoder of the flow's input format (``{flow}.formats.input``: avro or protobuf)."""
    k = cfg.io.kafka
    message = None
    if k.input_format == "protobuf":
        name, fields = input_fields(cfg)
        message = protobuf_message(name, fields)
    return WireDecoder(client_of(k), k.input_format, message, failures=k.registry_failures,
                       retry_s=k.registry_retry_s, registry=f"the schema registry at {k.registry_url}")


# --- outputs ---------------------------------------------------------------------------


def scored_fields(cfg: FlowConfig) -> tuple[FieldSpec, ...]:
    """The named fields of the flow's scored (and alert) records, each nullable, then ``details``."""
    strings = ["id", "kind", "status", "event_time", "scored_at"]
    doubles = ["anomaly_score", "latency_ms"]
    booleans = ["feature_fallback"]
    if isinstance(cfg, IoTConfig):
        strings += [cfg.key_field, "model_version"]
        doubles += list(cfg.sensors)
        booleans += ["warming_up"]
    else:
        from models.fraud.inputs import MODEL_FEATURES

        strings += ["transaction_id", "customer_id", "merchant_id", "merchant_category", "model_version"]
        doubles += ["amount", "fraud_score", "risk_score",
                    *(f for f in MODEL_FEATURES if f not in ("customer_known", "merchant_known"))]
        booleans += ["customer_known", "merchant_known", "anomaly_warming_up"]
    seen: set[str] = set()
    out: list[FieldSpec] = []
    for names, t in ((strings, "string"), (doubles, "double"), (booleans, "boolean")):
        for n in names:
            if n not in seen:
                seen.add(n)
                out.append((n, t, True))
    return (*out, ("details", "string", True))


DEAD_LETTER_FIELDS: tuple[FieldSpec, ...] = (
    ("error", "string", False), ("step", "string", False), ("received_at", "string", False),
    ("raw", "string", True), ("raw_bytes", "bytes", True),
    ("topic", "string", True), ("partition", "long", True), ("offset", "long", True),
)


def output_schema(cfg: FlowConfig, kind: str) -> dict[str, Any]:
    """The Avro schema of the ``kind`` output (scored, alerts, dead_letter)."""
    flow = _flow(cfg)
    if kind == "dead_letter":
        return avro_schema("DeadLetter", DEAD_LETTER_FIELDS, doc="an input that could not be scored; raw_bytes: "
                                                                 "the Avro or Protobuf input as received")
    model = "" if isinstance(cfg, IoTConfig) else f", model {cfg.model}"
    return avro_schema("Scored", scored_fields(cfg), namespace=f"streamscore.{flow}",
                       doc=f"a scored {flow} record{model}; details: the JSON of its other fields")


def _fits(t: str, v: Any) -> bool:
    if t == "double":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "long":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "bytes":
        return isinstance(v, (bytes, bytearray))
    return isinstance(v, str)


def avro_record(record: Mapping[str, Any] | DeadLetter, fields: tuple[FieldSpec, ...]) -> dict[str, Any]:
    """``record`` as a value of the schema of ``fields``: each named field when it has the
    field's type (ints as doubles), everything else in ``details`` as JSON.

    >>> avro_record({"id": "r1", "anomaly_score": 1, "reasons": ["x"]},
    ...             (("id", "string", True), ("anomaly_score", "double", True), ("details", "string", True)))
    {'id': 'r1', 'anomaly_score': 1.0, 'details': '{"reasons":["x"]}'}
    """
    if isinstance(record, DeadLetter):
        raw = record.raw
        return {"error": record.error, "step": record.step, "received_at": record.received_at,
                "raw": raw if isinstance(raw, str) or raw is None else orjson.dumps(raw, default=str).decode(),
                "raw_bytes": record.raw_bytes, "topic": record.topic, "partition": record.partition,
                "offset": record.offset}
    out: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    types = {n: t for n, t, _ in fields}
    for k, v in record.items():
        t = types.get(k)
        if t is not None and k != "details" and v is not None and _fits(t, v):
            out[k] = float(v) if t == "double" else v
        elif v is not None:
            rest[k] = v
    if "details" in types and rest:
        out["details"] = orjson.dumps(rest, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return out


def _fields_of(schema: Mapping[str, Any]) -> tuple[FieldSpec, ...]:
    return tuple((f["name"], f["type"][1] if isinstance(f["type"], list) else f["type"], True)
                 for f in schema["fields"])


def register_output(cfg: FlowConfig, kind: str) -> tuple[dict[str, Any], int]:
    """The ``kind`` output's Avro schema and its id in the registry (registered under its
    subject when new; the same id when it is there already)."""
    from confluent_kafka.schema_registry import Schema

    k = cfg.io.kafka
    topic = {"scored": k.scored_topic, "alerts": k.alerts_topic, "dead_letter": k.dead_letter_topic}[kind]
    schema = output_schema(cfg, kind)
    subject = subject_name(k.subject_strategy, topic, f"{schema['namespace']}.{schema['name']}")
    return schema, client_of(k).register_schema(subject, Schema(orjson.dumps(schema).decode(), "AVRO"))


def encoder_of(cfg: FlowConfig, kind: str) -> Callable[[], Callable[[Any], bytes]] | None:
    """With Avro outputs (``{flow}.formats.output = "avro"``, ``io.output = "kafka"``): the factory
    of the ``kind`` output's ``record -> bytes`` (:func:`avro_record` then
    :func:`~features.wire.avro_writer`), for :func:`dataflows.connectors.outputs.write`; else
    ``None`` (JSON). The schema id is taken when the flow is built (the start checks registered
    it a moment before), so writing never needs the registry while the flow runs."""
    k = cfg.io.kafka
    if cfg.io.output != "kafka" or k.output_format != "avro":
        return None
    schema, schema_id = register_output(cfg, kind)
    fields = _fields_of(schema)

    def build() -> Callable[[Any], bytes]:
        write = avro_writer(schema, schema_id)
        return lambda record: write(avro_record(record, fields))

    return build


# --- checks at start ---------------------------------------------------------------------


def _rule(client: Any, subject: str) -> str:
    try:
        return str(client.get_compatibility(subject))
    except Exception:
        try:
            return str(client.get_compatibility())
        except Exception:
            return "unknown"


def check_registry(cfg: FlowConfig) -> None:
    """At start: the registry answers within ``registry.timeout_s``; with the topic strategy,
    the input topic's subject exists; each Avro output schema is compatible with its subject
    (then registered). Raises ``ValueError`` with one line naming what failed."""
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    k = cfg.io.kafka
    client = client_of(k)
    where = f"{k.name_of('registry_url')}={k.registry_url!r}"
    try:
        subjects = set(client.get_subjects())
    except Exception as exc:
        raise ValueError(f"{where}: the schema registry did not answer within {k.registry_timeout_s:g}s "
                         f"({type(exc).__name__}: {str(exc)[:200]}); start one with `scripts/registry.sh up`") from None
    if cfg.io.source == "kafka" and k.input_format != "json" and k.subject_strategy == "topic":
        subject = subject_name("topic", k.input_topic, "")
        if subject not in subjects:
            raise ValueError(f"{where}: no subject {subject!r} for {k.name_of('input_topic')}={k.input_topic!r} "
                             f"({k.input_format}); register the input schema, or produce with "
                             f"`python -m cli.replay --format {k.input_format}`")
    if cfg.io.output != "kafka" or k.output_format != "avro":
        return
    for kind, topic in (("scored", k.scored_topic), ("alerts", k.alerts_topic), ("dead_letter", k.dead_letter_topic)):
        schema = output_schema(cfg, kind)
        full = f"{schema['namespace']}.{schema['name']}"
        subject = subject_name(k.subject_strategy, topic, full)
        s = Schema(orjson.dumps(schema).decode(), "AVRO")
        if subject in subjects:
            try:
                ok = client.test_compatibility(subject, s)
            except SchemaRegistryError as exc:
                raise ValueError(f"schema registry subject {subject!r}: compatibility check failed ({exc})") from None
            if not ok:
                raise ValueError(f"schema registry subject {subject!r} refuses the {kind} record schema ({full}): "
                                 f"not compatible with its latest version under rule {_rule(client, subject)}")
        try:
            client.register_schema(subject, s)
        except SchemaRegistryError as exc:
            raise ValueError(f"schema registry subject {subject!r} refuses the {kind} record schema ({full}) "
                             f"under rule {_rule(client, subject)}: {exc}") from None
