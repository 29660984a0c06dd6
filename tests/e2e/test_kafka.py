"""Kafka in, Kafka out against a real Apache Kafka broker; Feast served from a real Redis.

`make test` starts a local broker (scripts/kafka.sh) and redis-server
(scripts/redis.sh) when none is reachable. Each test uses its own topics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from settings.config import FraudConfig
from dataflows.fraud import build_flow
from dataflows.connectors.kafka import KafkaUnavailable, check_broker
from cli.replay import ensure_topic, producer_for, replay
from datagen.transactions import corrupt_events, stream_transactions
from features.records import ValidationError
from features.transactions import parse_transaction
from tests.conftest import ROOT, apply_and_materialize, make_feature_repo

pytestmark = pytest.mark.kafka

BROKER = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS = os.environ.get("REDIS_CONNECTION_STRING", "127.0.0.1:6379")
UNDECODABLE = b"\xff\xfe not utf-8 \x00"


def topics(prefix: str) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {k: f"{prefix}-{k}-{run}" for k in ("in", "scored", "alerts", "dead")}


def kafka_env(t: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        "STREAMSCORE_SOURCE": "kafka",
        "STREAMSCORE_OUTPUT": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": BROKER,
        "STREAMSCORE_INPUT_TOPIC": t["in"],
        "STREAMSCORE_SCORED_TOPIC": t["scored"],
        "STREAMSCORE_ALERTS_TOPIC": t["alerts"],
        "STREAMSCORE_DEAD_LETTER_TOPIC": t["dead"],
        "STREAMSCORE_KAFKA__TAIL": "false",
        "STREAMSCORE_IO__BATCH_SIZE": "250",
        **extra,
    }


def create_topics(t: dict[str, str], partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": BROKER})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions if k == "in" else 2,
                                            replication_factor=1) for k, name in t.items()])
    for f in futures.values():
        f.result(timeout=30)


def produce(topic: str, events: list) -> None:
    """Produce with plain confluent-kafka: dicts as JSON, bytes as they are."""
    p = Producer({"bootstrap.servers": BROKER})
    for ev in events:
        value = ev if isinstance(ev, bytes) else (ev.encode() if isinstance(ev, str) else orjson.dumps(ev))
        key = ev.get("transaction_id", "").encode() if isinstance(ev, dict) else None
        p.produce(topic, value=value, key=key)
    assert p.flush(30) == 0


def consume_all(topic: str, expected: int | None = None, timeout_s: float = 60.0,
                idle_s: float = 3.0, ended: bool = False) -> list[tuple[str, dict]]:
    """All messages of ``topic`` as (key, value) read by a plain confluent-kafka consumer.

    ``ended``: nothing writes to the topic any more (its flow has ended), so its end offsets
    say how many messages it holds: stops once it has read them all (at least ``expected``),
    without waiting for more. Else, while something may still write: stops at ``expected``
    messages, or after ``idle_s`` without a message.
    """
    c = Consumer({"bootstrap.servers": BROKER, "group.id": f"test-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": "false"})
    if ended:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        held = sum(hi - lo for lo, hi in (c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts))
        expected = max(expected or 0, held)
    c.subscribe([topic])
    out: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline and not (ended and len(out) >= expected):
            msg = c.poll(0.5)
            if msg is None:
                if expected is None and out and time.monotonic() - last > idle_s:
                    break
                if expected is not None and len(out) >= expected and time.monotonic() - last > idle_s:
                    break
                continue
            if msg.error():
                continue
            out.append(((msg.key() or b"").decode(), orjson.loads(msg.value())))
            last = time.monotonic()
    finally:
        c.close()
    return out


def input_events(env) -> list:
    clean = stream_transactions(1200, seed=11, spec=env.spec)
    return corrupt_events(clean, rate=0.03, seed=11) + [UNDECODABLE, b"{not json"]


def valid_ids(events: list) -> set[str]:
    ids = set()
    for e in events:
        try:
            ids.add(parse_transaction(e).transaction_id)
        except ValidationError:
            pass
    return ids


def check_outputs(t: dict[str, str], events: list) -> tuple[list, list, list]:
    n = len(events)
    scored = consume_all(t["scored"], ended=True)
    dead = consume_all(t["dead"], ended=True)
    alerts = consume_all(t["alerts"], timeout_s=15, ended=True)
    assert len(scored) + len(dead) == n, (len(scored), len(dead), n)
    # Keys are the event ids; every valid event is there exactly once.
    keys = [k for k, _ in scored]
    assert len(set(keys)) == len(keys)
    assert all(k == v["transaction_id"] for k, v in scored)
    assert set(keys) == valid_ids(events)
    # Alerts are exactly the non-NORMAL scored records.
    non_normal = {k: v for k, v in scored if v["status"] != "NORMAL"}
    assert non_normal and {k: v for k, v in alerts} == non_normal and len(alerts) == len(non_normal)
    # Undecodable messages are dead letters pointing at their partition and offset.
    undecodable = [v for _, v in dead if "not valid JSON" in v["error"]]
    assert len(undecodable) >= 2 and all(v["partition"] is not None and v["offset"] is not None
                                         for v in undecodable)
    return scored, alerts, dead


def test_kafka_in_kafka_out_exactly_n(fraud_env):
    t = topics("fraud")
    create_topics(t)
    events = input_events(fraud_env)
    produce(t["in"], events)
    cfg = FraudConfig.from_env(kafka_env(t, STREAMSCORE_FEAST__REPO=str(fraud_env.repo),
                                         STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry)))
    from bytewax.testing import run_main

    run_main(build_flow(cfg))
    scored, _, _ = check_outputs(t, events)
    assert all(v["customer_known"] for _, v in scored)


@pytest.mark.redis
def test_kafka_with_redis_online_store(fraud_env, tmp_path, monkeypatch):
    import redis

    # a database of its own (db 9): emptied before and after without touching what tests
    # running alongside keep in db 0
    monkeypatch.setenv("REDIS_CONNECTION_STRING", f"{REDIS.split(',')[0]},db=9")
    host, port = REDIS.split(",")[0].split(":")
    client = redis.Redis(host=host, port=int(port), db=9)
    client.flushdb()
    repo = make_feature_repo(tmp_path / "repo", fraud_env.repo / "data")
    apply_and_materialize(repo, "feature_store.redis.yaml")
    assert client.dbsize() > 0, "materialization wrote nothing to Redis"
    # the fetcher's read (the online store's own online_read) gives what get_online_features does
    from features.store import _DirectRead, feast_fetcher

    fetch = feast_fetcher(repo, "fraud_scoring", "customer_profile", "customer_id", "feature_store.redis.yaml")
    import pandas as pd

    keys = pd.read_parquet(fraud_env.repo / "data" / "customer_profile.parquet")["customer_id"].unique().tolist()
    keys = keys[:300] + ["C999999"]
    assert fetch(keys) == fetch.via_get_online_features(keys) and isinstance(fetch._direct, _DirectRead)
    assert 0 < sum(v["avg_transaction_amount"] is not None for v in fetch(keys).values()) < len(keys)

    t = topics("redis")
    create_topics(t)
    events = input_events(fraud_env)
    produce(t["in"], events)
    cfg = FraudConfig.from_env(kafka_env(t, STREAMSCORE_FEAST__REPO=str(repo),
                                         STREAMSCORE_FEATURE_STORE_YAML="feature_store.redis.yaml",
                                         STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry)))
    from bytewax.testing import run_main

    run_main(build_flow(cfg))
    scored, _, _ = check_outputs(t, events)
    # Served from Redis: the profiles are there (and stop being there without Redis data).
    assert all(v["customer_known"] and v["merchant_known"] for _, v in scored)
    client.flushdb()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stream_run_scores_while_running_and_stops_cleanly(fraud_env, sig):
    t = topics("stream")
    create_topics(t)
    env = {**os.environ, **kafka_env(t, STREAMSCORE_KAFKA__TAIL="true", STREAMSCORE_IO__BATCH_SIZE="100",
                                     STREAMSCORE_FEAST__REPO=str(fraud_env.repo),
                                     STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry))}
    proc = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.fraud:flow"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        waves = [stream_transactions(300, seed=s, spec=fraud_env.spec) for s in (21, 22)]
        for i, wave in enumerate(waves):  # produced while the flow runs
            for ev in wave:
                ev["transaction_id"] = f"w{i}-{ev['transaction_id']}"
            produce(t["in"], wave)
            time.sleep(1.0)
        n = sum(map(len, waves))
        scored = consume_all(t["scored"], expected=n, timeout_s=90, idle_s=1.0)
        if len(scored) != n:  # what the flow said, and where it stands (dataflows.startup.dump_stacks_on_signal)
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                proc.kill()
            said, _ = proc.communicate(timeout=30)
            pytest.fail(f"{len(scored)}/{n} scored in 90 s (flow exit code {proc.returncode}); its output and "
                        f"stacks:\n{said.decode(errors='replace')[-6000:]}")
        assert len(scored) == n
        assert proc.poll() is None, "a tailing flow must keep running"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in text, text[-2000:]
    assert '"event": "stopping"' in text
    # Nothing produced by the flow was lost, nothing duplicated.
    again = consume_all(t["scored"], expected=n, timeout_s=30, ended=True)
    assert sorted(k for k, _ in again) == sorted(e["transaction_id"] for w in waves for e in w)


def test_output_topic_is_created_when_the_sink_starts_not_by_its_first_record():
    """A broker that creates topics on first use takes about 100 ms to create one; an output's
    first record (the run's first alert, maybe well into a live run) waited that long on the
    worker's thread. The sink's producer asks for its topic when built, before any batch."""
    from dataflows.connectors.kafka.sink import ReliableKafkaSink

    topic = f"warm-output-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BROKER})
    assert topic not in admin.list_topics(timeout=10).topics  # listing all topics creates none
    part = ReliableKafkaSink(BROKER, topic).build("alerts_out", 0, 1)
    try:
        meta = admin.list_topics(timeout=10).topics
        assert topic in meta and meta[topic].partitions, "the sink's topic exists before its first record"
    finally:
        part.close()
        for f in admin.delete_topics([topic]).values():
            f.result(timeout=30)


def test_unreachable_broker_is_a_one_line_error():
    env = {**os.environ, "STREAMSCORE_SOURCE": "kafka", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
           "STREAMSCORE_KAFKA__CHECK_TIMEOUT_S": "2"}
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.fraud:flow"], cwd=ROOT, env=env,
                         capture_output=True, timeout=60)
    assert res.returncode == 2
    err = res.stderr.decode().strip().splitlines()
    assert "error: KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:1': broker unreachable after 2s" in "\n".join(err), err[-3:]
    assert all(line.startswith("error: ") for line in err), err
    assert "Traceback" not in res.stderr.decode()
    assert time.monotonic() - start < 50


def test_secrets_are_not_logged_or_put_in_errors(monkeypatch):
    import dataflows.connectors.kafka as kafka_mod
    import dataflows.connectors.kafka.source as source_mod

    logged: list[tuple] = []

    class Recorder:
        def info(self, *args, **kwargs):
            logged.append((args, kwargs))

    monkeypatch.setattr(source_mod, "log", Recorder())
    t = topics("secret")
    create_topics(t)
    secret = "hunter2-" + uuid.uuid4().hex
    kafka_mod.kafka_source(BROKER, t["in"], options={"sasl.password": secret})
    assert logged and "sasl.password" in repr(logged)  # the option is named...
    assert secret not in repr(logged)  # ...its value never
    with pytest.raises(KafkaUnavailable, match="127.0.0.1:1") as info:
        check_broker("127.0.0.1:1", {"sasl.password": secret}, timeout_s=1)
    assert secret not in str(info.value)
    with pytest.raises(kafka_mod.KafkaOptionError) as bad:
        kafka_mod.check_options({"acks": secret})  # an invalid value: named, never shown
    assert "KAFKA_OPT_ACKS" in str(bad.value) and secret not in str(bad.value)


def test_replay_tool_produces_keyed_events_at_a_rate():
    from settings.config import KafkaConfig

    topic = f"replay-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=BROKER)
    assert ensure_topic(kafka, topic, 3) == 3
    # visible as soon as it returns: a flow started next checks its topics exist
    assert check_broker(BROKER, topics=(topic,)) == {topic: 3}
    events = stream_transactions(200, seed=1)
    stats = replay(events, kafka, topic, lambda e: e["transaction_id"], rate=400, progress=False)
    assert stats["sent"] == 200 and stats["seconds"] >= 0.45  # paced: 200 events at 400/s
    got = consume_all(topic, expected=200, timeout_s=30, ended=True)
    assert sorted(k for k, _ in got) == sorted(e["transaction_id"] for e in events)
    # The CLI prints what it sent.
    res = subprocess.run([sys.executable, "-m", "cli.replay", "--events", "50", "--topic", topic,
                          "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BROKER})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("sent 50 events") and topic in res.stdout


def test_replay_reuses_a_given_producer(monkeypatch):
    """The live benchmark produces its warm-up and its paced events with ONE producer: a new
    idempotent producer holds its first messages while it connects and gets its id (about
    0.5 s on a fresh broker), which the benchmark once measured as the flow's tail."""
    import cli.replay as replay_mod
    from settings.config import KafkaConfig

    topic = f"replay-one-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=BROKER)
    ensure_topic(kafka, topic, 3)
    producer = producer_for(kafka)
    made = []
    monkeypatch.setattr(replay_mod, "producer_for", lambda k: made.append(k) or producer)
    events = stream_transactions(60, seed=2)
    replay(events[:30], kafka, topic, lambda e: e["transaction_id"], progress=False, producer=producer)
    replay(events[30:], kafka, topic, lambda e: e["transaction_id"], rate=600, progress=False, producer=producer)
    assert made == []  # no second client
    got = consume_all(topic, expected=60, timeout_s=30, idle_s=1.0)
    assert sorted(k for k, _ in got) == sorted(e["transaction_id"] for e in events)
    replay(events[:1], kafka, topic, lambda e: e["transaction_id"], progress=False)
    assert len(made) == 1  # without one, replay makes its own


def test_replayed_demo_events_score_as_the_file_run_per_customer(fraud_env, tmp_path):
    """`cli.replay` keys by customer, so a Kafka-to-Kafka run over the demo's events (the
    generator's, replayed into 3 partitions) gives every transaction the streaming features
    of the run over the same events in order, and no late events. What may differ: the
    shared detector's score (``anomaly_score``, so ``risk_score`` and ``status``): it is
    one detector per shard fed by many customers, and the partitions interleave the
    customers in another order than the generator."""
    from bytewax.testing import run_main

    from features.transactions import STREAM_FEATURES

    n, seed = 4000, 5
    # (a generous lookup timeout: on a loaded machine a lookup falling back to defaults would
    # change fraud_score; feature_fallback is checked below)
    common = dict(STREAMSCORE_FEAST__REPO=str(fraud_env.repo), STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry),
                  STREAMSCORE_FEAST__LOOKUP_TIMEOUT_S="30")
    file_cfg = FraudConfig.from_env({"STREAMSCORE_SOURCE": "generator", "STREAMSCORE_IO__GENERATOR_EVENTS": str(n),
                                     "STREAMSCORE_IO__GENERATOR_SEED": str(seed), "STREAMSCORE_IO__OUTPUT_DIR": str(tmp_path),
                                     "STREAMSCORE_INFERENCE_LOG__ENABLED": "false", **common})
    run_main(build_flow(file_cfg))
    by_file = {r["transaction_id"]: r for r in map(orjson.loads, (tmp_path / "scored.jsonl").read_bytes().splitlines())}

    t = topics("replayed")
    create_topics(t)
    res = subprocess.run([sys.executable, "-m", "cli.replay", "--events", str(n), "--seed", str(seed),
                          "--bad-rate", str(file_cfg.io.bad_rate), "--topic", t["in"], "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BROKER})
    assert res.returncode == 0, res.stderr
    assert all(line.startswith("{") for line in res.stderr.splitlines()), res.stderr  # librdkafka's lines too
    run_main(build_flow(FraudConfig.from_env(kafka_env(t, STREAMSCORE_INFERENCE_LOG__ENABLED="false", **common))))
    by_kafka = dict(consume_all(t["scored"], expected=len(by_file), ended=True))

    assert set(by_kafka) == set(by_file) and len(by_file) > 0.99 * n
    assert not any(r["feature_fallback"] for r in (*by_file.values(), *by_kafka.values()))
    kept = (*STREAM_FEATURES, "late_event", "amount_score", "fraud_score")
    differ = {k: [f for f in kept if by_kafka[k].get(f) != r.get(f)] for k, r in by_file.items()}
    assert {k: d for k, d in differ.items() if d} == {}
    assert not any(r["late_event"] for r in by_kafka.values())
    customers = {r["customer_id"] for r in by_file.values()}
    assert sum(1 for c in customers if sum(r["customer_id"] == c for r in by_file.values()) > 1) > 100


def test_kafka_options_pass_through_env():
    cfg = FraudConfig.from_env({"KAFKA_OPT_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_OPT_SASL_MECHANISM": "PLAIN"})
    assert cfg.io.kafka.options == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}


def test_iot_kafka_in_kafka_out_exactly_n():
    from bytewax.testing import run_main

    from settings.config import IoTConfig
    from dataflows.iot import build_flow as build_iot_flow
    from datagen.sensors import generate_readings

    t = topics("iot")
    create_topics(t)
    readings: list = list(generate_readings(devices=6, readings=900, seed=5))
    readings[10]["temperature"] = "warm"  # a dead letter
    readings.append(UNDECODABLE)
    p = Producer({"bootstrap.servers": BROKER})
    for r in readings:
        p.produce(t["in"], value=r if isinstance(r, bytes) else orjson.dumps(r))
    assert p.flush(30) == 0
    run_main(build_iot_flow(IoTConfig.from_env(kafka_env(t, STREAMSCORE_IOT__DEVICE_PROFILE="false"))))
    scored = consume_all(t["scored"], ended=True)
    dead = consume_all(t["dead"], ended=True)
    alerts = consume_all(t["alerts"], timeout_s=15, ended=True)
    assert len(scored) + len(dead) == len(readings)
    assert len(dead) >= 2 and any(v.get("offset") is not None for _, v in dead)
    # Keys are the reading ids: device and timestamp.
    assert all(k == v["id"] and k.startswith(f"{v['device_id']}@") for k, v in scored)
    assert len({k for k, _ in scored}) == len(scored)
    non_normal = {k: v for k, v in scored if v["status"] != "NORMAL"}
    assert {k: v for k, v in alerts if v["kind"] == "reading"} == non_normal


def test_restart_without_recovery_continues_from_the_committed_offsets(fraud_env):
    """STREAMSCORE_KAFKA__START=committed: a second run without recovery scores only what
    arrived since the first; `earliest` (the default) scores the whole topic again."""
    from bytewax.testing import run_main

    from confluent_kafka import TopicPartition

    t = topics("offsets")
    create_topics(t)
    group = f"test-{uuid.uuid4().hex[:8]}"
    # The group coordinator must be up (a fresh broker creates __consumer_offsets on first use).
    c = Consumer({"bootstrap.servers": BROKER, "group.id": group})
    try:
        c.committed([TopicPartition(t["in"], 0)], timeout=60)
    finally:
        c.close()
    first = stream_transactions(300, seed=31, spec=fraud_env.spec)
    produce(t["in"], first)
    env = kafka_env(t, STREAMSCORE_FEAST__REPO=str(fraud_env.repo), STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry),
                    STREAMSCORE_KAFKA__GROUP=group, STREAMSCORE_KAFKA__START="committed")
    run_main(build_flow(FraudConfig.from_env(env)))
    assert len(consume_all(t["scored"], expected=300, ended=True)) == 300
    second = stream_transactions(200, seed=32, spec=fraud_env.spec)
    for ev in second:
        ev["transaction_id"] = f"second-{ev['transaction_id']}"
    produce(t["in"], second)
    run_main(build_flow(FraudConfig.from_env(env)))
    scored = consume_all(t["scored"], expected=500, ended=True)
    keys = [k for k, _ in scored]
    assert len(keys) == 500 and len(set(keys)) == 500  # nothing re-scored
    assert {k for k in keys if k.startswith("second-")} == {e["transaction_id"] for e in second}
    # `earliest` reads the topic from the start again: the choice is the user's, and documented
    run_main(build_flow(FraudConfig.from_env({**env, "STREAMSCORE_KAFKA__START": "earliest"})))
    assert len(consume_all(t["scored"], expected=1000, ended=True)) == 1000
