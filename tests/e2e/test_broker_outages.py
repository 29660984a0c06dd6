"""Kafka outages during a run: the broker stopped or crashed, an output topic that
cannot take a record (too large, missing, deleted). Real broker, real flow.

Each Kafka test runs ``python -m bytewax.run "dataflows.fraud:get_flow()"`` Kafka to
Kafka with recovery on, against a broker of its own: ``scripts/kafka.sh`` on free
ports, in a temporary data dir, with ``auto.create.topics.enable=false``. So it can
stop, crash and restart that broker (``down``/``kill`` then ``up`` keep its data)
without touching the broker other tests use. Every test ends with the broker up, and
the module ends by removing it. What they check, for ``N`` input events:

* stopped for a few seconds (less than ``message.timeout.ms``): the flow waits
  (``kafka_delivery_waiting``) and carries on; every id exactly once, exit 0;
* crashed for longer than ``message.timeout.ms``: one ``kafka_delivery_failed``
  error line naming the topic and ``_MSG_TIMED_OUT``, non-zero exit; restarted with
  recovery once the broker is back, every id is delivered, and the repeats are at
  most what was delivered before the failure;
* a record larger than the topic's ``max.message.bytes``, the dead-letter topic
  missing, the scored topic deleted mid-run: one error line naming the topic and
  the broker's reason, non-zero exit; after the fix, a restart with recovery
  delivers every id (a deleted topic takes the records it held with it).

Run them alone with ``.venv/bin/python -m pytest -q tests/e2e/test_broker_outages.py``
(the timings each test measured are printed with ``-s``).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from datagen.transactions import stream_transactions

ROOT = Path(__file__).resolve().parents[2]
FLOW = [sys.executable, "-m", "bytewax.run", "dataflows.fraud:get_flow()"]


# --- a broker of our own ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    """A ``scripts/kafka.sh`` broker on its own ports and data dir."""

    data_dir: Path
    port: int = field(default_factory=_free_port)
    controller_port: int = field(default_factory=_free_port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def sh(self, *args: str, timeout: float = 120) -> float:
        """Run ``kafka.sh args``; returns the seconds it took."""
        env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_CONTROLLER_PORT": str(self.controller_port),
               "KAFKA_DATA_DIR": str(self.data_dir), "KAFKA_AUTO_CREATE_TOPICS": "false",
               # after `kill`, `up` waits for the dead broker's registration to expire: 3 s, not 9
               "KAFKA_BROKER_SESSION_TIMEOUT_MS": "3000"}
        t0 = time.monotonic()
        done = subprocess.run(["bash", str(ROOT / "scripts" / "kafka.sh"), *args], env=env, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, f"kafka.sh {' '.join(args)}: {done.stdout}{done.stderr}"
        return time.monotonic() - t0

    def is_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def up(self) -> float:
        return self.sh("up")

    def ensure_up(self) -> None:
        """After a test, even a failed one: the broker answers for the next."""
        if not self.is_up():
            self.up()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    assert shutil.which(os.environ.get("JAVA", "java")) or os.environ.get("JAVA_HOME"), \
        "java not found: scripts/kafka.sh needs Java 17+"
    b = Broker(tmp_path_factory.mktemp("kafka-outages"))
    b.up()
    try:
        yield b
    finally:
        b.sh("down", "--purge")


# --- topics, events, outputs -----------------------------------------------------------


def make_topics(broker: Broker, prefix: str, skip: tuple[str, ...] = (), **configs: dict) -> dict[str, str]:
    """``in`` (3 partitions), ``scored``, ``alerts``, ``dead`` (2 each); ``configs[kind]``
    are topic settings; the kinds in ``skip`` are named but not created."""
    run = uuid.uuid4().hex[:8]
    t = {k: f"{prefix}-{k}-{run}" for k in ("in", "scored", "alerts", "dead")}
    new = [NewTopic(name, 3 if k == "in" else 2, 1, config=configs.get(k, {})) for k, name in t.items() if k not in skip]
    admin = AdminClient({"bootstrap.servers": broker.address})  # kept until the futures are done
    for f in admin.create_topics(new).values():
        f.result(timeout=30)
    return t


def admin_call(broker: Broker, method: str, *args) -> None:
    """An AdminClient call, waited for (the client must live until its futures are done)."""
    admin = AdminClient({"bootstrap.servers": broker.address})
    for f in getattr(admin, method)(*args).values():
        f.result(timeout=30)


def create_topic(broker: Broker, name: str) -> None:
    admin_call(broker, "create_topics", [NewTopic(name, 2, 1)])


def produce(broker: Broker, topic: str, events: list[dict]) -> None:
    """Keyed by customer, as the README says: a customer's events stay in order."""
    p = Producer({"bootstrap.servers": broker.address, "message.max.bytes": "2000000"})
    for ev in events:
        p.produce(topic, value=orjson.dumps(ev), key=ev["customer_id"].encode())
    assert p.flush(30) == 0


