"""The inference log: one row per scored event, as Parquet files partitioned by date.

Layout (``root`` is ``STREAMSCORE_INFERENCE_LOG__DIR``, by default ``<output dir>/inference_log``)::

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

import functools
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from features.formats import valid_text

__all__ = ["LogSpec", "columns", "log_row", "schema", "dictionary_columns", "column", "to_table", "LogWriter",
           "FILE_PATTERN"]

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
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _num(v: Any) -> float | None:
    """A float column's value: numbers as floats (booleans 0/1), anything else null."""
    if type(v) is float or v is None:
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _str(v: Any) -> str | None:
    return None if v is None else valid_text(str(v))  # undecodable input bytes: U+FFFD, as in JSON


def columns(spec: LogSpec) -> tuple[str, ...]:
    """The log's column names, in the order of :func:`log_row`'s values."""
    return ("event_id", "key", "flow", "model_version", "shadow_scores", *spec.scores, "status", "latency_ms",
            "scored_at", "event_time", *spec.features)


def log_row(rec: Mapping[str, Any], spec: LogSpec) -> tuple:
    """The log row of one scored record: its values in :func:`columns` order, as
    they are in the record (types are made right per file, by Arrow: see
    :meth:`LogWriter.flush`). Cheap on purpose: it runs for every scored event.

    >>> spec = LogSpec("demo", "id", "user", scores=("score",), features=("amount", "mean_60s"))
    >>> dict(zip(columns(spec), log_row({"id": 7, "user": "u", "score": 0.5, "amount": 3,
    ...     "features": {"mean_60s": 2.5}}, spec)))["mean_60s"]
    2.5
    """
    get = rec.get
    shadow = get("shadow_scores")
    nested = get("features")
    if isinstance(nested, Mapping):
        nested_get = nested.get
        feats = [nested_get(n) if (v := get(n)) is None else v for n in spec.features]
    else:
        feats = [get(n) for n in spec.features]
    return (
        _str(get(spec.id_field)), _str(get(spec.key_field)), spec.flow, get("model_version"),
        list(shadow.items()) if shadow else None,
        *[get(n) for n in spec.scores],
        get("status"), get("latency_ms"), get("scored_at"), get("event_time"),
        *feats,
    )


@functools.lru_cache(maxsize=16)
def schema(spec: LogSpec) -> Any:
    """The Parquet (pyarrow) schema of ``spec``'s rows (made once per spec)."""
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



def dictionary_columns(spec_schema: Any) -> list[str]:
    """The columns the log's Parquet files dictionary-encode: all but the float ones. A
    score or feature column has about as many distinct values as rows, so its dictionary
    is given up after costing most of the write (and the file came out larger)."""
    import pyarrow as pa

    return [field.name for field in spec_schema if not pa.types.is_floating(field.type)]


