"""File connectors: a restartable source over any iterable (files, the generator) that resumes at
its position, and a JSON Lines sink that resumes at its byte offset."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from typing_extensions import override

from features.formats import iter_raw

__all__ = ["IterableSource", "file_source", "JsonLinesSink"]


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

    >>> import bytewax.operators as op
    >>> from bytewax.dataflow import Dataflow
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
    return IterableSource(str(path), lambda skip: iter_raw(path, batch_size=batch_size, skip=skip), batch_size)


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
