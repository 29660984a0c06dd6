"""The Kafka input: a source whose partitions end cleanly on SIGINT/SIGTERM, consumer
settings, and unwrapping messages into :class:`~features.records.Raw` or dead letters."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from typing import Any, Iterable, List, Mapping, Optional

import structlog
from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_STORED
from typing_extensions import override

from dataflows.connectors.kafka.admin import _LIBRDKAFKA_LOG
from features.records import DeadLetter, Raw, dead_letter

__all__ = ["kafka_source", "unwrap", "consumer_options", "install_graceful_stop", "StoppableKafkaSource"]

log = structlog.get_logger("dataflows.connectors.kafka")




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


#: librdkafka settings only producers read (checked against librdkafka, which warns that a
#: consumer ignores them): ``KAFKA_OPT_*`` ones are kept out of the input consumer's settings.
PRODUCER_ONLY = frozenset({
    "message.timeout.ms", "delivery.timeout.ms", "linger.ms", "queue.buffering.max.ms", "batch.size",
    "batch.num.messages", "compression.type", "compression.codec", "acks", "request.required.acks",
    "enable.idempotence", "retries", "message.send.max.retries", "queue.buffering.max.messages",
    "queue.buffering.max.kbytes", "transactional.id", "transaction.timeout.ms", "partitioner",
    "request.timeout.ms", "sticky.partitioning.linger.ms", "enable.gapless.guarantee",
})


def consumer_options(options: Mapping[str, str]) -> dict[str, str]:
    """``options`` without the producer-only settings (``KAFKA_OPT_MESSAGE_TIMEOUT_MS``
    is for the output producers; the consumer would log that it ignores it).

    >>> consumer_options({"message.timeout.ms": "10000", "security.protocol": "SSL"})
    {'security.protocol': 'SSL'}
    """
    return {k: v for k, v in options.items() if k not in PRODUCER_ONLY}


def kafka_source(
    brokers: str,
    topic: str,
    *,
    tail: bool = True,
    options: Mapping[str, str] | None = None,
    batch_size: int = 1000,
    start: str = "earliest",
    group: str = "streamscore",
) -> StoppableKafkaSource:
    """Bytewax's ``KafkaSource`` for ``topic``, with consumer errors turned into
    items (``raise_on_errors=False``) and a graceful stop on SIGINT/SIGTERM when
    tailing. Opens nothing until the flow runs; check the broker first with
    :func:`check_broker` (Bytewax's own metadata call has no timeout).
    Its items go through :func:`unwrap`.

    Where it starts reading, when Bytewax recovery has no offsets for a partition
    (with recovery on, the recovered offsets always win):

    * ``"earliest"`` (default): the beginning of each partition;
    * ``"latest"``: only messages produced after the start;
    * ``"committed"``: the offsets consumer group ``group`` committed,
      and the beginning of a partition the group never read. The consumer commits
      what it has read every few seconds and when it stops (librdkafka's
      auto-commit), so a restart without recovery continues near where the last
      run stopped instead of re-scoring the whole topic.
    """
    log.info("kafka_source", brokers=brokers, topic=topic, tail=tail, start=start, group=group,
             options={k: "***" for k in (options or {})})
    if tail:
        install_graceful_stop()
    config: dict[str, Any] = {**consumer_options(options or {}), "logger": _LIBRDKAFKA_LOG}
    if start == "committed":
        config = {"group.id": group, "enable.auto.commit": "true", "auto.offset.reset": "earliest", **config}
    offset = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END, "committed": OFFSET_STORED}[start]
    return StoppableKafkaSource(KafkaSource(
        brokers=brokers.split(","),
        topics=[topic],
        tail=tail,
        starting_offset=offset,
        add_config=config,
        batch_size=batch_size,
        raise_on_errors=False,
    ))


def unwrap(item: Any) -> Raw | DeadLetter:
    """A Kafka source item as a :class:`~features.records.Raw` input (its value,
    topic, partition and offset) or, for a consumer error, a dead letter naming them.

    >>> from bytewax.connectors.kafka import KafkaSourceMessage
    >>> unwrap(KafkaSourceMessage(key=b"k", value=b"{}", topic="tx", partition=1, offset=7))
    Raw(value=b'{}', topic='tx', partition=1, offset=7)
    """
    if isinstance(item, KafkaSourceMessage):
        return Raw(item.value, item.topic, item.partition, item.offset)
    if isinstance(item, KafkaError):
        m = item.msg
        origin = Raw(m.value, m.topic, m.partition, m.offset)
        return dead_letter(m.value, f"Kafka consumer error: {item.err}", "input", origin)
    return Raw(item)