def column(values: Sequence[Any], t: Any) -> Any:
    """One column of the log as an Arrow array of type ``t``, converted at once; a column
    Arrow refuses as it is (text in a number column, a time it cannot read, text holding
    undecodable input bytes) is converted value by value: numbers as floats, text with
    U+FFFD for the undecodable bytes, anything else null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = list(values)
    try:
        if pa.types.is_timestamp(t):
            return pc.cast(pa.array(values, pa.string()), t)
        return pa.array(values, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        if pa.types.is_timestamp(t):
            return pa.array([_ts(v) for v in values], t)
        if pa.types.is_floating(t):
            return pa.array([_num(v) for v in values], t)
        if pa.types.is_map(t):
            return pa.array([None if not v else [(str(k), _num(x)) for k, x in v] for v in values], t)
        return pa.array([_str(v) for v in values], t)


def to_table(rows: Sequence[tuple], spec_schema: Any) -> Any:
    """Rows of :func:`log_row` as an Arrow table of ``spec_schema``, column by column
    (Arrow converts a whole column at once; see :func:`column`)."""
    import pyarrow as pa

    cols = zip(*rows) if rows else [()] * len(spec_schema)
    return pa.Table.from_arrays([column(values, field.type) for field, values in zip(spec_schema, cols)],
                                schema=spec_schema)


def _by_date(table: Any) -> list[tuple[str, Any]]:
    """``[(UTC date of scored_at, its rows), ...]`` of a table (``unknown`` for no time)."""
    import pyarrow.compute as pc

    at = table["scored_at"]
    if at.null_count == 0 and len(at):  # a scored batch: one scoring time, so one day (no text per row)
        span = pc.min_max(at)
        first, last = span["min"].as_py(), span["max"].as_py()
        if first.date() == last.date():
            return [(first.date().isoformat(), table)]
    days = pc.fill_null(pc.strftime(at, format="%Y-%m-%d", locale="C"), "unknown")
    first = days[0].as_py()
    if pc.all(pc.equal(days, first)).as_py():
        return [(first, table)]
    return [(day, table.filter(pc.equal(days, day))) for day in pc.unique(days).to_pylist()]


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
        run: the run id to use without ``resume`` (12 hex digits; default random).
            With recovery on, the sink derives it from the recovery folder, so a run
            that crashed before its first snapshot and starts again owns (and deletes)
            what its first attempt wrote.
        background: write the files in a thread of the writer's own when the size or
            time bound is reached, and at a snapshot that need not wait (below), so the
            caller does not wait for Parquet's encoding and the disk (the flow's sink:
            80,000 fraud rows, 10 s at 8,000 events/s, take about 68 ms to write).
            :meth:`flush` and :meth:`close` still return only once every row is in its
            file. One write at a time: the next one waits for it. A write that failed
            raises at the writer's next call.
        snapshot_waits: a :meth:`snapshot` returns only once every row is in its file
            (a run with recovery resumes from it); ``False`` only for a run known to have
            no recovery (:func:`dataflows.placement.without_recovery`). With ``run`` or
            ``resume`` given it always waits.
    """

    def __init__(
        self,
        root: Path,
        spec: LogSpec,
        part: int,
        max_rows: int = 100_000,
        flush_s: float = 10.0,
        resume: tuple[str, int] | None = None,
        run: str | None = None,
        background: bool = False,
        snapshot_waits: bool = True,
    ) -> None:
        if max_rows < 1 or not flush_s > 0:
            raise ValueError(f"LogWriter: max_rows must be >= 1 and flush_s > 0, got {max_rows!r}, {flush_s!r}")
        self.root = Path(root)
        self.spec = spec
        self.part = int(part)
        self.max_rows = int(max_rows)
        self.flush_s = float(flush_s)
        self._schema = schema(spec)
        self._dictionary = dictionary_columns(self._schema)
        self._at = columns(spec).index("scored_at")
        self._rows: list[tuple] = []
        self._tables: list[Any] = []  # Arrow tables of whole batches (write_table)
        self._buffered = 0
        self._oldest = 0.0
        self._durable = snapshot_waits or resume is not None or run is not None  # a snapshot may be resumed from
        self._background = background
        self._pool: Any = None  # the write thread (made on first use)
        self._pending: Any = None  # the write in flight (a Future)
        if resume is None and run is not None:
            # a stable run id (recovery on, nothing committed yet): files of an earlier
            # attempt that crashed before its first snapshot are this run's, so they go
            self.run, self.seq = run, 0
            self._forget_after(0)
        elif resume is None:
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

    def write(self, rows: Sequence[tuple]) -> None:
        """Buffer rows; write files when the size or time bound is reached."""
        if not rows:
            return
        self._rows.extend(rows)
        self._added(len(rows))

    def write_table(self, table: Any) -> None:
        """Buffer a table of rows (:func:`schema`'s columns, e.g. a scored batch's
        columns), as :meth:`write` does rows."""
        if not table.num_rows:
            return
        self._tables.append(table)
        self._added(table.num_rows)

    def _added(self, n: int) -> None:
        now = time.monotonic()
        if not self._buffered:
            self._oldest = now
        self._buffered += n
        if self._buffered >= self.max_rows:
            self._flush_soon(wait=True)  # the size bound: the rows held in memory stay bounded
        elif now - self._oldest >= self.flush_s:
            self._flush_soon(wait=False)

    def flush(self) -> None:
        """Write every buffered row: one file per date (of ``scored_at``) per ``max_rows``
        rows; returns once they are all written (a write in the background included)."""
        self._wait()
        self._write(*self._take())

    def _flush_soon(self, wait: bool) -> None:
        """:meth:`flush`, in the write thread when ``background``. One write at a time: with
        one in flight, ``wait`` waits for it first (a slow disk then holds the caller back,
        not memory), else the rows stay buffered for the next call."""
        if not self._background:
            self.flush()
            return
        if self._pending is not None and not self._pending.done() and not wait:
            return
        self._wait()
        rows, tables = self._take()
        if rows or tables:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"inference-log-p{self.part}")
            self._pending = self._pool.submit(self._write, rows, tables)

    def _wait(self) -> None:
        pending = self._pending
        if pending is not None:
            try:
                pending.result()  # a failed write raises here
            finally:
                if pending.done():  # not when the wait itself was interrupted: it is waited for again
                    self._pending = None

    def _take(self) -> tuple[list[tuple], list[Any]]:
        rows, self._rows = self._rows, []
        tables, self._tables = self._tables, []
        self._buffered = 0
        return rows, tables

    def _write(self, rows: list[tuple], tables: list[Any]) -> None:
        at = self._at
        by_date: dict[str, list[Any]] = {}
        by_date_rows: dict[str, list[tuple]] = {}
        for r in rows:
            t = r[at]
            day = t[:10] if isinstance(t, str) and len(t) >= 10 else "unknown"
            by_date_rows.setdefault(day, []).append(r)
        for day, group in by_date_rows.items():
            by_date.setdefault(day, []).append(to_table(group, self._schema))
        for table in tables:
            for day, part in _by_date(table):
                by_date.setdefault(day, []).append(part)
        if not by_date:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        for date, parts in sorted(by_date.items()):
            folder = self.root / f"date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            whole = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
            for i in range(0, whole.num_rows, self.max_rows):
                name = f"{self.spec.flow}-{self.run}-p{self.part}-{self.seq:06d}.parquet"
                self.seq += 1
                tmp = folder / f".{name}.tmp"
                pq.write_table(whole.slice(i, self.max_rows), tmp, use_dictionary=self._dictionary)
                os.replace(tmp, folder / name)

    def snapshot(self) -> tuple[str, int]:
        """Write what is buffered, then ``(run, next seq)``: the recovery state. When the
        snapshot need not wait (``background``, ``snapshot_waits=False``) the write goes on
        in the background, after the one before it: no run resumes from this state, and
        no row stays buffered past it (Bytewax snapshots only the partitions that had rows
        in the epoch)."""
        if self._durable:
            self.flush()
        else:
            self._flush_soon(wait=True)
        return (self.run, self.seq)

    def close(self) -> None:
        self.flush()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
