"""Drift between two periods of the inference log: the population stability index
(:func:`psi`) and the two-sample Kolmogorov-Smirnov test (:func:`ks_test`) per column,
with a level ``ok`` / ``watch`` / ``drift`` (:func:`drift_report`)."""

from __future__ import annotations

import math
import warnings
from datetime import date, timedelta
from typing import Any, Sequence

import duckdb
import numpy as np

from monitoring.queries import (
    _NUMERIC_TYPES,
    FIXED_COLUMNS,
    SCORE_COLUMNS,
    MonitoringError,
    Period,
    _iso,
    _one,
    _q,
    _require_numeric,
    _where,
    columns,
    parse_period,
    time_range,
)

__all__ = ["PSI_WATCH", "PSI_DRIFT", "KS_P", "KS_STAT", "default_periods", "numeric_features", "top_features", "psi", "ks_test", "drift_level", "drift_report"]

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
