"""One-screen summary of a scoring run's output folder.

    python -m monitoring.run_report [OUT_DIR] [--input N]     # OUT_DIR: the fraud flow's io.output_dir

Counts scored records by status, alerts and dead letters, checks the
accounting (scored + dead letter = input; alerts = non-NORMAL scored), gives
events/s and latency percentiles, and, when the input carried labels
(``is_fraud`` or ``is_anomaly``), recall and precision of each status.
Exits 1 when the accounting does not hold.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from settings.config import ConfigError, IOConfig

__all__ = ["summarize_run", "main"]


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open("rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def summarize_run(out_dir: Path, expected_input: int | None = None) -> dict[str, Any]:
    """Figures of one run, from its JSON Lines outputs."""
    scored = _read(out_dir / "scored.jsonl")
    alerts = _read(out_dir / "alerts.jsonl")
    dead = _read(out_dir / "dead_letter.jsonl")
    statuses = Counter(r["status"] for r in scored)
    reading_alerts = [a for a in alerts if a.get("kind", "reading") != "drift"]
    non_normal = sum(n for s, n in statuses.items() if s != "NORMAL")
    out: dict[str, Any] = {
        "scored": len(scored),
        "dead_letter": len(dead),
        "alerts": len(reading_alerts),
        "drift_records": len(alerts) - len(reading_alerts),
        "by_status": dict(sorted(statuses.items())),
        "alerts_match_non_normal": len(reading_alerts) == non_normal,
    }
    if expected_input is not None:
        out["input"] = expected_input
        out["accounted"] = len(scored) + len(dead) == expected_input
    if scored:
        lat = np.array([r["latency_ms"] for r in scored])
        arrivals = [_epoch(r["scored_at"]) - r["latency_ms"] / 1000 for r in scored]
        span = max(_epoch(r["scored_at"]) for r in scored) - min(arrivals)
        out["events_per_s"] = round(len(scored) / span, 1) if span > 0 else None
        out["latency_ms"] = {q: round(float(np.percentile(lat, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}
        label = next((k for k in ("is_fraud", "is_anomaly") if k in scored[0]), None)
        if label:
            y = np.array([int(r.get(label) or 0) for r in scored])
            quality = {}
            for name, alerting in (("CRITICAL", {"CRITICAL"}), ("WARNING+CRITICAL", {"CRITICAL", "WARNING"})):
                flagged = np.array([r["status"] in alerting for r in scored])
                tp = int((flagged & (y == 1)).sum())
                quality[name] = {
                    "recall": round(tp / max(int(y.sum()), 1), 3),
                    "precision": round(tp / max(int(flagged.sum()), 1), 3),
                }
            out["label"] = label
            out["labelled_positives"] = int(y.sum())
            out["quality"] = quality
    return out


def render(s: dict[str, Any], out_dir: Path) -> str:
    present = [f"{k}.jsonl" for k in ("scored", "alerts", "dead_letter") if (out_dir / f"{k}.jsonl").is_file()]
    lines = [f"Outputs in {out_dir}/: {', '.join(present) or 'none'}"]
    total = s["scored"] + s["dead_letter"]
    lines.append(f"  events           {s.get('input', total):>8}")
    lines.append(f"  scored           {s['scored']:>8}")
    for status, n in s["by_status"].items():
        lines.append(f"    {status:<14} {n:>8}")
    lines.append(f"  alerts           {s['alerts']:>8}   (= non-NORMAL scored: {s['alerts_match_non_normal']})")
    if s["drift_records"]:
        lines.append(f"  drift records    {s['drift_records']:>8}")
    lines.append(f"  dead letters     {s['dead_letter']:>8}")
    if "accounted" in s:
        lines.append(f"  scored + dead letter = input: {s['accounted']}")
    if s.get("events_per_s"):
        lat = s["latency_ms"]
        lines.append(f"  throughput       {s['events_per_s']:>8} events/s (first arrival to last score)")
        lines.append(f"  latency ms       p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}")
    if "quality" in s:
        lines.append(f"  vs labels ({s['label']}, {s['labelled_positives']} positives):")
        for name, q in s["quality"].items():
            lines.append(f"    {name:<18} recall {q['recall']:.3f}  precision {q['precision']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Summarize a scoring run's outputs.")
    p.add_argument("out_dir", type=Path, nargs="?", default=None,
                   help="the run's output folder (default: the fraud flow's io.output_dir setting, output/fraud)")
    p.add_argument("--input", type=int, default=None, help="number of input events, to check the accounting")
    a = p.parse_args(argv)
    if a.out_dir is None:
        try:
            a.out_dir = IOConfig.from_env(flow="fraud").output_dir
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not (a.out_dir / "scored.jsonl").is_file():
        print(f"error: {a.out_dir}/scored.jsonl not found: run a flow with STREAMSCORE_IO__OUTPUT_DIR={a.out_dir} first",
              file=sys.stderr)
        return 2
    s = summarize_run(a.out_dir, a.input)
    print(render(s, a.out_dir))
    ok = s["alerts_match_non_normal"] and s.get("accounted", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
