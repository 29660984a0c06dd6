"""Fraud scoring throughput and latency, measured; figures printed, nothing asserted.

    python -m benchmarks.fraud_throughput [--events 50000] [--kafka] [--rate 2000]

Needs the demo's Feast repo and model (`make model`). Three measurements:

1. **Stages** of :class:`models.fraud.FraudPipeline`, the dataflow's own steps in
   a plain Python loop (no stream engine): microseconds per event of parsing,
   streaming features, shared detector, scoring (Feast lookup with cache, model,
   status: a :class:`~models.fraud.batch.ScoredBatch` per 1,000, as the flow scores) and
   the outputs (both outputs' JSON lines, the inference log's table, the metrics).
   Shows where the time goes.
2. **File to file** through the real dataflow (`bytewax.testing.run_main`):
   events/s and the in-flow latency (arrival in the dataflow -> scored).
3. With ``--kafka`` (a broker at KAFKA_BOOTSTRAP_SERVERS; `make kafka-up`):
   **Kafka to Kafka** throughput of a backfill (topic pre-filled, tail off), and
   **end-to-end latency** of a live stream at ``--rate`` events/s: input message
   timestamp (set when produced) to scored message timestamp (set when the flow
   produced it), matched by key.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson

from cli.replay import ensure_topic, replay
from dataflows.fraud import build_flow
from datagen.transactions import stream_transactions, write_events
from features.records import DeadLetter
from features.store import fraud_lookups
from dataflows.gcwatch import freeze_startup_objects
from dataflows.metrics import METRICS
from models.fraud import LOG_SPEC, FraudModel, FraudPipeline, FraudScoringConfig
from monitoring.run_report import summarize_run
from settings.config import FraudConfig, KafkaConfig

ROOT = Path(__file__).resolve().parents[1]


def pct(values, ps=(50, 95, 99)) -> str:
    a = np.asarray(values, dtype=float)
    return "  ".join(f"p{p} {np.percentile(a, p):.1f}" for p in ps)


def stage_costs(
    events: list[dict],
    feature_repo: Path = Path("feature_repo"),
    registry: Path = Path("model_registry"),
    model_ref: str = "fraud_model@production",
) -> dict[str, float]:
    """Microseconds per event of each stage of :class:`models.fraud.FraudPipeline`
    (the classes and functions the dataflow runs), in one process, in order: this
    process's CPU time (its Feast lookup thread included), steadier than the wall clock
    on a shared machine. The start-up objects are frozen out of the garbage collector's
    full collections first, as the flow's start-up does (``state.gc_freeze``, on by
    default): otherwise a full collection walking them lands in whichever stage runs then."""
    cfg = FraudScoringConfig()
    t = time.perf_counter()
    model = FraudModel.load(model_ref, registry)
    customers, merchants = fraud_lookups(feature_repo)
    # Feast client start-up and first reads, on a pipeline of its own, out of the timed stages
    FraudPipeline(cfg, model, customers, merchants).process(
        [orjson.dumps(e) for e in stream_transactions(5000, seed=999)])
    print(f"  (model load, scorer start-up + first 5,000 events: {time.perf_counter() - t:.2f}s, not counted below)")
    freeze_startup_objects()  # as the flow does after start-up (state.gc_freeze): full collections skip them
    pipe = FraudPipeline(cfg, model, customers, merchants)
    raw = [orjson.dumps(e) for e in events]
    n = len(raw)
    out: dict[str, float] = {}
    clock = time.process_time

    t = clock()
    parsed = [pipe.parse(r, time.time()) for r in raw]
    out["parse_transaction (JSON decode + checks)"] = clock() - t
    txs = [tx for tx in parsed if not isinstance(tx, DeadLetter)]

    t = clock()
    for i in range(0, len(txs), 1000):  # per batch, as the flow runs it (CustomerState.update_many)
        pipe.customer_step_many(txs[i:i + 1000])
    out["CustomerState: streaming features + amount detector"] = clock() - t

    t = clock()
    for i in range(0, len(txs), 1000):  # per batch, as the flow runs it (ShardState.update_many)
        pipe.shard_step_many(txs[i:i + 1000])
    out["ShardState: shared multivariate detector"] = clock() - t

    t = clock()
    batches = [pipe.scorer.score_columns(txs[i:i + 1000]) for i in range(0, len(txs), 1000)]  # as the flow
    out["FraudScorer (Feast lookup, warm cache; model; status)"] = clock() - t

    t = clock()
    for b in batches:  # what the flow's outputs make of a scored batch
        b.lines("scored")
        b.lines("alerts")
        b.log_table(LOG_SPEC)
        METRICS.observe_batch("stage_costs", "scored", b)
    out["outputs (JSON lines, inference-log table, metrics)"] = clock() - t
    gc.unfreeze()  # the process's collector as it was (the suite runs this in its own processes)
    return {k: v / n * 1e6 for k, v in out.items()}


def file_to_file(path: Path, n: int) -> dict:
    from bytewax.testing import run_main

    out = Path(tempfile.mkdtemp(prefix="bench-fraud-"))
    cfg = FraudConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(path), "STREAMSCORE_IO__OUTPUT_DIR": str(out)})
    t = time.perf_counter()
    run_main(build_flow(cfg))
    seconds = time.perf_counter() - t
    s = summarize_run(out, n)
    assert s["accounted"], s
    return {"seconds": seconds, "events_per_s": n / seconds, "latency_ms": s["latency_ms"]}


def kafka_runs(events: list[dict], rate: float) -> None:
    broker = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    kafka = KafkaConfig(bootstrap_servers=broker)
    key = lambda e: e["transaction_id"]  # noqa: E731
    from benchmarks.kafka_bench import Broker

    with Broker(broker) as b:  # its topics (b.topics) are deleted when it is done
        _kafka_runs(events, rate, broker, kafka, key, lambda: b.topics("throughput"))


def _kafka_runs(events: list[dict], rate: float, broker: str, kafka: Any, key: Callable[[dict], str],
                topics: Callable[[], dict[str, str]]) -> None:
    from confluent_kafka import Consumer

    def env(t: dict[str, str], tail: bool) -> dict[str, str]:
        return {**os.environ, "STREAMSCORE_SOURCE": "kafka", "STREAMSCORE_OUTPUT": "kafka", "KAFKA_BOOTSTRAP_SERVERS": broker,
                "STREAMSCORE_INPUT_TOPIC": t["in"], "STREAMSCORE_SCORED_TOPIC": t["scored"],
                "STREAMSCORE_ALERTS_TOPIC": t["alerts"], "STREAMSCORE_DEAD_LETTER_TOPIC": t["dead"],
                "STREAMSCORE_KAFKA__TAIL": "true" if tail else "false", "STREAMSCORE_LOG__LEVEL": "WARNING"}

    def read(topic: str, expected: int, timeout: float) -> dict[str, int]:
        c = Consumer({"bootstrap.servers": broker, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        stamps: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        while len(stamps) < expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                stamps[m.key().decode()] = m.timestamp()[1]
        c.close()
        return stamps

    # Backfill: topic filled first, the flow reads to the end and stops.
    t = topics()
    ensure_topic(kafka, t["in"], 3)
    replay(events, kafka, t["in"], key, progress=False)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.fraud:flow"], cwd=ROOT, env=env(t, False),
                   check=True)
    seconds = time.perf_counter() - start
    stamps = read(t["scored"], len(events), 60)
    span = (max(stamps.values()) - min(stamps.values())) / 1000
    print(f"Kafka -> Kafka backfill: {len(events)} events in {seconds:.1f}s wall (process start, imports, "
          f"model and Feast load included): {len(events) / seconds:,.0f} events/s; steady state (first to last "
          f"scored message): {len(stamps) / span:,.0f} events/s")

    # Live stream: the flow tails the topic while events are produced at `rate`.
    t = topics()
    ensure_topic(kafka, t["in"], 3)
    proc = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.fraud:flow"], cwd=ROOT,
                            env=env(t, True))
    try:
        warm = events[:200]
        replay(warm, kafka, t["in"], key, progress=False)  # the first batch loads the model and Feast
        read(t["scored"], len(warm), 120)
        live = events[200:]
        replay(live, kafka, t["in"], key, rate=rate, progress=False)
        produced = read(t["in"], len(events), 60)
        scored = read(t["scored"], len(events), 120)
    finally:
        proc.terminate()
        proc.wait(30)
    lat = [scored[k] - produced[k] for k in (e["transaction_id"] for e in live) if k in scored and k in produced]
    print(f"Kafka -> Kafka live stream at {rate:,.0f} events/s: {len(lat)}/{len(live)} scored; end-to-end latency "
          f"ms (input message timestamp -> scored message timestamp): {pct(lat)}  max {max(lat):.0f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--kafka", action="store_true", help="also measure Kafka to Kafka (needs a broker)")
    p.add_argument("--rate", type=float, default=2000.0, help="events/s of the live Kafka stream")
    a = p.parse_args(argv)
    events = stream_transactions(a.events, seed=123)
    print(f"{a.events} generated transactions, 2 cores, one Bytewax worker\n")
    print("Stage costs (plain loop, us/event):")
    costs = stage_costs(events[: min(a.events, 20_000)])
    for k, v in costs.items():
        print(f"  {k:<45} {v:8.1f}")
    print(f"  {'total':<45} {sum(costs.values()):8.1f}  (= {1e6 / sum(costs.values()):,.0f} events/s/core)\n")

    path = Path(tempfile.mkdtemp(prefix="bench-in-")) / "tx.jsonl"
    write_events(events, path)
    r = file_to_file(path, a.events)
    print(f"File -> file dataflow: {a.events} events in {r['seconds']:.1f}s = {r['events_per_s']:,.0f} events/s "
          f"(in-process, model/Feast load included); in-flow latency ms {r['latency_ms']}")
    if a.kafka:
        kafka_runs(events, a.rate)


if __name__ == "__main__":
    main()
