"""Produce events to a flow's input topic, at a rate or as fast as possible.

    python -m cli.replay [--flow fraud|iot] [--input FILE | --events N --seed S]
                               [--rate EVENTS_PER_S] [--topic T] [--partitions P] [--key-field F]

Events come from the flow's generator (default) or from a ``.jsonl``, ``.csv``
or ``.parquet`` file, read with :func:`features.formats.iter_raw` (streamed; JSON
Lines lines are sent byte for byte, malformed ones included). Each message's key
is the event's entity, the flow's key field (``customer_id``; for readings
``iot.key_field``, ``device_id``), or ``--key-field``: one entity's events stay
in one partition, in order, so the flow's per-entity features are the same as a
file run's (keyed otherwise, an entity is split over partitions and its events
interleave in another order: see docs/kafka.md). An event without the field has
no key. Its value is the event as JSON. The topic is created with
``--partitions`` partitions when it does not exist.

Broker, librdkafka settings and the topic come from the flow's settings
(:class:`settings.config.KafkaConfig`, read for ``--flow``): ``kafka.bootstrap_servers``
(``KAFKA_BOOTSTRAP_SERVERS``), ``KAFKA_OPT_*`` (``KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL``
-> ``security.protocol``), ``kafka.check_timeout_s`` (10) bounds the broker check, and
the flow's ``topics.input`` (``STREAMSCORE_INPUT_TOPIC``) is the default topic. An unreachable broker, a bad file or failed deliveries
end the run with one line on stderr and a non-zero exit code (2 for bad arguments
or input, 1 for Kafka). Prints what it sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from settings.config import ConfigError, KafkaConfig
from dataflows.connectors.kafka import KafkaUnavailable, check_broker, client_config
from dataflows.connectors.kafka.admin import _LIBRDKAFKA_LOG
from settings.logs import configure_logging

from features.formats import iter_raw

__all__ = ["replay", "producer_for", "ensure_topic", "key_on", "FLOWS", "ReplayError"]


class ReplayError(RuntimeError):
    """A failure to report as one line (unreachable broker, undelivered messages)."""


def _client_config(kafka: KafkaConfig) -> dict[str, Any]:
    return client_config(kafka.bootstrap_servers, kafka.options)


def _check_broker(kafka: KafkaConfig, topics: tuple[str, ...] = ()) -> dict[str, int]:
    try:
        return check_broker(kafka.bootstrap_servers, kafka.options, kafka.check_timeout_s, topics)
    except KafkaUnavailable as exc:
        raise ReplayError(str(exc)) from None


def _fraud_events(n: int, seed: int, bad_rate: float) -> Iterable[Any]:
    from datagen.transactions import iter_stream

    return iter_stream(n, seed, bad_rate)


def _iot_events(n: int, seed: int, bad_rate: float) -> Iterable[Any]:
    from datagen.sensors import generate_readings

    return generate_readings(readings=n, seed=seed)


def _fields(ev: Any) -> dict:
    """The event as a dict when it is one or is a JSON object's text; else ``{}`` (no key)."""
    if isinstance(ev, dict):
        return ev
    if isinstance(ev, (bytes, bytearray, str)):
        try:
            value = orjson.loads(ev)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def key_on(field: str) -> Callable[[Any], str]:
    """The message key of an event: its ``field`` as text (``""``, no key, when absent).

    >>> key_on("customer_id")({"customer_id": "C1", "transaction_id": "t1"}), key_on("customer_id")("{oops")
    ('C1', '')
    """
    def key(ev: Any) -> str:
        value = _fields(ev).get(field)
        return "" if value is None else str(value)

    return key


def _fraud_key_field() -> str:
    return "customer_id"  # the fraud flow's entity (dataflows/fraud.py keys its features by it)


def _iot_key_field() -> str:
    from settings.config import IoTConfig

    return IoTConfig.from_env().key_field


#: flow -> (its settings' name, its generator, its entity's field: the default message key);
#: the topic is the flow's setting
FLOWS: dict[str, tuple[str, Callable[[int, int, float], Iterable[Any]], Callable[[], str]]] = {
    "fraud": ("fraud", _fraud_events, _fraud_key_field),
    "iot": ("iot", _iot_events, _iot_key_field),
}


