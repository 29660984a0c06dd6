"""A local rehearsal of the chart's start-up (docs/kubernetes.md, "What the rehearsal proves").

The fraud flow runs as the StatefulSet's pods would: each process is
``deploy/entrypoint.sh init-recovery ...`` then ``deploy/entrypoint.sh flow ...`` (the init
container's and the container's args), with the environment the chart renders for pod-0,
pod-1 (pod-2 after scaling): the pod name and StatefulSet name (the ordinal), the hostfile,
the workers, snapshot interval, the settings file (the ConfigMap's content). What is local:
the addresses in the hostfile (127.0.0.1 ports, not the headless Service's names), one
folder per process for its recovery volume, the metrics ports, the online store (SQLite,
not Redis) and the topics. Kafka to Kafka, with recovery:

1. 2 processes; process 1 is killed with SIGKILL mid-stream (process 0 then stops: the
   cluster is down, as when a pod dies); both restart with the same environment and resume;
2. scaled from 2 processes to 3 as docs/kubernetes.md says: stopped (SIGTERM, as
   ``kubectl delete pod``), the hostfile re-rendered for 3 with the partitions pinned, pod-2
   with an empty volume; more events are produced;
3. every event is scored (or a dead letter), and every transaction's streaming features
   and model score equal an uninterrupted single-process run's over the same input: the
   customers' state survived the kill and the rescale exactly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from datagen.transactions import stream_transactions
from tests.conftest import ROOT
from tests.deploy.chart import flow_pods, render
from tests.e2e.test_kafka import BROKER, consume_all, create_topics, topics
from tests.e2e.test_recovery import KEPT, _messages_in

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
STS = "ss-streamscore-fraud"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The flow's processes, started as the chart's pods with local addresses and folders."""

    def __init__(self, tmp: Path, base_env: dict[str, str], sets: tuple[str, ...]) -> None:
        self.tmp, self.base_env = tmp, base_env
        self.pods = flow_pods(render(sets=("flows.fraud.snapshotInterval=1", *sets)), STS)
        self.hostfile = tmp / f"hostfile-{len(self.pods)}.txt"
        # the chart's address list, one per process in ordinal order (pointed at local ports)
        assert [a.split(".", 1)[0] for a in self.pods[0].hostfile] == [p.name for p in self.pods]
        self.api_ports: list[int] = []
        self.procs: list[subprocess.Popen] = []

    def env(self, i: int, init: bool = False) -> dict[str, str]:
        pod = self.pods[i]
        env = {**self.base_env, **(pod.init_env if init else pod.env)}
        env.pop("STREAMSCORE_FEAST__STORE_YAML", None)  # the test's SQLite online store, not Redis
        env.update(BYTEWAX_RECOVERY_DIRECTORY=str(self.tmp / pod.name / "recovery"),  # its own volume
                   STREAMSCORE_CONFIG=str(self.tmp / "streamscore.toml"))
        if not init:
            env.update(BYTEWAX_HOSTFILE_PATH=str(self.hostfile), BYTEWAX_DATAFLOW_API_PORT=str(self.api_ports[i]))
        return env

    def start(self) -> None:
        self.hostfile.write_text("".join(f"127.0.0.1:{free_port()}\n" for _ in self.pods))
        self.api_ports = [free_port() for _ in self.pods]
        for i, pod in enumerate(self.pods):  # the init containers, then the containers
            done = subprocess.run(["sh", str(ENTRYPOINT), *pod.init_args], cwd=ROOT, env=self.env(i, init=True),
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
        self.procs = [subprocess.Popen(["sh", str(ENTRYPOINT), *pod.args], cwd=ROOT, env=self.env(i),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                      for i, pod in enumerate(self.pods)]

    def partitions(self) -> list[list[str]]:
        return [sorted(p.name for p in (self.tmp / pod.name / "recovery").glob("part-*.sqlite3")) for pod in self.pods]

    def probes(self) -> list[tuple[int, int]]:
        """(readiness /dataflow, liveness /metrics) status of each process, as the kubelet asks."""
        out = []
        for port in self.api_ports:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
                out.append((c.get("/dataflow").status_code, c.get("/metrics").status_code))
        return out

    def wait_ready(self, timeout_s: float = 240) -> None:
        t0 = time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in self.procs), self.errors()
            try:
                if self.probes() == [(200, 200)] * len(self.procs):
                    print(f"ready after {time.monotonic() - t0:.1f} s", file=sys.stderr)
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError("not ready: " + self.errors())

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> list[int]:
        for p in self.procs:  # sh execs python: the pid is the process's
            if p.poll() is None:
                p.send_signal(sig)
        return [p.wait(timeout=timeout_s) for p in self.procs]

    def errors(self) -> str:
        out = []
        for p in self.procs:
            if p.poll() is not None and p.stderr:
                out.append(p.stderr.read().decode(errors="replace")[-1500:])
        return "\n".join(out)

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


def produce_keyed(topic: str, events: list[dict]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": BROKER})
    for ev in events:  # keyed by customer, as the README's production rule says
        producer.produce(topic, value=orjson.dumps(ev), key=ev["customer_id"].encode())
    assert producer.flush(30) == 0


def wait_scored(topic: str, n: int, procs: list[subprocess.Popen], timeout_s: float = 180) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        have = _messages_in(topic, BROKER)
        if have >= n or any(p.poll() is not None for p in procs):
            return have
        time.sleep(0.2)
    return _messages_in(topic, BROKER)


def test_the_charts_start_up_survives_a_kill_and_a_rescale(fraud_env, tmp_path):
    t = topics("rehearsal")
    create_topics(t, partitions=6)  # even over 2 and over 3 processes
    events = stream_transactions(5_000, seed=23, spec=fraud_env.spec)
    first, second = events[:3_500], events[3_500:]
    produce_keyed(t["in"], first)

    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("STREAMSCORE_", "SCORING_", "IOT_", "KAFKA_OPT_", "BYTEWAX_"))}
    base.update(PYTHON=sys.executable, KAFKA_BOOTSTRAP_SERVERS=BROKER,  # the Secret's
                STREAMSCORE_INPUT_TOPIC=t["in"], STREAMSCORE_SCORED_TOPIC=t["scored"],
                STREAMSCORE_ALERTS_TOPIC=t["alerts"], STREAMSCORE_DEAD_LETTER_TOPIC=t["dead"],
                STREAMSCORE_KAFKA__GROUP=f"rehearsal-{uuid.uuid4().hex[:8]}", STREAMSCORE_IO__BATCH_SIZE="50",
                STREAMSCORE_FEAST__REPO=str(fraud_env.repo), STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry),
                STREAMSCORE_LOG__LEVEL="WARNING")
    two = Cluster(tmp_path, base, ())
    settings_toml = render()  # the settings ConfigMap's content is the pods' settings file
    (cm,) = [d for d in settings_toml if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-settings")]
    (tmp_path / "streamscore.toml").write_text(cm["data"]["streamscore.toml"])
    assert [p.env["STREAMSCORE_SOURCE"] for p in two.pods] == ["kafka", "kafka"]  # the chart's settings.env

    # 1. two processes; SIGKILL process 1 mid-stream; restart both with the same environment
    two.start()
    try:
        two.wait_ready()
        assert two.partitions() == [["part-0.sqlite3"], ["part-1.sqlite3"]]  # one each, created once
        killed_at = wait_scored(t["scored"], 1_000, two.procs)
        os.kill(two.procs[1].pid, signal.SIGKILL)
        two.procs[1].wait(timeout=30)
        try:  # the cluster is down without its peer: process 0 ends (else the kubelet's liveness would)
            two.procs[0].wait(timeout=30)
        except subprocess.TimeoutExpired:
            two.procs[0].kill()
            two.procs[0].wait(timeout=30)
        assert killed_at > 0
        two.start()  # the same environment: the init step keeps the partitions, the flow resumes
        assert two.partitions() == [["part-0.sqlite3"], ["part-1.sqlite3"]]
        two.wait_ready()
        ids_first = {e["transaction_id"] for e in first}
        seen: set[str] = set()
        deadline = time.monotonic() + 180
        while not ids_first <= seen and time.monotonic() < deadline:
            seen |= {k for k, _ in consume_all(t["scored"], timeout_s=10, idle_s=1.0)}
            seen |= {k for k, _ in consume_all(t["dead"], timeout_s=3, idle_s=1.0)}
        assert ids_first <= seen, len(ids_first - seen)
        # 2. scale 2 -> 3 (docs/kubernetes.md, Scaling): stop the cluster, upgrade with the
        # install's partitions pinned, start all three; pod-2's volume is new and empty
        assert two.stop() == [0, 0], two.errors()
    finally:
        two.kill_all()
    three = Cluster(tmp_path, base, ("flows.fraud.processes=3", "flows.fraud.recovery.partitions=2",
                                     "flows.fraud.recovery.initialProcesses=2"))
    produce_keyed(t["in"], second)
    # meanwhile, an uninterrupted single-process run over the whole input, into other topics
    u = topics("rehearsal-straight")
    create_topics(u)
    straight = {**base, "STREAMSCORE_SOURCE": "kafka", "STREAMSCORE_OUTPUT": "kafka", "STREAMSCORE_KAFKA__TAIL": "false",
                "STREAMSCORE_SCORED_TOPIC": u["scored"], "STREAMSCORE_ALERTS_TOPIC": u["alerts"],
                "STREAMSCORE_DEAD_LETTER_TOPIC": u["dead"], "STREAMSCORE_KAFKA__GROUP": f"straight-{t['in']}"}
    straight_run = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.fraud:flow"], cwd=ROOT,
                                    env=straight, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    three.start()
    try:
        assert three.partitions() == [["part-0.sqlite3"], ["part-1.sqlite3"], []]
        three.wait_ready()
        ids_second = {e["transaction_id"] for e in second}
        seen = set()
        deadline = time.monotonic() + 180
        while not ids_second <= seen and time.monotonic() < deadline:
            seen |= {k for k, _ in consume_all(t["scored"], timeout_s=10, idle_s=1.0)}
            seen |= {k for k, _ in consume_all(t["dead"], timeout_s=3, idle_s=1.0)}
        assert ids_second <= seen, len(ids_second - seen)
        assert three.stop() == [0, 0, 0], three.errors()
    finally:
        three.kill_all()
        if straight_run.poll() is None and sys.exc_info()[0] is not None:
            straight_run.kill()

    # 3. the uninterrupted run's records
    _, err = straight_run.communicate(timeout=300)
    assert straight_run.returncode == 0, err.decode()[-2000:]
    want = {k: tuple(v.get(f) for f in KEPT) for k, v in consume_all(u["scored"], expected=len(events), ended=True)}
    got_all = consume_all(t["scored"], expected=len(events), ended=True)
    dead = {k for k, _ in consume_all(t["dead"], ended=True)}
    got = {k: tuple(v.get(f) for f in KEPT) for k, v in got_all}  # the last record of each id
    assert set(got) | dead == {e["transaction_id"] for e in events}  # every event scored or dead-lettered
    assert got == want  # every customer's state as an uninterrupted run's, after the kill and the rescale
