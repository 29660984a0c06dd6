"""Avro and Protobuf records in Confluent's wire format, with a schema registry.

A Confluent serializer frames every record as ``0x00`` (the magic byte), the schema id
(4 bytes, big-endian), then the Avro or Protobuf body. This module reads and writes
that, knowing nothing of Bytewax or Kafka clients:

- :func:`schema_id_of`: the framing check; a record too short for a frame or with
  another first byte is a :class:`~features.records.ValidationError` naming which.
- :class:`WireDecoder`: framed bytes -> the ``dict`` the flows' parsers read (as a CSV
  row or a JSON object). Schemas are looked up by id once and cached; a lookup waits at
  most ``timeout_s``, and after ``failures`` lookups in a row found the registry down,
  unknown ids are refused at once for ``retry_s`` (the breaker of
  :class:`features.store.CachedLookup`). Every failure is a ``ValidationError``, so the
  record becomes a dead letter: never a crash, never a silent drop.
- :class:`WireEncoder`: ``dict`` -> framed bytes (replay, the Avro outputs), with
  confluent-kafka's own serializers.
- The record types: one field list (:data:`TRANSACTION_FIELDS`, :func:`reading_fields`)
  gives both the Avro schema (:func:`avro_schema`) and the Protobuf message
  (:func:`protobuf_message`, descriptors built at run time: no generated code).

Avro is read by fastavro with the *writer's* schema, parsed once per schema id and kept
in the decoder's own cache (the one the outage rule rests on; confluent-kafka's
``AvroDeserializer`` asks its client for the schema on every record and decodes about 9x
slower): a record of any registered version comes out whole (a field a v2 producer added is
one more key of the dict; the flow's parser decides about it). Protobuf is read with the
flow's own message class, by field number. Writing uses confluent-kafka's ``AvroSerializer``.

>>> schema_id_of(b"\\x00\\x00\\x00\\x00\\x07\\x02")
7
>>> schema_id_of(b'{"amount": 1}')
Traceback (most recent call last):
...
features.records.ValidationError: not a Confluent-framed record: first byte 0x7b ('{'), expected the magic byte 0x00 (JSON on an Avro or Protobuf topic?)
>>> schema_id_of(b"\\x00\\x00\\x01")
Traceback (most recent call last):
...
features.records.ValidationError: truncated record: 3 bytes, a Confluent-framed record has at least 6 (magic byte, 4-byte schema id, body)
"""

from __future__ import annotations

import msgspec

import json
import threading
import time
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import structlog

from features.records import ValidationError

__all__ = [
    "WireFormat",
    "FieldSpec",
    "TRANSACTION_FIELDS",
    "TRANSACTION_V2_FIELDS",
    "reading_fields",
    "avro_schema",
    "protobuf_message",
    "message_to_dict",
    "schema_id_of",
    "registry_client",
    "subject_strategy",
    "subject_name",
    "WireDecoder",
    "WireEncoder",
    "RegistryUnavailable",
    "decode_or_dead_letter",
    "proto_text",
    "avro_writer",
]

log = structlog.get_logger("features.wire")

WireFormat = Literal["avro", "protobuf"]
MAGIC = 0
#: magic byte + schema id; a body of at least one byte follows
HEADER = 5

#: (name, type, optional): type one of string, double, long, boolean. Optional fields
#: may be missing (Avro: a union with null, default null; Protobuf: proto3 ``optional``).
FieldSpec = tuple[str, str, bool]

#: The transaction, as the generator and replay write it (v1 of ``streamscore.Transaction``).
TRANSACTION_FIELDS: tuple[FieldSpec, ...] = (
    ("transaction_id", "string", False),
    ("customer_id", "string", False),
    ("merchant_id", "string", False),
    ("amount", "double", False),
    ("merchant_category", "string", False),
    ("timestamp", "string", False),
    ("latitude", "double", True),
    ("longitude", "double", True),
    ("is_fraud", "long", True),
    ("fraud_pattern", "string", True),
)