def count(broker: Broker, topic: str) -> int:
    """Messages in ``topic`` (end offsets), -1 while the broker does not answer."""
    c = Consumer({"bootstrap.servers": broker.address, "group.id": "count", "log_level": "0"})
    try:
        meta = c.list_topics(topic, timeout=5)
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                   for p in meta.topics[topic].partitions)
    except Exception:
        return -1
    finally:
        c.close()


def keys(broker: Broker, topic: str, expected: int = 0, timeout_s: float = 60.0, ended: bool = True) -> list[str]:
    """Every message key of ``topic``. ``ended``: nothing writes to it any more, so its end
    offsets say how many it holds: read that many (at least ``expected``). Else, while a flow
    may still write: until ``expected`` and then 2 s without a message; or ``timeout_s``."""
    expected = max(expected, count(broker, topic))
    c = Consumer({"bootstrap.servers": broker.address, "group.id": f"test-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": "false",
                  "fetch.message.max.bytes": "2000000"})
    c.subscribe([topic])
    out: list[str] = []
    deadline, last = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline and not (ended and len(out) >= expected):
            msg = c.poll(0.5)
            if msg is None:
                if not ended and len(out) >= expected and time.monotonic() - last > 2.0:
                    break
                continue
            if not msg.error():
                out.append((msg.key() or b"").decode())
                last = time.monotonic()
    finally:
        c.close()
    return out


def outputs(broker: Broker, t: dict[str, str], n: int) -> tuple[list[str], list[str]]:
    """Keys of the scored and dead-letter topics once the flow has ended (``n``: how many
    there should be at least; 0 when unknown)."""
    dead = keys(broker, t["dead"])
    return keys(broker, t["scored"], expected=max(n - len(dead), 0)), dead


def events_for(env, n: int, seed: int) -> list[dict]:
    events = stream_transactions(n, seed=seed, spec=env.spec)
    assert len({e["transaction_id"] for e in events}) == n
    return events


# --- the flow ---------------------------------------------------------------------------


class Run:
    """The fraud flow as a subprocess, its output lines timestamped as they come."""

    def __init__(self, env: dict[str, str], rec: Path) -> None:
        self.t0 = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen([*FLOW, "-r", str(rec), "-s", "1", "-b", "0"], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic() - self.t0, raw.decode(errors="replace").rstrip("\n")))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the flow did not end within {timeout:g}s:\n{self.tail()}")
        self._reader.join(timeout=10)
        return rc

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM: a tailing run drains and exits (0)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=30)

    def events(self, name: str) -> list[dict]:
        """The JSON log lines whose ``event`` is ``name``."""
        found = []
        for _, line in self.lines:
            if line.startswith("{") and f'"{name}"' in line:
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if rec.get("event") == name:
                    found.append(rec)
        return found

    def tail(self, n: int = 40) -> str:
        return "\n".join(line[:400] for _, line in self.lines[-n:] if not line.startswith("%"))


def flow_env(broker: Broker, t: dict[str, str], fraud_env, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_", "IOT_", "KAFKA_OPT_", "BYTEWAX_"))}
    env.update(STREAMSCORE_SOURCE="kafka", STREAMSCORE_OUTPUT="kafka", KAFKA_BOOTSTRAP_SERVERS=broker.address,
               STREAMSCORE_INPUT_TOPIC=t["in"], STREAMSCORE_SCORED_TOPIC=t["scored"], STREAMSCORE_ALERTS_TOPIC=t["alerts"],
               STREAMSCORE_DEAD_LETTER_TOPIC=t["dead"], STREAMSCORE_KAFKA__TAIL="false", STREAMSCORE_IO__BATCH_SIZE="100",
               STREAMSCORE_FEAST__REPO=str(fraud_env.repo), STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry),
               STREAMSCORE_IO__OUTPUT_DIR=str(tmp_path / "unused"))
    return {**env, **extra}


