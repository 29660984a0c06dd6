"""Outputs of the flows: JSON Lines files (the embedded default) or Kafka topics.

A flow writes three outputs, ``scored``, ``alerts`` and ``dead_letter``: files
``<io.output_dir>/<kind>.jsonl`` or the configured topics. Kafka messages
are keyed by the event's id so consumers can de-duplicate replays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from dataflows.connectors.files import JsonLinesSink
from dataflows.metrics import METRICS
from features.formats import key_bytes, to_json_line
from features.records import MAX_RAW_CHARS, DeadLetter, RecordBatch, RecordList, dead_letter
from settings.config import IOConfig

__all__ = ["KINDS", "output_files", "write", "too_large"]

#: The outputs of every flow.
KINDS = ("scored", "alerts", "dead_letter")


@operator
def write(
    step_id: str,
    up: Stream[Any],
    io: IOConfig,
    kind: str,
    key: Callable[[Any], str],
    encoder: Callable[[], Callable[[Any], bytes]] | None = None,
    letters: Callable[[], Callable[[Any], bytes]] | None = None,
) -> None:
    """Write records (dicts or :class:`~features.records.DeadLetter`) to the
    ``kind`` output the configuration names, counting each in the metrics.
    A :class:`~features.records.RecordBatch` item stands for its records of ``kind``
    (none, for a batch with no alerts): its JSON lines are written as they are (to a
    file, its :meth:`~features.records.RecordBatch.text` in one write). Each
    upstream batch is counted at once (:meth:`~dataflows.metrics._Metrics.observe_batch`:
    a scored batch from its columns, the single records as a
    :class:`~features.records.RecordList`).

    ``key(record)`` is the Kafka message key (the event's id). With Avro outputs
    (``{flow}.formats.output``), ``encoder()`` builds the record -> bytes function
    (:func:`dataflows.connectors.registry.encoder_of`), once per worker; ``letters()``
    the dead-letter output's, for the dead letter of a record over the size limit
    (:func:`too_large`).
    """
    flow_id = up.stream_id.split(".", 1)[0]

    def as_dict(r: Any) -> Any:
        return r.to_dict() if isinstance(r, DeadLetter) else r

    def observe(batch: list[Any]) -> list[Any]:
        plain = []
        for r in batch:
            if isinstance(r, RecordBatch):  # a scored batch: counted from its columns
                METRICS.observe_batch(flow_id, kind, r)
            else:
                plain.append(r)
        if plain:  # single records (dead letters, drift records): counted as one batch
            METRICS.observe_batch(flow_id, kind, RecordList(plain))
        return batch

    up = op.flat_map_batch("metrics", up, observe)  # counted a batch at a time
    if io.output == "kafka":
        # lazy: pulls confluent_kafka; importing a flow loads no Kafka client (tests/dataflows/test_startup.py)
        from dataflows.connectors.kafka import ReliableKafkaSink

        k = io.kafka
        topic = {"scored": k.scored_topic, "alerts": k.alerts_topic, "dead_letter": k.dead_letter_topic}[kind]
        # one item per scored batch: its messages as (key, value) pairs, straight to the producer
        if k.output_format == "json" or encoder is None:
            def as_json(r: Any) -> list[tuple[bytes, bytes]] | None:
                if isinstance(r, RecordBatch):
                    keys = r.keys(kind)
                    return list(zip(map(key_bytes, keys), r.lines(kind))) if keys else None
                return [(key_bytes(key(r)), to_json_line(as_dict(r)))]

            msgs = op.filter_map("to_message", up, as_json)
        else:
            state: dict[str, Any] = {}

            def framed(r: Any) -> list[tuple[bytes, bytes]] | None:
                if "encode" not in state:
                    state["encode"] = encoder()
                encode = state["encode"]
                if isinstance(r, RecordBatch):
                    keys = r.keys(kind)
                    return [(key_bytes(mk), encode(rec)) for mk, rec in zip(keys, r.output_records(kind))] or None
                return [(key_bytes(key(r)), encode(r))]

            msgs = op.filter_map("to_message", up, framed)
        op.output("out", msgs, ReliableKafkaSink(k.bootstrap_servers, topic, k.options,
                                                 too_large=too_large(kind, topic, k.dead_letter_topic, flow_id,
                                                                     letters if encoder is not None else None)))
    else:
        def as_lines(r: Any) -> tuple[str, bytes] | None:
            if isinstance(r, RecordBatch):
                text = r.text(kind)
                return (kind, text) if text else None
            return kind, to_json_line(as_dict(r)) + b"\n"

        lines = op.filter_map("to_json", up, as_lines)
        op.output("out", lines, JsonLinesSink(output_files(io.output_dir)[kind]))


def too_large(kind: str, topic: str, dead_letter_topic: str, flow: str = "",
              letters: Callable[[], Callable[[Any], bytes]] | None = None) -> Callable[[Any, int, int], Any]:
    """What the ``kind`` Kafka output produces in place of a record over the producer's
    ``message.max.bytes`` (see :class:`dataflows.connectors.kafka.ReliableKafkaSink`), so that one
    huge event never stops the flow and still ends in exactly one output:

    - scored: a dead letter (step ``scored_out``) naming the size and the limit, with
      the record cut to :data:`~features.records.MAX_RAW_CHARS` as ``raw``;
    - alerts: nothing (an alert is its scored record, which became that dead letter);
    - dead_letter: the same dead letter with ``raw`` cut the same way.

    Each is counted in ``scoring_records_too_large_total{flow, output, instead}``.
    The dead letter is JSON, or what ``letters()`` builds (the Avro dead-letter output's encoder).

    >>> from bytewax.connectors.kafka import KafkaSinkMessage
    >>> big = KafkaSinkMessage(b"t1", b'{"transaction_id": "t1", "note": "' + b"x" * 2_000_000 + b'"}')
    >>> to, msg = too_large("scored", "scored-tx", "dead-tx")(big, 2_000_040, 1_000_000)
    >>> import orjson; d = orjson.loads(msg.value)
    >>> to, msg.key, d["step"], d["error"][:59], len(msg.value) < 70_000
    ('dead-tx', b't1', 'scored_out', 'scored record of about 2,000,040 bytes is over the Kafka pr', True)
    >>> too_large("alerts", "alerts-tx", "dead-tx")(big, 2_000_040, 1_000_000) is None
    True
    """
    from bytewax.connectors.kafka import KafkaSinkMessage

    def instead(m: Any, size: int, limit: int) -> Any:
        METRICS.too_large.labels(flow, kind, "none" if kind == "alerts" else "dead_letter").inc()
        if kind == "alerts":
            return None
        if kind == "scored":
            step, error = "scored_out", (
                f"scored record of about {size:,} bytes is over the Kafka producer's message.max.bytes "
                f"({limit:,}), so it cannot go to topic {topic!r}: raise KAFKA_OPT_MESSAGE_MAX_BYTES "
                "(and the topics' max.message.bytes) to deliver events this large")
        else:
            step, error = "dead_letter_out", (
                f"dead letter of about {size:,} bytes is over the Kafka producer's message.max.bytes "
                f"({limit:,}); raw is that dead letter, cut")
        # raw cut so the letter fits under the limit whatever JSON escaping does to it
        # (at most 6 characters per byte), and never longer than a dead letter's usual cut
        letter = dead_letter(m.value, error, step, max_raw=min(MAX_RAW_CHARS, max(limit // 8, 256)))
        if letters is None:
            return dead_letter_topic, KafkaSinkMessage(m.key, to_json_line(letter))
        if "encode" not in state:
            state["encode"] = letters()
        return dead_letter_topic, KafkaSinkMessage(m.key, state["encode"](letter))

    state: dict[str, Any] = {}
    return instead


def output_files(out_dir: Path) -> dict[str, Path]:
    """The file of each output kind in ``out_dir``."""
    return {kind: out_dir / f"{kind}.jsonl" for kind in KINDS}