#: v2 adds ``channel`` (with a default): records of v1 and v2 share one topic (tests/e2e/test_registry.py).
TRANSACTION_V2_FIELDS: tuple[FieldSpec, ...] = (*TRANSACTION_FIELDS, ("channel", "string", True))


def reading_fields(key_field: str, time_field: str, sensors: Sequence[str]) -> tuple[FieldSpec, ...]:
    """A sensor reading of the IoT flow's configured fields (``iot.key_field``, ``iot.time_field``,
    ``iot.sensor_fields``: a sensor may be missing from a reading), plus the generator's labels.

    >>> [f[0] for f in reading_fields("device_id", "timestamp", ("temperature",))]
    ['device_id', 'timestamp', 'temperature', 'is_anomaly', 'fault']
    """
    return ((key_field, "string", False), (time_field, "string", False),
            *((s, "double", True) for s in sensors), ("is_anomaly", "long", True), ("fault", "string", True))


_AVRO_TYPES = {"string": "string", "double": "double", "long": "long", "boolean": "boolean", "bytes": "bytes"}


def avro_schema(name: str, fields: Iterable[FieldSpec], namespace: str = "streamscore", doc: str = "") -> dict[str, Any]:
    """The Avro record schema of ``fields`` (optional ones: ``["null", T]``, default null).

    >>> avro_schema("T", [("id", "string", False), ("x", "double", True)])["fields"]
    [{'name': 'id', 'type': 'string'}, {'name': 'x', 'type': ['null', 'double'], 'default': None}]
    """
    out: list[dict[str, Any]] = []
    for fname, ftype, optional in fields:
        t = _AVRO_TYPES[ftype]
        out.append({"name": fname, "type": ["null", t], "default": None} if optional else {"name": fname, "type": t})
    schema: dict[str, Any] = {"type": "record", "name": name, "namespace": namespace, "fields": out}
    if doc:
        schema["doc"] = doc
    return schema


_PROTO_CACHE: dict[tuple[str, str, tuple[FieldSpec, ...]], Any] = {}
_PROTO_LOCK = threading.Lock()


def protobuf_message(name: str, fields: Sequence[FieldSpec], package: str = "streamscore") -> Any:
    """A Protobuf message class (proto3) of ``fields``, built from descriptors at run time,
    numbered 1, 2, ... in order; optional fields are proto3 ``optional`` (presence kept, so a
    missing field stays missing rather than becoming 0 or ""). Cached per field list.

    >>> Tx = protobuf_message("Doc", [("id", "string", False), ("amount", "double", True)], "streamscore.doc")
    >>> message_to_dict(Tx.FromString(Tx(id="t1").SerializeToString()))
    {'id': 't1'}
    """
    key = (package, name, tuple(fields))
    with _PROTO_LOCK:
        if key in _PROTO_CACHE:
            return _PROTO_CACHE[key]
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        F = descriptor_pb2.FieldDescriptorProto
        types = {"string": F.TYPE_STRING, "double": F.TYPE_DOUBLE, "long": F.TYPE_INT64, "boolean": F.TYPE_BOOL,
                 "bytes": F.TYPE_BYTES}
        fdp = descriptor_pb2.FileDescriptorProto(name=f"{package.replace('.', '/')}/{name.lower()}.proto",
                                                 package=package, syntax="proto3")
        msg = fdp.message_type.add(name=name)
        for i, (fname, ftype, optional) in enumerate(fields, start=1):
            f = msg.field.add(name=fname, number=i, type=types[ftype], label=F.LABEL_OPTIONAL)
            if optional:
                f.proto3_optional = True
                f.oneof_index = len(msg.oneof_decl)
                msg.oneof_decl.add(name=f"_{fname}")
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fdp)
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        _PROTO_CACHE[key] = cls
        return cls