def recovery_dir(tmp_path: Path) -> Path:
    rec = tmp_path / "recovery"
    rec.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(rec), "1"], cwd=ROOT, check=True,
                   capture_output=True, timeout=60)
    return rec


def wait_for(broker: Broker, topic: str, at_least: int, run: Run, timeout_s: float = 90) -> int:
    deadline = time.monotonic() + timeout_s
    while (n := count(broker, topic)) < at_least and run.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run.alive(), f"the flow ended before the outage: make the input longer\n{run.tail()}"
    assert n >= at_least, f"only {n} records scored after {timeout_s:g}s\n{run.tail()}"
    return n


def one_failure(run: Run, topic: str | set[str], reasons: tuple[str, ...]) -> dict:
    """The run logged exactly one ``kafka_delivery_failed`` error, naming ``topic`` (or one
    of a set of topics) and one of ``reasons`` (librdkafka error codes)."""
    failed = run.events("kafka_delivery_failed")
    assert len(failed) == 1, f"{failed}\n{run.tail()}"
    [f] = failed
    topics = {topic} if isinstance(topic, str) else topic
    assert f["level"] == "error" and f["topic"] in topics, f
    assert any(r in f["error"] for r in reasons), f
    assert f["messages"] >= 1, f
    return f


def resume(env: dict[str, str], rec: Path, timeout_s: float = 120) -> Run:
    again = Run(env, rec)
    rc = again.wait(timeout_s)
    assert rc == 0, again.tail()
    assert not again.events("kafka_delivery_failed")
    return again


def report(**measured) -> None:
    print(" ".join(f"{k}={v}" for k, v in measured.items()))


# --- without a broker ---------------------------------------------------------------------


def test_delivery_timeout_is_message_timeout_ms():
    from dataflows.connectors.kafka import DELIVERY_TIMEOUT_MS, consumer_options, delivery_timeout_s

    assert delivery_timeout_s() == DELIVERY_TIMEOUT_MS / 1000 == 120.0
    assert delivery_timeout_s({"message.timeout.ms": "5000"}) == 5.0
    assert delivery_timeout_s({"delivery.timeout.ms": "7000"}) == 7.0
    assert delivery_timeout_s({"message.timeout.ms": "0"}) == float("inf")  # librdkafka: no limit
    # the output producers' settings are kept from the input consumer (it would warn it ignores them)
    assert consumer_options({"message.timeout.ms": "5000", "linger.ms": "1", "sasl.username": "u"}) == {
        "sasl.username": "u"}


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str):
        return lambda event, **kw: self.lines.append((level, event, kw))


def test_undeliverable_batch_fails_loudly_within_the_delivery_timeout(monkeypatch):
    """No broker at all: the batch is not silently dropped, it fails after
    message.timeout.ms with one error line naming the topic and librdkafka's error."""
    from bytewax.connectors.kafka import KafkaSinkMessage

    import dataflows.connectors.kafka.sink as kafka_mod  # the sink's own module: its log and Producer

    logged = Recorder()
    monkeypatch.setattr(kafka_mod, "log", logged)
    configs: list[dict] = []
    real_producer = kafka_mod.Producer

    def producer(conf: dict):
        configs.append(dict(conf))
        return real_producer(conf)

    monkeypatch.setattr(kafka_mod, "Producer", producer)
    sink = kafka_mod.ReliableKafkaSink("127.0.0.1:1", "nowhere", {"message.timeout.ms": "1500", "log_level": "0"})
    part = sink.build("out", 0, 1)
    # within the delivery timeout: librdkafka times the records out after the option's
    # 1.5 s (not the sink's default of 120 s), and the failure is that timeout
    # (_MSG_TIMED_OUT: not an earlier give-up, nor the sink's own limit a margin later)
    assert [c["message.timeout.ms"] for c in configs] == ["1500"]
    with pytest.raises(kafka_mod.KafkaDeliveryError) as info:
        part.write_batch([KafkaSinkMessage(f"k{i}".encode(), b"{}") for i in range(3)])
    assert "'nowhere'" in str(info.value) and "_MSG_TIMED_OUT" in str(info.value)
    [(level, _, failed)] = [line for line in logged.lines if line[1] == "kafka_delivery_failed"]
    assert level == "error" and failed["topic"] == "nowhere" and failed["messages"] == 3
    assert failed["first_key"] == "k0" and "Message timed out" in failed["error"]
    part.close()  # nothing left behind: closes at once


