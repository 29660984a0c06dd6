"""Kafka to Kafka: the fraud flow between topics, in 1 or 2 processes.

* :func:`backfill`: the input topic is filled first (messages keyed by customer, as
  ``streamscore replay`` keys them), then the flow runs with
  ``STREAMSCORE_KAFKA__TAIL=false`` (stops at the end of the topic). Sustained events/s
  from the scored messages' own timestamps (first to last, the messages of the
  first millisecond not counted), and the wall time of the whole run.
* :func:`live`: the flow tails the topic; after a warm-up (every worker has
  scored its first batch: model and Feast are open), events are produced at a
  fixed rate; end-to-end latency per event = scored message timestamp - input
  message timestamp (both set by the producing client), matched by key.

One process: ``python -m bytewax.run "dataflows.fraud:get_flow()"``; two:
``python -m bytewax.testing "dataflows.fraud:get_flow()" -p 2``. Topics are
created per measurement (3 partitions) with :func:`cli.replay.ensure_topic`,
filled with :func:`cli.replay.replay`, and deleted afterwards.
:class:`Broker` starts the local broker (``scripts/kafka.sh up``) when none
answers, and stops it only if it started it.

Live runs alone, repeated (the tail varies from run to run)::

    python -m benchmarks.kafka_bench --rate 1000 --seconds 10 --repeats 3 [--processes 2]
        [--recovery-s 10] [--storm]

prints one JSON line per run: latency percentiles and what the slowest 1% waited on.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import orjson

from benchmarks.common import ROOT, flow_env, percentiles, steady_rate
from cli.replay import FLOWS, ensure_topic, key_on, producer_for, replay
from settings.config import KafkaConfig

__all__ = ["Broker", "backfill", "live", "broker_answers"]

#: The live runs' message key: each input message is matched to its scored message (keyed by
#: ``transaction_id`` too) by it, for the end-to-end latency.
KEY = "transaction_id"

#: The backfills' message key: the fraud flow's entity, as ``streamscore replay`` keys messages.
ENTITY_KEY = key_on(FLOWS["fraud"][2]())


def broker_answers(bootstrap: str = "127.0.0.1:9092", timeout: float = 1.0) -> bool:
    """Whether the first address of ``bootstrap`` (``host:port``, a ``PLAINTEXT://`` prefix
    or an ``[ipv6]`` host allowed) takes a connection.

    >>> broker_answers("PLAINTEXT://127.0.0.1:9,other:9092"), broker_answers("no port")
    (False, False)
    """
    first = bootstrap.split(",")[0].strip().rpartition("://")[2]
    host, _, port = first.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class Broker:
    """Context manager: a broker on 127.0.0.1:9092, started by ``scripts/kafka.sh up``
    if none answers (and then stopped on exit); ``started`` says which."""

    def __init__(self, bootstrap: str = "127.0.0.1:9092", flow_env: dict[str, str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.flow_env = dict(flow_env or {})  # e.g. STREAMSCORE_FEAST__REPO, STREAMSCORE_MODEL__REGISTRY
        self.started = False
        self.created_topics: list[str] = []

    def __enter__(self) -> "Broker":
        if not broker_answers(self.bootstrap):
            subprocess.run(["bash", "scripts/kafka.sh", "up"], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
            self.started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.created_topics:
            try:
                from confluent_kafka.admin import AdminClient

                # the client is kept until the answers come: dropped, it cancels its requests
                # ("Broker handle destroyed"), and every bench run left its topics behind
                admin = AdminClient({"bootstrap.servers": self.bootstrap})
                for f in admin.delete_topics(self.created_topics, operation_timeout=30).values():
                    try:
                        f.result(60)
                    except Exception:
                        pass
            except Exception:
                pass
        if self.started:
            subprocess.run(["bash", "scripts/kafka.sh", "down"], cwd=ROOT, check=False, stdout=subprocess.DEVNULL)

    def kafka(self) -> Any:
        return KafkaConfig(bootstrap_servers=self.bootstrap)

    def topics(self, label: str) -> dict[str, str]:
        run = uuid.uuid4().hex[:6]
        t = {k: f"bench-{label}-{k}-{run}" for k in ("in", "scored", "alerts", "dead")}
        self.created_topics.extend(t.values())
        return t


def _env(broker: Broker, t: dict[str, str], tail: bool) -> dict[str, str]:
    return flow_env({"STREAMSCORE_SOURCE": "kafka", "STREAMSCORE_OUTPUT": "kafka", "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                     "STREAMSCORE_INPUT_TOPIC": t["in"], "STREAMSCORE_SCORED_TOPIC": t["scored"],
                     "STREAMSCORE_ALERTS_TOPIC": t["alerts"], "STREAMSCORE_DEAD_LETTER_TOPIC": t["dead"],
                     "STREAMSCORE_KAFKA__TAIL": "true" if tail else "false", **broker.flow_env})


def _command(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "bytewax.run", "dataflows.fraud:get_flow()"]
    return [sys.executable, "-m", "bytewax.testing", "dataflows.fraud:get_flow()", "-p", str(processes)]


def _read(broker: Broker, topic: str, expected: int, timeout: float,
          proc: subprocess.Popen | None = None) -> dict[str, int]:
    """``{key: message timestamp ms}`` of up to ``expected`` messages of ``topic``;
    raises when ``proc`` (the flow) exits while waiting."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    stamps: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < expected and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if not m.error() and m.key() is not None:
                    stamps[m.key().decode()] = m.timestamp()[1]
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the flow exited ({proc.returncode}) after {len(stamps)} scored messages: "
                                   f"{' '.join(map(str, proc.args))}")
    finally:
        c.close()
    return stamps