def message_to_dict(msg: Any) -> dict[str, Any]:
    """The fields a Protobuf message holds (set ones only), as a plain dict."""
    return {fd.name: value for fd, value in msg.ListFields()}


def schema_id_of(data: bytes) -> int:
    """The schema id of a Confluent-framed record, or :class:`ValidationError` naming why
    it is not one (too short, or not the magic byte)."""
    if len(data) < HEADER + 1:
        raise ValidationError(f"truncated record: {len(data)} bytes, a Confluent-framed record has at least "
                              f"{HEADER + 1} (magic byte, 4-byte schema id, body)")
    if data[0] != MAGIC:
        b = data[0]
        shown = f" ({chr(b)!r})" if 32 <= b < 127 else ""
        hint = " (JSON on an Avro or Protobuf topic?)" if b in (0x7B, 0x5B, 0x22) else ""
        raise ValidationError(f"not a Confluent-framed record: first byte 0x{b:02x}{shown}, "
                              f"expected the magic byte 0x00{hint}")
    return int.from_bytes(data[1:HEADER], "big")


# --- the registry ---------------------------------------------------------------------


class RegistryUnavailable(RuntimeError):
    """The schema registry did not answer (or answered with a server error)."""


def registry_client(url: str, auth: str = "", timeout_s: float = 2.0) -> Any:
    """A confluent-kafka ``SchemaRegistryClient`` for ``url`` (``mock://...``: the in-memory
    client, for tests), with ``auth`` as ``user:password`` (HTTP basic) when given, each
    request bounded by ``timeout_s`` and not retried (the callers bound their own waits)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    conf: dict[str, Any] = {"url": url}
    if auth:
        conf["basic.auth.user.info"] = auth
    if not url.startswith("mock://"):
        conf.update({"timeout": timeout_s, "max.retries": 0})
        return SchemaRegistryClient(conf)
    return SchemaRegistryClient.new_client(conf)


def _is_outage(exc: BaseException) -> bool:
    """A registry that is down or failing (no answer, time-out, HTTP 5xx), as opposed to one
    that answered "no such schema" (4xx)."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(exc, SchemaRegistryError):
        return exc.http_status_code is None or exc.http_status_code >= 500 or exc.http_status_code < 0
    return True  # connection refused, time-out, DNS: whatever the HTTP client raised


def subject_strategy(name: str) -> Callable[[Any, str | None], str]:
    """confluent-kafka's subject name strategy for ``topic`` (``<topic>-value``),
    ``record`` (``<record full name>``) or ``topic_record`` (``<topic>-<record full name>``)."""
    from confluent_kafka.schema_registry import (
        record_subject_name_strategy,
        topic_record_subject_name_strategy,
        topic_subject_name_strategy,
    )

    return {"topic": topic_subject_name_strategy, "record": record_subject_name_strategy,
            "topic_record": topic_record_subject_name_strategy}[name]


def subject_name(strategy: str, topic: str, record_name: str) -> str:
    """The value subject of ``topic`` for a record named ``record_name`` (its full name).

    >>> subject_name("topic", "tx", "streamscore.Transaction"), subject_name("topic_record", "tx", "a.B")
    ('tx-value', 'tx-a.B')
    """
    from confluent_kafka.serialization import MessageField, SerializationContext

    return subject_strategy(strategy)(SerializationContext(topic, MessageField.VALUE), record_name)


_PROTO_TYPES = {"TYPE_STRING": "string", "TYPE_DOUBLE": "double", "TYPE_INT64": "int64", "TYPE_BOOL": "bool",
                "TYPE_BYTES": "bytes"}


