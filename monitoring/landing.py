"""Land a Kafka scored topic in the inference log's Parquet layout.

With Kafka outputs the scored topic is the inference log; this copies it into the
same files the embedded default writes (:mod:`models.inference_log`), so the same
queries, ``streamscore monitor`` and the HTML report work on it::

    streamscore log land --flow fraud --topic scored-transactions --to output/fraud/inference_log

It reads with a consumer group (``--group``, default ``streamscore-land-<flow>``) and
commits the offsets after each Parquet file is written: a restart continues where the
last file ended. Delivery is at-least-once: a crash between writing a file and
committing its offsets lands those rows again in the next file (``event_id`` tells
them apart: ``SELECT DISTINCT ON (event_id) ...``). By default it stops at the end of
the topic as it was when each partition was assigned (its high-watermark then), even
while producers keep writing; ``--follow`` keeps reading. Several landers in one group
share the partitions.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import orjson
import structlog

from models.inference_log import LogSpec, LogWriter, log_row

__all__ = ["land"]

log = structlog.get_logger(__name__)


def land(
    brokers: str,
    topic: str,
    root: Path,
    spec: LogSpec,
    group: str,
    *,
    options: Mapping[str, str] | None = None,
    follow: bool = False,
    max_rows: int = 100_000,
    stall_s: float = 60.0,
) -> dict[str, int]:
    """Copy ``topic``'s scored records into the log under ``root``; returns counts
    (``rows``, ``skipped``: messages that are not scored records, ``files``).

    Without ``follow`` it stops once every assigned partition is read up to its
    high-watermark at assignment, or after ``stall_s`` with no partition assigned (the
    group's other landers hold them all); with partitions not at their end and nothing
    read for ``stall_s``, it stops with an error naming them. Partitions taken away by a
    rebalance get their rows written and offsets committed first."""
    from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException

    consumer = Consumer({
        **(options or {}),
        "bootstrap.servers": brokers,
        "group.id": group,
        "enable.auto.commit": "false",
        "auto.offset.reset": "earliest",
        "logger": logging.getLogger("librdkafka"),  # its lines as JSON log lines (settings.logs)
    })
    writer = LogWriter(root, spec, part=0, max_rows=max_rows, flush_s=1e9)
    rows = skipped = 0
    files_before = writer.seq
    pending = 0
    # partition -> offset to read up to (its high-watermark when assigned) and the next
    # offset still to read; a partition is done when next >= end
    ends: dict[int, int] = {}
    next_: dict[int, int] = {}

    def commit_pending(c: Any) -> None:
        """Write the rows read so far, then commit their offsets (never the other way)."""
        nonlocal pending
        if not pending:
            return
        writer.flush()
        try:
            c.commit(asynchronous=False)
        except KafkaException as exc:  # nothing of ours left to commit (e.g. just revoked)
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                raise
        pending = 0

    def on_assign(c: Any, parts: list) -> None:
        committed = {tp.partition: tp.offset for tp in c.committed(parts, timeout=30)}
        for tp in parts:
            low, high = c.get_watermark_offsets(tp, timeout=30)
            ends[tp.partition] = high
            start = committed.get(tp.partition, OFFSET_INVALID)
            # below the low watermark (retention removed them), reading starts at low
            next_[tp.partition] = max(start, low) if start >= 0 else low

    def on_revoke(c: Any, parts: list) -> None:
        # another lander of the group takes these partitions: commit what was read of
        # them first, or it would land those rows again (not when closing: after an
        # error nothing more is committed)
        if not closing:
            commit_pending(c)
        for tp in parts:
            ends.pop(tp.partition, None)
            next_.pop(tp.partition, None)

    def at_end() -> bool:
        return bool(ends) and all(next_[p] >= end for p, end in ends.items())

    last_progress = time.monotonic()
    failed, closing = True, False
    try:
        meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if meta is None or meta.error is not None:
            raise RuntimeError(f"Kafka topic {topic!r} cannot be read: "
                               f"{meta.error.str() if meta is not None and meta.error else 'no such topic'}")
        consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        while True:
            if not follow and at_end():
                break
            msgs = consumer.consume(1000, timeout=0.5)
            if not msgs:
                commit_pending(consumer)
                # the fetch position also passes what no message shows (transaction
                # markers, compacted-away offsets)
                for tp in consumer.position(consumer.assignment()) if ends else ():
                    if tp.partition in next_ and tp.offset >= 0:
                        next_[tp.partition] = max(next_[tp.partition], tp.offset)
                if not follow and time.monotonic() - last_progress > stall_s:
                    if not ends:  # more landers than partitions: the others have them all
                        log.warning("land_no_partitions", topic=topic, group=group, waited_s=stall_s,
                                    detail="the group's other landers hold every partition")
                        break
                    raise RuntimeError(
                        f"Kafka topic {topic!r}: nothing read for {stall_s:g}s and partitions "
                        f"{sorted(p for p in ends if next_[p] < ends[p])} not at their end")
                continue
            last_progress = time.monotonic()
            batch = []
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
                if m.partition() in next_:
                    next_[m.partition()] = max(next_[m.partition()], m.offset() + 1)
                try:
                    rec: Any = orjson.loads(m.value())
                except orjson.JSONDecodeError:
                    skipped += 1
                    continue
                if not isinstance(rec, dict) or rec.get("kind") == "drift" or spec.id_field not in rec:
                    skipped += 1
                    continue
                batch.append(log_row(rec, spec))
            writer.write(batch)
            rows += len(batch)
            pending += len(msgs)
            if pending >= max_rows:
                commit_pending(consumer)
        failed = False
    finally:
        # Offsets are committed only after their rows are written: on an error (or Ctrl-C)
        # mid-batch nothing more is committed, so the next landing reads that batch again.
        if not failed:
            commit_pending(consumer)
        closing = True
        consumer.close()
    out = {"rows": rows, "skipped": skipped, "files": writer.seq - files_before}
    log.info("landed", topic=topic, root=str(root), **out)
    return out
