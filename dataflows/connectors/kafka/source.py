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
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_STORED, TopicPartition
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


class _Partition(StatefulSourcePartition[Any, Any]):
    """One Kafka partition of the input: Bytewax's, plus

    * a graceful stop (:func:`install_graceful_stop`);
    * its messages unwrapped (:func:`unwrap`), those a resumed run reads below the
      partition's end at the restart marked ``possible_repeat`` (they may have been
      scored before the crash: see :func:`models.status.alert_of`);
    * the consumer group's offset committed (asynchronously, :class:`GroupOffsets`) with
      every snapshot, so lag tools see where the flow is; recovery, not the group, decides
      where a run resumes.
    """

    def __init__(self, inner: Any, topic: str, part: int, resume_state: Optional[int],
                 offsets: Optional["GroupOffsets"] = None, watermark_timeout_s: float = 10.0) -> None:
        self._inner = inner
        self._tp = (topic, part)
        self._offsets = offsets
        self._committed: Optional[int] = None
        self._repeat_until: Optional[int] = None
        if resume_state is not None and resume_state >= 0:
            try:
                _low, high = inner._consumer.get_watermark_offsets(  # Bytewax's consumer (0.21.1)
                    TopicPartition(topic, part), timeout=watermark_timeout_s)
            except Exception as exc:  # e.g. the broker away: the region is unknown
                log.warning("kafka_watermark_unknown", topic=topic, partition=part, error=str(exc)[:200],
                            detail="messages of this partition are not marked as possible repeats")
            else:
                if high > resume_state:
                    self._repeat_until = high

    @override
    def next_batch(self) -> Iterable[Any]:
        if _STOP.is_set():
            raise StopIteration()
        until = self._repeat_until
        batch = [unwrap(m, until) for m in self._inner.next_batch()]
        if until is not None and batch:
            last = batch[-1].offset
            if last is not None and last >= until - 1:
                self._repeat_until = None  # past the replay region: nothing more is marked
        return batch

    @override
    def next_awake(self) -> Optional[datetime]:
        return self._inner.next_awake()

    def _commit(self, offset: Any, wait_s: Optional[float] = None) -> None:
        if self._offsets is None or not isinstance(offset, int) or offset < 0:
            return
        if offset == self._committed and wait_s is None:
            return
        self._offsets.commit(*self._tp, offset, wait_s)
        self._committed = offset

    @override
    def snapshot(self) -> Any:
        offset = self._inner.snapshot()
        self._commit(offset)
        return offset

    @override
    def close(self) -> None:
        self._commit(self._inner.snapshot(), wait_s=5.0)  # the last offsets, waited for (briefly)
        self._inner.close()


class GroupOffsets:
    """Commits consumer group ``group``'s offsets with an admin client, for lag tools.

    The source's consumers never join the group (Bytewax assigns partitions and keeps
    offsets in its recovery store), so the offsets are written as an admin would
    (``alter_consumer_group_offsets``): asynchronously at snapshots, the last one waited
    for at most a few seconds when a partition closes. Nothing waits on the group
    coordinator otherwise, so a broker outage never holds the flow (a consumer's own
    commits would make its ``close()`` wait for the coordinator). A failure is logged
    once (``kafka_commit_failed``) until a commit succeeds again.
    """

    def __init__(self, config: Mapping[str, Any], group: str) -> None:
        self._config = dict(config)
        self._group = group
        self._admin: Any = None
        self._lock = threading.Lock()
        self._failing = False

    def _client(self) -> Any:
        with self._lock:
            if self._admin is None:
                from confluent_kafka.admin import AdminClient

                self._admin = AdminClient(self._config)
            return self._admin

    def _done(self, future: Any) -> None:
        try:
            future.result()
        except Exception as exc:  # lag reporting only: never stop the flow for it
            if not self._failing:
                self._failing = True
                log.warning("kafka_commit_failed", group=self._group, error=str(exc)[:200],
                            detail="the consumer group's offsets (for lag tools) are not up to date; "
                                   "recovery is not affected")
        else:
            self._failing = False

    def commit(self, topic: str, partition: int, offset: int, wait_s: Optional[float] = None) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions

        try:
            futures = self._client().alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(self._group, [TopicPartition(topic, partition, offset)])],
                request_timeout=10)
        except Exception as exc:
            self._done(_Failed(exc))
            return
        [future] = futures.values()
        if wait_s is None:
            future.add_done_callback(self._done)
            return
        try:
            future.result(timeout=wait_s)
        except Exception as exc:
            self._done(_Failed(exc))


