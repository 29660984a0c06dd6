"""One self-contained HTML page over the inference log (``streamscore monitor --html``).

The page needs no network: its charts are inline SVG drawn here in Python, its style
and its one small script are inline, and a Content-Security-Policy forbids loading
anything else. Charts (each a ``<figure class="chart">`` with an ``id``, a
``data-chart`` name, a ``title`` and a ``data-points`` count):

- ``chart-predictions``: predictions per hour or day (the bin), stacked by model version;
- ``chart-alert-rate``: alert rate (status not NORMAL) per bin and version;
- ``chart-score-hist``: the score's distribution per version (share per bin, log scale);
- ``chart-latency``: latency p50 and p99 per bin and version;
- ``chart-shadow`` (when shadows scored): per bin, each shadow's status agreement with
  its decider and their mean absolute score difference;
- ``chart-drift``: PSI per column between two periods, with the watch / drift lines.

Below them: the drift table, the shadows beside their decider, and the table per bin and
version. Like every summary, the page counts one row per ``event_id`` (the last; the
number of repeats removed is a KPI).

Every drawn element of a chart has the class ``mark``. After load, the script writes
into each figure's ``data-drawn`` how many marks have a non-empty box, and into
``document.body.dataset.rendered`` how many charts drew at least one, so a browser test
compares it with ``data-charts``.

>>> import tempfile
>>> from models.inference_log import LogSpec, LogWriter, log_row
>>> from monitoring.queries import connect
>>> spec = LogSpec("fraud", "id", "user", scores=("fraud_score",), features=("amount",))
>>> tmp = Path(tempfile.mkdtemp())
>>> w = LogWriter(tmp / "log", spec, part=0)
>>> w.write([log_row({"id": f"e{i}", "user": "u", "fraud_score": (i % 10) / 10, "amount": float(i % 7),
...     "status": "NORMAL", "model_version": "m/1", "latency_ms": 5.0 + i % 3,
...     "scored_at": f"2026-11-{20 + i // 50}T10:00:00Z"}, spec) for i in range(200)])
>>> w.close()
>>> page = write_html(connect(tmp / "log"), tmp / "report.html")
>>> text = page.read_text()
>>> text.count('<figure class="chart'), 'data-charts="5"' in text, "http://" in text or "https://" in text
(5, True, False)
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import duckdb

from monitoring import (
    KS_P,
    KS_STAT,
    PSI_DRIFT,
    PSI_WATCH,
    MonitoringError,
    Period,
    choose_bin,
    drift_report,
    format_bin,
    repeats,
    score_histogram,
    shadow_summary,
    summary,
    time_range,
)

__all__ = ["write_html", "render_html", "PALETTE"]

#: Colours of model versions, in order of their names (colour-blind friendly, Okabe-Ito-like).
PALETTE = ("#2563eb", "#ea580c", "#059669", "#9333ea", "#db2777", "#0891b2", "#ca8a04", "#4b5563")
LEVEL_COLOURS = {"ok": "#16a34a", "watch": "#d97706", "drift": "#dc2626", "no data": "#9ca3af"}

W, H = 660, 300  # chart box (px); the SVG scales to its column
PSI_AXIS_MAX = 1.0  # the drift chart's axis ends here at most


@dataclass(frozen=True)
class _Frame:
    width: int = W
    height: int = H
    left: int = 64
    right: int = 20
    top: int = 18
    bottom: int = 46

    @property
    def x0(self) -> float:
        return self.left

    @property
    def x1(self) -> float:
        return self.width - self.right

    @property
    def y0(self) -> float:  # the bottom of the plot
        return self.height - self.bottom

    @property
    def y1(self) -> float:
        return self.top


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _ticks(hi: float, n: int = 5) -> list[float]:
    """Round tick values from 0 covering ``hi``.

    >>> _ticks(0.37), _ticks(1234, 4), _ticks(0)
    ([0.0, 0.1, 0.2, 0.3, 0.4], [0.0, 500.0, 1000.0, 1500.0], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    """
    if not hi > 0 or not math.isfinite(hi):
        hi = 1.0
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    count = math.ceil(hi / step - 1e-9)
    return [float(round(i * step, 12)) for i in range(count + 1)]


def _fmt_num(v: float) -> str:
    """A short axis label.

    >>> _fmt_num(0.0), _fmt_num(2.5), _fmt_num(1500), _fmt_num(2_000_000), _fmt_num(0.05)
    ('0', '2.5', '1.5k', '2M', '0.05')
    """
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:.4g}"


def _pct(v: float, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f}%"


def _svg(frame: _Frame, body: list[str], label: str) -> str:
    return (f'<svg viewBox="0 0 {frame.width} {frame.height}" width="{frame.width}" height="{frame.height}" '
            f'role="img" aria-label="{_e(label)}">' + "".join(body) + "</svg>")


def _figure(chart_id: str, name: str, title: str, note: str, svg: str, legend: Sequence[tuple[str, str, str]],
            points: int) -> str:
    items = "".join(
        f'<span class="key"><span class="swatch {style}" style="--c:{colour}"></span>{_e(text)}</span>'
        for text, colour, style in legend
    )
    return (
        f'<figure class="chart" id="{chart_id}" data-chart="{name}" data-points="{points}" title="{_e(title)}">'
        f"<figcaption><h2>{_e(title)}</h2><p>{_e(note)}</p></figcaption>"
        f'{svg}<div class="legend">{items}</div></figure>'
    )


def _y_axis(frame: _Frame, ticks: Sequence[float], y: Callable[[float], float], fmt: Callable[[float], str],
            label: str) -> list[str]:
    out = []
    for t in ticks:
        yy = y(t)
        out.append(f'<line class="grid" x1="{frame.x0}" x2="{frame.x1}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        out.append(f'<text class="tick" x="{frame.x0 - 6}" y="{yy + 4:.1f}" text-anchor="end">{_e(fmt(t))}</text>')
    out.append(f'<text class="axis-label" transform="translate(14 {(frame.y0 + frame.y1) / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{_e(label)}</text>')
    out.append(f'<line class="axis" x1="{frame.x0}" x2="{frame.x1}" y1="{frame.y0}" y2="{frame.y0}"/>')
    return out


@dataclass(frozen=True)
class _Bins:
    """The charts' x axis: the time bins (UTC hour or day starts) in order."""

    starts: tuple[datetime, ...]
    unit: str = "day"

    def __len__(self) -> int:
        return len(self.starts)

    def text(self, i: int) -> str:
        """``2026-11-26`` or ``2026-11-26 10:00``."""
        t = self.starts[i]
        return t.strftime("%Y-%m-%d %H:00") if self.unit == "hour" else t.date().isoformat()

    def tick(self, i: int) -> str:
        """A short axis label: ``Nov 26``, or ``10:00`` (``Nov 26 10h`` where a day starts)."""
        t = self.starts[i]
        if self.unit != "hour":
            return t.strftime("%b %d")
        return t.strftime("%b %d %Hh") if i == 0 or t.date() != self.starts[i - 1].date() else t.strftime("%H:00")


def _x_bins(frame: _Frame, bins: _Bins, x: Callable[[int], float]) -> list[str]:
    every = max(1, math.ceil(len(bins) / 10))
    out = []
    for i in range(len(bins)):
        if i % every == 0 or i == len(bins) - 1 and len(bins) <= 10:
            out.append(f'<text class="tick" x="{x(i):.1f}" y="{frame.y0 + 18}" text-anchor="middle">'
                       f'{_e(bins.tick(i))}</text>')
    if len(bins):
        span = f"{bins.text(0)} .. {bins.text(len(bins) - 1)} (UTC {bins.unit}s)"
        out.append(f'<text class="axis-label" x="{(frame.x0 + frame.x1) / 2:.1f}" y="{frame.height - 6}" '
                   f'text-anchor="middle">{_e(span)}</text>')
    return out


def _no_data(frame: _Frame, text: str) -> list[str]:
    return [f'<text class="mark empty" x="{frame.width / 2}" y="{frame.height / 2}" text-anchor="middle">'
            f"{_e(text)}</text>"]


# --- charts -------------------------------------------------------------------------------------


def _predictions_chart(days: _Bins, versions: list[str], colours: dict[str, str],
                       by: dict[tuple[datetime, str], dict[str, Any]]) -> str:
    f = _Frame()
    totals = [sum(by.get((d, v), {}).get("predictions", 0) for v in versions) for d in days.starts]
    ticks = _ticks(max(totals, default=0))
    top = ticks[-1]
    band = (f.x1 - f.x0) / max(1, len(days))
    bar = min(48.0, band * 0.7)
    x = lambda i: f.x0 + band * (i + 0.5)  # noqa: E731
    y = lambda v: f.y0 - (f.y0 - f.y1) * v / top  # noqa: E731
    body = _y_axis(f, ticks, y, _fmt_num, "predictions")
    points = 0
    for i, d in enumerate(days.starts):
        base = 0
        for v in versions:
            n = by.get((d, v), {}).get("predictions", 0)
            if not n:
                continue
            y_top, y_bot = y(base + n), y(base)
            body.append(
                f'<rect class="mark" x="{x(i) - bar / 2:.1f}" y="{y_top:.1f}" width="{bar:.1f}" '
                f'height="{max(0.5, y_bot - y_top):.1f}" fill="{colours[v]}">'
                f"<title>{_e(days.text(i))} {_e(v)}: {n:,} predictions</title></rect>"
            )
            base += n
            points += 1
    body += _x_bins(f, days, x)
    if not points:
        body += _no_data(f, "no predictions")
    svg = _svg(f, body, f"predictions per {days.unit} and model version")
    legend = [(v, colours[v], "box") for v in versions]
    return _figure("chart-predictions", "predictions", f"Predictions per {days.unit}",
                   "stacked by the model version that decided them", svg, legend, points)


def _lines(f: _Frame, days: _Bins, series: list[tuple[str, list[float | None], str, bool]],
           x: Callable[[int], float], y: Callable[[float], float],
           fmt: Callable[[float], str]) -> tuple[list[str], int]:
    """Line paths (broken at gaps) with a dot per point; ``(name, values, colour, dashed)``."""
    body, points = [], 0
    for name, values, colour, dashed in series:
        d, pen_down = [], False
        for i, v in enumerate(values):
            if v is None:
                pen_down = False
                continue
            d.append(f"{'L' if pen_down else 'M'}{x(i):.1f} {y(v):.1f}")
            pen_down = True
        if not d:
            continue
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        body.append(f'<path class="mark line" d="{" ".join(d)}" stroke="{colour}"{dash}>'
                    f"<title>{_e(name)}</title></path>")
        for i, v in enumerate(values):
            if v is None:
                continue
            body.append(
                f'<circle class="mark dot" cx="{x(i):.1f}" cy="{y(v):.1f}" r="{2.5 if dashed else 3.5}" '
                f'fill="{"#fff" if dashed else colour}" stroke="{colour}">'
                f"<title>{_e(days.text(i))} {_e(name)}: {_e(fmt(v))}</title></circle>"
            )
            points += 1
    return body, points


def _alert_rate_chart(days: _Bins, versions: list[str], colours: dict[str, str],
                      by: dict[tuple[datetime, str], dict[str, Any]]) -> str:
    f = _Frame()
    series = [(v, [by[(d, v)]["alert_rate"] if (d, v) in by else None for d in days.starts], colours[v], False)
              for v in versions]
    hi = max((r for _, vals, _, _ in series for r in vals if r is not None), default=0.0)
    ticks = _ticks(hi if hi > 0 else 0.01)
    top = ticks[-1]
    band = (f.x1 - f.x0) / max(1, len(days))
    x = lambda i: f.x0 + band * (i + 0.5)  # noqa: E731
    y = lambda v: f.y0 - (f.y0 - f.y1) * v / top  # noqa: E731
    body = _y_axis(f, ticks, y, lambda t: _pct(t, 2 if top < 0.05 else 1), "alert rate")
    marks, points = _lines(f, days, series, x, y, lambda v: _pct(v, 2))
    body += marks + _x_bins(f, days, x)
    if not points:
        body += _no_data(f, "no predictions")
    legend = [(v, colours[v], "line") for v in versions]
    return _figure("chart-alert-rate", "alert-rate", f"Alert rate per {days.unit}",
                   "share of predictions whose status is not NORMAL (WARNING or CRITICAL)",
                   _svg(f, body, f"alert rate per {days.unit} and model version"), legend, points)


def _latency_chart(days: _Bins, versions: list[str], colours: dict[str, str],
                   by: dict[tuple[datetime, str], dict[str, Any]]) -> str:
    f = _Frame()
    series = []
    for v in versions:
        for key, dashed in (("p50_latency", False), ("p99_latency", True)):
            vals = [by[(d, v)][key] if (d, v) in by else None for d in days.starts]
            series.append((f"{v} {key[:3]}", vals, colours[v], dashed))
    hi = max((r for _, vals, _, _ in series for r in vals if r is not None), default=0.0)
    ticks = _ticks(hi)
    top = ticks[-1]
    band = (f.x1 - f.x0) / max(1, len(days))
    x = lambda i: f.x0 + band * (i + 0.5)  # noqa: E731
    y = lambda v: f.y0 - (f.y0 - f.y1) * v / top  # noqa: E731
    body = _y_axis(f, ticks, y, _fmt_num, "latency (ms)")
    marks, points = _lines(f, days, series, x, y, lambda v: f"{v:.1f} ms")
    body += marks + _x_bins(f, days, x)
    if not points:
        body += _no_data(f, "no latencies")
    legend = [(name, colour, "dash" if dashed else "line") for name, _, colour, dashed in series]
    return _figure("chart-latency", "latency", f"Latency p50 and p99 per {days.unit}",
                   "arrival in the dataflow to scored; p50 solid, p99 dashed",
                   _svg(f, body, f"latency percentiles per {days.unit} and model version"), legend, points)


def _shadow_chart(days: _Bins, pairs: list[tuple[str, str]], colours: dict[tuple[str, str], str],
                  by: dict[tuple[datetime, str, str], dict[str, Any]]) -> str:
    """Per bin, each shadow's status agreement with its decider (solid) and mean
    absolute score difference (dashed, same axis: both are in [0, 1])."""
    f = _Frame()
    series = []
    for pair in pairs:
        for key, dashed, what in (("agreement", False, "status agreement"), ("avg_abs_diff", True, "mean |diff|")):
            vals = [by[(d, *pair)][key] if (d, *pair) in by else None for d in days.starts]
            series.append((f"{pair[1]} vs {pair[0]} {what}", vals, colours[pair], dashed))
    ticks = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    band = (f.x1 - f.x0) / max(1, len(days))
    x = lambda i: f.x0 + band * (i + 0.5)  # noqa: E731
    y = lambda v: f.y0 - (f.y0 - f.y1) * v  # noqa: E731
    body = _y_axis(f, ticks, y, lambda t: f"{t:g}", "agreement · mean |diff|")
    marks, points = _lines(f, days, series, x, y, lambda v: f"{v:.4f}")
    body += marks + _x_bins(f, days, x)
    if not points:
        body += _no_data(f, "no shadow scores")
    legend = [(name, colour, "dash" if dashed else "line") for name, _, colour, dashed in series]
    return _figure("chart-shadow", "shadow", f"Shadows beside their decider per {days.unit}",
                   "on the events both scored: share with the same status (solid), mean |shadow - decider| "
                   "fraud_score (dashed)", _svg(f, body, f"shadow agreement per {days.unit}"), legend, points)


def _histogram_chart(hist: dict[str, list[int]], colours: dict[str, str], score: str, threshold: float) -> str:
    f = _Frame()
    bins = len(next(iter(hist.values()))) if hist else 20
    shares = {v: [c / max(1, sum(counts)) for c in counts] for v, counts in hist.items()}
    smallest = min((s for vals in shares.values() for s in vals if s > 0), default=0.01)
    # at least one decade on the log axis: with every score in one bin (a log of 1 row, or a
    # few alike) the smallest share is 100% and the axis would have no height
    lo_exp = min(-1, math.floor(math.log10(smallest)))
    lo = 10.0 ** lo_exp
    x = lambda s: f.x0 + (f.x1 - f.x0) * s  # noqa: E731  (s in [0, 1])
    y = lambda v: f.y0 - (f.y0 - f.y1) * (math.log10(max(v, lo)) - lo_exp) / (0 - lo_exp)  # noqa: E731
    ticks = [10.0 ** e for e in range(lo_exp, 1)]
    body = _y_axis(f, ticks, y, lambda t: f"{100 * t:g}%", "share of predictions (log)")
    body.pop()  # the log axis has no zero line: draw the bottom axis below
    body.append(f'<line class="axis" x1="{f.x0}" x2="{f.x1}" y1="{f.y0}" y2="{f.y0}"/>')
    for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        body.append(f'<text class="tick" x="{x(t):.1f}" y="{f.y0 + 18}" text-anchor="middle">{t:g}</text>')
    body.append(f'<text class="axis-label" x="{(f.x0 + f.x1) / 2:.1f}" y="{f.height - 6}" text-anchor="middle">'
                f"{_e(score)} ({bins} bins)</text>")
    tx = x(threshold)
    body.append(f'<line class="threshold" x1="{tx:.1f}" x2="{tx:.1f}" y1="{f.y1}" y2="{f.y0}"/>'
                f'<text class="threshold-label" x="{tx + 4:.1f}" y="{f.y1 + 10}">flagged &gt; {threshold:g}</text>')
    points = 0
    for v, vals in shares.items():
        d = [f"M{x(0):.1f} {f.y0:.1f}"]
        for i, s in enumerate(vals):
            yy = y(s) if s > 0 else f.y0
            d.append(f"L{x(i / bins):.1f} {yy:.1f} L{x((i + 1) / bins):.1f} {yy:.1f}")
        d.append(f"L{x(1):.1f} {f.y0:.1f} Z")
        body.append(f'<path class="mark hist" d="{" ".join(d)}" stroke="{colours[v]}" fill="{colours[v]}">'
                    f"<title>{_e(v)}: {sum(hist[v]):,} scores</title></path>")
        for i, s in enumerate(vals):
            if s > 0:
                body.append(
                    f'<rect class="mark hit" x="{x(i / bins):.1f}" y="{y(s):.1f}" width="{x(1 / bins) - x(0):.1f}" '
                    f'height="{max(0.5, f.y0 - y(s)):.1f}" fill="transparent"><title>{_e(v)} '
                    f"{i / bins:g}-{(i + 1) / bins:g}: {_pct(s, 2)} ({hist[v][i]:,})</title></rect>"
                )
                points += 1
    if not points:
        body += _no_data(f, f"no {score} values")
    legend = [(v, colours[v], "box") for v in shares]
    return _figure("chart-score-hist", "score-hist", f"Distribution of {score}",
                   "share of each version's predictions per bin; log scale so the tail shows",
                   _svg(f, body, f"{score} histogram per model version"), legend, points)


def _drift_chart(report: dict[str, Any]) -> str:
    cols = report["columns"]
    label_w = 16 + 7 * max((len(c["column"]) for c in cols), default=10)
    f = _Frame(width=1320, height=max(150, 70 + 30 * len(cols)), left=min(260, max(120, label_w)), right=200,
               top=30, bottom=40)
    # The axis stops at 1 (five times the drift line) so the thresholds stay readable;
    # a longer bar ends in a break mark and says its value.
    worst = max([c["psi"] for c in cols if c["psi"] is not None] + [PSI_DRIFT * 1.5])
    ticks = _ticks(min(worst, PSI_AXIS_MAX))
    top = ticks[-1]
    x = lambda v: f.x0 + (f.x1 - f.x0) * min(v, top) / top  # noqa: E731
    body = []
    for t in ticks:
        body.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{f.y1}" y2="{f.y0}"/>'
                    f'<text class="tick" x="{x(t):.1f}" y="{f.y0 + 16}" text-anchor="middle">{t:g}</text>')
    body.append(f'<text class="axis-label" x="{(f.x0 + f.x1) / 2:.1f}" y="{f.height - 4}" text-anchor="middle">'
                "population stability index (PSI)</text>")
    points = 0
    for i, c in enumerate(cols):
        yc = f.y1 + 16 + 30 * i
        body.append(f'<text class="tick name" x="{f.x0 - 8}" y="{yc + 4}" text-anchor="end">{_e(c["column"])}</text>')
        colour = LEVEL_COLOURS.get(c["level"], "#9ca3af")
        if c["psi"] is None:
            body.append(f'<text class="mark value" x="{f.x0 + 6}" y="{yc + 4}">no data in a period</text>')
            points += 1
            continue
        w = max(1.5, x(c["psi"]) - f.x0)
        tip = (f'{c["column"]}: PSI {c["psi"]:.4f}, KS {c["ks_stat"]:.3f} (p {c["ks_p"]:.2g}), '
               f'mean {c["mean_reference"]:.4g} -> {c["mean_current"]:.4g}: {c["level"]}')
        body.append(f'<rect class="mark" x="{f.x0}" y="{yc - 9}" width="{w:.1f}" height="18" rx="2" fill="{colour}">'
                    f"<title>{_e(tip)}</title></rect>")
        if c["psi"] > top:  # a break mark: the bar goes on
            bx = f.x0 + w - 14
            body.append(f'<path class="break" d="M{bx:.1f} {yc + 11} l6 -22 M{bx + 6:.1f} {yc + 11} l6 -22"/>')
        label = f'{c["psi"]:.3f} · KS {c["ks_stat"]:.2f}' + (f' · {c["level"]}' if c["level"] != "ok" else "")
        body.append(f'<text class="value {c["level"]}" x="{f.x0 + w + 8:.1f}" y="{yc + 4}">{_e(label)}</text>')
        points += 1
    for value, cls, text, anchor, dx in ((PSI_WATCH, "watch", f"watch {PSI_WATCH:g}", "end", -4),
                                         (PSI_DRIFT, "drift", f"drift {PSI_DRIFT:g}", "start", 4)):
        body.append(f'<line class="threshold {cls}" x1="{x(value):.1f}" x2="{x(value):.1f}" '
                    f'y1="{f.y1 - 8}" y2="{f.y0}"/>'
                    f'<text class="threshold-label {cls}" x="{x(value) + dx:.1f}" y="{f.y1 - 12}" '
                    f'text-anchor="{anchor}">{text}</text>')
    body.append(f'<line class="axis" x1="{f.x0}" x2="{f.x0}" y1="{f.y1}" y2="{f.y0}"/>')
    if not cols:
        body += _no_data(f, "no columns to compare")
    ref, cur = report["reference"], report["current"]
    note = (f"reference {_short(ref['start'])} .. {_short(ref['end'])} ({ref['rows']:,} rows) vs current "
            f"{_short(cur['start'])} .. {_short(cur['end'])} ({cur['rows']:,} rows)")
    legend = [(f"ok (PSI < {PSI_WATCH:g})", LEVEL_COLOURS["ok"], "box"),
              (f"watch (PSI {PSI_WATCH:g}-{PSI_DRIFT:g})", LEVEL_COLOURS["watch"], "box"),
              (f"drift (PSI > {PSI_DRIFT:g} or KS p < {KS_P:g} and stat > {KS_STAT:g})", LEVEL_COLOURS["drift"], "box")]
    return _figure("chart-drift", "drift", "Drift per column", note,
                   _svg(f, body, "PSI per column between the reference and the current period"), legend, points)