def proto_text(message_type: Any) -> str:
    """The ``.proto`` text of a flat message of :func:`protobuf_message` (what the registry stores).

    >>> print(proto_text(protobuf_message("Doc2", [("id", "string", False), ("x", "double", True)], "streamscore.doc")))
    syntax = "proto3";
    package streamscore.doc;
    <BLANKLINE>
    message Doc2 {
      string id = 1;
      optional double x = 2;
    }
    <BLANKLINE>
    """
    from google.protobuf.descriptor import FieldDescriptor

    names = {v: k for k, v in FieldDescriptor.__dict__.items() if k.startswith("TYPE_") and isinstance(v, int)}
    d = message_type.DESCRIPTOR
    lines = ['syntax = "proto3";', f"package {d.file.package};", "", f"message {d.name} {{"]
    for f in d.fields:
        optional = "optional " if f.containing_oneof is not None and f.containing_oneof.name == f"_{f.name}" else ""
        lines.append(f"  {optional}{_PROTO_TYPES[names[f.type]]} {f.name} = {f.number};")
    return "\n".join([*lines, "}", ""])


def _protobuf_reader(message_type: Any) -> Callable[[bytes, Any], Any]:
    """Framed Protobuf bytes (magic byte, schema id, message indexes, body) -> a message of
    ``message_type``. The framing is read by confluent-kafka's ``SchemaId``; the body is parsed
    with the flow's own message (fields by number: a producer's newer fields are skipped).
    (confluent-kafka's ``ProtobufDeserializer`` asks the registry for the writer's schema as a
    serialized descriptor, ``?format=serialized``, which Apicurio's Confluent API does not serve.)"""
    import io

    from confluent_kafka.schema_registry.serde import SchemaId

    def read(data: bytes, _ctx: Any) -> Any:
        payload = SchemaId("PROTOBUF").from_bytes(io.BytesIO(data))
        return message_type.FromString(payload.read())

    return read


class _ProtobufWriter:
    """A message -> framed bytes, its schema registered as ``.proto`` text (:func:`proto_text`).
    (confluent-kafka's ``ProtobufSerializer`` registers a base64 descriptor, which Apicurio
    stores as if it were ``.proto`` text, unreadable to other clients.)"""

    def __init__(self, client: Any, message_type: Any, strategy: Callable[..., str], auto_register: bool) -> None:
        self.client, self.message_type, self.strategy, self.auto_register = client, message_type, strategy, auto_register
        self._header: bytes | None = None

    def __call__(self, msg: Any, ctx: Any) -> bytes:
        if self._header is None:
            from confluent_kafka.schema_registry import Schema
            from confluent_kafka.schema_registry.serde import SchemaId

            subject = self.strategy(ctx, self.message_type.DESCRIPTOR.full_name)
            schema = Schema(proto_text(self.message_type), "PROTOBUF")
            if self.auto_register:
                schema_id = self.client.register_schema(subject, schema)
            else:
                schema_id = self.client.lookup_schema(subject, schema).schema_id
            self._header = SchemaId("PROTOBUF", schema_id, message_indexes=[0]).id_to_bytes()
        return self._header + msg.SerializeToString()