class _Failed:
    """A future that failed with ``exc`` (for :meth:`GroupOffsets._done`)."""

    def __init__(self, exc: BaseException) -> None:
        self._exc = exc

    def result(self) -> Any:
        raise self._exc


class StoppableKafkaSource(FixedPartitionedSource[Any, Any]):
    """Bytewax's ``KafkaSource`` with the partitions of :class:`_Partition`."""

    def __init__(self, inner: KafkaSource, offsets: Optional[GroupOffsets] = None) -> None:
        self._inner = inner
        self._offsets = offsets

    @override
    def list_parts(self) -> List[str]:
        return self._inner.list_parts()

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: Optional[Any]) -> _Partition:
        idx, topic = for_part.split("-", 1)
        return _Partition(self._inner.build_part(step_id, for_part, resume_state), topic, int(idx), resume_state,
                          self._offsets)


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

    In every mode the partitions commit ``group``'s offsets at each Bytewax snapshot
    and when they close, so ``kafka-consumer-groups``, kcat and lag exporters see the
    lag. One ``kafka_start`` line says where the run starts: ``resumed from epoch N,
    offsets {...}`` (read from the recovery store) or ``fresh start``.
    """
    resumed = _resume_point(topic)
    log.info("kafka_source", brokers=brokers, topic=topic, tail=tail,
             start="recovered" if resumed is not None and resumed.epoch is not None else start, group=group,
             options={k: "***" for k in (options or {})})
    _log_start(topic, start, resumed)
    if tail:
        install_graceful_stop()
    config: dict[str, Any] = {**consumer_options(options or {}), "logger": _LIBRDKAFKA_LOG}
    offsets = GroupOffsets({**config, "bootstrap.servers": brokers}, group)
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
    ), offsets)


def _resume_point(topic: str) -> Any:
    """The recovery store's resume point for ``topic``'s partitions (``None`` without recovery)."""
    from dataflows.placement import recovery_directory, resume_point

    directory = recovery_directory()
    if directory is None:
        return None
    return resume_point(directory, f"-{topic}")


def _log_start(topic: str, start: str, resumed: Any) -> None:
    """One line saying where this run starts reading: ``resumed from epoch N, offsets
    {partition: offset}`` (recovery), or ``fresh start`` (and from where)."""
    if resumed is None or resumed.epoch is None:
        why = "no recovery store" if resumed is None else "the recovery store holds no run yet"
        log.info("kafka_start", topic=topic, detail=f"fresh start ({why}): reading from {start}")
        return
    offsets = {int(k.split("-", 1)[0]): v for k, v in sorted(resumed.states.items(), key=lambda kv: int(kv[0].split("-", 1)[0]))}
    log.info("kafka_start", topic=topic, epoch=resumed.epoch, offsets=offsets,
             detail=f"resumed from epoch {resumed.epoch}, offsets {offsets}"
                    + (f" (partitions without one start from {start})" if not offsets else ""))


def unwrap(item: Any, repeat_until: Optional[int] = None) -> Raw | DeadLetter:
    """A Kafka source item as a :class:`~features.records.Raw` input (its value,
    topic, partition and offset) or, for a consumer error, a dead letter naming them.
    A message below ``repeat_until`` is marked ``possible_repeat``.

    >>> from bytewax.connectors.kafka import KafkaSourceMessage
    >>> unwrap(KafkaSourceMessage(key=b"k", value=b"{}", topic="tx", partition=1, offset=7))
    Raw(value=b'{}', topic='tx', partition=1, offset=7)
    >>> unwrap(KafkaSourceMessage(key=b"k", value=b"{}", topic="tx", partition=1, offset=7), 8).possible_repeat
    True
    """
    if isinstance(item, KafkaSourceMessage):
        repeat = repeat_until is not None and item.offset is not None and item.offset < repeat_until
        return Raw(item.value, item.topic, item.partition, item.offset, repeat)
    if isinstance(item, KafkaError):
        m = item.msg
        origin = Raw(m.value, m.topic, m.partition, m.offset)
        return dead_letter(m.value, f"Kafka consumer error: {item.err}", "input", origin)
    return Raw(item)
