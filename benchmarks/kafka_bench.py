"""Kafka to Kafka: the fraud flow between topics, in 1 or 2 processes.

* :func:`backfill`: the input topic is filled first, then the flow runs with
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
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any, Sequence

from benchmarks.common import ROOT, flow_env, percentiles, steady_rate
from cli.replay import ensure_topic, replay
from settings.config import KafkaConfig

__all__ = ["Broker", "backfill", "live", "broker_answers"]

KEY = "transaction_id"


def broker_answers(host: str = "127.0.0.1", port: int = 9092, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
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
        host, port = self.bootstrap.rsplit(":", 1)
        if not broker_answers(host, int(port)):
            subprocess.run(["bash", "scripts/kafka.sh", "up"], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
            self.started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.created_topics:
            try:
                from confluent_kafka.admin import AdminClient

                futures = AdminClient({"bootstrap.servers": self.bootstrap}).delete_topics(self.created_topics)
                for f in futures.values():
                    try:
                        f.result(30)
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


def backfill(broker: Broker, events: Sequence[dict], processes: int = 1) -> dict[str, Any]:
    kafka = broker.kafka()
    t = broker.topics(f"backfill{processes}p")
    ensure_topic(kafka, t["in"], 3)
    replay(events, kafka, t["in"], lambda e: e[KEY], progress=False)
    cmd = _command(processes)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(broker, t, tail=False), stdout=subprocess.DEVNULL,
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


def live(broker: Broker, events: Sequence[dict], rate: float, processes: int = 1,
         warm: int = 300) -> dict[str, Any]:
    kafka = broker.kafka()
    t = broker.topics(f"live{processes}p{int(rate)}")
    ensure_topic(kafka, t["in"], 3)
    cmd = _command(processes)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(broker, t, tail=True), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        warm_events, live_events = events[:warm], events[warm:]
        replay(warm_events, kafka, t["in"], lambda e: e[KEY], progress=False)
        warmed = _read(broker, t["scored"], len(warm_events), 180, proc)
        sent = replay(live_events, kafka, t["in"], lambda e: e[KEY], rate=rate, progress=False)
        produced = _read(broker, t["in"], len(events), 60)
        scored = _read(broker, t["scored"], len(events), max(60.0, len(live_events) / 1000), proc)
    finally:
        _stop(proc)
    lat = [scored[k] - produced[k] for k in (e[KEY] for e in live_events) if k in scored and k in produced]
    return {"processes": processes, "offered_rate": rate, "achieved_rate": sent["events_per_s"],
            "events": len(live_events), "scored": len(lat), "warm_up_scored": len(warmed),
            "latency_ms": percentiles(lat), "latency_max_ms": max(lat) if lat else None,
            "command": " ".join(cmd)}
