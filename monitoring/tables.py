"""Text tables of the monitoring results, for the terminal (``streamscore monitor``)."""

from __future__ import annotations

from typing import Any, Sequence

from monitoring.drift import KS_P, KS_STAT, PSI_DRIFT, PSI_WATCH

__all__ = ["format_daily", "format_drift"]

# --- text -------------------------------------------------------------------------------------


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in (head, *rows)]


def format_daily(rows: Sequence[dict[str, Any]], score: str = "fraud_score") -> str:
    """The daily table as text.

    >>> from datetime import date
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
