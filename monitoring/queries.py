"""Monitoring over the inference log: summaries per hour or day, shadows beside their
decider, and drift between two periods.

The inference log (:mod:`models.inference_log`) is Parquet partitioned by date; DuckDB
reads it in place. :func:`connect` opens an in-memory DuckDB with two views:
:data:`ALL_ROWS` (``inference_log_all``) over every file of the log, and
``inference_log``, the same with one row per ``event_id`` (the last scored:
:data:`DEDUP_QUERY`; :func:`repeats` counts the rows it leaves out). Any SQL runs on
them as written, e.g. :data:`DAILY_QUERY`::

    SELECT DATE(scored_at) AS date, model_version, COUNT(*) AS predictions, ...
    FROM inference_log GROUP BY 1, 2 ORDER BY date DESC;

The connection's time zone is UTC, so ``DATE(scored_at)`` is the UTC date (the log's
``date`` partition), whatever the machine's zone.

- :func:`summary`: that table per UTC hour or day (:func:`choose_bin`: hours when the
  data spans less than :data:`HOURLY_BELOW`) and model version, plus latency p50 / p99
  (``quantile_cont``: linear interpolation, as ``numpy.percentile``) and the alert rate
  (share of rows whose ``status`` is not ``NORMAL``); :func:`daily_summary` per day.
- :func:`shadow_summary`: each shadow version beside its decider on the events both
  scored (from ``shadow_scores``): count, mean scores, difference, status agreement.
- :func:`drift_report`: per column (the score, then the numeric features), the
  population stability index (:func:`psi`) and the two-sample Kolmogorov-Smirnov test
  (``scipy.stats.ks_2samp``) between a reference and a current period, with a level
  ``ok`` / ``watch`` / ``drift`` (thresholds: :data:`PSI_WATCH`, :data:`PSI_DRIFT`,
  :data:`KS_P`, :data:`KS_STAT`; see :func:`drift_level`).

Periods are half-open ``[start, end)`` UTC instants; :func:`parse_period` reads
``START..END`` where a bare date bound means the whole day (``2026-11-20..2026-11-22`` is
three days). Times without an offset are UTC (the project's time rule).

Nothing here imports Bytewax; DuckDB, numpy and scipy only.

>>> import tempfile
>>> from models.inference_log import LogSpec, LogWriter, log_row
>>> spec = LogSpec("fraud", "id", "user", scores=("fraud_score",), features=("amount",))
>>> root = Path(tempfile.mkdtemp()) / "log"
>>> w = LogWriter(root, spec, part=0)
>>> w.write([log_row({"id": f"e{i}", "user": "u1", "fraud_score": s, "amount": 10.0 * (i + 1),
...     "status": "WARNING" if s > 0.5 else "NORMAL", "model_version": "fraud_model/1", "latency_ms": 10.0 * (i + 1),
...     "scored_at": f"2026-11-2{6 + i // 2}T10:00:00Z"}, spec) for i, s in enumerate([0.1, 0.9, 0.2, 0.4])])
>>> w.close()
>>> con = connect(root)
>>> con.execute(DAILY_QUERY).fetchall()  # doctest: +NORMALIZE_WHITESPACE
[(datetime.date(2026, 11, 27), 'fraud_model/1', 2, 0.30000000000000004, 0, 35.0),
 (datetime.date(2026, 11, 26), 'fraud_model/1', 2, 0.5, 1, 15.0)]
>>> [(r["date"].isoformat(), r["p50_latency"], r["alert_rate"]) for r in daily_summary(con)]
[('2026-11-27', 35.0, 0.0), ('2026-11-26', 15.0, 0.5)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb

__all__ = [
    "ALL_ROWS",
    "BINS",
    "DAILY_QUERY",
    "DEDUP_QUERY",
    "HOURLY_BELOW",
    "FIXED_COLUMNS",
    "SCORE_COLUMNS",
    "MonitoringError",
    "Period",
    "connect",
    "columns",
    "versions",
    "time_range",
    "repeats",
    "choose_bin",
    "summary",
    "daily_summary",
    "shadow_summary",
    "score_histogram",
    "parse_day",
    "parse_period",
]

#: The daily table, exactly as users write it (``streamscore monitor`` adds latency
#: percentiles and the alert rate: :func:`daily_summary`).
DAILY_QUERY = (
    "SELECT DATE(scored_at) AS date, model_version, COUNT(*) AS predictions, AVG(fraud_score) AS avg_score, "
    "SUM(CASE WHEN fraud_score > 0.5 THEN 1 ELSE 0 END) AS flagged_count, AVG(latency_ms) AS avg_latency "
    "FROM inference_log GROUP BY 1, 2 ORDER BY date DESC;"
)

#: Columns of every log row that are not features (``date`` is the Hive partition).
FIXED_COLUMNS = frozenset({
    "event_id", "key", "flow", "model_version", "shadow_scores", "status", "latency_ms", "scored_at",
    "event_time", "date",
})
#: Score columns the flows write (fraud: the first three; IoT: ``anomaly_score``).
SCORE_COLUMNS = frozenset({"fraud_score", "risk_score", "anomaly_score"})

_NUMERIC_TYPES = re.compile(r"^(DOUBLE|FLOAT|REAL|DECIMAL.*|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT)$")


#: The view of every row as written or landed, repeats included.
ALL_ROWS = "inference_log_all"

#: The view ``inference_log``: one row per ``event_id``, the **last** scored (latest
#: ``scored_at``). At-least-once delivery (``streamscore log land`` after a crash, a flow
#: replaying from its last snapshot into Kafka) repeats events; the last record of an
#: event is the one its consumers were left with (a table or compacted topic upserted by
#: id holds it; a retraction or update, if any, comes after the first). Rows without an
#: ``event_id`` are all kept.
DEDUP_QUERY = (
    f"SELECT * FROM {ALL_ROWS} QUALIFY event_id IS NULL "
    "OR row_number() OVER (PARTITION BY event_id ORDER BY scored_at DESC NULLS LAST) = 1"
)

#: ``--bin``: the summaries' time bins (UTC).
BINS = ("hour", "day")
#: With no bin asked for, a log spanning less than this is summarised per hour.
HOURLY_BELOW = timedelta(days=3)


class MonitoringError(ValueError):
    """A monitoring request that cannot be answered (missing log, unknown column, no rows)."""


@dataclass(frozen=True)
class Period:
    """A half-open interval of UTC instants ``[start, end)``.

    >>> p = parse_period("2026-11-20..2026-11-22")
    >>> str(p)
    '2026-11-20T00:00:00Z..2026-11-23T00:00:00Z'
    >>> p.days
    3.0
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise MonitoringError(f"period {self}: the start must be before the end")

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400

    def __str__(self) -> str:
        return f"{_iso(self.start)}..{_iso(self.end)}"

    def as_dict(self) -> dict[str, str]:
        return {"start": _iso(self.start), "end": _iso(self.end)}


