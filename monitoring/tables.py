"""Text tables of the monitoring results, for the terminal (``streamscore monitor``)."""

from __future__ import annotations

from typing import Any, Sequence

from monitoring.drift import KS_P, KS_STAT, PSI_DRIFT, PSI_WATCH

__all__ = ["format_daily", "format_summary", "format_shadows", "format_bin", "format_drift"]

# --- text -------------------------------------------------------------------------------------


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in (head, *rows)]


def format_bin(r: dict[str, Any], bin: str) -> str:
    """A row's time bin: its UTC day, or day and hour.

    >>> from datetime import datetime, timezone
    >>> t = datetime(2026, 11, 26, 10, tzinfo=timezone.utc)
    >>> format_bin({"bin": t}, "hour"), format_bin({"bin": t, "date": t.date()}, "day")
    ('2026-11-26 10:00', '2026-11-26')
    """
    if bin == "hour" and r.get("bin") is not None:
        return r["bin"].strftime("%Y-%m-%d %H:00")
    return str(r.get("date") if r.get("date") is not None else r.get("bin"))


def format_summary(rows: Sequence[dict[str, Any]], score: str = "fraud_score", bin: str = "day") -> str:
    """The summary table (:func:`monitoring.queries.summary`) as text, one line per bin and version.

    >>> from datetime import datetime, timezone
    >>> print(format_summary([{"bin": datetime(2026, 11, 26, 10, tzinfo=timezone.utc), "model_version": "m/1",
    ...     "predictions": 1200, "avg_score": 0.0312, "flagged_count": 14, "alerts": 17, "alert_rate": 17 / 1200,
    ...     "avg_latency": 74.21, "p50_latency": 70.1, "p99_latency": 242.3}], bin="hour"))
    hour (UTC)        model_version  predictions  avg fraud_score  flagged  alerts  alert rate  avg ms  p50 ms  p99 ms
    2026-11-26 10:00  m/1                  1,200           0.0312       14      17      1.42 %    74.2    70.1   242.3
    """
    head = ("hour (UTC)" if bin == "hour" else "date", "model_version", "predictions", f"avg {score}", "flagged",
            "alerts", "alert rate", "avg ms", "p50 ms", "p99 ms")
    body = [(
        format_bin(r, bin), r["model_version"] or "-", f"{r['predictions']:,}", _f(r["avg_score"], ".4f"),
        f"{r['flagged_count']:,}", f"{r['alerts']:,}",
        "-" if r["alert_rate"] is None else f"{100 * r['alert_rate']:.2f} %",
        _f(r["avg_latency"], ".1f"), _f(r["p50_latency"], ".1f"), _f(r["p99_latency"], ".1f"),
    ) for r in rows]
    return "\n".join(_table(head, body, right={2, 3, 4, 5, 6, 7, 8, 9}))


def format_shadows(rows: Sequence[dict[str, Any]]) -> str:
    """Shadows beside their decider (:func:`monitoring.queries.shadow_summary`, without bins) as text.

    >>> print(format_shadows([{"model_version": "m/1", "shadow": "m/2", "scored": 2097, "avg_shadow": 0.0151,
    ...     "avg_decider": 0.0127, "avg_diff": 0.0024, "avg_abs_diff": 0.0102, "agreement": 0.9952,
    ...     "shadow_alerts": 31, "decider_alerts": 27}]))
    decider  shadow  scored  avg shadow  avg decider  avg diff  avg |diff|  status agreement  shadow alerts  decider alerts
    m/1      m/2      2,097      0.0151       0.0127   +0.0024      0.0102           99.52 %             31              27
    """
    head = ("decider", "shadow", "scored", "avg shadow", "avg decider", "avg diff", "avg |diff|",
            "status agreement", "shadow alerts", "decider alerts")
    body = [(
        r["model_version"] or "-", r["shadow"], f"{r['scored']:,}", _f(r["avg_shadow"], ".4f"),
        _f(r["avg_decider"], ".4f"), _f(r["avg_diff"], "+.4f"), _f(r["avg_abs_diff"], ".4f"),
        "-" if r["agreement"] is None else f"{100 * r['agreement']:.2f} %",
        f"{r['shadow_alerts']:,}", f"{r['decider_alerts']:,}",
    ) for r in rows]
    return "\n".join(_table(head, body, right=set(range(2, 10))))


def format_daily(rows: Sequence[dict[str, Any]], score: str = "fraud_score") -> str:
    """The daily table as text (:func:`format_summary` per day).

    >>> from datetime import date
    >>> print(format_daily([{"date": date(2026, 11, 26), "model_version": "m/1", "predictions": 1200,
    ...     "avg_score": 0.0312, "flagged_count": 14, "alerts": 17, "alert_rate": 17 / 1200, "avg_latency": 74.21,
    ...     "p50_latency": 70.1, "p99_latency": 242.3}]))
    date        model_version  predictions  avg fraud_score  flagged  alerts  alert rate  avg ms  p50 ms  p99 ms
    2026-11-26  m/1                  1,200           0.0312       14      17      1.42 %    74.2    70.1   242.3
    """
    return format_summary(rows, score, "day")


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
