"""All benchmarks in one run, on the same generated data: one table, one JSON file.

    python -m benchmarks.run [--quick] [--json output/bench/bench.json] [--no-kafka]

Needs the demo's Feast repo and model (``make model``; ``make bench`` and
``make bench-quick`` depend on it). Figures are printed and written, nothing is
asserted. Rows (see README "Benchmarks"):

1. this project, file to file, each flow in a subprocess of its own
   (``python -m bytewax.run "dataflows.<flow>:get_flow()"``): fraud; IoT with many
   devices; IoT with ONE hot device (10 readings/s of event time); and River's
   ``MinMaxScaler() | HalfSpaceTrees()`` alone in a plain loop over the same
   hot-device readings. Events/s from the records' own ``scored_at`` (first scored
   record to last: start-up and the time to the first scored record excluded,
   both reported apart);
2. Kafka to Kafka, 1 and 2 processes: backfill events/s, end-to-end latency at
   fixed offered rates (``--no-kafka`` skips it; a local broker is started with
   ``scripts/kafka.sh up`` when none answers, and stopped again);
3. naive baseline (:mod:`benchmarks.naive`): per event, 2 Feast calls + 1 predict;
4. plain-loop reference (:mod:`benchmarks.reference`); and the flow's own
   functions in a plain loop (:func:`benchmarks.fraud_throughput.stage_costs`); the
   input formats' decode + validate, JSON vs Avro vs Protobuf (:mod:`benchmarks.decoding`);
5. memory: RSS growth per 100,000 customers' state (:mod:`benchmarks.memory`),
   and the fraud flow over 1,000,000 distinct customers (100,000 with ``--quick``);
6. quality: :func:`benchmarks.iot_quality.run` and the production fraud model's
   later-window metrics from its registry manifest;
7. recovery: snapshot bytes per key, the cost of an epoch's snapshots, and the
   fraud flow with and without Bytewax recovery (:mod:`benchmarks.snapshots`, in
   a process of its own);

then the ratios project/naive, project/reference and hot device/River.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from benchmarks import common, decoding, gc_pauses, kafka_bench, reference
from models.registry import Registry

__all__ = ["SIZES", "run", "build_table", "format_table", "main"]

#: events per measurement; ``quick`` is for small machines (seconds, not minutes)
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "fraud_events": 100_000, "iot_events": 100_000, "iot_devices": 1_000, "hot_events": 50_000,
        "stage_events": 20_000, "naive_events": 2_000, "memory_keys": 100_000, "distinct_customers": 1_000_000,
        "kafka_events": 100_000, "kafka_rates": [1_000, 2_000], "kafka_live_seconds": 30,
        "kafka_processes": [1, 2], "quality_readings": 100_000,
        "snapshot_keys": 100_000, "snapshot_flow_events": 20_000, "snapshot_hot_tx": 100_000, "snapshot_repeats": 2,
        "snapshot_flow_inputs": "demo,distinct", "gc_events": 100_000,
    },
    "quick": {
        "fraud_events": 30_000, "iot_events": 10_000, "iot_devices": 200, "hot_events": 10_000,
        "stage_events": 5_000, "naive_events": 200, "memory_keys": 100_000, "distinct_customers": 100_000,
        "kafka_events": 10_000, "kafka_rates": [1_000], "kafka_live_seconds": 10,
        "kafka_processes": [1, 2], "quality_readings": 10_000,
        "snapshot_keys": 10_000, "snapshot_flow_events": 5_000, "snapshot_hot_tx": 100_000, "snapshot_repeats": 1,
        "snapshot_flow_inputs": "demo", "gc_events": 30_000,
    },
}

DEFAULT_JSON = Path("output/bench/bench.json")

#: the alert storm's settings: every event WARNING (risk above 0), most CRITICAL
STORM = {"STREAMSCORE_FRAUD__WARNING": "0.0", "STREAMSCORE_FRAUD__CRITICAL": "0.02"}


def _section(results: dict, name: str, fn: Callable[[], Any]) -> Any:
    """Run one measurement; a failure is recorded (and printed) and the run goes on."""
    t = time.perf_counter()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        results[name] = fn()
    except Exception as exc:  # a figure missing is better than no table
        results[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        traceback.print_exc(file=sys.stderr)
    print(f"[bench] {name} done in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    return results[name]


def river_hot_loop(rows: list[dict], sensors: tuple[str, ...] = ("temperature", "humidity", "pressure")) -> dict:
    """River's ``MinMaxScaler() | HalfSpaceTrees()`` alone, ``score_one`` then
    ``learn_one``, over already-decoded readings: the target for the hot device."""
    from river import anomaly, preprocessing

    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
    t = time.perf_counter()
    for r in rows:
        x = {s: float(r[s]) for s in sensors if r.get(s) is not None}
        model.score_one(x)
        model.learn_one(x)
    seconds = time.perf_counter() - t
    return {"events": len(rows), "seconds": round(seconds, 3),
            "events_per_s": round(len(rows) / seconds, 1) if seconds else None}


def naive_section(events: list[dict], feature_repo: Path, registry: Path) -> dict:
    from benchmarks import naive  # lazy: pulls river (~6 s)

    return naive.run(events, feature_repo, registry)


def stage_costs_section(events: list[dict], feature_repo: Path = Path("feature_repo"),
                        registry: Path = Path("model_registry")) -> dict:
    from benchmarks.fraud_throughput import stage_costs  # lazy: pulls river (~6 s)

    costs = stage_costs(events, feature_repo, registry)
    total = sum(costs.values())
    return {"events": len(events), "us_per_event": {k: round(v, 2) for k, v in costs.items()},
            "total_us": round(total, 2), "events_per_s": round(1e6 / total, 1) if total else None}


def memory_section(keys: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--keys", str(keys)], cwd=common.ROOT,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def snapshots_section(keys: int, flow_events: int, hot_tx: int, base_events: int, repeats: int, flow_inputs: str,
                      work: Path, feature_repo: Path, registry: Path) -> dict:
    """:mod:`benchmarks.snapshots` in a process of its own (its states do not weigh on this one)."""
    cmd = [sys.executable, "-m", "benchmarks.snapshots", "--keys", str(keys), "--flow-events", str(flow_events),
           "--hot-tx", str(hot_tx), "--base-events", str(base_events), "--repeats", str(repeats),
           *(["--flow-inputs", flow_inputs] if flow_inputs else ["--no-flow"]), "--work", str(Path(work).resolve()),
           "--feature-repo", str(Path(feature_repo).resolve()), "--registry", str(Path(registry).resolve())]
    out = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:4])} exited {out.returncode}: {out.stderr.strip()[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fraud_model_quality(registry: Path = Path("model_registry"), ref: str = "fraud_model@production") -> dict:
    reg = Registry(registry)
    name, version = reg.resolve(ref)
    manifest = json.loads((reg.root / name / str(version) / "manifest.json").read_text())
    m = manifest.get("metrics", {})
    return {"model": f"{name}/{version}", "evaluation_window": manifest.get("evaluation_window"),
            **{k: m.get(k) for k in ("roc_auc", "pr_auc", "recall_at_critical", "precision_at_critical",
                                     "recall_at_warning", "precision_at_warning", "events", "positives")}}


def iot_quality_section(readings: int) -> dict:
    from benchmarks.iot_quality import run as iot_run  # lazy: pulls river, sklearn (~6 s)

    r = iot_run(readings=readings)
    keep = ("roc_auc", "pr_auc", "events_per_s", "per_fault_roc_auc")
    return {"readings": r["readings"], "devices": r["devices"], "anomalies": r["anomalies"],
            "project": {k: r["project"][k] for k in keep}, "baseline": {k: r["baseline"][k] for k in keep},
            "drift": r["drift"]}


def run(quick: bool = False, kafka: bool = True, work: Path = Path("output/bench/work"),
        sizes: dict[str, Any] | None = None, feature_repo: Path = Path("feature_repo"),
        registry: Path = Path("model_registry")) -> dict[str, Any]:
    """Every measurement; returns the JSON-ready result (``table`` included).
    ``sizes`` overrides entries of :data:`SIZES`; ``feature_repo`` and ``registry``
    are the Feast repo and model registry every measurement uses (the demo's by
    default)."""
    mode = "quick" if quick else "full"
    sz = {**SIZES[mode], **(sizes or {})}
    started = time.perf_counter()
    res: dict[str, Any] = {}
    repo_env = {"STREAMSCORE_FEAST__REPO": str(Path(feature_repo).resolve()),
                "STREAMSCORE_MODEL__REGISTRY": str(Path(registry).resolve())}
    doc: dict[str, Any] = {"mode": mode, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "machine": common.machine(), "sizes": sz, "results": res}
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    # --- the data, generated once ---------------------------------------------------
    t = time.perf_counter()
    fraud = common.fraud_events(sz["fraud_events"])
    iot = common.iot_readings(sz["iot_events"], sz["iot_devices"])
    hot = common.hot_device_readings(sz["hot_events"])
    paths = {"fraud": work / "fraud.jsonl", "iot": work / "iot.jsonl", "hot": work / "iot_hot.jsonl",
             "distinct": work / "distinct_customers.jsonl"}
    common.write_jsonl(fraud, paths["fraud"])
    common.write_jsonl(iot, paths["iot"])
    common.write_jsonl(hot, paths["hot"])
    doc["data_seconds"] = round(time.perf_counter() - t, 2)

    # --- 1. the project, file to file ------------------------------------------------
    _section(res, "file_fraud", lambda: common.run_flow_file("fraud", paths["fraud"], work / "out-fraud", repo_env))
    _section(res, "file_iot_many", lambda: common.run_flow_file(
        "iot", paths["iot"], work / "out-iot", repo_env))
    _section(res, "file_iot_hot", lambda: common.run_flow_file("iot", paths["hot"], work / "out-iot-hot", repo_env))
    _section(res, "river_hot_loop", lambda: river_hot_loop(hot))

    # --- 2. Kafka to Kafka -----------------------------------------------------------
    if kafka:
        def kafka_part() -> dict:
            out: dict[str, Any] = {"backfill": [], "live": []}
            with kafka_bench.Broker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), repo_env) as broker:
                out["broker_started_by_bench"] = broker.started
                backfill_events = fraud[: sz["kafka_events"]]
                for p in sz["kafka_processes"]:
                    _section(out, f"backfill_{p}p", lambda p=p: kafka_bench.backfill(broker, backfill_events, p))
                    out["backfill"].append({"processes": p, **out.pop(f"backfill_{p}p")})
                for rate in sz["kafka_rates"]:
                    n = min(len(fraud), int(rate * sz["kafka_live_seconds"]) + 300)
                    for p in sz["kafka_processes"]:
                        _section(out, f"live_{p}p_{rate}", lambda p=p, rate=rate, n=n:
                                 kafka_bench.live(broker, fraud[:n], rate, p))
                        out["live"].append({"processes": p, "offered_rate": rate, **out.pop(f"live_{p}p_{rate}")})
                # an alert storm: every event WARNING or CRITICAL (thresholds lowered), 1 process
                rate = sz["kafka_rates"][0]
                n = min(len(fraud), int(rate * sz["kafka_live_seconds"]) + 300)
                _section(out, "storm", lambda: kafka_bench.live(broker, fraud[:n], rate, 1, extra_env=STORM, label="storm"))
                out["live"].append({"processes": 1, "offered_rate": rate, "storm": True, **out.pop("storm")})
                # with recovery on, a snapshot every 10 s (as production runs): each epoch's end
                # snapshots every customer touched in it, on the worker's thread
                _section(out, "recovery", lambda: kafka_bench.live(broker, fraud[:n], rate, 1, label="recovery",
                                                                   snapshot_s=10))
                out["live"].append({"processes": 1, "offered_rate": rate, "recovery_s": 10, **out.pop("recovery")})
                # half of the measured 1-process capacity (the backfill's sustained rate)
                cap = next((b.get("events_per_s") for b in out["backfill"] if b.get("processes") == 1), None)
                if cap:
                    rate = round(cap / 2, -1)
                    n = min(len(fraud), int(rate * sz["kafka_live_seconds"]) + 300)
                    _section(out, "half", lambda: kafka_bench.live(broker, fraud[:n], rate, 1, label="half"))
                    out["live"].append({"processes": 1, "offered_rate": rate, "half_capacity": True, **out.pop("half")})
            return out

        _section(res, "kafka", kafka_part)

    # --- 3. naive, 4. reference and the flow's own functions ---------------------------
    _section(res, "naive", lambda: naive_section(fraud[: sz["naive_events"]], feature_repo, registry))
    _section(res, "reference", lambda: reference.run(
        paths["fraud"], work / "reference_scored.jsonl", feature_repo, registry))
    _section(res, "stage_costs", lambda: stage_costs_section(fraud[: sz["stage_events"]], feature_repo, registry))
    _section(res, "decoding", lambda: decoding.run(fraud[: sz["stage_events"]]))

    # --- 5. memory -----------------------------------------------------------------------
    _section(res, "memory_customer_state", lambda: memory_section(sz["memory_keys"]))

    def distinct() -> dict:
        common.write_jsonl(common.distinct_customer_events(sz["distinct_customers"], fraud), paths["distinct"])
        r = common.run_flow_file("fraud", paths["distinct"], work / "out-distinct", repo_env)
        paths["distinct"].unlink(missing_ok=True)
        return {"customers": sz["distinct_customers"], **r}

    _section(res, "file_fraud_distinct_customers", distinct)
    if sz["gc_events"]:
        _section(res, "gc_pauses", lambda: gc_pauses.run(
            min(sz["distinct_customers"], sz["gc_events"]), work / "gc", repo_env))

    # --- 6. quality -----------------------------------------------------------------------
    _section(res, "iot_quality", lambda: iot_quality_section(sz["quality_readings"]))
    _section(res, "fraud_model", lambda: fraud_model_quality(registry))

    # --- 7. recovery: snapshot sizes, epoch cost, the flow with and without recovery ----
    # capped by the run's own sizes, so a tiny run of the harness stays tiny
    _section(res, "snapshots", lambda: snapshots_section(
        min(sz["snapshot_keys"], sz["memory_keys"]), min(sz["snapshot_flow_events"], sz["fraud_events"]),
        min(sz["snapshot_hot_tx"], 10 * sz["fraud_events"]), min(20_000, 2 * sz["fraud_events"]),
        sz["snapshot_repeats"], sz["snapshot_flow_inputs"], work / "snapshots", feature_repo, registry))

    doc["ratios"] = ratios(res)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    doc["table"] = build_table(doc)
    for p in work.glob("*.jsonl"):
        p.unlink()
    return doc


# --- ratios and the table ------------------------------------------------------------------


def _eps(res: dict, *path: str) -> float | None:
    cur: Any = res
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur if isinstance(cur, (int, float)) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def ratios(res: dict) -> dict[str, float | None]:
    project = _eps(res, "file_fraud", "events_per_s")
    return {
        "project_over_naive": _ratio(project, _eps(res, "naive", "events_per_s")),
        "project_over_reference": _ratio(project, _eps(res, "reference", "events_per_s")),
        "project_functions_over_reference": _ratio(_eps(res, "stage_costs", "events_per_s"),
                                                   _eps(res, "reference", "events_per_s")),
        "hot_device_over_river": _ratio(_eps(res, "file_iot_hot", "events_per_s"),
                                        _eps(res, "river_hot_loop", "events_per_s")),
    }


def _num(v: Any, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _live_notes(lv: dict) -> str:
    """p99.9, max, and what the slowest 1% waited on (:func:`benchmarks.kafka_bench.breakdown`)."""
    lat, b = lv.get("latency_ms") or {}, lv.get("breakdown") or {}
    slow = b.get("slowest_1pct") or {}
    parts = {k: (b.get(f"{k}_ms") or {}).get("p99") for k in ("source", "flow", "sink")}
    return (f"produce -> scored message (broker append time); p99.9 {_num(lat.get('p99.9'))}, max {_num(lat.get('max'))} ms;"
            f" p99 of source/flow/sink {_num(parts['source'])}/{_num(parts['flow'])}/{_num(parts['sink'])} ms;"
            f" slowest 1% waited source {_num(slow.get('mean_source_ms'))}, flow {_num(slow.get('mean_flow_ms'))},"
            f" sink {_num(slow.get('mean_sink_ms'))} ms, {slow.get('overlapping_gc_pause', 0)} in a GC pause"
            f" (longest {_num(lv.get('gc_pause_max_ms'))} ms), produced {_when(slow)} s into the run;"
            f" {lv.get('scored', 0):,}/{lv.get('events', 0):,} matched")


def _when(slow: dict) -> str:
    w = slow.get("produced_s_into_run") or {}
    return "-" if not w else f"{w['min']:g}-{w['max']:g} (median {w['median']:g})"


def _lat(d: dict | None) -> str:
    if not d or d.get("p50") is None:
        return "-"
    return f"{d['p50']:,.1f} / {d['p95']:,.1f} / {d['p99']:,.1f}"


def _err(r: Any) -> str | None:
    """A failed measurement's error, as one line (the last line of a traceback)."""
    if not (isinstance(r, dict) and "error" in r):
        return None
    lines = [ln.strip() for ln in str(r["error"]).splitlines() if ln.strip()]
    first = lines[0].split(":", 1)[0] if lines else "error"
    return f"{first}: {lines[-1]}" if len(lines) > 1 else (lines[0] if lines else "error")


