"""Kafka in and out, with the fixes Bytewax 0.21.1's connector needs.

- :func:`check_broker`: ``list_topics`` with a timeout before the flow is built
  (Bytewax's own call has none and hangs forever on an unreachable broker).
- :func:`kafka_source`: Bytewax's ``KafkaSource`` with consumer errors turned into
  items (they become dead letters with their partition and offset) instead of
  stopping the flow; ``SCORING_KAFKA_TAIL=false`` stops at the end of the topic.
- :class:`ReliableKafkaSink`: produces with a delivery callback, retries when
  librdkafka's local queue is full (Bytewax issue 522), waits through a broker
  outage up to ``message.timeout.ms``, and fails loudly (an error log line naming
  the topic and the librdkafka error, then :class:`KafkaDeliveryError`) if a record
  is refused or not delivered in time, rather than dropping it silently.

Extra librdkafka settings come from ``KAFKA_OPT_*`` variables
(``KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL`` -> ``security.protocol``); their values
are never logged.
"""

from __future__ import annotations

import logging

import signal
import threading
import time
from datetime import datetime
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence

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
    "TooLarge",
    "message_max_bytes",
    "KafkaDeliveryError",
    "delivery_timeout_s",
    "consumer_options",
    "install_graceful_stop",
    "StoppableKafkaSource",
]

log = structlog.get_logger("dataflows.kafka")


#: librdkafka's own messages (e.g. ``FAIL ... Connection refused`` while a broker is away)
#: go through this stdlib logger, so they are JSON lines like every other log line.
_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


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


