"""The inference log: one row per scored event, as Parquet files partitioned by date.

Layout (``root`` is ``SCORING_INFERENCE_LOG_DIR``, by default ``<output dir>/inference_log``)::

    <root>/date=2026-11-26/fraud-<run>-p<part>-<seq>.parquet

``date`` is the UTC date of ``scored_at`` (a Hive partition: DuckDB, Spark, pandas and
pyarrow read it as a column). Each writer (one per sink partition, so one per worker
that owns it) writes its own files, so several workers never write the same file;
a file is written to a hidden temporary name and renamed, so a reader never sees a
half-written one. A writer starts a new file when it holds ``max_rows`` rows (the size
bound), when ``flush_s`` seconds have passed since its oldest unwritten row, and at
every recovery snapshot. On a restart with recovery the files a partition wrote after
the last snapshot are deleted (the events behind them are scored again), so the log
holds every scored event once. The log is a table that grows across runs: file names
carry the run id, and nothing is truncated at start.

Columns: ``event_id``, ``key``, ``flow``, ``model_version``, ``shadow_scores``
(map version -> score, null when no shadow scored the event), the flow's scores
(fraud: ``fraud_score``, ``risk_score``, ``anomaly_score``; IoT: ``anomaly_score``),
``status``, ``latency_ms``, ``scored_at`` and ``event_time`` (UTC timestamps), then the
numeric features the spec names (fraud: the model's inputs; IoT: each sensor and
its window features).

>>> import tempfile
>>> spec = LogSpec("demo", "id", "user", scores=("fraud_score",), features=("amount",))
>>> root = Path(tempfile.mkdtemp())
>>> w = LogWriter(root, spec, part=0)
>>> w.write([log_row({"id": "e1", "user": "u1", "fraud_score": 0.2, "amount": 5.0, "status": "NORMAL",
...     "model_version": "m/1", "latency_ms": 3.5, "scored_at": "2026-11-26T10:00:00.000Z",
...     "event_time": "2026-11-26T09:59:59.000Z"}, spec)])
>>> w.close()
>>> import pyarrow.dataset as ds
>>> ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pylist()[0]["fraud_score"]
0.2
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["LogSpec", "log_row", "schema", "LogWriter", "FILE_PATTERN"]

#: ``<flow>-<run>-p<part>-<seq>.parquet``
FILE_PATTERN = re.compile(r"^(?P<flow>[\w.-]+?)-(?P<run>[0-9a-f]{12})-p(?P<part>\d+)-(?P<seq>\d{6,})\.parquet$")


@dataclass(frozen=True)
class LogSpec:
    """Which fields of a flow's scored record go to the log.

    ``id_field`` / ``key_field``: the event id and the entity key; ``scores``: score
    fields; ``features``: numeric features, read from the record's top level or its
    ``features`` mapping (IoT).
    """

    flow: str
    id_field: str
    key_field: str
    scores: tuple[str, ...]
    features: tuple[str, ...] = ()


def _ts(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None if v is None else float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def log_row(rec: Mapping[str, Any], spec: LogSpec) -> dict[str, Any]:
    """The log row of one scored record (see the module docstring for the columns)."""
    feats = rec.get("features")
    nested = feats if isinstance(feats, Mapping) else {}
    shadow = rec.get("shadow_scores")
    row: dict[str, Any] = {
        "event_id": str(rec.get(spec.id_field)),
        "key": str(rec.get(spec.key_field)),
        "flow": spec.flow,
        "model_version": rec.get("model_version"),
        "shadow_scores": [(str(k), _num(v)) for k, v in shadow.items()] if shadow else None,
    }
    for name in spec.scores:
        row[name] = _num(rec.get(name))
    row["status"] = rec.get("status")
    row["latency_ms"] = _num(rec.get("latency_ms"))
    row["scored_at"] = _ts(rec.get("scored_at"))
    row["event_time"] = _ts(rec.get("event_time"))
    for name in spec.features:
        row[name] = _num(rec[name] if name in rec else nested.get(name))
    return row


def schema(spec: LogSpec) -> Any:
    """The Parquet (pyarrow) schema of ``spec``'s rows."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    fields = [
        ("event_id", pa.string()), ("key", pa.string()), ("flow", pa.string()), ("model_version", pa.string()),
        ("shadow_scores", pa.map_(pa.string(), pa.float64())),
        *((name, pa.float64()) for name in spec.scores),
        ("status", pa.string()), ("latency_ms", pa.float64()), ("scored_at", ts), ("event_time", ts),
        *((name, pa.float64()) for name in spec.features),
    ]
    return pa.schema(fields)


class LogWriter:
    """Writes one partition's rows as Parquet files (see the module docstring).

    Args:
        root: the log's folder.
        spec: the columns.
        part: this writer's partition number (one writer per partition).
        max_rows: a file holds at most this many rows.
        flush_s: rows wait at most this long (wall clock) before they are written.
        resume: ``(run, seq)`` from :meth:`snapshot` after a restart with recovery;
            files of this run and partition numbered ``seq`` or later are deleted.
    """

    def __init__(
        self,
        root: Path,
        spec: LogSpec,
        part: int,
        max_rows: int = 100_000,
        flush_s: float = 10.0,
        resume: tuple[str, int] | None = None,
    ) -> None:
        if max_rows < 1 or not flush_s > 0:
            raise ValueError(f"LogWriter: max_rows must be >= 1 and flush_s > 0, got {max_rows!r}, {flush_s!r}")
        self.root = Path(root)
        self.spec = spec
        self.part = int(part)
        self.max_rows = int(max_rows)
        self.flush_s = float(flush_s)
        self._schema = schema(spec)
        self._rows: list[dict[str, Any]] = []
        self._oldest = 0.0
        if resume is None:
            self.run, self.seq = uuid.uuid4().hex[:12], 0
        else:
            self.run, self.seq = str(resume[0]), int(resume[1])
            self._forget_after(self.seq)
        self.root.mkdir(parents=True, exist_ok=True)

    def _forget_after(self, seq: int) -> None:
        """Delete this run and partition's files numbered ``seq`` or later (and temporaries)."""
        if not self.root.is_dir():
            return
        for path in self.root.glob(f"date=*/*{self.spec.flow}-{self.run}-p{self.part}-*"):
            m = FILE_PATTERN.match(path.name.lstrip("."))
            if m and m["run"] == self.run and int(m["part"]) == self.part and int(m["seq"]) >= seq:
                path.unlink(missing_ok=True)

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Buffer rows; write files when the size or time bound is reached."""
        if not rows:
            return
        now = time.monotonic()
        if not self._rows:
            self._oldest = now
        self._rows.extend(rows)
        if len(self._rows) >= self.max_rows or now - self._oldest >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row: one file per date per ``max_rows`` rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows, self._rows = self._rows, []
        by_date: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            at = r.get("scored_at")
            by_date.setdefault(at.strftime("%Y-%m-%d") if at is not None else "unknown", []).append(r)
        for date, group in sorted(by_date.items()):
            folder = self.root / f"date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(0, len(group), self.max_rows):
                name = f"{self.spec.flow}-{self.run}-p{self.part}-{self.seq:06d}.parquet"
                self.seq += 1
                tmp = folder / f".{name}.tmp"
                pq.write_table(pa.Table.from_pylist(group[i:i + self.max_rows], schema=self._schema), tmp)
                os.replace(tmp, folder / name)

    def snapshot(self) -> tuple[str, int]:
        """Write what is buffered, then ``(run, next seq)``: the recovery state."""
        self.flush()
        return (self.run, self.seq)

    def close(self) -> None:
        self.flush()
