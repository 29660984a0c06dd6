"""Outputs of the flows: JSON Lines files (the embedded default) or Kafka topics.

A flow writes three outputs, ``scored``, ``alerts`` and ``dead_letter``: files
``<SCORING_OUTPUT_DIR>/<kind>.jsonl`` or the configured topics. Kafka messages
are keyed by the event's id so consumers can de-duplicate replays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from typing_extensions import override

from dataflows.config import IOConfig
from dataflows.metrics import METRICS
from features.formats import to_json_line
from features.records import MAX_RAW_CHARS, DeadLetter, dead_letter
from models.inference_log import FILE_PATTERN, LogSpec, LogWriter, log_row

__all__ = ["KINDS", "output_files", "JsonLinesSink", "write", "InferenceLogSink", "log_inference"]

#: The outputs of every flow.
KINDS = ("scored", "alerts", "dead_letter")


def output_files(out_dir: Path) -> dict[str, Path]:
    """The file of each output kind in ``out_dir``."""
    return {kind: out_dir / f"{kind}.jsonl" for kind in KINDS}


class _JsonLinesPartition(StatefulSinkPartition[bytes, int]):
    def __init__(self, path: Path, resume: Optional[int]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab")
        self._f.seek(resume or 0)
        self._f.truncate()  # a restart drops what was written after the last snapshot

    @override
    def write_batch(self, values: List[bytes]) -> None:
        self._f.write(b"".join(values))
        self._f.flush()

    @override
    def snapshot(self) -> int:
        return self._f.tell()

    @override
    def close(self) -> None:
        self._f.close()


class JsonLinesSink(FixedPartitionedSink[bytes, int]):
    """One JSON Lines file, written by the worker that owns it; its folder is
    created when the sink starts (never at import). Its size is its recovery
    state, so a restart truncates what came after the last snapshot."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    @override
    def list_parts(self) -> List[str]:
        return [str(self._path)]

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _JsonLinesPartition:
        return _JsonLinesPartition(self._path, resume_state)


@operator
def write(
    step_id: str,
    up: Stream[Any],
    io: IOConfig,
    kind: str,
    key: Callable[[Any], str],
) -> None:
    """Write records (dicts or :class:`~features.records.DeadLetter`) to the
    ``kind`` output the configuration names, counting each in the metrics.

    ``key(record)`` is the Kafka message key (the event's id).
    """
    flow_id = up.stream_id.split(".", 1)[0]

    def as_dict(r: Any) -> Any:
        return r.to_dict() if isinstance(r, DeadLetter) else r

    def observe(_step: str, r: Any) -> None:
        METRICS.observe(flow_id, kind, as_dict(r))

    up = op.inspect("metrics", up, observe)
    if io.output == "kafka":
        from bytewax.connectors.kafka import KafkaSinkMessage

        from dataflows.kafka import ReliableKafkaSink

        k = io.kafka
        topic = {"scored": k.scored_topic, "alerts": k.alerts_topic, "dead_letter": k.dead_letter_topic}[kind]
        msgs = op.map("to_message", up, lambda r: KafkaSinkMessage(key(r).encode(), to_json_line(as_dict(r))))
        op.output("out", msgs, ReliableKafkaSink(k.bootstrap_servers, topic, k.options,
                                                 too_large=too_large(kind, topic, k.dead_letter_topic, flow_id)))
    else:
        lines = op.map("to_json", up, lambda r: (kind, to_json_line(as_dict(r)) + b"\n"))
        op.output("out", lines, JsonLinesSink(output_files(io.output_dir)[kind]))


