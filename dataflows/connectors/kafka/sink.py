"""The Kafka output: a sink that waits out broker outages up to ``message.timeout.ms``,
turns records over the size limit into dead letters, and stops loudly on refusals."""

from __future__ import annotations

import time
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

import structlog
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaException, Producer
from typing_extensions import override

from dataflows.connectors.kafka.admin import _LIBRDKAFKA_LOG, client_config

__all__ = ["ReliableKafkaSink", "TooLarge", "message_max_bytes", "KafkaDeliveryError", "delivery_timeout_s",
           "warm_producer", "WARM_TIMEOUT_S", "Messages"]

log = structlog.get_logger("dataflows.connectors.kafka")




#: librdkafka's ``message.timeout.ms`` for the output producers, unless
#: ``KAFKA_OPT_MESSAGE_TIMEOUT_MS`` says otherwise: how long a produced record may wait
#: for the broker (through a broker restart, a leader election, an outage) before it
#: counts as not delivered and the run fails. librdkafka's own default is 5 minutes.
DELIVERY_TIMEOUT_MS = 120_000
#: While a batch waits for the broker, ``kafka_delivery_waiting`` is logged this often.
WAIT_LOG_S = 5.0
#: Extra wait after ``message.timeout.ms``, for librdkafka's own timeout callbacks.
_MARGIN_S = 5.0
#: At most this long at start-up for an output producer to know its topic (:func:`warm_producer`).
WARM_TIMEOUT_S = 2.0

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


def warm_producer(producer: Producer, topic: str, timeout_s: float = WARM_TIMEOUT_S) -> bool:
    """Ask for ``topic``'s metadata before the first record, until its partitions are known
    (at most ``timeout_s``): the producer connects now, and a broker that creates topics on
    first use (``auto.create.topics.enable``) creates the topic now. Otherwise the first
    record to a topic the broker has yet to create waits about 100 ms for it, on the
    worker's thread, with every event behind it (the first alert of a run, often after the
    warm-up of a live run: ``docs/benchmarks.md``). Returns whether the partitions are
    known; if not (no broker yet), logs ``kafka_output_not_ready`` and the first record
    waits as it would have.
    """
    deadline = time.monotonic() + timeout_s
    error = "no partitions yet"
    while True:
        try:
            meta = producer.list_topics(topic, timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            t = meta.topics.get(topic)
            if t is not None and t.error is None and t.partitions:
                return True
            if t is not None and t.error is not None:
                error = str(t.error)
        except KafkaException as exc:
            error = str(exc)
        if time.monotonic() >= deadline:
            log.warning("kafka_output_not_ready", topic=topic, waited_s=timeout_s, error=error[:300],
                        detail="the first record to this topic waits for the broker (and for the topic "
                               "to be created, when the broker creates topics)")
            return False
        time.sleep(0.02)


def _failure_recorder(failures: list[tuple[Any, Optional[bytes], int, str]],
                      topic: str) -> Callable[[Any, Any], None]:
    """The producer's delivery callback: each message not delivered, as ``(error, key, value
    size, topic)``, onto ``failures`` (the partition fails the batch on them)."""
    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append((err, msg.key(), len(msg.value() or b""), msg.topic() or topic))

    return on_delivery


#: What a Kafka sink writes: one message, or a batch's messages as ``(key, value)`` pairs
#: (one item for a whole scored batch: no object per message on the way to the producer).
Messages = Union[KafkaSinkMessage, List[Tuple[Optional[bytes], bytes]]]


class _ReliablePartition(StatelessSinkPartition[Messages]):
    def __init__(self, producer: Producer, topic: str, timeout_s: float,
                 too_large: TooLarge | None = None, max_bytes: int = 1_000_000,
                 failures: list[tuple[Any, Optional[bytes], int, str]] | None = None) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s
        self._too_large = too_large
        self._max_bytes = max_bytes
        # (librdkafka error, message key, value size, topic) of each message not delivered: the
        # producer's delivery callback (:func:`_failure_recorder`) appends them
        self._failures: list[tuple[Any, Optional[bytes], int, str]] = [] if failures is None else failures

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
        self._failures.clear()  # the producer's delivery callback holds this list
        raise KafkaDeliveryError(f"Kafka topic {topic!r}: {count} messages not delivered: {reason}"
                                 + (f"; {hint}" if hint else ""))

    def _produce(self, m: KafkaSinkMessage, topic: str | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic or self._topic, value=m.value, key=m.key, headers=m.headers or None)
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
    def write_batch(self, items: List[Messages]) -> None:
        producer = self._producer
        produce, topic = producer.produce, self._topic
        for item in items:
            if type(item) is list:  # a batch's (key, value) pairs: produced as they are
                for key, value in item:
                    try:
                        produce(topic, value, key)
                    except (BufferError, KafkaException):  # queue full, too large: the careful path
                        self._produce(KafkaSinkMessage(key, value))
            else:
                self._produce(item)
            producer.poll(0)
        self._wait()

    @override
    def close(self) -> None:
        self._wait()  # write_batch left nothing behind; fails loudly rather than drop if it did


class ReliableKafkaSink(DynamicSink[Messages]):
    """One topic; every worker produces its own items (a ``KafkaSinkMessage``, or a scored
    batch's messages as one list of ``(key, value)`` pairs); a batch returns only once every
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
    refuses still stops the run.

    Each worker's producer asks for its topic when built (:func:`warm_producer`), so the
    first batch waits neither for the connection nor for the broker to create the topic."""

    def __init__(self, brokers: str, topic: str, options: Mapping[str, str] | None = None,
                 too_large: TooLarge | None = None) -> None:
        self._brokers = brokers
        self._options = dict(options or {})
        self._topic = topic
        self._too_large = too_large

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReliablePartition:
        failures: list[tuple[Any, Optional[bytes], int, str]] = []
        producer = Producer({
            "linger.ms": "5",
            "compression.type": "lz4",
            "enable.idempotence": "true",
            "message.timeout.ms": str(DELIVERY_TIMEOUT_MS),
            **client_config(self._brokers, self._options),
            "logger": _LIBRDKAFKA_LOG,
            # only failures are reported, to one callback: none per delivered message (the
            # wait for delivery is flush(), which counts what is still in flight)
            "on_delivery": _failure_recorder(failures, self._topic),
            "delivery.report.only.error": True,
        })
        # connected, and the topic created if the broker creates topics, before the first batch
        warm_producer(producer, self._topic, min(WARM_TIMEOUT_S, delivery_timeout_s(self._options)))
        return _ReliablePartition(producer, self._topic, delivery_timeout_s(self._options), self._too_large,
                                  message_max_bytes(self._options), failures)
