"""Inputs of the flows, chosen by configuration rather than by editing a flow.

Every input is a stream of *raw* events: JSON text or bytes (JSON Lines files,
Kafka values), or row mappings (CSV, Parquet, the generators). Validation turns
them into typed events or dead letters. Kafka items are unwrapped by their own
step (:func:`dataflows.kafka.unwrap`) into :class:`~features.records.Raw`
inputs that remember their topic, partition and offset.

Every file and generator source is resumable: its position (inputs emitted) is
its recovery state, so a restart with recovery skips what was already read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override

from dataflows.config import IOConfig

__all__ = ["IterableSource", "file_source", "read_input"]


class _IterablePartition(StatefulSourcePartition[Any, int]):
    def __init__(self, make_iter: Callable[[int], Iterable[Any]], batch_size: int, resume: Optional[int]) -> None:
        self._offset = resume or 0
        self._it: Iterator[Any] = iter(make_iter(self._offset))
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

    ``make_iter(skip)`` is called when the partition is built (never at import)
    and must yield the same items on every call, starting after the first
    ``skip`` (a restart resumes there).

    >>> from bytewax.testing import TestingSink, run_main
    >>> flow, out = Dataflow("doc"), []
    >>> src = IterableSource("nums", lambda skip: range(skip, 5), 2)
    >>> op.output("out", op.input("in", flow, src), TestingSink(out))
    >>> run_main(flow); out
    [0, 1, 2, 3, 4]
    """

    def __init__(self, name: str, make_iter: Callable[[int], Iterable[Any]], batch_size: int = 1000) -> None:
        self._name = name
        self._make_iter = make_iter
        self._batch_size = batch_size

    @override
    def list_parts(self) -> List[str]:
        return [self._name]

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _IterablePartition:
        return _IterablePartition(self._make_iter, self._batch_size, resume_state)


def _skipping(make: Callable[[], Iterable[Any]]) -> Callable[[int], Iterator[Any]]:
    def make_iter(skip: int) -> Iterator[Any]:
        it = iter(make())
        for _ in range(skip):
            next(it, None)
        return it

    return make_iter


def file_source(path: Path, batch_size: int = 1000) -> IterableSource:
    """The raw inputs of a ``.jsonl``, ``.csv`` or ``.parquet`` file
    (:func:`features.formats.iter_raw`): JSON Lines as bytes, so a line that is
    not UTF-8 or not JSON becomes a dead letter instead of stopping the run."""
    from features.formats import iter_raw

    return IterableSource(str(path), lambda skip: iter_raw(path, batch_size=batch_size, skip=skip), batch_size)


def read_input(step_id: str, flow: Dataflow, io: IOConfig, generate: Callable[[], Iterable[Any]]) -> Stream[Any]:
    """The input the configuration names (``SCORING_SOURCE``): generated events,
    a file, or a Kafka topic (unwrapped into :class:`~features.records.Raw` inputs
    and consumer-error dead letters by a step of its own)."""
    if io.source == "generator":
        return op.input(step_id, flow, IterableSource("generator", _skipping(generate), io.batch_size))
    if io.source == "file":
        assert io.input_path is not None
        return op.input(step_id, flow, file_source(io.input_path, io.batch_size))
    from dataflows.kafka import kafka_source, unwrap

    k = io.kafka
    msgs = op.input(step_id, flow, kafka_source(k.bootstrap_servers, k.input_topic, tail=k.tail,
                                                options=k.options, batch_size=io.batch_size,
                                                start=k.start, group=k.group))
    return op.map(f"{step_id}_unwrap", msgs, unwrap)