def _encode(ev: Any) -> bytes:
    """The message value: bytes as is (a JSON Lines line), text as UTF-8, a row as JSON.

    A CSV row holding undecodable bytes (lone surrogates, see ``iter_raw``) is sent
    with those original bytes, so the flow dead-letters it as it would the file line.
    """
    if isinstance(ev, (bytes, bytearray)):
        return bytes(ev)
    if isinstance(ev, str):
        return ev.encode("utf-8", "surrogateescape")
    try:
        return orjson.dumps(ev, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:
        return json.dumps(ev, ensure_ascii=False, default=str, separators=(",", ":")).encode("utf-8", "surrogateescape")


def _wire_encoder(flow: str, fmt: str, kafka: KafkaConfig, topic: str) -> Callable[[Any], bytes | None]:
    """``event -> bytes`` in Confluent-framed ``fmt`` (the flow's input schema, registered on the
    first event), or ``None`` for an event that is not a record (a malformed line)."""
    from confluent_kafka.serialization import SerializationError

    from dataflows.connectors.registry import client_of, input_schema
    from features.wire import WireEncoder

    if not kafka.registry_url:
        raise ValueError(f"--format {fmt} needs a schema registry: set registry.url (SCHEMA_REGISTRY_URL)")
    encoder = WireEncoder(client_of(kafka), fmt, input_schema(flow, fmt), topic, kafka.subject_strategy)  # type: ignore[arg-type]

    def encode(ev: Any) -> bytes | None:
        fields = _fields(ev)
        if not fields:
            return None
        try:
            return encoder(fields)
        except (TypeError, ValueError, SerializationError):  # a value the schema cannot hold
            return None

    return encode


def ensure_topic(kafka: Any, topic: str, partitions: int) -> int:
    """Create ``topic`` when missing; returns its partition count. An unreachable
    broker is a :class:`ReplayError`."""
    existing = _check_broker(kafka, (topic,))
    if topic in existing:
        return existing[topic]
    admin = AdminClient(_client_config(kafka))
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
    try:
        fut.result(timeout=30)
    except Exception as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
    # Created is not yet visible: a broker's metadata can lag the controller for a moment (a
    # flow started right after this, e.g. by a benchmark, would refuse the topic as missing).
    deadline = time.monotonic() + 30
    while topic not in _check_broker(kafka, (topic,)):
        if time.monotonic() > deadline:
            raise ReplayError(f"topic {topic!r} was created but is not in the broker's metadata after 30 s")
        time.sleep(0.1)
    return partitions


def producer_for(kafka: Any) -> Any:
    """The producer :func:`replay` uses: idempotent, 5 ms linger, librdkafka's lines as JSON log lines."""
    return Producer({"linger.ms": "5", "enable.idempotence": "true", **_client_config(kafka),
                     "logger": _LIBRDKAFKA_LOG})  # librdkafka's lines as JSON log lines, not raw %4|... text


def replay(
    events: Iterable[Any],
    kafka: Any,
    topic: str,
    key: Callable[[Any], str],
    rate: float | None = None,
    total: int | None = None,
    progress: bool = True,
    encode: Callable[[Any], bytes | None] | None = None,
    producer: Any | None = None,
) -> dict[str, Any]:
    """Produce ``events``; paced to ``rate`` events/s when given. Returns counts.
    ``encode(event)``: the message value (default: JSON, :func:`_encode`); ``None`` skips the event.
    ``producer``: one from :func:`producer_for` to reuse (a new one connects, and an idempotent
    producer gets its id from the broker, before its first message leaves: about 0.5 s on a
    fresh broker, during which paced messages wait in the client)."""
    from tqdm import tqdm

    producer = producer or producer_for(kafka)
    failures: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    sent = nbytes = skipped = 0
    encode = encode or _encode
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="ev", disable=not progress, file=sys.stderr)
    for ev in events:
        value = encode(ev)
        if value is None:
            skipped += 1
            continue
        k = key(ev).encode("utf-8", "surrogateescape") or None
        while True:
            try:
                producer.produce(topic, value=value, key=k, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        sent += 1
        nbytes += len(value)
        bar.update(1)
        if rate:
            ahead = sent / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
    left = producer.flush(60)
    bar.close()
    seconds = time.perf_counter() - t0
    if left or failures:
        raise ReplayError(f"replay: {left} messages undelivered, {len(failures)} rejected "
                           f"(first: {failures[:1]}) on topic {topic!r}")
    return {"topic": topic, "sent": sent, "skipped": skipped, "bytes": nbytes, "seconds": round(seconds, 3),
            "events_per_s": round(sent / seconds, 1) if seconds > 0 else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cli.replay",
                                description="Produce events to a flow's input topic.")
    p.add_argument("--flow", choices=sorted(FLOWS), default="fraud")
    p.add_argument("--input", type=Path, help="a .jsonl, .csv or .parquet file (default: generate)")
    p.add_argument("--events", type=int, default=20_000, help="generated events")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bad-rate", type=float, default=0.0, help="share of malformed generated events")
    p.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    p.add_argument("--topic", default=None, help="default: the flow's topics.input setting (STREAMSCORE_INPUT_TOPIC)")
    p.add_argument("--partitions", type=int, default=3, help="partitions when creating the topic")
    p.add_argument("--key-field", default=None,
                   help="the field whose value is each message's key (default: the flow's entity, "
                        "customer_id or iot.key_field)")
    p.add_argument("--format", choices=("json", "avro", "protobuf"), default="json",
                   help="message values: JSON, or Confluent-framed Avro or Protobuf (schema registered in "
                        "registry.url, SCHEMA_REGISTRY_URL; events that are not records are skipped)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    configure_logging()
    flow, generate, entity = FLOWS[a.flow]
    try:
        kafka = KafkaConfig.from_env(flow=flow)
        key = key_on(a.key_field or entity())
        events: Iterable[Any] | None = iter_raw(a.input) if a.input else None  # checked before Kafka
    except (ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    topic = a.topic or kafka.input_topic
    try:
        partitions = ensure_topic(kafka, topic, a.partitions)
        if events is None:
            events = generate(a.events, a.seed, a.bad_rate)
        encode = None if a.format == "json" else _wire_encoder(a.flow, a.format, kafka, topic)
        stats = replay(events, kafka, topic, key, a.rate, None if a.input else a.events, not a.no_progress, encode)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Kafka: unreachable broker, topic creation, deliveries
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"sent {stats['sent']} events ({stats['bytes']} bytes) to {topic} ({partitions} partitions) "
          f"on {kafka.bootstrap_servers} in {stats['seconds']}s: {stats['events_per_s']} events/s"
          + (f"; {stats['skipped']} not records, skipped ({a.format})" if stats["skipped"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