def too_large(kind: str, topic: str, dead_letter_topic: str, flow: str = "") -> Callable[[Any, int, int], Any]:
    """What the ``kind`` Kafka output produces in place of a record over the producer's
    ``message.max.bytes`` (see :class:`dataflows.kafka.ReliableKafkaSink`), so that one
    huge event never stops the flow and still ends in exactly one output:

    - scored: a dead letter (step ``scored_out``) naming the size and the limit, with
      the record cut to :data:`~features.records.MAX_RAW_CHARS` as ``raw``;
    - alerts: nothing (an alert is its scored record, which became that dead letter);
    - dead_letter: the same dead letter with ``raw`` cut the same way.

    Each is counted in ``scoring_records_too_large_total{flow, output, instead}``.

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
        return dead_letter_topic, KafkaSinkMessage(m.key, to_json_line(letter))

    return instead


class _LogPartition(StatefulSinkPartition[dict, Any]):
    def __init__(self, writer: LogWriter) -> None:
        self._writer = writer

    @override
    def write_batch(self, values: List[dict]) -> None:
        self._writer.write(values)

    @override
    def snapshot(self) -> Any:
        return self._writer.snapshot()

    @override
    def close(self) -> None:
        self._writer.close()


class InferenceLogSink(FixedPartitionedSink[dict, Any]):
    """The inference log (:mod:`models.inference_log`): ``parts`` partitions, each
    written by the worker that owns it as its own Parquet files; keys (the entity)
    spread rows over the partitions. A partition's recovery state is its run id and
    next file number, so a restart deletes the files written after the snapshot."""

    def __init__(self, root: Path, spec: LogSpec, parts: int = 1, max_rows: int = 100_000,
                 flush_s: float = 10.0) -> None:
        self._root, self._spec, self._parts = Path(root), spec, max(1, int(parts))
        self._max_rows, self._flush_s = max_rows, flush_s

    def _run_id(self) -> str | None:
        """The run id with recovery on (stable: from the recovery folder), else None."""
        import hashlib

        from dataflows.checks import recovery_directory

        rec = recovery_directory()
        return None if rec is None else hashlib.blake2b(
            f"{Path(rec).resolve()}|{self._spec.flow}".encode(), digest_size=6).hexdigest()

    @override
    def list_parts(self) -> List[str]:
        # A recovered run keeps every partition it ever wrote, even when resumed on fewer
        # workers: each one's resume state then deletes the files it wrote after the
        # snapshot (else those rows would be in the log twice).
        parts, run = self._parts, self._run_id()
        if run is not None:
            for path in self._root.glob(f"date=*/{self._spec.flow}-{run}-p*"):
                m = FILE_PATTERN.match(path.name)
                if m and m["run"] == run:
                    parts = max(parts, int(m["part"]) + 1)
        return [f"{self._spec.flow}-log-{i}" for i in range(parts)]

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: Optional[Any]) -> _LogPartition:
        part = int(for_part.rsplit("-", 1)[1])
        resume = None if resume_state is None else (str(resume_state[0]), int(resume_state[1]))
        return _LogPartition(LogWriter(self._root, self._spec, part, self._max_rows, self._flush_s, resume,
                                       self._run_id()))


@operator
def log_inference(step_id: str, up: Stream[dict], root: Path, spec: LogSpec, parts: int = 1,
                  max_rows: int = 100_000, flush_s: float = 10.0) -> None:
    """Write every scored record's log row (:func:`models.inference_log.log_row`) to
    the inference log under ``root``, keyed by the record's entity key.

    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSource, run_main
    >>> import tempfile, pyarrow.dataset as ds
    >>> root, flow = Path(tempfile.mkdtemp()), Dataflow("doc")
    >>> spec = LogSpec("doc", "id", "user", scores=("score",))
    >>> recs = [{"id": f"e{i}", "user": f"u{i % 3}", "score": i / 10, "scored_at": "2026-11-26T10:00:00Z"}
    ...         for i in range(6)]
    >>> log_inference("log", op.input("in", flow, TestingSource(recs)), root, spec, parts=2)
    >>> run_main(flow)
    >>> sorted(ds.dataset(root, format="parquet", partitioning="hive").to_table()["event_id"].to_pylist())
    ['e0', 'e1', 'e2', 'e3', 'e4', 'e5']
    """
    key_field = spec.key_field
    rows = op.map("row", up, lambda r: (str(r.get(key_field)), log_row(r, spec)))
    op.output("out", rows, InferenceLogSink(root, spec, parts, max_rows, flush_s))
