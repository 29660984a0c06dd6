"""Monitoring over the inference log: daily summaries and drift between two periods.

The inference log (:mod:`models.inference_log`) is Parquet partitioned by date; DuckDB
reads it in place. :func:`connect` opens an in-memory DuckDB with one view,
``inference_log``, over every file of the log, so any SQL runs on it as written, e.g.
:data:`DAILY_QUERY`::

    SELECT DATE(scored_at) AS date, model_version, COUNT(*) AS predictions, ...
    FROM inference_log GROUP BY 1, 2 ORDER BY date DESC;

The connection's time zone is UTC, so ``DATE(scored_at)`` is the UTC date (the log's
``date`` partition), whatever the machine's zone.

- :func:`daily_summary`: that table per day and model version, plus latency p50 / p99
  (``quantile_cont``: linear interpolation, as ``numpy.percentile``) and the alert rate
  (share of rows whose ``status`` is not ``NORMAL``).
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

import math
import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb
import numpy as np

__all__ = [
    "DAILY_QUERY",
    "FIXED_COLUMNS",
    "SCORE_COLUMNS",
    "PSI_WATCH",
    "PSI_DRIFT",
    "KS_P",
    "KS_STAT",
    "MonitoringError",
    "Period",
    "connect",
    "columns",
    "versions",
    "time_range",
    "daily_summary",
    "score_histogram",
    "parse_day",
    "parse_period",
    "default_periods",
    "numeric_features",
    "top_features",
    "psi",
    "ks_test",
    "drift_level",
    "drift_report",
    "format_daily",
    "format_drift",
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

#: PSI at or above this is ``watch``: a moderate shift worth a look (the credit-scoring
#: convention: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant).
PSI_WATCH = 0.1
#: PSI above this is ``drift``.
PSI_DRIFT = 0.2
#: KS is ``drift`` when its p-value is below ``KS_P`` *and* its statistic above ``KS_STAT``:
#: on a day of traffic (thousands of rows) a p-value alone flags trivial differences, so
#: the statistic (the largest gap between the two CDFs) must also be material (> 10 points).
KS_P = 0.01
KS_STAT = 0.1
#: Empty bins get this share in :func:`psi` (the log of zero is undefined).
PSI_EPSILON = 1e-4

_NUMERIC_TYPES = re.compile(r"^(DOUBLE|FLOAT|REAL|DECIMAL.*|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT)$")


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
    models.monitoring.MonitoringError: inference log folder '/nonexistent/log' does not exist (set SCORING_INFERENCE_LOG_DIR or pass the folder)
    """
    root = Path(log_dir)
    if not root.is_dir():
        raise MonitoringError(
            f"inference log folder {str(root)!r} does not exist (set SCORING_INFERENCE_LOG_DIR or pass the folder)"
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
            "CREATE VIEW inference_log AS SELECT * FROM "
            f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
        )
    except duckdb.Error as exc:  # e.g. a file that is not Parquet
        con.close()
        raise MonitoringError(f"cannot read the inference log in {str(root)!r}: {str(exc).splitlines()[0]}") from None
    return con


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
    models.monitoring.MonitoringError: '26/11/2026' is not a date: expected YYYY-MM-DD
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
    models.monitoring.MonitoringError: period '2026-11-20': expected START..END, e.g. 2026-11-01..2026-11-07
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


# --- daily summary ----------------------------------------------------------------------------