def build_table(doc: dict) -> list[dict[str, str]]:
    """The rows of the printed table: ``{"row", "events_s", "latency_ms", "notes"}``."""
    res, sz = doc["results"], doc["sizes"]
    rows: list[dict[str, str]] = []

    def add(name: str, r: Any, eps: Any = None, lat: str = "-", notes: str = "") -> None:
        e = _err(r)
        if r is None:
            rows.append({"row": name, "events_s": "-", "latency_ms": "-", "notes": "skipped"})
        elif e:
            rows.append({"row": name, "events_s": "-", "latency_ms": "-", "notes": f"FAILED: {e[:120]}"})
        else:
            rows.append({"row": name, "events_s": _num(eps), "latency_ms": lat, "notes": notes})

    def flow_notes(r: dict) -> str:
        return (f"start-up {r.get('startup_s', 0):.1f}s, first scored {r.get('first_scored_s', 0):.1f}s, "
                f"whole run {_num(r.get('events_per_s_whole_run'))}/s, peak RSS {r.get('peak_rss_mb', 0):,.0f} MB")

    r = res.get("file_fraud")
    add(f"1 file->file fraud ({sz['fraud_events']:,} tx)", r, r and r.get("events_per_s"),
        _lat(r and r.get("latency_ms")), r and not _err(r) and flow_notes(r) or "")
    r = res.get("file_iot_many")
    add(f"1 file->file IoT ({sz['iot_events']:,} readings, {sz['iot_devices']:,} devices)", r,
        r and r.get("events_per_s"), _lat(r and r.get("latency_ms")), r and not _err(r) and flow_notes(r) or "")
    r = res.get("file_iot_hot")
    add(f"1 file->file IoT, ONE hot device ({sz['hot_events']:,} readings at 10 Hz)", r,
        r and r.get("events_per_s"), _lat(r and r.get("latency_ms")), r and not _err(r) and flow_notes(r) or "")
    r = res.get("river_hot_loop")
    add("1 River MinMaxScaler|HalfSpaceTrees alone, same hot readings", r, r and r.get("events_per_s"), "-",
        "plain loop over decoded dicts: the target for the row above")

    k = res.get("kafka")
    if k is None:
        add("2 Kafka->Kafka", None)
    elif _err(k):
        add("2 Kafka->Kafka", k)
    else:
        for b in k.get("backfill", []):
            p = b.get("processes", "?")
            add(f"2 Kafka->Kafka backfill, {p} process{'es' if p != 1 else ''} ({sz['kafka_events']:,} tx)", b,
                b.get("events_per_s"), "-",
                "" if _err(b) else f"first to last scored message; whole run incl. start-up "
                                   f"{_num(b.get('events_per_s_whole_run'))}/s ({b.get('wall_s', 0):.1f}s)")
        for lv in k.get("live", []):
            p = lv.get("processes", "?")
            what = " ALERT STORM (every event alerts)" if lv.get("storm") else (
                " (50% of 1-process capacity)" if lv.get("half_capacity") else (
                    f", recovery on (snapshot every {lv['recovery_s']} s)" if lv.get("recovery_s") else ""))
            add(f"2 Kafka->Kafka live at {_num(lv.get('offered_rate'))}/s, {p} process{'es' if p != 1 else ''}{what}",
                lv, lv.get("achieved_rate"), _lat(lv.get("latency_ms")), "" if _err(lv) else _live_notes(lv))
    r = res.get("naive")
    add(f"3 naive: per event 2 Feast calls + 1 predict ({sz['naive_events']:,} tx)", r, r and r.get("events_per_s"),
        "-", "a per-event call to a scoring endpoint")
    r = res.get("reference")
    add("4 plain-loop reference (benchmarks/reference.py)", r, r and r.get("events_per_s"), "-",
        r and not _err(r) and f"no engine; Feast + predict per 1,000; setup {r.get('setup_s', 0):.1f}s apart" or "")
    r = res.get("stage_costs")
    add(f"4 the flow's own functions, plain loop ({sz['stage_events']:,} tx)", r, r and r.get("events_per_s"), "-",
        r and not _err(r) and f"{r.get('total_us', 0):.0f} us/event (fraud_throughput.stage_costs)" or "")
    r = res.get("decoding")
    add(f"4 decoding + validate, Avro ({sz['stage_events']:,} tx)", r, r and r.get("avro", {}).get("events_per_s"), "-",
        r and not _err(r) and f"JSON {_num(r['json']['events_per_s'])}/s, Protobuf "
                              f"{_num(r['protobuf']['events_per_s'])}/s; Avro/JSON {r['avro_over_json']:.2f}x "
                              f"({r['avro']['bytes_per_event']:.0f} vs {r['json']['bytes_per_event']:.0f} B/event)"
        or "")
    r = res.get("memory_customer_state")
    add(f"5 memory: CustomerState x {sz['memory_keys']:,} customers", r, None, "-",
        r and not _err(r) and f"RSS +{r.get('mb_per_100k_keys')} MB per 100,000 keys ({r.get('bytes_per_key')} B/key)"
        or "")
    r = res.get("file_fraud_distinct_customers")
    add(f"5 file->file fraud, {sz['distinct_customers']:,} distinct customers", r, r and r.get("events_per_s"),
        _lat(r and r.get("latency_ms")),
        r and not _err(r) and f"peak RSS {r.get('peak_rss_mb', 0):,.0f} MB; whole run "
                              f"{_num(r.get('events_per_s_whole_run'))}/s ({r.get('wall_s', 0):.0f}s)" or "")
    r = res.get("gc_pauses")
    if r is not None and not _err(r):
        for label in ("off", "on"):
            g = r.get(label, {})
            full = g.get("gen2", {})
            add(f"5 GC, {r['events']:,} new customers, state.gc_freeze={'true' if label == 'on' else 'false'}", g,
                g.get("events_per_s"), "-",
                f"full collections {full.get('count')}: {_num(full.get('total_ms'))} ms in all, longest "
                f"{_num(full.get('max_ms'))} ms (benchmarks/gc_pauses.py)")
    elif sz["gc_events"]:
        add("5 GC pauses", r)
    r = res.get("iot_quality")
    if r is not None and not _err(r):
        for who, label in (("project", "this project"), ("baseline", "River MinMaxScaler|HST")):
            q = r[who]
            add(f"6 IoT quality, {label} ({r['readings']:,} readings)", q, q.get("events_per_s"), "-",
                f"ROC AUC {q['roc_auc']:.3f}, PR AUC {q['pr_auc']:.3f}")
    else:
        add("6 IoT quality", r)
    r = res.get("fraud_model")
    add("6 fraud model, later window (manifest)", r, None, "-",
        r and not _err(r) and f"{r['model']}: ROC AUC {r['roc_auc']}, PR AUC {r['pr_auc']}, recall/precision at "
                              f"CRITICAL {r['recall_at_critical']}/{r['precision_at_critical']}" or "")
    snapshot_rows(rows, res.get("snapshots"), add)
    rt = doc.get("ratios", {})
    rows.append({"row": "ratio project / naive", "events_s": _num(rt.get("project_over_naive"), "{:,.1f}x"),
                 "latency_ms": "", "notes": "file->file fraud vs per-event calls"})
    rows.append({"row": "ratio project / reference", "events_s": _num(rt.get("project_over_reference"), "{:.2f}x"),
                 "latency_ms": "", "notes": "file->file fraud vs plain loop; own functions vs plain loop: "
                                            + _num(rt.get("project_functions_over_reference"), "{:.2f}x")})
    rows.append({"row": "ratio hot device / River alone", "events_s": _num(rt.get("hot_device_over_river"), "{:.2f}x"),
                 "latency_ms": "", "notes": ">= 1.00x is the target"})
    return rows