def _stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the flow's process group (it and the processes it spawned), then wait."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def backfill(broker: Broker, events: Sequence[dict], processes: int = 1, root: Path = ROOT) -> dict[str, Any]:
    """One backfill of ``events`` by the flow of checkout ``root`` (default this one)."""
    kafka = broker.kafka()
    t = broker.topics(f"backfill{processes}p")
    ensure_topic(kafka, t["in"], 3)
    # Keyed by the flow's entity, as `streamscore replay` keys them: a customer's events stay on one
    # partition and in order, and the flow reads the customer from each message (until 2026-12-07
    # this keyed by transaction_id, so figures from before differ: docs/benchmarks.md).
    replay(events, kafka, t["in"], ENTITY_KEY, progress=False)
    cmd = _command(processes)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=_env(broker, t, tail=False), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=max(300.0, len(events) / 500))
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    stamps = _read(broker, t["scored"], len(events), 60)
    rate, span = steady_rate([v / 1000.0 for v in stamps.values()])
    return {"processes": processes, "events": len(events), "scored": len(stamps),
            "events_per_s": None if rate is None else round(rate, 1), "steady_span_s": round(span, 3),
            "wall_s": round(wall, 3), "events_per_s_whole_run": round(len(events) / wall, 1),
            "command": " ".join(cmd)}


