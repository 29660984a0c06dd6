"""Sources and sinks, chosen by configuration rather than by editing a flow.

Sources emit raw events: JSON text (JSON Lines files, Kafka values) or dicts
(CSV rows, Parquet rows, generated events); validation turns them into events
or dead letters. Sinks take records (dicts) and write them as JSON Lines files
(``scored.jsonl``, ``alerts.jsonl``, ``dead_letter.jsonl`` under the output
folder) or Kafka topics.

Every file source is resumable (its position is its recovery state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional

import orjson
from bytewax.connectors.files import CSVSource, FileSink, FileSource
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import Sink
from typing_extensions import override

from dataflows.config import ConfigError, IOConfig

__all__ = ["IterableSource", "ParquetSource", "JsonLinesSink", "make_source", "make_sink", "to_json"]


class _IterablePartition(StatefulSourcePartition[Any, int]):
    def __init__(self, make_iter: Callable[[], Iterable[Any]], batch_size: int, resume: Optional[int]) -> None:
        self._it: Iterator[Any] = iter(make_iter())
        self._offset = resume or 0
        for _ in range(self._offset):  # skip what was already emitted before a restart
            next(self._it, None)
        self._batch_size = batch_size

    @override
    def next_batch(self) -> List[Any]:
        batch = []
        for item in self._it:
            batch.append(item)
            if len(batch) >= self._batch_size:
                break
        if not batch:
            raise StopIteration()
        self._offset += len(batch)
        return batch

    @override
    def snapshot(self) -> int:
        return self._offset


class IterableSource(FixedPartitionedSource[Any, int]):
    """One partition replaying a deterministic iterable, built lazily on the worker.

    ``make_iter`` is called when the partition is built (never at import), and
    must yield the same items on every call so a restart can skip ahead.

    >>> from bytewax.dataflow import Dataflow
    >>> import bytewax.operators as op
    >>> from bytewax.testing import TestingSink, run_main
    >>> flow, out = Dataflow("doc"), []
    >>> op.output("out", op.input("in", flow, IterableSource("nums", lambda: range(5), 2)), TestingSink(out))
    >>> run_main(flow); out
    [0, 1, 2, 3, 4]
    """

    def __init__(self, name: str, make_iter: Callable[[], Iterable[Any]], batch_size: int = 1000) -> None:
        self._name = name
        self._make_iter = make_iter
        self._batch_size = batch_size

    @override
    def list_parts(self) -> List[str]:
        return [self._name]

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _IterablePartition:
        return _IterablePartition(self._make_iter, self._batch_size, resume_state)


def _parquet_rows(path: Path, batch_size: int) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()


class ParquetSource(IterableSource):
    """Rows of a Parquet file as dicts, read in record batches."""

    def __init__(self, path: Path, batch_size: int = 1000) -> None:
        super().__init__(str(path), lambda: _parquet_rows(path, batch_size), batch_size)


def file_source(path: Path, batch_size: int) -> FixedPartitionedSource:
    """The source for a ``.jsonl``, ``.csv`` or ``.parquet`` file."""
    if not path.is_file():
        raise ConfigError(f"SCORING_INPUT={str(path)!r}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return FileSource(path, batch_size=batch_size)
    if suffix == ".csv":
        return CSVSource(path, batch_size=batch_size)
    if suffix == ".parquet":
        return ParquetSource(path, batch_size)
    raise ConfigError(f"SCORING_INPUT={str(path)!r}: expected a .jsonl, .csv or .parquet file")


def make_source(cfg: IOConfig, generate: Callable[[], Iterable[Any]]) -> FixedPartitionedSource:
    """The input the configuration asks for; ``generate`` backs ``SCORING_SOURCE=generator``."""
    if cfg.source == "generator":
        return IterableSource("generator", generate, cfg.batch_size)
    if cfg.source == "file":
        assert cfg.input_path is not None
        return file_source(cfg.input_path, cfg.batch_size)
    if cfg.source == "kafka":
        from dataflows.kafka import kafka_source

        return kafka_source(cfg)
    raise ConfigError(f"SCORING_SOURCE={cfg.source!r}: unknown source")


class JsonLinesSink(FileSink):
    """A JSON Lines file; its folder is created when the sink starts (not at import)."""

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]):
        self._path.parent.mkdir(parents=True, exist_ok=True)
        return super().build_part(step_id, for_part, resume_state)


def to_json(record: dict[str, Any]) -> str:
    """One JSON line; NaN and infinities become ``null`` so every line is valid JSON."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def make_sink(cfg: IOConfig, kind: str) -> tuple[Sink, bool]:
    """The sink for ``kind`` (``scored``, ``alerts`` or ``dead_letter``).

    Returns ``(sink, keyed)``: a Kafka sink takes ``(key, json)`` messages, a
    file sink takes JSON text.
    """
    if cfg.output == "file":
        return JsonLinesSink(cfg.output_dir / f"{kind}.jsonl"), False
    if cfg.output == "kafka":
        from dataflows.kafka import kafka_sink

        topic = {
            "scored": cfg.kafka.scored_topic,
            "alerts": cfg.kafka.alerts_topic,
            "dead_letter": cfg.kafka.dead_letter_topic,
        }[kind]
        return kafka_sink(cfg, topic), True
    raise ConfigError(f"SCORING_OUTPUT={cfg.output!r}: unknown output")
