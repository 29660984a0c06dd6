"""Land a Kafka scored topic in the inference log's Parquet layout.

With Kafka outputs the scored topic is the inference log; this copies it into the
same files the embedded default writes (:mod:`models.inference_log`), so the same
queries, ``streamscore monitor`` and the HTML report work on it::

    streamscore log land --flow fraud --topic scored-transactions --to output/fraud/inference_log

It reads with a consumer group (``--group``, default ``streamscore-land-<flow>``) and
commits the offsets after each Parquet file is written: a restart continues where the
last file ended. Delivery is at-least-once: a crash between writing a file and
committing its offsets lands those rows again in the next file (``event_id`` tells
them apart: ``SELECT DISTINCT ON (event_id) ...``). With ``--until-end`` (the default)
it stops at the end of the topic; ``--follow`` keeps reading.
"""

from __future__ import annotations

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
    idle_s: float = 5.0,
) -> dict[str, int]:
    """Copy ``topic``'s scored records into the log under ``root``; returns counts
    (``rows``, ``skipped``: messages that are not scored records, ``files``)."""
    from confluent_kafka import Consumer, KafkaException

    consumer = Consumer({
        **(options or {}),
        "bootstrap.servers": brokers,
        "group.id": group,
        "enable.auto.commit": "false",
        "auto.offset.reset": "earliest",
    })
    writer = LogWriter(root, spec, part=0, max_rows=max_rows, flush_s=1e9)
    rows = skipped = 0
    files_before = writer.seq
    pending = 0
    last_message = time.monotonic()
    failed = True
    try:
        consumer.subscribe([topic])
        while True:
            msgs = consumer.consume(1000, timeout=0.5)
            if not msgs:
                if pending:
                    writer.flush()
                    consumer.commit(asynchronous=False)
                    pending = 0
                if not follow and time.monotonic() - last_message > idle_s:
                    break
                continue
            last_message = time.monotonic()
            batch = []
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
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
                writer.flush()
                consumer.commit(asynchronous=False)
                pending = 0
        failed = False
    finally:
        # Offsets are committed only after their rows are written: on an error (or Ctrl-C)
        # mid-batch nothing more is committed, so the next landing reads that batch again.
        if pending and not failed:
            writer.flush()
            consumer.commit(asynchronous=False)
        consumer.close()
    out = {"rows": rows, "skipped": skipped, "files": writer.seq - files_before}
    log.info("landed", topic=topic, root=str(root), **out)
    return out