def daily_summary(
    con: duckdb.DuckDBPyConnection,
    since: str | date | None = None,
    until: str | date | None = None,
    version: str | None = None,
    score: str = "fraud_score",
    flag_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Per UTC day and model version, newest day first: the columns of
    :data:`DAILY_QUERY` (``date``, ``model_version``, ``predictions``, ``avg_score``,
    ``flagged_count`` = rows with ``score > flag_threshold``, ``avg_latency``) plus
    ``p50_latency`` and ``p99_latency`` (ms, ``quantile_cont``), ``alerts`` (rows whose
    ``status`` is not ``NORMAL``) and ``alert_rate`` (``alerts / predictions``).

    ``since`` / ``until`` are inclusive days; ``version`` keeps one model version;
    ``score`` is the score column (``fraud_score``, ``risk_score``; IoT ``anomaly_score``,
    whose nulls during warm-up are left out of the average).
    """
    _require_numeric(con, score, "score column")
    where, params = _where(parse_day(since), parse_day(until), version)
    s = _q(score)
    sql = f"""
        SELECT DATE(scored_at) AS date, model_version, COUNT(*) AS predictions, AVG({s}) AS avg_score,
               SUM(CASE WHEN {s} > ? THEN 1 ELSE 0 END) AS flagged_count, AVG(latency_ms) AS avg_latency,
               quantile_cont(latency_ms, 0.5) AS p50_latency, quantile_cont(latency_ms, 0.99) AS p99_latency,
               SUM(CASE WHEN status <> 'NORMAL' THEN 1 ELSE 0 END) AS alerts
        FROM inference_log {where}
        GROUP BY 1, 2 ORDER BY date DESC NULLS LAST, model_version NULLS LAST
    """
    cur = con.execute(sql, [flag_threshold, *params])
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        r = dict(zip(names, row))
        r["flagged_count"] = int(r["flagged_count"] or 0)
        r["alerts"] = int(r["alerts"] or 0)
        r["alert_rate"] = r["alerts"] / r["predictions"] if r["predictions"] else None
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


# --- drift ------------------------------------------------------------------------------------


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (the reference).

    Bins are the reference's deciles (``bins`` quantiles; repeated cut points merged, so
    a column with few distinct values gets one bin per value), open at both ends so every
    current value falls in one; right-closed (``(a, b]``). An empty bin counts as
    :data:`PSI_EPSILON`. ``PSI = sum((a - e) * ln(a / e))`` over the bins' shares. NaNs
    are dropped. < 0.1 is stable, 0.1-0.2 a moderate shift, > 0.2 a significant one.

    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
    >>> round(psi(a, a), 6), psi(a, b) < 0.02, psi(a, b + 0.5) > 0.2
    (0.0, True, True)
    >>> round(psi([0, 0, 0, 0], [0, 0, 1, 1]), 2)  # a constant reference: the new value is caught
    4.6
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e, a = e[~np.isnan(e)], a[~np.isnan(a)]
    if e.size == 0 or a.size == 0:
        raise MonitoringError("psi: both samples need at least one value")
    cuts = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    pe = np.bincount(np.searchsorted(cuts, e, side="left"), minlength=cuts.size + 1) / e.size
    pa = np.bincount(np.searchsorted(cuts, a, side="left"), minlength=cuts.size + 1) / a.size
    pe, pa = np.maximum(pe, PSI_EPSILON), np.maximum(pa, PSI_EPSILON)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def ks_test(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic and p-value (``scipy.stats.ks_2samp``,
    two-sided; exact for small samples, asymptotic once ``n * m > 10,000``). NaNs are
    dropped. (scipy comes with scikit-learn, a dependency of the project.)

    >>> rng = np.random.default_rng(1)
    >>> stat, p = ks_test(rng.normal(0, 1, 2000), rng.normal(0.5, 1, 2000))
    >>> stat > 0.15, p < 1e-10
    (True, True)
    """
    from scipy.stats import ks_2samp

    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e, a = e[~np.isnan(e)], a[~np.isnan(a)]
    if e.size == 0 or a.size == 0:
        raise MonitoringError("ks_test: both samples need at least one value")
    method = "exact" if e.size * a.size <= 10_000 else "asymp"
    with warnings.catch_warnings():  # "exact calculation unsuccessful, switching to asymp" is fine
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ks_2samp(e, a, alternative="two-sided", method=method)
    return float(res.statistic), float(res.pvalue)


def drift_level(psi_value: float | None, ks_stat: float | None, ks_p: float | None) -> str:
    """``drift`` when PSI > :data:`PSI_DRIFT` (0.2) or the KS test is significant
    (p < :data:`KS_P` = 0.01 with statistic > :data:`KS_STAT` = 0.1); else ``watch``
    when PSI >= :data:`PSI_WATCH` (0.1); else ``ok``; ``no data`` without values in a
    period.

    Why both: PSI measures how much mass moved between the reference's deciles (scale
    free, blind to shifts inside one decile); KS finds any shift of the distribution but,
    on thousands of rows, calls trivial ones significant, hence the minimum statistic.
    A significant KS with a small statistic alone is not reported: with ten columns
    compared, p < 0.01 happens by chance.

    >>> drift_level(0.25, 0.05, 0.5), drift_level(0.05, 0.2, 1e-6), drift_level(0.15, 0.0, 1.0)
    ('drift', 'drift', 'watch')
    >>> drift_level(0.01, 0.08, 0.003), drift_level(None, None, None)
    ('ok', 'no data')
    """
    if psi_value is None or ks_stat is None or ks_p is None:
        return "no data"
    if psi_value > PSI_DRIFT or (ks_p < KS_P and ks_stat > KS_STAT):
        return "drift"
    if psi_value >= PSI_WATCH:
        return "watch"
    return "ok"


def numeric_features(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The numeric columns of the log beyond the fixed ones and the scores (the features
    the flow's :class:`~models.inference_log.LogSpec` names), in column order."""
    return [c for c, t in columns(con).items()
            if c not in FIXED_COLUMNS and c not in SCORE_COLUMNS and _NUMERIC_TYPES.match(t)]


def top_features(
    con: duckdb.DuckDBPyConnection, n: int = 8, period: Period | None = None, version: str | None = None,
) -> list[str]:
    """At most ``n`` numeric features with the largest variance over ``period`` (the
    reference period; default the whole log); constant and all-null columns are left out.
    Ties keep column order."""
    feats = numeric_features(con)
    if not feats or n <= 0:
        return []
    where, params = _where(version=version, period=period)
    row = _one(con, "SELECT " + ", ".join(f"var_samp({_q(f)}::DOUBLE)" for f in feats) + f" FROM inference_log {where}",
               params)
    ranked = [(-v, i, f) for i, (f, v) in enumerate(zip(feats, row))
              if v is not None and v > 0 and math.isfinite(v)]
    return [f for _, _, f in sorted(ranked)[:n]]


def default_periods(
    con: duckdb.DuckDBPyConnection, version: str | None = None, since: str | date | None = None,
    until: str | date | None = None,
) -> tuple[Period, Period]:
    """The first half and the second half of the log's ``scored_at`` range (of one
    version, between two inclusive days): ``[first, middle)`` and ``[middle, last]``."""
    rng = time_range(con, version, since, until)
    if rng is None:
        raise MonitoringError("no rows in the inference log" + (f" for model version {version!r}" if version else ""))
    lo, hi = rng
    if lo == hi:
        raise MonitoringError(
            f"every row was scored at {_iso(lo)}: no two periods to compare (give --reference and --current)"
        )
    mid = lo + (hi - lo) / 2
    return Period(lo, mid), Period(mid, hi + timedelta(microseconds=1))


def _sample(
    con: duckdb.DuckDBPyConnection, cols: Sequence[str], period: Period, version: str | None, max_rows: int,
) -> dict[str, np.ndarray]:
    where, params = _where(version=version, period=period)
    sel = ", ".join(f"{_q(c)}::DOUBLE AS {_q(c)}" for c in cols)
    sql = f"SELECT {sel} FROM inference_log {where}"
    (count,) = _one(con, f"SELECT COUNT(*) FROM inference_log {where}", params)
    if count > max_rows:
        sql = f"SELECT * FROM ({sql}) USING SAMPLE reservoir({int(max_rows)} ROWS) REPEATABLE (42)"
    rows = con.execute(sql, params).fetchall()
    data = np.array(rows, dtype=float).reshape(len(rows), len(cols)) if rows else np.empty((0, len(cols)))
    out = {}
    for i, c in enumerate(cols):
        v = data[:, i]
        out[c] = v[np.isfinite(v)]
    return out


def drift_report(
    con: duckdb.DuckDBPyConnection,
    reference: Period | str | Sequence[Any] | None = None,
    current: Period | str | Sequence[Any] | None = None,
    columns: Sequence[str] | None = None,
    score: str = "fraud_score",
    top: int = 8,
    bins: int = 10,
    version: str | None = None,
    max_rows: int = 200_000,
    since: str | date | None = None,
    until: str | date | None = None,
) -> dict[str, Any]:
    """Drift of ``columns`` between the ``reference`` and the ``current`` period.

    ``columns`` default to ``score`` then the :func:`top_features` (``top`` of them, by
    variance over the reference period). Periods are :class:`Period`, ``START..END`` text
    or ``(start, end)`` pairs (:func:`parse_period`); without them the log's first half
    is compared with its second half (:func:`default_periods`; ``since`` / ``until``,
    inclusive days, narrow that range and are otherwise unused). ``version`` compares one
    model version. Each period is read whole up to ``max_rows`` rows, else a fixed-seed
    reservoir sample of that many.

    Returns ``{"reference": {...}, "current": {...}, "columns": [...]}``: each period as
    ISO ``start`` / ``end`` (half-open) and ``rows``; per column ``column``, ``psi``,
    ``ks_stat``, ``ks_p``, ``n_reference``, ``n_current`` (non-null values),
    ``mean_reference``, ``mean_current``, ``level`` (:func:`drift_level`) and ``flagged``
    (``level == "drift"``).
    """
    if (reference is None) != (current is None):
        raise MonitoringError("give both the reference and the current period, or neither")
    if reference is None or current is None:
        ref, cur = default_periods(con, version, since, until)
    else:
        ref, cur = parse_period(reference), parse_period(current)
    if columns is None:
        _require_numeric(con, score, "score column")
        cols = [score] + [f for f in top_features(con, top, ref, version) if f != score]
    else:
        cols = list(dict.fromkeys(columns))
        for c in cols:
            _require_numeric(con, c)
    ref_data = _sample(con, cols, ref, version, max_rows)
    cur_data = _sample(con, cols, cur, version, max_rows)
    counts = {}
    for name, period in (("reference", ref), ("current", cur)):
        where, params = _where(version=version, period=period)
        counts[name] = _one(con, f"SELECT COUNT(*) FROM inference_log {where}", params)[0]
    out_cols = []
    for c in cols:
        e, a = ref_data[c], cur_data[c]
        if e.size and a.size:
            p_val: float | None = psi(e, a, bins)
            stat, p = ks_test(e, a)
            ks_stat: float | None = stat
            ks_p: float | None = p
        else:
            p_val = ks_stat = ks_p = None
        level = drift_level(p_val, ks_stat, ks_p)
        out_cols.append({
            "column": c, "psi": p_val, "ks_stat": ks_stat, "ks_p": ks_p,
            "n_reference": int(e.size), "n_current": int(a.size),
            "mean_reference": float(e.mean()) if e.size else None, "mean_current": float(a.mean()) if a.size else None,
            "level": level, "flagged": level == "drift",
        })
    return {
        "reference": {**ref.as_dict(), "rows": int(counts["reference"])},
        "current": {**cur.as_dict(), "rows": int(counts["current"])},
        "version": version,
        "thresholds": {"psi_watch": PSI_WATCH, "psi_drift": PSI_DRIFT, "ks_p": KS_P, "ks_stat": KS_STAT},
        "columns": out_cols,
    }


# --- text -------------------------------------------------------------------------------------


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in (head, *rows)]


def format_daily(rows: Sequence[dict[str, Any]], score: str = "fraud_score") -> str:
    """The daily table as text.

    >>> print(format_daily([{"date": date(2026, 11, 26), "model_version": "m/1", "predictions": 1200,
    ...     "avg_score": 0.0312, "flagged_count": 14, "alerts": 17, "alert_rate": 17 / 1200, "avg_latency": 74.21,
    ...     "p50_latency": 70.1, "p99_latency": 242.3}]))
    date        model_version  predictions  avg fraud_score  flagged  alerts  alert rate  avg ms  p50 ms  p99 ms
    2026-11-26  m/1                  1,200           0.0312       14      17      1.42 %    74.2    70.1   242.3
    """
    head = ("date", "model_version", "predictions", f"avg {score}", "flagged", "alerts", "alert rate",
            "avg ms", "p50 ms", "p99 ms")
    body = [(
        str(r["date"]), r["model_version"] or "-", f"{r['predictions']:,}", _f(r["avg_score"], ".4f"),
        f"{r['flagged_count']:,}", f"{r['alerts']:,}",
        "-" if r["alert_rate"] is None else f"{100 * r['alert_rate']:.2f} %",
        _f(r["avg_latency"], ".1f"), _f(r["p50_latency"], ".1f"), _f(r["p99_latency"], ".1f"),
    ) for r in rows]
    return "\n".join(_table(head, body, right={2, 3, 4, 5, 6, 7, 8, 9}))


def format_drift(report: dict[str, Any]) -> str:
    """The drift report as text: the two periods, then one line per column."""
    ref, cur = report["reference"], report["current"]
    lines = [
        f"drift: reference {ref['start']}..{ref['end']} ({ref['rows']:,} rows) vs current "
        f"{cur['start']}..{cur['end']} ({cur['rows']:,} rows)"
        + (f", model version {report['version']}" if report.get("version") else ""),
        f"  (drift: PSI > {PSI_DRIFT} or KS p < {KS_P} with stat > {KS_STAT}; watch: PSI >= {PSI_WATCH})",
    ]
    head = ("column", "psi", "ks stat", "ks p", "mean ref", "mean cur", "level")
    body = [(
        c["column"], _f(c["psi"], ".4f"), _f(c["ks_stat"], ".4f"), _f(c["ks_p"], ".2g"),
        _f(c["mean_reference"], ".4g"), _f(c["mean_current"], ".4g"),
        c["level"].upper() if c["level"] == "drift" else c["level"],
    ) for c in report["columns"]]
    lines += ["  " + line for line in _table(head, body, right={1, 2, 3, 4, 5})]
    return "\n".join(lines)