def _iso(t: datetime) -> str:
    """UTC ISO text, ``Z``, microseconds only when present."""
    t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond:06d}" if t.microsecond else "") + "Z"


# --- the connection ---------------------------------------------------------------------------


def connect(log_dir: str | Path, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the view ``inference_log`` over every Parquet
    file under ``log_dir`` (``read_parquet('<dir>/**/*.parquet', hive_partitioning=true,
    union_by_name=true)``: the ``date`` partition is a column, and files written with
    other feature columns are read together, missing columns being null).

    The session time zone is UTC. Raises :class:`MonitoringError` naming the folder when
    it does not exist or holds no Parquet file (hidden temporaries of a writer are not
    files of the log).

    >>> connect("/nonexistent/log")
    Traceback (most recent call last):
    ...
    monitoring.queries.MonitoringError: inference log folder '/nonexistent/log' does not exist (set STREAMSCORE_INFERENCE_LOG__DIR or pass the folder)
    """
    root = Path(log_dir)
    if not root.is_dir():
        raise MonitoringError(
            f"inference log folder {str(root)!r} does not exist (set STREAMSCORE_INFERENCE_LOG__DIR or pass the folder)"
        )
    if next((p for p in root.rglob("*.parquet") if not p.name.startswith(".")), None) is None:
        raise MonitoringError(
            f"inference log folder {str(root)!r} holds no Parquet file (has the flow written its log?)"
        )
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    glob = (root.resolve() / "**" / "*.parquet").as_posix().replace("'", "''")
    try:
        con.execute(
            f"CREATE VIEW {ALL_ROWS} AS SELECT * FROM "
            f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
        )
        has_id = "event_id" in {r[0] for r in con.execute(f"DESCRIBE {ALL_ROWS}").fetchall()}
        con.execute(f"CREATE VIEW inference_log AS {DEDUP_QUERY if has_id else f'SELECT * FROM {ALL_ROWS}'}")
    except duckdb.Error as exc:  # e.g. a file that is not Parquet
        con.close()
        raise MonitoringError(f"cannot read the inference log in {str(root)!r}: {str(exc).splitlines()[0]}") from None
    return con


def repeats(
    con: duckdb.DuckDBPyConnection, since: str | date | None = None, until: str | date | None = None,
    version: str | None = None,
) -> int:
    """How many rows the view ``inference_log`` leaves out as repeats of an ``event_id``
    (rows of :data:`ALL_ROWS` minus rows of ``inference_log``, with the same filters)."""
    where, params = _where(parse_day(since), parse_day(until), version)
    (everything,) = _one(con, f"SELECT COUNT(*) FROM {ALL_ROWS} {where}", params)
    (kept,) = _one(con, f"SELECT COUNT(*) FROM inference_log {where}", params)
    return int(everything) - int(kept)


def columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The view's columns and their DuckDB types, in order."""
    return {name: typ for name, typ, *_ in con.execute("DESCRIBE inference_log").fetchall()}


def _q(name: str) -> str:
    """A quoted SQL identifier.

    >>> _q('amount'), _q('we"ird')
    ('"amount"', '"we""ird"')
    """
    return '"' + name.replace('"', '""') + '"'


def _require_numeric(con: duckdb.DuckDBPyConnection, name: str, what: str = "column") -> None:
    cols = columns(con)
    if name not in cols:
        scores = ", ".join(c for c in cols if c in SCORE_COLUMNS) or "none"
        raise MonitoringError(f"no {what} {name!r} in the inference log (score columns: {scores})")
    if not _NUMERIC_TYPES.match(cols[name]):
        raise MonitoringError(f"{what} {name!r} of the inference log is {cols[name]}, not a number")


def versions(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The model versions in the log, sorted."""
    rows = con.execute(
        "SELECT DISTINCT model_version FROM inference_log WHERE model_version IS NOT NULL ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def time_range(
    con: duckdb.DuckDBPyConnection, version: str | None = None, since: str | date | None = None,
    until: str | date | None = None,
) -> tuple[datetime, datetime] | None:
    """The first and last ``scored_at`` (of one version, between two inclusive days), or
    ``None`` without rows."""
    where, params = _where(parse_day(since), parse_day(until), version)
    lo, hi = _one(con, f"SELECT MIN(scored_at), MAX(scored_at) FROM inference_log {where}", params)
    return None if lo is None else (_utc(lo), _utc(hi))


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
    """The one row of an aggregate query."""
    row = con.execute(sql, list(params)).fetchone()
    assert row is not None, sql
    return tuple(row)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


# --- filters ----------------------------------------------------------------------------------


def parse_day(value: str | date | datetime | None) -> date | None:
    """A day from ``YYYY-MM-DD`` text (or a date).

    >>> parse_day("2026-11-26"), parse_day(None)
    (datetime.date(2026, 11, 26), None)
    >>> parse_day("26/11/2026")
    Traceback (most recent call last):
    ...
    monitoring.queries.MonitoringError: '26/11/2026' is not a date: expected YYYY-MM-DD
    """
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value  # type: ignore[return-value]
    if isinstance(value, datetime):
        return _utc(value).date()
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise MonitoringError(f"{value!r} is not a date: expected YYYY-MM-DD") from None


def _bound(value: str | date | datetime, end: bool) -> datetime:
    """A period bound: a date is the start of that day, or the start of the next one for an end."""
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date):
        day = value
    else:
        text = value.strip()
        if "T" in text or " " in text or ":" in text:
            try:
                return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
            except ValueError:
                raise MonitoringError(f"{value!r} is not a time: expected YYYY-MM-DD or an ISO-8601 time") from None
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise MonitoringError(f"{value!r} is not a date: expected YYYY-MM-DD or an ISO-8601 time") from None
    return datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=timezone.utc)


def parse_period(value: str | Period | Sequence[Any]) -> Period:
    """A :class:`Period` from ``START..END`` text or a ``(start, end)`` pair.

    A bound that is a date covers its whole day (the end is inclusive); a bound with a
    time is that instant (the end is exclusive). Times without an offset are UTC.

    >>> str(parse_period("2026-11-20T06:00..2026-11-20T18:00"))
    '2026-11-20T06:00:00Z..2026-11-20T18:00:00Z'
    >>> parse_period("2026-11-20")
    Traceback (most recent call last):
    ...
    monitoring.queries.MonitoringError: period '2026-11-20': expected START..END, e.g. 2026-11-01..2026-11-07
    """
    if isinstance(value, Period):
        return value
    if isinstance(value, str):
        parts = value.split("..")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise MonitoringError(f"period {value!r}: expected START..END, e.g. 2026-11-01..2026-11-07")
        start, end = parts
    else:
        if len(value) != 2:
            raise MonitoringError(f"period {value!r}: expected (start, end)")
        start, end = value[0], value[1]
    return Period(_bound(start, end=False), _bound(end, end=True))


def _where(
    since: date | None = None, until: date | None = None, version: str | None = None, period: Period | None = None,
    extra: Iterable[str] = (),
) -> tuple[str, list[Any]]:
    """``WHERE ...`` and its parameters (``since`` / ``until``: inclusive UTC days)."""
    clauses, params = list(extra), list[Any]()
    if since is not None:
        clauses.append("scored_at >= ?")
        params.append(_bound(since, end=False))
    if until is not None:
        clauses.append("scored_at < ?")
        params.append(_bound(until, end=True))
    if version is not None:
        clauses.append("model_version = ?")
        params.append(version)
    if period is not None:
        clauses += ["scored_at >= ?", "scored_at < ?"]
        params += [period.start, period.end]
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


# --- summary per time bin -----------------------------------------------------------------------


def choose_bin(
    con: duckdb.DuckDBPyConnection, since: str | date | None = None, until: str | date | None = None,
    version: str | None = None,
) -> str:
    """``"hour"`` when the (filtered) log spans less than :data:`HOURLY_BELOW` (a live
    run of a few hours is then a line, not one dot), else ``"day"``."""
    rng = time_range(con, version, since, until)
    return "hour" if rng is not None and rng[1] - rng[0] < HOURLY_BELOW else "day"


def _check_bin(bin: str) -> str:
    if bin not in BINS:
        raise MonitoringError(f"bin {bin!r}: expected one of {', '.join(BINS)}")
    return bin


def summary(
    con: duckdb.DuckDBPyConnection,
    since: str | date | None = None,
    until: str | date | None = None,
    version: str | None = None,
    score: str = "fraud_score",
    flag_threshold: float = 0.5,
    bin: str = "day",
) -> list[dict[str, Any]]:
    """Per UTC time bin (``"hour"`` or ``"day"``, see :func:`choose_bin`) and model
    version, newest first: ``bin`` (the bin's start, a UTC datetime), ``date`` (its UTC
    day), ``model_version``, ``predictions``, ``avg_score``, ``flagged_count`` (rows with
    ``score > flag_threshold``), ``avg_latency`` (the columns of :data:`DAILY_QUERY`),
    plus ``p50_latency`` and ``p99_latency`` (ms, ``quantile_cont``), ``alerts`` (rows
    whose ``status`` is not ``NORMAL``) and ``alert_rate`` (``alerts / predictions``).

    Over the view ``inference_log``: one row per ``event_id`` (:data:`DEDUP_QUERY`;
    :func:`repeats` counts what it leaves out). ``since`` / ``until`` are inclusive
    days; ``version`` keeps one model version; ``score`` is the score column
    (``fraud_score``, ``risk_score``; IoT ``anomaly_score``, whose nulls during warm-up
    are left out of the average).
    """
    _require_numeric(con, score, "score column")
    where, params = _where(parse_day(since), parse_day(until), version)
    s = _q(score)
    sql = f"""
        SELECT date_trunc('{_check_bin(bin)}', scored_at) AS bin, model_version, COUNT(*) AS predictions,
               AVG({s}) AS avg_score,
               SUM(CASE WHEN {s} > ? THEN 1 ELSE 0 END) AS flagged_count, AVG(latency_ms) AS avg_latency,
               quantile_cont(latency_ms, 0.5) AS p50_latency, quantile_cont(latency_ms, 0.99) AS p99_latency,
               SUM(CASE WHEN status <> 'NORMAL' THEN 1 ELSE 0 END) AS alerts
        FROM inference_log {where}
        GROUP BY 1, 2 ORDER BY bin DESC NULLS LAST, model_version NULLS LAST
    """
    cur = con.execute(sql, [flag_threshold, *params])
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        r = dict(zip(names, row))
        r["bin"] = None if r["bin"] is None else _utc(r["bin"])
        r = {"bin": r["bin"], "date": None if r["bin"] is None else r["bin"].date(), **r}
        r["flagged_count"] = int(r["flagged_count"] or 0)
        r["alerts"] = int(r["alerts"] or 0)
        r["alert_rate"] = r["alerts"] / r["predictions"] if r["predictions"] else None
        out.append(r)
    return out


def daily_summary(
    con: duckdb.DuckDBPyConnection,
    since: str | date | None = None,
    until: str | date | None = None,
    version: str | None = None,
    score: str = "fraud_score",
    flag_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """:func:`summary` per UTC day."""
    return summary(con, since, until, version, score, flag_threshold, bin="day")


# --- shadows beside their decider -----------------------------------------------------------------


def shadow_summary(
    con: duckdb.DuckDBPyConnection,
    since: str | date | None = None,
    until: str | date | None = None,
    version: str | None = None,
    bin: str | None = None,
    critical: float = 0.8,
    warning: float = 0.5,
) -> list[dict[str, Any]]:
    """Each shadow version beside the version that decided the same events (from the
    rows' ``shadow_scores``): per ``model_version`` (the decider), ``shadow`` (and per
    time ``bin`` when one is given, newest first), ``scored`` (events both scored),
    ``avg_shadow`` and ``avg_decider`` (their mean ``fraud_score`` on those events),
    ``avg_diff`` (shadow - decider) and ``avg_abs_diff``, ``agreement`` (the share of
    events where the shadow's status would have been the decider's) and
    ``shadow_alerts`` / ``decider_alerts`` (statuses not NORMAL).

    The shadow's status is what the flow would have given with its score: the same
    noisy-OR with the event's anomaly score as the decider's (the factor
    ``(1 - risk_score) / (1 - fraud_score)`` of the row, so the anomaly weight need
    not be known), against ``critical`` / ``warning`` (the flow's ``fraud.critical`` /
    ``fraud.warning``). A log without ``shadow_scores``, ``fraud_score`` or
    ``risk_score`` (the IoT flow's) has no shadows: ``[]``.

    >>> import tempfile
    >>> from models.inference_log import LogSpec, LogWriter, log_row
    >>> spec = LogSpec("fraud", "id", "user", scores=("fraud_score", "risk_score"))
    >>> root = Path(tempfile.mkdtemp())
    >>> w = LogWriter(root, spec, part=0)
    >>> w.write([log_row({"id": f"e{i}", "user": "u", "model_version": "m/1", "fraud_score": f, "risk_score": f,
    ...     "status": "WARNING" if f > 0.5 else "NORMAL", "shadow_scores": {"m/2": s},
    ...     "scored_at": "2026-11-26T10:00:00Z"}, spec) for i, (f, s) in enumerate([(0.1, 0.2), (0.6, 0.3)])])
    >>> w.close()
    >>> [(r["model_version"], r["shadow"], r["scored"], r["agreement"], round(r["avg_abs_diff"], 3))
    ...  for r in shadow_summary(connect(root))]
    [('m/1', 'm/2', 2, 0.5, 0.2)]
    """
    cols = columns(con)
    if not {"shadow_scores", "fraud_score", "risk_score", "status"} <= set(cols) or not cols["shadow_scores"].startswith("MAP"):
        return []
    where, params = _where(parse_day(since), parse_day(until), version, extra=["shadow_scores IS NOT NULL"])
    by_bin = f"date_trunc('{_check_bin(bin)}', scored_at)" if bin else "NULL::TIMESTAMPTZ"
    sql = f"""
        WITH pairs AS (
            SELECT {by_bin} AS bin, model_version, entry.key AS shadow, entry.value AS shadow_score,
                   fraud_score, risk_score, status
            FROM (SELECT *, unnest(map_entries(shadow_scores)) AS entry FROM inference_log {where})
        ), judged AS (
            SELECT *, CASE
                WHEN shadow_risk > ? THEN 'CRITICAL' WHEN shadow_risk > ? THEN 'WARNING' ELSE 'NORMAL'
            END AS shadow_status
            FROM (SELECT *, CASE
                WHEN fraud_score < 1 AND risk_score IS NOT NULL
                THEN 1 - (1 - shadow_score) * (1 - risk_score) / (1 - fraud_score)
                ELSE shadow_score END AS shadow_risk FROM pairs)
        )
        SELECT bin, model_version, shadow, COUNT(*) AS scored, AVG(shadow_score) AS avg_shadow,
               AVG(fraud_score) AS avg_decider, AVG(shadow_score - fraud_score) AS avg_diff,
               AVG(ABS(shadow_score - fraud_score)) AS avg_abs_diff,
               AVG(CASE WHEN shadow_status = status THEN 1.0 ELSE 0.0 END) AS agreement,
               SUM(CASE WHEN shadow_status <> 'NORMAL' THEN 1 ELSE 0 END) AS shadow_alerts,
               SUM(CASE WHEN status <> 'NORMAL' THEN 1 ELSE 0 END) AS decider_alerts
        FROM judged WHERE shadow_score IS NOT NULL AND fraud_score IS NOT NULL
        GROUP BY 1, 2, 3 ORDER BY bin DESC NULLS LAST, model_version NULLS LAST, shadow
    """
    cur = con.execute(sql, [*params, critical, warning])
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        r = dict(zip(names, row))
        if bin:
            r["bin"] = _utc(r["bin"])
        else:
            del r["bin"]
        r["scored"], r["shadow_alerts"], r["decider_alerts"] = (
            int(r["scored"]), int(r["shadow_alerts"] or 0), int(r["decider_alerts"] or 0))
        out.append(r)
    return out


def score_histogram(
    con: duckdb.DuckDBPyConnection,
    score: str = "fraud_score",
    bins: int = 20,
    since: str | date | None = None,
    until: str | date | None = None,
    version: str | None = None,
) -> dict[str, list[int]]:
    """Counts of ``score`` in ``bins`` equal bins over [0, 1] per model version (a score
    of exactly 1 falls in the last bin; nulls are left out)."""
    _require_numeric(con, score, "score column")
    s = _q(score)
    where, params = _where(parse_day(since), parse_day(until), version, extra=[f"{s} IS NOT NULL"])
    rows = con.execute(
        f"SELECT model_version, LEAST(GREATEST(FLOOR({s} * ?), 0), ? - 1)::INTEGER AS b, COUNT(*) "
        f"FROM inference_log {where} GROUP BY 1, 2",
        [bins, bins, *params],
    ).fetchall()
    out: dict[str, list[int]] = {}
    for v, b, n in rows:
        out.setdefault(str(v), [0] * bins)[b] += int(n)
    return dict(sorted(out.items()))