def _read_scored(broker: Broker, topic: str, expected: int, timeout: float,
                 proc: subprocess.Popen | None = None) -> dict[str, tuple[int, float, float]]:
    """``{key: (message timestamp ms, scored_at epoch ms, latency_ms)}`` of the scored topic."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out: dict[str, tuple[int, float, float]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() or m.key() is None:
                    continue
                r = orjson.loads(m.value())
                scored_at = datetime.fromisoformat(r["scored_at"].replace("Z", "+00:00")).timestamp() * 1000.0
                out[m.key().decode()] = (m.timestamp()[1], scored_at, float(r.get("latency_ms") or 0.0))
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the flow exited ({proc.returncode}) after {len(out)} scored messages")
    finally:
        c.close()
    return out


#: percentiles of the latency rows
PS = (50, 95, 99, 99.9)


def breakdown(produced: dict[str, int], scored: dict[str, tuple[int, float, float]],
              keys: Sequence[str], pauses: Sequence[tuple[float, float]] = ()) -> dict[str, Any]:
    """Per event: ``source`` (produced to the flow's arrival stamp: broker, consumer, Bytewax
    until the validate step), ``flow`` (arrival to scored: every step up to the scorer),
    ``sink`` (scored to the broker's append time of the scored message: the steps after the
    scorer, the sink's produce and its delivery), ``total``; their percentiles
    and maxima; what the slowest 1% waited on (mean share of each part); and how many of those
    overlapped a GC pause (``pauses``: ``(start epoch s, seconds)``); and when they were
    produced, in seconds from the first event (a tail bunched at the start is a start-up
    transient, one spread over the run is steady-state).

    >>> produced = {"a": 1000, "b": 1000}
    >>> scored = {"a": (1030, 1020.0, 5.0), "b": (1100, 1090.0, 60.0)}
    >>> b = breakdown(produced, scored, ["a", "b"])
    >>> b["total_ms"]["max"], b["flow_ms"]["max"], b["sink_ms"]["max"]
    (100.0, 60.0, 10.0)
    """
    rows = []
    for k in keys:
        if k in scored and k in produced:
            out_ts, scored_at, flow = scored[k]
            arrival = scored_at - flow
            rows.append((out_ts - produced[k], arrival - produced[k], flow, out_ts - scored_at, arrival))
    if not rows:
        return {"events": 0}

    def summary(i: int) -> dict[str, Any]:
        vals = sorted(r[i] for r in rows)
        return {**{f"p{p:g}": round(float(np.percentile(vals, p)), 1) for p in PS}, "max": round(float(vals[-1]), 1)}

    cut = np.percentile([r[0] for r in rows], 99)
    tail = [r for r in rows if r[0] >= cut]
    first = min(r[4] - r[1] for r in rows)  # the first live event's production time (ms)
    when = sorted((r[4] - r[1] - first) / 1000.0 for r in tail)  # s into the live phase
    in_pause = sum(1 for r in tail if any(s * 1000 <= r[4] + r[2] and r[4] <= (s + d) * 1000 for s, d in pauses))
    return {"events": len(rows), "total_ms": summary(0), "source_ms": summary(1), "flow_ms": summary(2),
            "sink_ms": summary(3),
            "slowest_1pct": {"events": len(tail), "mean_total_ms": round(float(np.mean([r[0] for r in tail])), 1),
                             "mean_source_ms": round(float(np.mean([r[1] for r in tail])), 1),
                             "mean_flow_ms": round(float(np.mean([r[2] for r in tail])), 1),
                             "mean_sink_ms": round(float(np.mean([r[3] for r in tail])), 1),
                             "overlapping_gc_pause": in_pause,
                             "produced_s_into_run": {"min": round(when[0], 2), "median": round(when[len(when) // 2], 2),
                                                     "max": round(when[-1], 2)}}}


def _gc_pauses(log_path: Path) -> list[tuple[float, float]]:
    """``(start epoch s, seconds)`` of the ``gc_pause`` lines a flow logged (:mod:`dataflows.gcwatch`)."""
    out = []
    for line in log_path.read_bytes().splitlines():
        if b"gc_pause" in line:
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if r.get("event") == "gc_pause":
                out.append((float(r["at"]), float(r["ms"]) / 1000.0))
    return out


def _log_append_time_topic(broker: Broker, topic: str) -> None:
    """Create ``topic`` with the broker's append time as each message's timestamp, so a
    scored message's timestamp is when the broker took it: after the sink's produce call
    and its delivery, not when the flow's producer created it."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                        config={"message.timestamp.type": "LogAppendTime"})])[topic]
    fut.result(timeout=30)


def live(broker: Broker, events: Sequence[dict], rate: float, processes: int = 1,
         warm: int = 300, extra_env: dict[str, str] | None = None, label: str = "",
         snapshot_s: float | None = None) -> dict[str, Any]:
    """Produce ``events`` at ``rate``/s to a flow tailing the topic; latency per event and
    its breakdown (:func:`breakdown`). ``extra_env``: settings for the flow (e.g. the alert
    storm's thresholds). ``snapshot_s``: run with recovery on, a snapshot every that many
    seconds (a fresh recovery directory), as production runs."""
    if snapshot_s is not None:
        rec = Path(tempfile.mkdtemp(prefix="live-recovery-"))
        subprocess.run([sys.executable, "-m", "bytewax.recovery", str(rec), str(processes)], check=True,
                       cwd=ROOT, stdout=subprocess.DEVNULL)
        extra_env = {**(extra_env or {}), "BYTEWAX_RECOVERY_DIRECTORY": str(rec),
                     "BYTEWAX_SNAPSHOT_INTERVAL": f"{snapshot_s:g}", "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "0"}
        try:
            return live(broker, events, rate, processes, warm, extra_env, label)
        finally:
            shutil.rmtree(rec, ignore_errors=True)
    kafka = broker.kafka()
    t = broker.topics(f"live{processes}p{int(rate)}{label}")
    ensure_topic(kafka, t["in"], 3)
    _log_append_time_topic(broker, t["scored"])
    cmd = _command(processes)
    log_path = Path(tempfile.mkstemp(prefix="live-", suffix=".log")[1])
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**_env(broker, t, tail=True), **(extra_env or {})},
                                stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True)
        try:
            warm_events, live_events = events[:warm], events[warm:]
            producer = producer_for(kafka)  # one producer, connected during the warm-up: the live
            # phase measures the flow, not a new client's connection and idempotence handshake
            replay(warm_events, kafka, t["in"], lambda e: e[KEY], progress=False, producer=producer)
            warmed = _read(broker, t["scored"], len(warm_events), 180, proc)
            sent = replay(live_events, kafka, t["in"], lambda e: e[KEY], rate=rate, progress=False, producer=producer)
            produced = _read(broker, t["in"], len(events), 60)
            scored = _read_scored(broker, t["scored"], len(events), max(60.0, len(live_events) / 1000), proc)
        finally:
            _stop(proc)
    pauses = _gc_pauses(log_path)
    log_path.unlink()
    keys = [e[KEY] for e in live_events]
    b = breakdown(produced, scored, keys, pauses)
    return {"processes": processes, "offered_rate": rate, "achieved_rate": sent["events_per_s"],
            "events": len(live_events), "scored": b["events"], "warm_up_scored": len(warmed),
            "latency_ms": b.get("total_ms"), "latency_max_ms": (b.get("total_ms") or {}).get("max"),
            "breakdown": b, "gc_pauses_logged": len(pauses),
            "gc_pause_max_ms": round(max((d for _, d in pauses), default=0.0) * 1000, 1),
            "settings": extra_env or {}, "command": " ".join(cmd)}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from benchmarks.common import fraud_events

    p = argparse.ArgumentParser(prog="python -m benchmarks.kafka_bench", description="Live Kafka runs, repeated.")
    p.add_argument("--rate", type=float, default=1000.0, help="events/s offered")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of live events per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--recovery-s", type=float, default=None, help="recovery on, a snapshot every that many s")
    p.add_argument("--storm", action="store_true", help="every event alerts (benchmarks.run.STORM)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="io.batch_size: the most messages a poll hands on per partition (default: the setting's)")
    p.add_argument("--feature-repo", type=Path, default=Path("feature_repo"))
    p.add_argument("--registry", type=Path, default=Path("model_registry"))
    a = p.parse_args(argv)
    env = {"STREAMSCORE_FEAST__REPO": str(a.feature_repo.resolve()),
           "STREAMSCORE_MODEL__REGISTRY": str(a.registry.resolve())}
    extra: dict[str, str] = {}
    if a.storm:
        from benchmarks.run import STORM

        extra.update(STORM)
    if a.batch_size:
        extra["STREAMSCORE_IO__BATCH_SIZE"] = str(a.batch_size)
    events = fraud_events(int(a.rate * a.seconds) + 300)
    with Broker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), env) as broker:
        for i in range(a.repeats):
            r = live(broker, events, a.rate, a.processes, extra_env=extra or None, label=f"cli{i}", snapshot_s=a.recovery_s)
            print(json.dumps({"run": i + 1, "processes": a.processes, "offered_rate": a.rate, "batch_size": a.batch_size,
                              "recovery_s": a.recovery_s, "storm": a.storm, "latency_ms": r["latency_ms"],
                              "slowest_1pct": r["breakdown"].get("slowest_1pct")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