class WireDecoder:
    """Confluent-framed Avro or Protobuf bytes -> ``dict``; callable, thread-safe enough for
    one Bytewax worker (the caches only grow).

    Args:
        client: a ``SchemaRegistryClient`` (:func:`registry_client`).
        fmt: ``avro`` or ``protobuf``.
        message_type: the Protobuf message class (for ``protobuf``).
        timeout_s: a schema lookup waits at most this long (the client's request time-out).
        failures: this many lookups in a row that found the registry down open the breaker ...
        retry_s: ... for this many seconds: ids not yet cached are refused at once.
        registry: the registry's address, for messages.
    """

    def __init__(self, client: Any, fmt: WireFormat, message_type: Any = None, *, failures: int = 3,
                 retry_s: float = 5.0, registry: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        from confluent_kafka.serialization import MessageField, SerializationContext

        self.client = client
        self.fmt = fmt
        self.failures = failures
        self.retry_s = retry_s
        self.registry = registry or "the schema registry"
        self._clock = clock
        self._known: set[int] = set()
        self._unknown: dict[int, str] = {}  # ids the registry said it does not know
        self._down_since: float | None = None
        self._fails = 0
        self._ctx = SerializationContext("", MessageField.VALUE)
        self._avro: dict[int, Any] = {}  # schema id -> parsed writer schema
        if fmt == "avro":
            import io

            import fastavro

            def read(data: bytes, _ctx: Any) -> Any:
                return fastavro.schemaless_reader(io.BytesIO(data[HEADER:]), self._avro[int.from_bytes(data[1:HEADER], "big")],
                                                  None)

            self._de = read
            self._to_dict: Callable[[Any], dict[str, Any]] = lambda v: v
        elif fmt == "protobuf":
            if message_type is None:
                raise ValueError("WireDecoder: the protobuf format needs a message_type")
            self._de = _protobuf_reader(message_type)
            self._to_dict = message_to_dict
        else:
            raise ValueError(f"WireDecoder: unknown format {fmt!r}; expected avro or protobuf")

    @property
    def breaker_open(self) -> bool:
        return self._down_since is not None and self._clock() - self._down_since < self.retry_s

    def _lookup(self, schema_id: int) -> None:
        """Make sure ``schema_id`` is known (cached), or raise ``ValidationError``."""
        if schema_id in self._unknown:
            raise ValidationError(self._unknown[schema_id])
        if self.breaker_open:
            raise ValidationError(f"schema id {schema_id}: not cached and {self.registry} is unavailable "
                                  f"(breaker open for {self.retry_s:g}s after {self._fails} failed lookups)")
        try:
            schema = self.client.get_schema(schema_id)
            if self.fmt == "avro":
                import fastavro

                self._avro[schema_id] = fastavro.parse_schema(json.loads(schema.schema_str))
        except Exception as exc:
            if _is_outage(exc):
                self._fails += 1
                if self._fails >= self.failures:
                    if self._down_since is None:
                        log.warning("schema_registry_breaker_open", registry=self.registry, failures=self._fails,
                                    retry_s=self.retry_s)
                    self._down_since = self._clock()
                raise ValidationError(f"schema id {schema_id}: not cached and {self.registry} did not answer "
                                      f"({type(exc).__name__}: {str(exc)[:200]})") from None
            message = f"schema id {schema_id}: unknown to {self.registry} ({str(exc)[:200]})"
            self._unknown[schema_id] = message
            raise ValidationError(message) from None
        if self._down_since is not None:
            log.info("schema_registry_breaker_closed", registry=self.registry)
        self._fails, self._down_since = 0, None
        self._known.add(schema_id)

    def __call__(self, data: Any) -> dict[str, Any]:
        if isinstance(data, str):
            raise ValidationError(f"expected {self.fmt} bytes, got text")
        if isinstance(data, Mapping):
            return {str(k): v for k, v in data.items()}
        data = bytes(data)
        schema_id = schema_id_of(data)
        if schema_id not in self._known:
            self._lookup(schema_id)
        try:
            value = self._de(data, self._ctx)
        except Exception as exc:
            raise ValidationError(f"schema id {schema_id}: {self.fmt} body does not decode "
                                  f"(truncated or not of this schema: {type(exc).__name__}: {str(exc)[:200]})") from None
        if value is None:
            raise ValidationError(f"schema id {schema_id}: empty {self.fmt} record")
        out = self._to_dict(value)
        if not isinstance(out, dict):
            raise ValidationError(f"schema id {schema_id}: expected a record, got {type(out).__name__}")
        return out


class WireEncoder:
    """``dict`` -> Confluent-framed bytes with confluent-kafka's ``AvroSerializer`` or
    ``ProtobufSerializer``; the schema is registered under ``strategy``'s subject (on the
    first record, or ahead of it by :meth:`register`).

    ``schema`` is the Avro schema (a dict), or the Protobuf message class.
    """

    def __init__(self, client: Any, fmt: WireFormat, schema: Any, topic: str, strategy: str = "topic",
                 auto_register: bool = True) -> None:
        from confluent_kafka.serialization import MessageField, SerializationContext

        self.client, self.fmt, self.topic = client, fmt, topic
        self._ctx = SerializationContext(topic, MessageField.VALUE)
        conf: dict[str, Any] = {"auto.register.schemas": auto_register, "subject.name.strategy": subject_strategy(strategy)}
        if fmt == "avro":
            from confluent_kafka.schema_registry.avro import AvroSerializer

            self.schema_str = json.dumps(schema)
            self.record_name = f"{schema.get('namespace', '')}.{schema['name']}".lstrip(".")
            self._ser = AvroSerializer(client, self.schema_str, conf=conf)
            self._names = {f["name"] for f in schema["fields"]}
            self._message = None
        elif fmt == "protobuf":
            self._message = schema
            self.record_name = schema.DESCRIPTOR.full_name
            self._names = {f.name for f in schema.DESCRIPTOR.fields}
            self._ser = _ProtobufWriter(client, schema, conf["subject.name.strategy"], auto_register)
        else:
            raise ValueError(f"WireEncoder: unknown format {fmt!r}; expected avro or protobuf")
        self.subject = subject_name(strategy, topic, self.record_name)

    def __call__(self, record: Mapping[str, Any]) -> bytes:
        if self._message is not None:
            value: Any = self._message(**{k: v for k, v in record.items() if k in self._names and v is not None})
        else:
            value = {k: v for k, v in record.items() if k in self._names}
        out = self._ser(value, self._ctx)
        assert out is not None
        return out


def avro_writer(schema: Mapping[str, Any], schema_id: int) -> Callable[[Mapping[str, Any]], bytes]:
    """``record -> bytes``: Confluent-framed Avro of ``schema``, already registered as
    ``schema_id``, so writing never asks the registry (the flows' outputs: a registry outage
    during a run cannot stop them). fastavro checks every value against the schema.

    >>> w = avro_writer(avro_schema("T", [("id", "string", False)]), 5)
    >>> w({"id": "a"})
    b'\\x00\\x00\\x00\\x00\\x05\\x02a'
    """
    import io

    import fastavro

    parsed = fastavro.parse_schema(dict(schema))
    header = bytes([MAGIC]) + schema_id.to_bytes(4, "big")

    def write(record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, record)
        return buf.getvalue()

    return write


def decode_or_dead_letter(item: Any, decode: Callable[[Any], dict[str, Any]]) -> Any:
    """A Kafka input (:class:`~features.records.Raw` of framed bytes) with its value decoded
    into a dict (its bytes kept as ``wire``), or the dead letter (step ``decode``) naming
    why not, with the bytes as received; a dead letter already in the stream passes through.

    >>> from features.records import Raw
    >>> d = decode_or_dead_letter(Raw(b"{}", "tx", 0, 5), lambda b: {"x": 1})
    >>> d.value, d.wire
    ({'x': 1}, b'{}')
    >>> bad = decode_or_dead_letter(Raw(b"{}", "tx", 0, 6), lambda b: schema_id_of(b))
    >>> bad.step, bad.raw_bytes, bad.offset, bad.error[:26]
    ('decode', b'{}', 6, 'truncated record: 2 bytes,')
    """
    from features.records import DeadLetter, Raw, dead_letter

    if isinstance(item, DeadLetter):
        return item
    origin = item if isinstance(item, Raw) else Raw(item)
    data = origin.value
    wire = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else None
    origin = msgspec.structs.replace(origin, wire=wire)
    try:
        value = decode(data)
    except ValidationError as exc:
        return dead_letter(data, str(exc), "decode", origin)
    except Exception as exc:  # a decoder bug must not stop the run either
        return dead_letter(data, f"{type(exc).__name__}: {exc}", "decode", origin)
    return msgspec.structs.replace(origin, value=value)