def broker_creates_topics(brokers: str, options: Mapping[str, str] | None = None,
                          timeout_s: float = 10.0) -> bool | None:
    """The broker's ``auto.create.topics.enable`` (``None`` when it cannot be read,
    e.g. without the rights to describe broker configs)."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = AdminClient({**client_config(brokers, options), "log_level": "0"})
    try:
        meta = admin.list_topics(timeout=timeout_s)
        broker = str(next(iter(meta.brokers)))
        [future] = admin.describe_configs([ConfigResource(ResourceType.BROKER, broker)]).values()
        entry = future.result(timeout=timeout_s).get("auto.create.topics.enable")
        return None if entry is None else entry.value == "true"
    except Exception:
        return None


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


#: librdkafka's ``message.timeout.ms`` for the output producers, unless
#: ``KAFKA_OPT_MESSAGE_TIMEOUT_MS`` says otherwise: how long a produced record may wait
#: for the broker (through a broker restart, a leader election, an outage) before it
#: counts as not delivered and the run fails. librdkafka's own default is 5 minutes.
DELIVERY_TIMEOUT_MS = 120_000
#: While a batch waits for the broker, ``kafka_delivery_waiting`` is logged this often.
WAIT_LOG_S = 5.0
#: Extra wait after ``message.timeout.ms``, for librdkafka's own timeout callbacks.
_MARGIN_S = 5.0

_HINTS = {
    "MSG_SIZE_TOO_LARGE": "a record is larger than the topic's max.message.bytes (or librdkafka's "
                          "message.max.bytes): raise the limit",
    "UNKNOWN_TOPIC_OR_PART": "no such topic and the broker does not create topics: create it",
    "_UNKNOWN_TOPIC": "no such topic and the broker does not create topics: create it",
    "_MSG_TIMED_OUT": "no broker took them within message.timeout.ms: is the broker up?",
    "_UNKNOWN_PARTITION": "the topic was deleted (or re-created with fewer partitions): re-create it",
    "TOPIC_AUTHORIZATION_FAILED": "the client may not write to the topic: check the ACLs / credentials",
}


def _text(key: Any) -> Any:
    return key.decode(errors="replace") if isinstance(key, bytes) else key


class KafkaDeliveryError(RuntimeError):
    """Output records the broker refused, or did not take within ``message.timeout.ms``.
    The run stops (non-zero exit); restarted with recovery, it produces them again."""


def delivery_timeout_s(options: Mapping[str, str] | None = None) -> float:
    """Seconds a produced record may wait for the broker: ``message.timeout.ms`` (alias
    ``delivery.timeout.ms``) from ``options``, else :data:`DELIVERY_TIMEOUT_MS`; ``0``
    (librdkafka: no limit) is infinity.

    >>> delivery_timeout_s(), delivery_timeout_s({"message.timeout.ms": "10000"})
    (120.0, 10.0)
    """
    opts = options or {}
    for name in ("message.timeout.ms", "delivery.timeout.ms"):
        if name in opts:
            ms = int(opts[name])
            return float("inf") if ms == 0 else ms / 1000
    return DELIVERY_TIMEOUT_MS / 1000


def _reason(err: Any) -> tuple[str, str]:
    """``(code name, "text (CODE)")`` of a librdkafka error (or anything else)."""
    if isinstance(err, KafkaException) and err.args:
        err = err.args[0]
    if hasattr(err, "name") and hasattr(err, "str"):
        return err.name(), f"{err.str()} ({err.name()})"
    return type(err).__name__, str(err)


#: ``too_large(message, size, limit)`` of :class:`ReliableKafkaSink`: what to produce in
#: place of a record over the producer's ``message.max.bytes``, as ``(topic, message)``,
#: or ``None`` to produce nothing (the record is accounted for elsewhere).
TooLarge = Callable[[KafkaSinkMessage, int, int], Optional[tuple[str, KafkaSinkMessage]]]


def message_max_bytes(options: Mapping[str, str] | None = None) -> int:
    """The producer's ``message.max.bytes`` in ``options`` (``KAFKA_OPT_MESSAGE_MAX_BYTES``),
    else librdkafka's default.

    >>> message_max_bytes(), message_max_bytes({"message.max.bytes": "4194304"})
    (1000000, 4194304)
    """
    return int((options or {}).get("message.max.bytes", 1_000_000))


class _ReliablePartition(StatelessSinkPartition[KafkaSinkMessage]):
    def __init__(self, producer: Producer, topic: str, timeout_s: float,
                 too_large: TooLarge | None = None, max_bytes: int = 1_000_000) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s
        self._too_large = too_large
        self._max_bytes = max_bytes
        # (librdkafka error, message key, value size, topic) of each message not delivered
        self._failures: list[tuple[Any, Optional[bytes], int, str]] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failures.append((err, msg.key(), len(msg.value() or b""), msg.topic() or self._topic))

    def _fail(self, err: Any, count: int, failed: list[tuple[Any, Optional[bytes], int, str]]) -> None:
        """Log one ``kafka_delivery_failed`` error line naming the topic (the one the
        first failed record was for: a replacement may go to another) and the
        librdkafka error, drop what is still queued (so the process exits at once
        instead of waiting for a broker) and raise :class:`KafkaDeliveryError`."""
        topic = failed[0][3] if failed else self._topic
        code, reason = _reason(err)
        hint = _HINTS.get(code, "")
        keys = {}
        if failed:  # the first record not delivered, and the largest (the culprit when too large)
            largest = max(failed, key=lambda f: f[2])
            keys = {"first_key": _text(failed[0][1]), "largest_key": _text(largest[1]), "largest_bytes": largest[2]}
        log.error("kafka_delivery_failed", topic=topic, error=reason, messages=count, **keys,
                  hint=hint, detail="the run stops; restarted with recovery it produces these records again")
        try:
            self._producer.purge()
            self._producer.flush(0)
        except Exception:  # pragma: no cover - best effort
            pass
        self._failures = []
        raise KafkaDeliveryError(f"Kafka topic {topic!r}: {count} messages not delivered: {reason}"
                                 + (f"; {hint}" if hint else ""))

    def _produce(self, m: KafkaSinkMessage, topic: str | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic or self._topic, value=m.value, key=m.key, headers=m.headers or None,
                                       on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)
            except KafkaException as exc:  # refused locally, e.g. larger than message.max.bytes
                if topic is None and self._too_large is not None and _reason(exc)[0] == "MSG_SIZE_TOO_LARGE":
                    self._divert(m)
                    return
                self._fail(exc, 1, [(exc, m.key, len(m.value or b""), topic or self._topic)])

    def _divert(self, m: KafkaSinkMessage) -> None:
        """A record over ``message.max.bytes``: what ``too_large`` says instead, logged."""
        size = len(m.value or b"") + len(m.key or b"")  # librdkafka adds some overhead to this
        assert self._too_large is not None
        instead = self._too_large(m, size, self._max_bytes)
        log.warning("kafka_record_too_large", topic=self._topic, key=_text(m.key), bytes=size,
                    limit=self._max_bytes, instead=instead[0] if instead else None,
                    hint="raise KAFKA_OPT_MESSAGE_MAX_BYTES (and the topics' max.message.bytes)")
        if instead is not None:
            self._produce(instead[1], instead[0])

    def _wait(self) -> None:
        """Until every produced message is delivered or failed; fails at the first
        failure, or ``message.timeout.ms`` (+ a margin) after the wait began."""
        t0 = time.monotonic()
        limit = self._timeout_s + _MARGIN_S
        waiting = False
        while True:
            remaining = self._producer.flush(min(WAIT_LOG_S, max(limit - (time.monotonic() - t0), 0.0)))
            if self._failures:
                self._fail(self._failures[0][0], len(self._failures) + remaining, self._failures)
            if remaining == 0:
                break
            waited = time.monotonic() - t0
            if waited >= limit:
                self._fail(f"not delivered within message.timeout.ms + {_MARGIN_S:g}s = {limit:g}s",
                           remaining, [])
            waiting = True
            log.warning("kafka_delivery_waiting", topic=self._topic, undelivered=remaining,
                        waited_s=round(waited, 1), timeout_s=self._timeout_s)
        if waiting:
            log.info("kafka_delivery_resumed", topic=self._topic, waited_s=round(time.monotonic() - t0, 1))

    @override
    def write_batch(self, items: List[KafkaSinkMessage]) -> None:
        for m in items:
            self._produce(m)
            self._producer.poll(0)
        self._wait()

    @override
    def close(self) -> None:
        self._wait()  # write_batch left nothing behind; fails loudly rather than drop if it did


class ReliableKafkaSink(DynamicSink[KafkaSinkMessage]):
    """One topic; every worker produces its own items; a batch returns only once every
    record is delivered. A record the broker refuses (too large, no such topic, not
    authorized) or does not take within ``message.timeout.ms`` (``KAFKA_OPT_MESSAGE_TIMEOUT_MS``,
    default :data:`DELIVERY_TIMEOUT_MS`) stops the run with :class:`KafkaDeliveryError`,
    after one ``kafka_delivery_failed`` error log line naming the topic and the
    librdkafka error; nothing is dropped silently. While the broker is away, each worker
    waits (its input is not read meanwhile) and logs ``kafka_delivery_waiting``.

    With ``too_large``, a record larger than the producer's ``message.max.bytes``
    (known before it is sent) is not a failure: ``too_large(message, size, limit)``
    gives what to produce instead (e.g. a dead letter) or ``None``, and one
    ``kafka_record_too_large`` warning names the record. The topic's own
    ``max.message.bytes`` is checked by the broker after compression; a record it
    refuses still stops the run."""

    def __init__(self, brokers: str, topic: str, options: Mapping[str, str] | None = None,
                 too_large: TooLarge | None = None) -> None:
        self._brokers = brokers
        self._options = dict(options or {})
        self._topic = topic
        self._too_large = too_large

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReliablePartition:
        producer = Producer({
            "linger.ms": "5",
            "compression.type": "lz4",
            "enable.idempotence": "true",
            "message.timeout.ms": str(DELIVERY_TIMEOUT_MS),
            **client_config(self._brokers, self._options),
            "logger": _LIBRDKAFKA_LOG,
        })
        return _ReliablePartition(producer, self._topic, delivery_timeout_s(self._options), self._too_large,
                                  message_max_bytes(self._options))
