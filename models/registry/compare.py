"""Comparing two versions' training metrics side by side."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["compare_metrics", "render_comparison"]



# --- comparing metrics ---------------------------------------------------------------

#: Metrics shown first, in this order (others follow, sorted).
METRIC_ORDER = (
    "roc_auc", "pr_auc", "recall_at_critical", "precision_at_critical",
    "recall_at_warning", "precision_at_warning", "events", "positives",
)


def compare_metrics(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{metric: {"a", "b", "diff"}}`` over both metric sets (``diff`` = b - a, when both are numbers).

    >>> compare_metrics({"roc_auc": 0.98, "events": 10}, {"roc_auc": 0.99})
    {'roc_auc': {'a': 0.98, 'b': 0.99, 'diff': 0.01}, 'events': {'a': 10, 'b': None, 'diff': None}}
    """
    keys = [k for k in METRIC_ORDER if k in a or k in b]
    keys += sorted((set(a) | set(b)) - set(keys))
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        va, vb = a.get(k), b.get(k)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        out[k] = {"a": va, "b": vb, "diff": round(vb - va, 6) if numbers else None}  # type: ignore[operator]
    return out


def render_comparison(metrics: Mapping[str, Mapping[str, Any]], label_a: str, label_b: str) -> str:
    """A small text table of :func:`compare_metrics` (threshold settings left out).

    >>> print(render_comparison(compare_metrics({"roc_auc": 0.98}, {"roc_auc": 0.99}), "m/1", "m/2"))
    metric         m/1       m/2      diff
    roc_auc     0.9800    0.9900   +0.0100
    """
    rows = [(k, v) for k, v in metrics.items() if not k.startswith("threshold_")]
    width = max([len("metric"), *(len(k) for k, _ in rows)]) + 2
    cols = max(9, len(label_a) + 1, len(label_b) + 1)
    lines = [f"{'metric':<{width}}{label_a:>{cols}} {label_b:>{cols}} {'diff':>9}"]
    for k, v in rows:
        diff = "" if v["diff"] is None else (f"{v['diff']:+.4f}" if isinstance(v["diff"], float) else f"{v['diff']:+d}")
        lines.append(f"{k:<{width}}{_cell(v['a']):>{cols}} {_cell(v['b']):>{cols}} {diff:>9}")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)