def _short(iso: str) -> str:
    """``2026-11-20T00:00:00Z`` -> ``2026-11-20 00:00``."""
    return iso.replace("T", " ")[:16]


# --- the page -------------------------------------------------------------------------------------

_CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, sans-serif; }
header { padding: 22px 32px 8px; }
h1 { margin: 0 0 2px; font-size: 22px; font-weight: 650; }
.sub { margin: 0; color: var(--muted); }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 4px; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 10px 16px; min-width: 150px; }
.kpi b { display: block; font-size: 20px; font-weight: 650; }
.kpi span { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.kpi.bad b { color: #dc2626; } .kpi.warn b { color: #d97706; } .kpi.good b { color: #16a34a; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 18px; padding: 14px 32px; }
figure.chart { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 14px 16px 10px; }
figure.chart.wide { grid-column: 1 / -1; }
figcaption h2 { margin: 0; font-size: 15px; font-weight: 650; }
figcaption p { margin: 2px 0 6px; color: var(--muted); font-size: 12px; }
figure.chart svg { width: 100%; height: auto; display: block; overflow: visible; }
svg text { font-size: 11px; fill: #374151; }
svg .tick { fill: var(--muted); }
svg .axis-label { fill: var(--muted); font-size: 11px; }
svg .grid { stroke: #eef0f3; } svg .axis { stroke: #9ca3af; }
svg .line { fill: none; stroke-width: 2; }
svg .dot { stroke-width: 1.5; }
svg .hist { fill-opacity: .08; stroke-width: 1.8; }
svg .threshold { stroke: #6b7280; stroke-dasharray: 4 4; }
svg .threshold.watch { stroke: #d97706; } svg .threshold.drift { stroke: #dc2626; }
svg .threshold-label { fill: #6b7280; font-size: 10px; }
svg .threshold-label.watch { fill: #b45309; } svg .threshold-label.drift { fill: #b91c1c; }
svg .value { font-size: 12px; fill: #374151; } svg .value.drift { fill: #b91c1c; font-weight: 600; }
svg .value.watch { fill: #b45309; } svg .name { fill: #111827; font-size: 12px; }
svg .break { stroke: #fff; stroke-width: 3; }
svg .threshold-label { font-size: 11px; }
svg .empty { fill: var(--muted); font-size: 14px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; margin-top: 4px; font-size: 12px; color: #374151; }
.key { display: inline-flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; background: var(--c); }
.swatch.line { height: 3px; width: 18px; border-radius: 2px; }
.swatch.dash { height: 0; width: 18px; border-top: 3px dashed var(--c); background: none; }
section { padding: 4px 32px 28px; }
section h2 { font-size: 15px; margin: 18px 0 8px; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); font-size: 12.5px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f3f4f6; font-weight: 600; }
td.l, th.l { text-align: left; }
tr.drift td { color: #b91c1c; font-weight: 600; } tr.watch td { color: #b45309; }
footer { padding: 0 32px 24px; color: var(--muted); font-size: 12px; }
"""

# Counts, per chart, the marks the browser laid out with a non-empty box.
_SCRIPT = """
window.addEventListener("load", function () {
  var charts = document.querySelectorAll("figure.chart"), rendered = 0;
  charts.forEach(function (fig) {
    var drawn = 0;
    fig.querySelectorAll("svg .mark").forEach(function (m) {
      var b = m.getBBox();
      if (b.width > 0 || b.height > 0) { drawn += 1; }
    });
    fig.dataset.drawn = String(drawn);
    if (drawn > 0) { rendered += 1; }
  });
  document.body.dataset.rendered = String(rendered);
});
"""


def _daily_table(rows: list[dict[str, Any]], score: str, bin: str = "day") -> str:
    head = ["hour (UTC)" if bin == "hour" else "date", "model version", "predictions", f"avg {score}", "flagged",
            "alerts", "alert rate", "avg ms", "p50 ms", "p99 ms"]
    out = ["<table id=\"daily-table\"><thead><tr>" + "".join(
        f'<th class="{"l" if i < 2 else ""}">{_e(h)}</th>' for i, h in enumerate(head)) + "</tr></thead><tbody>"]
    for r in rows:
        cells = [format_bin(r, bin), r["model_version"] or "-", f"{r['predictions']:,}",
                 "-" if r["avg_score"] is None else f"{r['avg_score']:.4f}", f"{r['flagged_count']:,}",
                 f"{r['alerts']:,}", "-" if r["alert_rate"] is None else _pct(r["alert_rate"], 2),
                 *("-" if r[k] is None else f"{r[k]:.1f}" for k in ("avg_latency", "p50_latency", "p99_latency"))]
        out.append("<tr>" + "".join(f'<td class="{"l" if i < 2 else ""}">{_e(c)}</td>'
                                    for i, c in enumerate(cells)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _shadow_table(rows: list[dict[str, Any]]) -> str:
    head = ["decider", "shadow", "scored", "avg shadow", "avg decider", "avg diff", "avg |diff|", "status agreement",
            "shadow alerts", "decider alerts"]
    out = ["<table id=\"shadow-table\"><thead><tr>" + "".join(
        f'<th class="{"l" if i < 2 else ""}">{_e(h)}</th>' for i, h in enumerate(head)) + "</tr></thead><tbody>"]
    for r in rows:
        cells = [r["model_version"] or "-", r["shadow"], f"{r['scored']:,}", f"{r['avg_shadow']:.4f}",
                 f"{r['avg_decider']:.4f}", f"{r['avg_diff']:+.4f}", f"{r['avg_abs_diff']:.4f}",
                 _pct(r["agreement"], 2), f"{r['shadow_alerts']:,}", f"{r['decider_alerts']:,}"]
        out.append("<tr>" + "".join(f'<td class="{"l" if i < 2 else ""}">{_e(c)}</td>'
                                    for i, c in enumerate(cells)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _drift_table(report: dict[str, Any]) -> str:
    head = ["column", "PSI", "KS stat", "KS p", "mean reference", "mean current", "n reference", "n current", "level"]
    out = ["<table id=\"drift-table\"><thead><tr>" + "".join(
        f'<th class="{"l" if i in (0, 8) else ""}">{_e(h)}</th>' for i, h in enumerate(head)) + "</tr></thead><tbody>"]

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for c in report["columns"]:
        cells = [c["column"], num(c["psi"], ".4f"), num(c["ks_stat"], ".4f"), num(c["ks_p"], ".2g"),
                 num(c["mean_reference"], ".4g"), num(c["mean_current"], ".4g"), f"{c['n_reference']:,}",
                 f"{c['n_current']:,}", c["level"]]
        out.append(f'<tr class="{_e(c["level"]).replace(" ", "-")}">' + "".join(
            f'<td class="{"l" if i in (0, 8) else ""}">{_e(v)}</td>' for i, v in enumerate(cells)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render_html(
    con: duckdb.DuckDBPyConnection,
    since: str | date | None = None,
    until: str | date | None = None,
    version: str | None = None,
    score: str = "fraud_score",
    reference: Period | str | Sequence[Any] | None = None,
    current: Period | str | Sequence[Any] | None = None,
    columns: Sequence[str] | None = None,
    top: int = 8,
    drift: dict[str, Any] | None = None,
    title: str = "Inference log monitor",
    source: str = "",
    bin: str | None = None,
    thresholds: tuple[float, float] = (0.8, 0.5),
) -> str:
    """The page as text (see the module docstring); arguments as :func:`write_html`."""
    bin = bin or choose_bin(con, since, until, version)
    rows = [r for r in summary(con, since, until, version, score, bin=bin) if r["bin"] is not None]
    if not rows:
        filters = f" (since {since}, until {until}, version {version})" if since or until or version else ""
        raise MonitoringError(f"no rows in the inference log for the report{filters}")
    chrono = sorted(rows, key=lambda r: (r["bin"], str(r["model_version"])))
    days = _Bins(tuple(sorted({r["bin"] for r in chrono})), bin)
    versions = sorted({str(r["model_version"]) for r in chrono})
    colours = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(versions)}
    by = {(r["bin"], str(r["model_version"])): r for r in chrono}
    critical, warning = thresholds
    shadows = shadow_summary(con, since, until, version, critical=critical, warning=warning)
    shadow_bins = shadow_summary(con, since, until, version, bin=bin, critical=critical, warning=warning)
    pairs = [(str(r["model_version"]), r["shadow"]) for r in shadows]
    removed = repeats(con, since, until, version)
    hist = score_histogram(con, score, 20, since, until, version)
    if drift is None:
        try:
            drift = drift_report(con, reference, current, columns, score, top, version=version,
                                 since=since, until=until)
        except MonitoringError as exc:
            if reference is not None or columns is not None:
                raise
            drift = {"error": str(exc)}
    charts = [
        _predictions_chart(days, versions, colours, by),
        _alert_rate_chart(days, versions, colours, by),
        _histogram_chart(hist, colours, score, 0.5),
        _latency_chart(days, versions, colours, by),
    ]
    if shadows:
        pair_colours = {p: PALETTE[(len(versions) + i) % len(PALETTE)] for i, p in enumerate(pairs)}
        charts.append(_shadow_chart(days, pairs, pair_colours,
                                    {(r["bin"], str(r["model_version"]), r["shadow"]): r for r in shadow_bins}))
    if "columns" in drift:
        charts.append(_drift_chart(drift).replace('<figure class="chart"', '<figure class="chart wide"', 1))
    total = sum(r["predictions"] for r in rows)
    alerts = sum(r["alerts"] for r in rows)
    rng = time_range(con, version, since, until)
    p99 = max((r["p99_latency"] for r in rows if r["p99_latency"] is not None), default=None)
    drifted = [c["column"] for c in drift.get("columns", []) if c["flagged"]]
    watched = [c["column"] for c in drift.get("columns", []) if c["level"] == "watch"]
    kpis = [
        ("predictions", f"{total:,}", ""),
        ("model versions", str(len(versions)), ""),
        ("alert rate", _pct(alerts / total, 2) if total else "-", ""),
        (f"worst {'hourly' if bin == 'hour' else 'daily'} p99", "-" if p99 is None else f"{p99:.0f} ms", ""),
        ("repeats removed", f"{removed:,}", "warn" if removed else ""),
    ]
    if shadows:
        worst = min(shadows, key=lambda r: r["agreement"])
        kpis.append((f"shadow agreement ({worst['shadow']})", _pct(worst["agreement"], 2), ""))
    if "columns" in drift:
        kpis.append(("drifted columns", f"{len(drifted)} of {len(drift['columns'])}",
                     "bad" if drifted else ("warn" if watched else "good")))
    filters = ", ".join(f"{k} {v}" for k, v in (("since", since), ("until", until), ("version", version)) if v)
    span = f"{rng[0]:%Y-%m-%d %H:%M} .. {rng[1]:%Y-%m-%d %H:%M} UTC" if rng else ""
    sub = " · ".join(part for part in (source, span, filters) if part)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    drift_section = (
        f"<h2>Drift</h2>{_drift_table(drift)}" if "columns" in drift
        else f"<h2>Drift</h2><p>not computed: {_e(drift.get('error', ''))}</p>"
    )
    data = {"charts": len(charts), "bin": bin, "bins": len(days), "versions": versions, "predictions": total,
            "score": score, "repeats_removed": removed, "shadows": [f"{d} -> {s}" for d, s in pairs]}
    shadow_section = (f"<h2>Shadows beside their decider</h2><p>on the events both scored; the shadow's status "
                      f"with its score in the decider's place (critical {critical:g}, warning {warning:g})</p>"
                      f"{_shadow_table(shadows)}") if shadows else ""
    repeats_note = (f"<p>{removed:,} repeats of an event_id removed (at-least-once delivery): the last record of "
                    f"each event is counted.</p>") if removed else ""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
        f"<body data-charts=\"{len(charts)}\" data-report=\"{_e(json.dumps(data))}\">"
        f"<header><h1>{_e(title)}</h1><p class=\"sub\">{_e(sub)}</p><div class=\"kpis\">"
        + "".join(f'<div class="kpi {cls}"><span>{_e(k)}</span><b>{_e(v)}</b></div>' for k, v, cls in kpis)
        + "</div></header>\n<main>" + "\n".join(charts) + "</main>\n"
        f"<section>{drift_section}{shadow_section}<h2>Per {bin} and model version</h2>{repeats_note}"
        f"{_daily_table(rows, score, bin)}</section>"
        f"<footer>streamscore monitor · generated {generated} · flagged: {_e(score)} &gt; 0.5 · "
        "alert: status WARNING or CRITICAL</footer>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    since: str | date | None = None,
    until: str | date | None = None,
    version: str | None = None,
    score: str = "fraud_score",
    reference: Period | str | Sequence[Any] | None = None,
    current: Period | str | Sequence[Any] | None = None,
    columns: Sequence[str] | None = None,
    top: int = 8,
    drift: dict[str, Any] | None = None,
    title: str = "Inference log monitor",
    source: str = "",
    bin: str | None = None,
    thresholds: tuple[float, float] = (0.8, 0.5),
) -> Path:
    """Write the report of the log behind ``con`` (:func:`monitoring.queries.connect`) to
    ``path`` and return it.

    ``since`` / ``until`` (inclusive days) and ``version`` filter the daily charts;
    ``reference`` / ``current`` are the drift periods (default: the first and second
    half of the filtered range), ``columns`` / ``top`` the drift columns
    (:func:`monitoring.queries.drift_report`); a ready ``drift`` report is used as is.
    Without two periods to compare, the page says why and has no drift chart.
    ``bin`` (``"hour"`` / ``"day"``; default: :func:`monitoring.queries.choose_bin`) bins
    the charts and the table; ``thresholds`` (critical, warning) judge the shadows' status.
    """
    path = Path(path)
    text = render_html(con, since, until, version, score, reference, current, columns, top, drift, title, source,
                       bin, thresholds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
