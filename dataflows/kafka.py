"""Kafka in and out, with the fixes Bytewax 0.21.1's connector needs.

- :func:`check_broker`: ``list_topics`` with a timeout before the flow is built
  (Bytewax's own call has none and hangs forever on an unreachable broker).
- :func:`kafka_source`: Bytewax's ``KafkaSource`` with consumer errors turned into
  items (they become dead letters with their partition and offset) instead of
  stopping the flow; ``SCORING_KAFKA_TAIL=false`` stops at the end of the topic.
- :class:`ReliableKafkaSink`: produces with a delivery callback, retries when
  librdkafka's local queue is full (Bytewax issue 522), and fails loudly if the
  broker rejects a message, rather than dropping it silently.

Extra librdkafka settings come from ``KAFKA_OPT_*`` variables
(``KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL`` -> ``security.protocol``); their values
are never logged.
"""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from typing import Any, Iterable, List, Optional

import structlog
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, Producer
from confluent_kafka.admin import AdminClient
from typing_extensions import override

from dataflows.config import IOConfig, KafkaConfig

__all__ = [
    "KafkaUnavailable",
    "check_broker",
    "kafka_source",
    "kafka_sink",
    "ReliableKafkaSink",
    "unwrap_kafka",
    "install_graceful_stop",
    "StoppableKafkaSource",
]

log = structlog.get_logger("dataflows.kafka")


class KafkaUnavailable(RuntimeError):
    """The broker did not answer in time."""


def client_config(kafka: KafkaConfig) -> dict[str, str]:
    return {"bootstrap.servers": kafka.bootstrap_servers, **kafka.options}


def check_broker(kafka: KafkaConfig, topics: tuple[str, ...] = ()) -> dict[str, int]:
    """Ask the broker for metadata within ``check_timeout_s``; returns partitions per topic.

    Raises :class:`KafkaUnavailable` with a one-line message naming the address.
    """
    admin = AdminClient({**client_config(kafka), "socket.connection.setup.timeout.ms": "5000", "log_level": "0"})
    try:
        meta = admin.list_topics(timeout=kafka.check_timeout_s)
    except Exception as exc:
        raise KafkaUnavailable(
            f"Kafka broker at {kafka.bootstrap_servers} unreachable after {kafka.check_timeout_s:g}s "
            f"({exc}); start one with `make kafka-up` or set KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    return {t: len(meta.topics[t].partitions) for t in topics if t in meta.topics}


_STOP = threading.Event()  # process-wide shutdown request, set by SIGINT/SIGTERM


def install_graceful_stop() -> None:
    """SIGINT/SIGTERM end the Kafka input cleanly: partitions report end of input,
    the flow drains and closes its sinks (every produced record is flushed), and
    the process exits 0. A second signal stops at once."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        if _STOP.is_set():
            raise KeyboardInterrupt
        _STOP.set()
        log.info("stopping", signal=signal.Signals(signum).name, detail="draining in-flight events")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class _StoppablePartition(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: StatefulSourcePartition[Any, Any]) -> None:
        self._inner = inner

    @override
    def next_batch(self) -> Iterable[Any]:
        if _STOP.is_set():
            raise StopIteration()
        return self._inner.next_batch()

    @override
    def next_awake(self) -> Optional[datetime]:
        return self._inner.next_awake()

    @override
    def snapshot(self) -> Any:
        return self._inner.snapshot()

    @override
    def close(self) -> None:
        self._inner.close()


class StoppableKafkaSource(FixedPartitionedSource[Any, Any]):
    """Bytewax's ``KafkaSource`` whose partitions end when a stop was requested."""

    def __init__(self, inner: KafkaSource) -> None:
        self._inner = inner

    @override
    def list_parts(self) -> List[str]:
        return self._inner.list_parts()

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: Optional[Any]) -> _StoppablePartition:
        return _StoppablePartition(self._inner.build_part(step_id, for_part, resume_state))


def kafka_source(cfg: IOConfig) -> FixedPartitionedSource:
    """The input topic, from the beginning; tails it unless ``SCORING_KAFKA_TAIL=false``."""
    kafka = cfg.kafka
    found = check_broker(kafka, (kafka.input_topic,))
    if kafka.input_topic not in found:
        raise KafkaUnavailable(
            f"Kafka topic {kafka.input_topic!r} does not exist on {kafka.bootstrap_servers}; "
            f"create it or produce to it first (e.g. `python -m dataflows.replay`)"
        )
    log.info("kafka_source", brokers=kafka.bootstrap_servers, topic=kafka.input_topic,
             partitions=found[kafka.input_topic], tail=kafka.tail, options=kafka.redacted_options())
    if kafka.tail:
        install_graceful_stop()
    return StoppableKafkaSource(KafkaSource(
        brokers=kafka.bootstrap_servers.split(","),
        topics=[kafka.input_topic],
        tail=kafka.tail,
        starting_offset=OFFSET_BEGINNING,
        add_config=dict(kafka.options),
        batch_size=cfg.batch_size,
        raise_on_errors=False,
    ))


def unwrap_kafka(item: Any) -> tuple[Any, dict[str, Any], str | None]:
    """``(raw value, origin, error)`` for an item of the Kafka source.

    ``origin`` names the topic, partition and offset, so a dead letter can
    point at the message; ``error`` is set for a consumer error.
    """
    if isinstance(item, KafkaSourceMessage):
        return item.value, {"topic": item.topic, "partition": item.partition, "offset": item.offset}, None
    if isinstance(item, KafkaError):
        m = item.msg
        origin = {"topic": m.topic, "partition": m.partition, "offset": m.offset}
        return m.value, origin, f"Kafka consumer error: {item.err}"
    return item, {}, None


class _ReliablePartition(StatelessSinkPartition[KafkaSinkMessage]):
    def __init__(self, producer: Producer, topic: str, flush_timeout_s: float) -> None:
        self._producer = producer
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._failures: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failures.append(f"{err} (key {msg.key()!r})")

    @override
    def write_batch(self, items: List[KafkaSinkMessage]) -> None:
        for m in items:
            while True:
                try:
                    self._producer.produce(self._topic, value=m.value, key=m.key, headers=m.headers or None,
                                           on_delivery=self._on_delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain, then retry
                    self._producer.poll(0.05)
            self._producer.poll(0)
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining:
            raise RuntimeError(f"Kafka topic {self._topic!r}: {remaining} messages not delivered "
                               f"within {self._flush_timeout_s:g}s")
        if self._failures:
            failures, self._failures = self._failures, []
            raise RuntimeError(f"Kafka topic {self._topic!r}: {len(failures)} messages rejected, "
                               f"first: {failures[0]}")

    @override
    def close(self) -> None:
        self._producer.flush(self._flush_timeout_s)


class ReliableKafkaSink(DynamicSink[KafkaSinkMessage]):
    """One topic; every worker produces its own items; a batch returns only once delivered."""

    def __init__(self, kafka: KafkaConfig, topic: str, flush_timeout_s: float = 60.0) -> None:
        self._kafka = kafka
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReliablePartition:
        producer = Producer({
            "linger.ms": "5",
            "compression.type": "lz4",
            "enable.idempotence": "true",
            **client_config(self._kafka),
        })
        return _ReliablePartition(producer, self._topic, self._flush_timeout_s)


def kafka_sink(cfg: IOConfig, topic: str) -> ReliableKafkaSink:
    """The sink for ``topic``; checks the broker first (one-line error when down)."""
    check_broker(cfg.kafka)
    return ReliableKafkaSink(cfg.kafka, topic)
