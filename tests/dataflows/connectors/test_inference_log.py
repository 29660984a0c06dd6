"""The inference log's Bytewax sink: each row is written by the worker that holds its key."""

from __future__ import annotations

import threading
from pathlib import Path

import bytewax.operators as op
import pyarrow.dataset as ds
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main

from dataflows.connectors.inference_log import InferenceLogSink
from models.inference_log import FILE_PATTERN, LogSpec, log_row

SPEC = LogSpec("doc", "id", "user", scores=("score",))


class WhoWrites(InferenceLogSink):
    """The real sink, noting which thread writes each partition."""

    def __init__(self, root: Path, parts: int, writers: dict[str, set[int]]) -> None:
        super().__init__(root, SPEC, parts)
        self.writers = writers

    def build_part(self, step_id, for_part, resume_state):
        part, writers = super().build_part(step_id, for_part, resume_state), self.writers
        write = part.write_batch

        def noted(values):
            writers.setdefault(for_part, set()).add(threading.get_ident())
            write(values)

        part.write_batch = noted  # type: ignore[method-assign]
        return part


@pytest.mark.parametrize("workers", [2, 3])
def test_rows_are_written_by_the_worker_that_holds_their_key(tmp_path, workers):
    users = [f"C{i:06d}" for i in range(48)]
    recs = [{"id": f"e{i}", "user": u, "score": 0.5, "scored_at": "2026-11-26T10:00:00Z"}
            for i, u in enumerate(users * 2)]
    worker_of_thread: dict[int, int] = {}
    worker_of_user: dict[str, int] = {}
    writers: dict[str, set[int]] = {}

    def noted(_step: str, item: tuple[str, dict], _epoch: int, worker: int) -> None:
        worker_of_thread[threading.get_ident()] = worker
        worker_of_user[item[0]] = worker

    flow = Dataflow("log_where")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(recs)), lambda r: r["user"])
    held = op.stateful_map("hold", keyed, lambda n, r: ((n or 0) + 1, r))  # where Bytewax runs the key
    op.inspect_debug("where", held, noted)
    rows = op.map("row", op.key_rm("unkey", held), lambda r: (r["user"], log_row(r, SPEC)))
    op.output("log", rows, WhoWrites(tmp_path, workers, writers))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)

    written = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted(r["event_id"] for r in written) == sorted(r["id"] for r in recs)
    worker_of_part = {}
    for part, threads in writers.items():
        (thread,) = threads
        worker_of_part[int(part.rsplit("-", 1)[1])] = worker_of_thread[thread]
    files = {f.name: int(FILE_PATTERN.match(f.name)["part"]) for f in tmp_path.rglob("*.parquet")}
    assert len(set(worker_of_part.values())) == workers  # every worker writes
    for f in tmp_path.rglob("*.parquet"):
        part = files[f.name]
        for user in ds.dataset(f, format="parquet").to_table(columns=["key"])["key"].to_pylist():
            assert worker_of_part[part] == worker_of_user[user], (user, part)