# --- a broker outage ------------------------------------------------------------------------

@pytest.mark.kafka
def test_broker_stopped_for_seconds_the_flow_waits_and_loses_nothing(fraud_env, broker, tmp_path):
    """`kafka.sh down` mid-stream, `kafka.sh up` once the flow has logged that it waits
    (WAIT_LOG_S = 5 s into its wait): shorter than message.timeout.ms (120 s by default),
    so the flow waits for the broker, then carries on. Nothing is lost or repeated (no
    restart), and the wait is in the log."""
    n = 8_000
    t = make_topics(broker, "pause")
    events = events_for(fraud_env, n, seed=23)
    produce(broker, t["in"], events)
    run = Run(flow_env(broker, t, fraud_env, tmp_path), recovery_dir(tmp_path))
    try:
        before = wait_for(broker, t["scored"], 3_000, run)
        t_down = time.monotonic()
        broker.sh("down")
        deadline = time.monotonic() + 90  # only a guard against hanging
        while not run.events("kafka_delivery_waiting") and run.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run.alive(), run.tail()  # waiting, not failed
        assert run.events("kafka_delivery_waiting"), run.tail()
        broker.up()
        outage = time.monotonic() - t_down
        rc = run.wait(120)
        after_outage = time.monotonic() - t_down
    finally:
        run.kill()
        broker.ensure_up()
    assert rc == 0, run.tail()
    assert "Traceback" not in "\n".join(line for _, line in run.lines)
    waiting = run.events("kafka_delivery_waiting")
    assert waiting and all(w["level"] == "warning" and w["topic"] in t.values() for w in waiting)
    assert run.events("kafka_delivery_resumed") and not run.events("kafka_delivery_failed")

    scored, dead = outputs(broker, t, n)
    ids = {e["transaction_id"] for e in events}
    assert set(scored) | set(dead) == ids
    repeats = len(scored) + len(dead) - len(ids)
    assert repeats == 0  # the flow never restarted: every record exactly once
    report(scored_before_outage=before, outage_s=round(outage, 1), waiting_logged=len(waiting),
           finished_s_after_outage_began=round(after_outage, 1), scored=len(scored), dead=len(dead),
           repeats=repeats)


@pytest.mark.kafka
def test_broker_crashed_longer_than_the_delivery_timeout_fails_loudly_and_recovery_loses_nothing(
        fraud_env, broker, tmp_path):
    """`kafka.sh kill` (SIGKILL) mid-stream with KAFKA_OPT_MESSAGE_TIMEOUT_MS=5000: the
    flow stops with one error line naming the topic and _MSG_TIMED_OUT, exit non-zero,
    while the broker is still down. Broker back, the same command with recovery
    delivers every id; the repeats are at most what was delivered before the failure."""
    n = 8_000
    t = make_topics(broker, "crash")
    events = events_for(fraud_env, n, seed=29)
    produce(broker, t["in"], events)
    env = flow_env(broker, t, fraud_env, tmp_path, KAFKA_OPT_MESSAGE_TIMEOUT_MS="5000")
    rec = recovery_dir(tmp_path)
    run = Run(env, rec)
    try:
        before = wait_for(broker, t["scored"], 3_000, run)
        t_kill = time.monotonic()
        broker.sh("kill")
        rc = run.wait(60)
        failed_after = time.monotonic() - t_kill
        assert not broker.is_up()  # it failed on its own, during the outage
        restart = broker.up()
    finally:
        run.kill()
        broker.ensure_up()
    assert rc != 0
    # each output topic has its own producer and all three wait out the same outage:
    # whichever times out first (scored, alerts or dead letters) names the failure
    outputs_ = {t["scored"], t["alerts"], t["dead"]}
    failure = one_failure(run, outputs_, ("_MSG_TIMED_OUT",))
    delivered = count(broker, t["scored"]) + count(broker, t["dead"])

    again = resume(env, rec)
    scored, dead = outputs(broker, t, n)
    ids = {e["transaction_id"] for e in events}
    assert set(scored) | set(dead) == ids
    repeats = len(scored) + len(dead) - len(ids)
    # records produced again are those scored after the last snapshot: already
    # delivered ones at most, never a rescore of the topic
    assert 0 <= repeats <= delivered < n, (repeats, delivered)
    report(scored_before_kill=before, failed_s_after_kill=round(failed_after, 1),
           undelivered_at_failure=failure["messages"], broker_restart_s=round(restart, 1),
           delivered_before_failure=delivered, resume_s=round(again.lines[-1][0], 1) if again.lines else None,
           scored=len(scored), dead=len(dead), repeats=repeats)


