"""The inference log as a Bytewax sink: one log partition per worker, each a
:class:`~models.inference_log.LogWriter` whose snapshot lets a resumed run drop the rows
written after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from typing_extensions import override

from dataflows.placement import recovery_directory, without_recovery
from features.keyhash import key_hash, routing_key
from features.records import RecordBatch
from models.inference_log import FILE_PATTERN, LogSpec, LogWriter, log_row

__all__ = ["InferenceLogSink", "log_inference"]


class _LogPartition(StatefulSinkPartition[Any, Any]):
    def __init__(self, writer: LogWriter) -> None:
        self._writer = writer

    @override
    def write_batch(self, values: List[Any]) -> None:
        rows = [v for v in values if type(v) is tuple]
        if rows:
            self._writer.write(rows)
        for v in values:
            if type(v) is not tuple:  # a batch's Arrow table
                self._writer.write_table(v)

    @override
    def snapshot(self) -> Any:
        return self._writer.snapshot()

    @override
    def close(self) -> None:
        self._writer.close()


class InferenceLogSink(FixedPartitionedSink[dict, Any]):
    """The inference log (:mod:`models.inference_log`): ``parts`` partitions, each
    written by the worker that owns it as its own Parquet files; keys (the entity)
    spread rows over the partitions, each row to a partition of the worker that holds
    its key (:meth:`part_fn`), when ``parts`` is a multiple of the worker count. A partition's recovery state is its run id and
    next file number, so a restart deletes the files written after the snapshot."""

    def __init__(self, root: Path, spec: LogSpec, parts: int = 1, max_rows: int = 100_000,
                 flush_s: float = 10.0) -> None:
        self._root, self._spec, self._parts = Path(root), spec, max(1, int(parts))
        self._max_rows, self._flush_s = max_rows, flush_s

    def _run_id(self) -> str | None:
        """The run id with recovery on (stable: from the recovery folder), else None."""
        import hashlib

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
    def part_fn(self, item_key: str) -> int:
        # Bytewax writes a row to partition ``part_fn(key) % len(parts)`` of the sorted
        # partition names, and the partition at sorted position j lives on worker
        # j % workers. With the key's own routing hash (SipHash, as Bytewax routes the
        # key's stateful steps) and as many partitions as workers (or a multiple), a row is
        # written by the worker that scored it: it never crosses to another process.
        # (Bytewax's default, adler32, sent half of the rows to the other process.)
        return key_hash(item_key)

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: Optional[Any]) -> _LogPartition:
        part = int(for_part.rsplit("-", 1)[1])
        resume = None if resume_state is None else (str(resume_state[0]), int(resume_state[1]))
        # background: the worker does not wait for Parquet and the disk, but at a snapshot of a
        # run that may have recovery (models.inference_log.LogWriter)
        return _LogPartition(LogWriter(self._root, self._spec, part, self._max_rows, self._flush_s, resume,
                                       self._run_id(), background=True, snapshot_waits=not without_recovery()))


@operator
def log_inference(step_id: str, up: Stream[dict], root: Path, spec: LogSpec, parts: int = 1,
                  max_rows: int = 100_000, flush_s: float = 10.0) -> None:
    """Write every scored record's log row (:func:`models.inference_log.log_row`) to
    the inference log under ``root``, keyed by the record's entity key. A
    :class:`~features.records.RecordBatch` item goes as one Arrow table
    (its ``log_table(spec)``), keyed by its entity
    (:meth:`~features.records.RecordBatch.entity`): it stays on the worker that scored it.

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

    def row(r: Any) -> tuple[str, Any]:
        if isinstance(r, RecordBatch):
            return routing_key(r.entity()), r.log_table(spec)  # stays on the worker that scored it
        return routing_key(str(r.get(key_field))), log_row(r, spec)

    rows = op.map("row", up, row)
    op.output("out", rows, InferenceLogSink(root, spec, parts, max_rows, flush_s))
