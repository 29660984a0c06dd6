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
from typing import Any, Iterable, List, Mapping, Optional, Sequence

import structlog
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_STORED, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from typing_extensions import override

from features.records import DeadLetter, Raw, dead_letter

__all__ = [
    "KafkaUnavailable",
    "KafkaOptionError",
    "client_config",
    "check_options",
    "check_broker",
    "kafka_source",
    "unwrap",
    "ReliableKafkaSink",
    "install_graceful_stop",
    "StoppableKafkaSource",
]

log = structlog.get_logger("dataflows.kafka")


class KafkaUnavailable(RuntimeError):
    """The broker did not answer in time, or a topic is missing."""


class KafkaOptionError(ValueError):
    """A ``KAFKA_OPT_*`` setting librdkafka does not accept."""


def client_config(brokers: str, options: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings: ``bootstrap.servers`` plus the extra ``options``."""
    return {"bootstrap.servers": brokers, **(options or {})}


def _env_name(prop: str) -> str:
    return "KAFKA_OPT_" + prop.upper().replace(".", "_")


def check_options(options: Mapping[str, str]) -> None:
    """Raise :class:`KafkaOptionError` naming the ``KAFKA_OPT_*`` variable of every
    setting librdkafka does not know or refuses (values are never shown: they may
    be secrets). Nothing is contacted.

    >>> check_options({"linger.ms": "5"})
    >>> check_options({"lingr.ms": "5"})
    Traceback (most recent call last):
    ...
    dataflows.kafka.KafkaOptionError: KAFKA_OPT_LINGR_MS: librdkafka has no setting 'lingr.ms'
    """
    bad: list[str] = []
    for prop, value in options.items():
        try:
            # a Producer validates names and values when it is created; a consumer-only
            # setting is accepted with a warning (it is passed to the consumer as well)
            Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": "0", prop: value}).flush(0)
        except KafkaException as exc:
            text = str(exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc)
            if "No such configuration property" in text:
                bad.append(f"{_env_name(prop)}: librdkafka has no setting {prop!r}")
            else:
                bad.append(f"{_env_name(prop)}: refused by librdkafka ({text.replace(str(value), '***')})")
        except Exception as exc:  # e.g. a TypeError for a value of the wrong type
            bad.append(f"{_env_name(prop)}: refused by librdkafka ({type(exc).__name__})")
    if bad:
        raise KafkaOptionError("; ".join(bad))


def check_broker(
    brokers: str,
    options: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    topics: Sequence[str] = (),
) -> dict[str, int]:
    """Ask the broker for metadata within ``timeout_s``; returns partitions per topic
    (of ``topics``, those that exist).

    Raises :class:`KafkaUnavailable` with a one-line message naming the address.
    """
    admin = AdminClient({**client_config(brokers, options), "socket.connection.setup.timeout.ms": "5000",
                         "log_level": "0"})
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except Exception as exc:
        raise KafkaUnavailable(
            f"KAFKA_BOOTSTRAP_SERVERS={brokers!r}: broker unreachable after {timeout_s:g}s "
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
    config = dict(options or {})
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

    def __init__(self, brokers: str, topic: str, options: Mapping[str, str] | None = None,
                 flush_timeout_s: float = 60.0) -> None:
        self._brokers = brokers
        self._options = dict(options or {})
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReliablePartition:
        producer = Producer({
            "linger.ms": "5",
            "compression.type": "lz4",
            "enable.idempotence": "true",
            **client_config(self._brokers, self._options),
        })
        return _ReliablePartition(producer, self._topic, self._flush_timeout_s)
