"""Quality benchmark of the IoT scoring against a plain River baseline.

Runs on one generated stream (``datagen.sensors``), in event-time order, in one
process:

* **project**: the IoT dataflow's own two steps, ``models.iot.DeviceState``
  (per-device features, per-sensor value, slow and stuck detectors, drift
  monitors) and ``models.iot.ShardState`` (one ShardDetector per shard, the
  combination), driven by ``models.iot.IoTPipeline`` in a plain Python loop;
* **baseline**: ``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees()``,
  one River model over all readings, raw sensor values (missing sensors left
  out of the dict), ``score_one`` then ``learn_one``.

Reports exact ROC AUC and PR AUC (scikit-learn ``roc_auc_score`` and
``average_precision_score``) of each score against ``is_anomaly``, on all
readings (warm-up included) and, for reference, on the readings the project
did not flag as warming up; per-fault ROC AUC (fault readings vs normal
readings); events/s of each scorer; and the drift records.
No label is used by either scorer.

While every detector of a reading is still warming up the project gives it no
score (``anomaly_score`` is ``None``, see ``models.status.anomaly_score``). For
the AUC figures and mean scores here such a reading counts as **0.0** (not
anomalous), which is how an alerting consumer treats it; ``null_scores`` says
how many there were. A reading with no sensor value at all (a full dropout) is
refused by ``features.sensors.parse_reading`` (the flow sends it to the dead
letters, it raises no alert); it counts as 0.0 too, and ``dead_letters`` says
how many there were. Both kinds are labelled normal by the generator.

>>> r = run(readings=3000, devices=10, seed=3)
>>> sorted(r["project"]) == sorted(r["baseline"])
True
>>> 0.0 <= r["project"]["pr_auc"] <= 1.0
True
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from river import anomaly, preprocessing
from sklearn.metrics import average_precision_score, roc_auc_score

from datagen.sensors import FAULTS, FaultConfig, generate_readings
from features.records import ValidationError
from models.iot import IoTPipeline, IoTScoringConfig

__all__ = ["run", "format_report", "main"]


def _metrics(y: Sequence[int], s: Sequence[float]) -> dict[str, float]:
    if len(set(y)) < 2:
        return {"roc_auc": float("nan"), "pr_auc": float("nan")}
    return {"roc_auc": float(roc_auc_score(y, s)), "pr_auc": float(average_precision_score(y, s))}


def _per_fault(rows: list[dict], scores: list[float]) -> dict[str, float]:
    """ROC AUC of each fault's labelled readings against the normal readings."""
    neg = [s for r, s in zip(rows, scores) if r["fault"] == "" and not r["is_anomaly"]]
    out = {}
    for f in FAULTS:
        if f == "dropout":
            continue
        pos = [s for r, s in zip(rows, scores) if r["fault"] == f and r["is_anomaly"]]
        if pos and neg:
            out[f] = float(roc_auc_score([1] * len(pos) + [0] * len(neg), pos + neg))
    return out