# --- an output topic that cannot take the records ---------------------------------------------


@pytest.mark.kafka
def test_record_too_large_for_the_scored_topic_stops_the_run_until_the_limit_is_raised(
        fraud_env, broker, tmp_path):
    """One event carries 400 kB of extra data; the scored topic takes 256 KiB. The run
    stops at that record, naming the topic, MSG_SIZE_TOO_LARGE and the record's key;
    with the limit raised, a restart with recovery delivers every id, the big one too."""
    n = 6_000
    t = make_topics(broker, "large", scored={"max.message.bytes": str(256 * 1024)})
    events = events_for(fraud_env, n, seed=31)
    big = events[n // 2]
    big["note"] = base64.b64encode(os.urandom(300_000)).decode()  # incompressible, ~400 kB
    produce(broker, t["in"], events)
    env = flow_env(broker, t, fraud_env, tmp_path)
    rec = recovery_dir(tmp_path)
    run = Run(env, rec)
    rc = run.wait(90)
    assert rc != 0, run.tail()
    failure = one_failure(run, t["scored"], ("MSG_SIZE_TOO_LARGE",))
    assert failure["largest_key"] == big["transaction_id"] and failure["largest_bytes"] > 256 * 1024
    assert "max.message.bytes" in failure["hint"]
    delivered = keys(broker, t["scored"])
    assert big["transaction_id"] not in delivered

    resource = ConfigResource("topic", t["scored"], incremental_configs=[
        ConfigEntry("max.message.bytes", str(2_000_000), incremental_operation=AlterConfigOpType.SET)])
    admin_call(broker, "incremental_alter_configs", [resource])
    resume(env, rec)
    scored, dead = outputs(broker, t, n)
    assert set(scored) | set(dead) == {e["transaction_id"] for e in events}
    assert big["transaction_id"] in scored
    report(failed_s=round(run.lines[-1][0], 1), refused_in_batch=failure["messages"],
           delivered_before_failure=len(delivered), repeats=len(scored) + len(dead) - n)


def values(broker: Broker, topic: str, timeout_s: float = 60.0) -> list[dict]:
    """Every message of ``topic`` as JSON: read until as many as the topic's end offsets
    say it holds (not until some idle time, which a slow consumer start could pass)."""
    n = count(broker, topic)
    c = Consumer({"bootstrap.servers": broker.address, "group.id": f"test-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": "false"})
    c.subscribe([topic])
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                out.append(orjson.loads(msg.value()))
    finally:
        c.close()
    assert len(out) == n, f"read {len(out)} of the {n} messages of {topic}"
    return out


@pytest.mark.kafka
def test_record_over_the_producer_limit_is_a_dead_letter_and_the_run_goes_on(fraud_env, broker, tmp_path):
    """librdkafka refuses a record over ``message.max.bytes`` before sending it. With the
    flow's limit at 300 kB, an event carrying 400 kB is not a poison record: its scored
    record becomes a dead letter (step ``scored_out``, naming the size and the limit,
    ``raw`` cut), its alert (if any) is not produced, and a re-delivered copy's
    ``dedup`` dead letter, as large, is cut the same way. Every id once; exit 0."""
    n = 1_500
    t = make_topics(broker, "limit")
    events = events_for(fraud_env, n, seed=41)
    big = events[n // 2]
    big["note"] = base64.b64encode(os.urandom(300_000)).decode()  # ~400 kB
    produce(broker, t["in"], events[:n // 2 + 1] + [big] + events[n // 2 + 1:])  # and a re-delivered copy
    env = flow_env(broker, t, fraud_env, tmp_path, KAFKA_OPT_MESSAGE_MAX_BYTES="300000")
    run = Run(env, recovery_dir(tmp_path))
    rc = run.wait(120)
    assert rc == 0, run.tail()
    scored, dead = outputs(broker, t, n)
    ids = [e["transaction_id"] for e in events]
    assert sorted(scored + dead) == sorted(ids + [big["transaction_id"]])  # once each, the copy too
    assert big["transaction_id"] not in scored
    letters = [d for d in values(broker, t["dead"]) if big["transaction_id"] in str(d["raw"])[:200]]
    by_step = {d["step"]: d for d in letters}
    assert sorted(by_step) == ["dead_letter_out", "scored_out"], letters
    assert "over the Kafka producer's message.max.bytes (300,000)" in by_step["scored_out"]["error"]
    assert "KAFKA_OPT_MESSAGE_MAX_BYTES" in by_step["scored_out"]["error"]
    assert all("truncated" in d["raw"] and len(d["raw"]) < 70_000 for d in letters)
    assert big["transaction_id"] not in keys(broker, t["alerts"])
    warned = run.events("kafka_record_too_large")
    assert {w["topic"] for w in warned} >= {t["scored"], t["dead"]}, warned


@pytest.mark.kafka
def test_missing_output_topic_without_auto_create_is_refused_at_start(fraud_env, broker, tmp_path):
    """The broker does not create topics and the dead-letter topic does not exist: the
    start refuses (exit 2, one error line naming the setting), before reading anything,
    instead of failing at the first dead letter, maybe hours later. Created, the run
    delivers every id, the dead letter too."""
    n = 2_000
    t = make_topics(broker, "missing", skip=("dead",))
    events = events_for(fraud_env, n, seed=37)
    bad = events[n // 2]
    bad["amount"] = "lots"
    produce(broker, t["in"], events)
    env = flow_env(broker, t, fraud_env, tmp_path)
    rec = recovery_dir(tmp_path)
    run = Run(env, rec)
    rc = run.wait(90)
    errors = [line for _, line in run.lines if line.startswith("error: ")]
    assert rc == 2 and len(errors) == 1, run.tail()
    assert f"STREAMSCORE_DEAD_LETTER_TOPIC={t['dead']!r}" in errors[0] and "auto.create.topics.enable=false" in errors[0]
    assert count(broker, t["scored"]) == 0  # nothing was read or written (end offsets: no wait)

    create_topic(broker, t["dead"])
    resume(env, rec)
    scored, dead = outputs(broker, t, n)
    assert dead == [bad["transaction_id"]]
    assert set(scored) | set(dead) == {e["transaction_id"] for e in events}


@pytest.mark.kafka
def test_scored_topic_deleted_mid_run_stops_the_run_and_recovery_delivers_what_came_after(
        fraud_env, broker, tmp_path):
    """A tailing run scores a first wave; the scored topic is then deleted (the broker
    does not re-create it) and a second wave arrives: the run stops, naming the topic.
    Re-created, the same command with recovery delivers every id of the second wave; the
    first wave's records went with the deleted topic."""
    t = make_topics(broker, "deleted")
    first, second = events_for(fraud_env, 5_000, seed=41), events_for(fraud_env, 2_000, seed=43)
    for ev in second:
        ev["transaction_id"] = f"second-{ev['transaction_id']}"
    produce(broker, t["in"], first)
    env = flow_env(broker, t, fraud_env, tmp_path, STREAMSCORE_KAFKA__TAIL="true",
                   KAFKA_OPT_TOPIC_METADATA_PROPAGATION_MAX_MS="3000")
    rec = recovery_dir(tmp_path)
    run = Run(env, rec)
    try:
        held = wait_for(broker, t["scored"], len(first), run)
        time.sleep(2)  # a snapshot after the first wave (every 1 s)
        admin_call(broker, "delete_topics", [t["scored"]])
        t_del = time.monotonic()
        produce(broker, t["in"], second)
        rc = run.wait(60)
        failed_after = time.monotonic() - t_del
    finally:
        run.kill()
    assert rc != 0, run.tail()
    one_failure(run, t["scored"], ("_UNKNOWN_PARTITION", "UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC"))

    create_topic(broker, t["scored"])
    again = Run(env, rec)
    try:
        scored = keys(broker, t["scored"], expected=len(second), timeout_s=90, ended=False)
        again.stop()
    finally:
        again.kill()
    assert again.proc.returncode == 0 and not again.events("kafka_delivery_failed"), again.tail()
    assert {e["transaction_id"] for e in second} <= set(scored)
    assert set(scored) <= {e["transaction_id"] for e in first + second}
    report(held_when_deleted=held, failed_s_after_delete=round(failed_after, 1),
           first_wave_redelivered=sum(not k.startswith("second-") for k in scored),
           second_wave_delivered=sum(k.startswith("second-") for k in scored))