def snapshot_rows(rows: list[dict[str, str]], r: Any, add: Callable[..., None]) -> None:
    """Rows 7 (recovery) of :func:`build_table`, from :mod:`benchmarks.snapshots`' JSON."""
    if r is None or _err(r):
        add("7 recovery (benchmarks/snapshots.py)", r)
        return
    sz, ep, fl = r.get("sizes", {}), r.get("epoch", {}), r.get("flow", {})

    def at(d: dict, *keys: str) -> str:  # bytes after so many events
        return "/".join(_num(d.get("bytes", {}).get(k)) for k in keys)

    def largest(d: dict) -> Any:  # bytes at the last checkpoint
        by = d.get("bytes", {})
        return by[max(by, key=int)] if by else None

    def warm(d: dict) -> Any:  # a shard state's bytes at the last checkpoint
        marks = [k for k in d if k.isdigit()]
        return d[max(marks, key=int)].get("max_bytes") if marks else None

    c, hot, dev, hd = (sz.get(k, {}) for k in ("customer", "hot_customer", "device", "hot_device_10hz"))
    shards = sz.get("shards", {})
    add("7 snapshot bytes per key (pickled, as stored)", r, None, "-",
        f"customer after 1/10/100/1,000 tx {at(c, '1', '10', '100', '1000')} B; hot customer "
        f"({_num(hot.get('transactions'))} tx) {_num(largest(hot))} B, bound {_num(hot.get('bound_bytes'))}; "
        f"device after 1/100/10,000 {at(dev, '1', '100', '10000')} B, at 10 Hz {_num(largest(hd))} B; "
        f"shard fraud/IoT {_num(warm(shards.get('fraud', {})))}/{_num(warm(shards.get('iot', {})))} B")
    for kind in ("customers", "devices"):
        for x in ep.get(kind, {}).get("per_k", []):
            add(f"7 epoch end: snapshot + pickle {x['keys']:,} {kind}", x, None, "-",
                f"{x['ms_per_epoch']:,.1f} ms per epoch, {x['us_per_key']:.1f} us/key "
                f"({x['gc_off_us_per_key']:.1f} with gc off), {x['bytes_per_epoch'] / 2**20:,.1f} MiB")
    for x in ep.get("bytewax", {}).get("per_k", []):
        add(f"7 epoch end in Bytewax: {x['keys']:,} new customers, recovery on vs off", x, None, "-",
            f"+{_num(x.get('recovery_us_per_key'), '{:,.1f}')} us CPU per key (pickle + SQLite write); "
            f"{_num(x.get('stored_bytes_per_key'))} B stored per key")
    for name, inp in fl.get("inputs", {}).items():
        who = "demo customers" if name == "demo" else "each tx a new customer"
        for run_ in inp.get("runs", []):
            s = run_.get("snapshot_interval_s")
            notes = f"wall {run_.get('wall_s') or 0:.1f}s, CPU {run_.get('cpu_s') or 0:.1f}s"
            if s is not None:
                notes += (f"; vs off: wall {_num(run_.get('wall_vs_off'), '{:.2f}x')}, CPU "
                          f"{_num(run_.get('cpu_vs_off'), '{:.2f}x')}, events/s "
                          f"{_num(run_.get('events_per_s_vs_off'), '{:.2f}x')}; recovery dir "
                          f"{run_.get('recovery_dir_bytes', 0) / 2**20:,.1f} MiB, "
                          f"{_num(run_.get('recovery_dir_bytes_per_customer'))} B/customer")
            add(f"7 file->file fraud, recovery {'off' if s is None else f'-s {s:g}'} "
                f"({fl.get('events', 0):,} tx, {who})", run_, run_.get("events_per_s"),
                _lat(run_.get("latency_ms")), notes)