def run(
    readings: int = 100_000,
    devices: int = 100,
    seed: int = 7,
    *,
    n_shards: int = 4,
    fault_scale: float = 1.0,
    config: IoTScoringConfig | None = None,
) -> dict:
    """Generate a stream, score it with both scorers, return the figures."""
    rows = list(generate_readings(devices, readings, seed, faults=FaultConfig(scale=fault_scale)))
    if config is None:
        config = IoTScoringConfig(n_shards=n_shards)
    sensors = config.sensors
    y = [r["is_anomaly"] for r in rows]

    scorer = IoTPipeline(config)
    proj: list[float] = []
    warm: list[bool] = []
    nulls = dead = 0
    drifts: list[dict] = []
    t0 = time.perf_counter()
    for r in rows:
        try:
            out = scorer.process(r)
        except ValidationError:  # no sensor at all: a dead letter in the flow (see the module docstring)
            dead += 1
            proj.append(0.0)
            warm.append(True)
            continue
        rec = out[0]
        score = rec["anomaly_score"]
        if score is None:  # every detector warming up: counted as 0.0 (see the module docstring)
            nulls += 1
            score = 0.0
        proj.append(score)
        warm.append(rec["warming_up"])
        if len(out) > 1:
            drifts.extend(out[1:])
    proj_s = time.perf_counter() - t0

    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=config.seed)
    base: list[float] = []
    t0 = time.perf_counter()
    for r in rows:
        x = {s: float(r[s]) for s in sensors if r.get(s) is not None}
        base.append(model.score_one(x))
        model.learn_one(x)
    base_s = time.perf_counter() - t0

    ready = [i for i, w in enumerate(warm) if not w]
    result = {
        "readings": len(rows),
        "devices": devices,
        "seed": seed,
        "n_shards": config.n_shards,
        "anomalies": sum(y),
        "fault_readings": {f: sum(1 for r in rows if r["fault"] == f) for f in FAULTS},
        "warming_readings": len(rows) - len(ready),
        "null_scores": nulls,
        "dead_letters": dead,
        "project": {
            **_metrics(y, proj),
            "events_per_s": len(rows) / proj_s if proj_s > 0 else float("inf"),
            "after_warmup": _metrics([y[i] for i in ready], [proj[i] for i in ready]),
            "per_fault_roc_auc": _per_fault(rows, proj),
            "normal_mean_score": _mean([s for r, s in zip(rows, proj) if r["fault"] == ""]),
            "dropout_mean_score": _mean([s for r, s in zip(rows, proj) if r["fault"] == "dropout"]),
        },
        "baseline": {
            **_metrics(y, base),
            "events_per_s": len(rows) / base_s if base_s > 0 else float("inf"),
            "after_warmup": _metrics([y[i] for i in ready], [base[i] for i in ready]),
            "per_fault_roc_auc": _per_fault(rows, base),
            "normal_mean_score": _mean([s for r, s in zip(rows, base) if r["fault"] == ""]),
            "dropout_mean_score": _mean([s for r, s in zip(rows, base) if r["fault"] == "dropout"]),
        },
        "drift": _drift_summary(rows, drifts),
        "config": config.to_dict(),
    }
    return result


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _drift_summary(rows: list[dict], drifts: list[dict]) -> dict:
    """How many drift records fell inside a drift fault episode of the same
    device (any sensor: the rows do not say which sensor drifts), and how many
    drift episodes got at least one record. Records outside a labelled drift
    are not all false: a device's behaviour also shifts after a drift ends
    (recalibration) and with its daily cycle."""
    in_drift = {(r["device_id"], r["timestamp"]) for r in rows if r["fault"] == "drift"}
    hits = sum(1 for d in drifts if (d["device_id"], d["timestamp"]) in in_drift)
    # episodes: maximal runs of fault == "drift" per device
    episodes: list[set] = []
    current: dict[str, set] = {}
    for r in rows:
        key = r["device_id"]
        if r["fault"] == "drift":
            current.setdefault(key, set()).add(r["timestamp"])
        elif key in current:
            episodes.append({(key, ts) for ts in current.pop(key)})
    episodes.extend({(k, ts) for ts in v} for k, v in current.items())
    found = {(d["device_id"], d["timestamp"]) for d in drifts}
    detected = sum(1 for ep in episodes if ep & found)
    return {
        "records": len(drifts),
        "records_in_drift_fault": hits,
        "drift_episodes": len(episodes),
        "episodes_detected": detected,
    }


def format_report(r: dict) -> str:
    """Human-readable table of :func:`run` output."""
    lines = [
        f"IoT scoring quality: {r['readings']} readings, {r['devices']} devices, seed {r['seed']}, "
        f"{r['n_shards']} shards; {r['anomalies']} anomalous ({r['anomalies'] / max(r['readings'], 1):.2%}); "
        f"{r['warming_readings']} scored while warming up or refused ({r['null_scores']} with no score and "
        f"{r['dead_letters']} dead letters, counted as 0.0)",
        "fault readings: " + ", ".join(f"{k}={v}" for k, v in r["fault_readings"].items()),
        "",
        f"{'scorer':<10} {'ROC AUC':>8} {'PR AUC':>8} {'events/s':>10}   {'after warm-up ROC / PR':>24}   per-fault ROC AUC",
    ]
    for name in ("project", "baseline"):
        m = r[name]
        pf = ", ".join(f"{k} {v:.3f}" for k, v in m["per_fault_roc_auc"].items())
        aw = m["after_warmup"]
        lines.append(
            f"{name:<10} {m['roc_auc']:>8.4f} {m['pr_auc']:>8.4f} {m['events_per_s']:>10,.0f}   "
            f"{aw['roc_auc']:>11.4f} / {aw['pr_auc']:<10.4f}   {pf}"
        )
    d = r["drift"]
    lines += [
        "",
        f"mean score, fault-free / dropout readings (both labelled normal): "
        f"project {r['project']['normal_mean_score']:.3f} / {r['project']['dropout_mean_score']:.3f}, "
        f"baseline {r['baseline']['normal_mean_score']:.3f} / {r['baseline']['dropout_mean_score']:.3f}",
        f"drift records: {d['records']} ({d['records_in_drift_fault']} inside a labelled drift episode); "
        f"drift episodes with a record: {d['episodes_detected']}/{d['drift_episodes']}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.iot_quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--fault-scale", type=float, default=1.0)
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = ap.parse_args(argv)
    r = run(args.readings, args.devices, args.seed, n_shards=args.shards, fault_scale=args.fault_scale)
    print(json.dumps(r, indent=2) if args.json else format_report(r))
    beats = all(r["project"][k] > r["baseline"][k] for k in ("roc_auc", "pr_auc"))
    if not beats:
        print("project scoring does NOT beat the baseline on both metrics", file=sys.stderr)
    return 0 if beats else 1


if __name__ == "__main__":
    raise SystemExit(main())