def format_table(doc: dict) -> str:
    m = doc["machine"]
    head = (f"streamscore benchmarks ({doc['mode']}), {doc['started_at']}: {m['cpu']}, {m['cores']} cores, "
            f"{m['memory_gb']} GB, Python {m['python']}, bytewax {m['bytewax']}, river {m['river']}, "
            f"lightgbm {m['lightgbm']}, feast {m['feast']}; load {m['load_avg_1m_at_start']} at start; "
            f"run took {doc.get('seconds', 0):.0f}s")
    rows = doc["table"]
    cols = (("row", "measurement"), ("events_s", "events/s"), ("latency_ms", "latency ms p50 / p95 / p99"),
            ("notes", "notes"))
    widths = {k: max(len(t), *(len(r[k]) for r in rows)) for k, t in cols}
    line = "| " + " | ".join(t.ljust(widths[k]) for k, t in cols) + " |"
    sep = "|" + "|".join("-" * (widths[k] + 2) for k, _ in cols) + "|"
    body = ["| " + " | ".join((r[k].rjust(widths[k]) if k == "events_s" else r[k].ljust(widths[k]))
                              for k, _ in cols) + " |" for r in rows]
    return "\n".join([head, "", line, sep, *body])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer events: seconds, not minutes")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the JSON (default {DEFAULT_JSON})")
    p.add_argument("--no-kafka", action="store_true", help="skip the Kafka to Kafka measurements")
    a = p.parse_args(argv)
    os.chdir(common.ROOT)
    # SIGTERM unwinds like Ctrl-C: flows stopped, the broker (if started here) and topics cleaned up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc = run(quick=a.quick, kafka=not a.no_kafka)
    text = format_table(doc)
    print(text)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nwritten: {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
