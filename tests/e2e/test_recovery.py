"""Crash recovery for real: kill -9 a running flow, restart it with Bytewax recovery,
and compare with an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from datagen.transactions import stream_transactions, write_events
from models.inference_log import FILE_PATTERN

ROOT = Path(__file__).resolve().parents[2]
KEPT = ("amount_count_1h", "amount_count_24h", "amount_sum_7d", "amount_count_7d", "time_since_last_transaction",
        "fraud_score")


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


FLOW = [sys.executable, "-m", "bytewax.run", "dataflows.fraud:get_flow()"]


@pytest.fixture(scope="module")
def file_run(fraud_env, tmp_path_factory) -> tuple[list[dict], dict[str, str], Path]:
    """The input file, the flow's environment and an uninterrupted run's output folder:
    one run for both worker layouts below (the same input and settings)."""
    tmp = tmp_path_factory.mktemp("recovery-file")
    events = stream_transactions(24_000, seed=17, spec=fraud_env.spec)
    src = tmp / "in.jsonl"
    write_events(events, src)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_", "IOT_", "KAFKA_OPT_", "BYTEWAX_"))}
    base.update(STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(src), STREAMSCORE_FEAST__REPO=str(fraud_env.repo),
                STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry), STREAMSCORE_IO__BATCH_SIZE="50")
    straight = tmp / "straight"
    subprocess.run(FLOW, cwd=ROOT, env={**base, "STREAMSCORE_IO__OUTPUT_DIR": str(straight)}, check=True,
                   capture_output=True, timeout=300)
    return events, base, straight


@pytest.mark.parametrize("before, after", [(1, 1), (2, 1)], ids=["1 worker", "2 workers resumed on 1"])
def test_file_to_file_killed_and_resumed_equals_an_uninterrupted_run(file_run, tmp_path, before, after):
    """Resumed on fewer workers too: per-key state moves to the workers that own the keys
    now, and the log partitions of the first attempt are all resumed (none is left with
    files written after the snapshot)."""
    events, base, straight = file_run
    rec, out = tmp_path / "recovery", tmp_path / "resumed"
    rec.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(rec), "1"], cwd=ROOT, check=True,
                   capture_output=True, timeout=60)
    env = {**base, "STREAMSCORE_IO__OUTPUT_DIR": str(out)}
    recovering = [*FLOW, "-r", str(rec), "-s", "1", "-b", "0"]
    proc = subprocess.Popen([*recovering, "-w", str(before)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while lines(out / "scored.jsonl") < 9_000 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = lines(out / "scored.jsonl")
    assert 0 < killed_at < len(events)

    if before > 1:  # the first attempt wrote log files from every worker's partition
        assert {m["part"] for f in (out / "inference_log").rglob("*.parquet")
                if (m := FILE_PATTERN.match(f.name))} == {str(i) for i in range(before)}
    done = subprocess.run([*recovering, "-w", str(after)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    expected = read_jsonl(straight / "scored.jsonl")
    got = read_jsonl(out / "scored.jsonl")
    ids = [r["transaction_id"] for r in got]
    # Files are continued from the last snapshot (truncated there), so nothing repeats or goes missing.
    assert len(ids) == len(set(ids)) == len(expected)
    assert len(got) + len(read_jsonl(out / "dead_letter.jsonl")) == len(events)
    # Every customer's rolling features equal the uninterrupted run's: state was restored, not rebuilt.
    want = {r["transaction_id"]: tuple(r.get(k) for k in KEPT) for r in expected}
    assert {r["transaction_id"]: tuple(r.get(k) for k in KEPT) for r in got} == want
    # The inference log too: the files written after the last snapshot were deleted at the
    # restart, so it holds every scored event exactly once.
    import pyarrow.dataset as ds

    log = ds.dataset(out / "inference_log", format="parquet", partitioning="hive").to_table(
        columns=["event_id"])["event_id"].to_pylist()
    assert len(log) == len(set(log)) == len(got) and set(log) == set(ids)


def _messages_in(topic: str, broker: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": broker, "group.id": "count", "enable.auto.commit": "false"})
    try:
        meta = c.list_topics(topic, timeout=10)
        total = 0
        for p in meta.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total
    finally:
        c.close()


@pytest.mark.kafka
def test_kafka_to_kafka_killed_and_resumed_loses_nothing(fraud_env, tmp_path):
    """kill -9 mid-stream, restart with recovery: every input id is in the outputs,
    repeats are confined to what was produced after the last snapshot, and the final
    record of every id has the rolling features of an uninterrupted run."""
    from confluent_kafka import Producer

    from tests.e2e.test_kafka import BROKER, consume_all, create_topics, topics

    t = topics("recover")
    create_topics(t)
    events = stream_transactions(30_000, seed=19, spec=fraud_env.spec)
    # Keyed by customer, as a producer of such events should be: a customer's events stay
    # in one partition, in order, so the rolling features do not depend on how the
    # partitions interleave (they would differ between any two runs otherwise).
    producer = Producer({"bootstrap.servers": BROKER})
    for ev in events:
        producer.produce(t["in"], value=orjson.dumps(ev), key=ev["customer_id"].encode())
    assert producer.flush(30) == 0
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_", "IOT_", "KAFKA_OPT_", "BYTEWAX_"))}
    base.update(STREAMSCORE_SOURCE="kafka", STREAMSCORE_OUTPUT="kafka", KAFKA_BOOTSTRAP_SERVERS=BROKER,
                STREAMSCORE_INPUT_TOPIC=t["in"], STREAMSCORE_SCORED_TOPIC=t["scored"], STREAMSCORE_ALERTS_TOPIC=t["alerts"],
                STREAMSCORE_DEAD_LETTER_TOPIC=t["dead"], STREAMSCORE_KAFKA__TAIL="false", STREAMSCORE_IO__BATCH_SIZE="100",
                STREAMSCORE_FEAST__REPO=str(fraud_env.repo), STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry),
                STREAMSCORE_IO__OUTPUT_DIR=str(tmp_path / "unused"))
    flow = [sys.executable, "-m", "bytewax.run", "dataflows.fraud:get_flow()"]
    rec = tmp_path / "recovery"
    rec.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(rec), "1"], cwd=ROOT, check=True,
                   capture_output=True, timeout=60)
    recovering = [*flow, "-r", str(rec), "-s", "1", "-b", "0"]
    proc = subprocess.Popen(recovering, cwd=ROOT, env=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _messages_in(t["scored"], BROKER) < 12_000 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = _messages_in(t["scored"], BROKER)
    done = subprocess.run(recovering, cwd=ROOT, env=base, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # An uninterrupted run over the same input, into other topics.
    u = topics("straight")
    create_topics(u)
    straight = {**base, "STREAMSCORE_SCORED_TOPIC": u["scored"], "STREAMSCORE_ALERTS_TOPIC": u["alerts"],
                "STREAMSCORE_DEAD_LETTER_TOPIC": u["dead"], "STREAMSCORE_KAFKA__START": "earliest",
                "STREAMSCORE_KAFKA__GROUP": f"straight-{t['in']}"}
    subprocess.run(flow, cwd=ROOT, env=straight, check=True, capture_output=True, timeout=300)

    want = {k: tuple(v.get(f) for f in KEPT) for k, v in consume_all(u["scored"], expected=len(events), ended=True)}
    got_all = consume_all(t["scored"], expected=len(events), ended=True)
    dead = consume_all(t["dead"], ended=True)
    got = {k: tuple(v.get(f) for f in KEPT) for k, v in got_all}  # the last record of each id
    assert set(got) | {k for k, _ in dead} == {e["transaction_id"] for e in events}
    assert got == want
    repeats = len(got_all) - len(got)
    assert killed_at > 0
    # Repeats are what was produced after the last snapshot before the kill: at most one
    # snapshot interval's worth, never a rescore of the topic.
    assert repeats < killed_at, (repeats, killed_at)

    # Alerts that stay true: the alerts topic read as the latest record per key never
    # contradicts the key's final scored record (a repeat's shared-detector score may differ
    # from the first one's, and so its status). The restarted run marks what it reads below
    # each partition's end at the restart as a possible repeat (here: all it reads, as the
    # whole input was produced before the first run), and puts an update on the alerts
    # topic for each such record that is NORMAL.
    final = {k: v for k, v in got_all}
    latest_alert = dict(consume_all(t["alerts"], ended=True))
    assert {k: a["status"] for k, a in latest_alert.items() if a["status"] != final[k]["status"]} == {}
    possible = {k for k, v in final.items() if v.get("possible_repeat")}
    assert len(possible) >= len(events) - killed_at - len(dead)  # at least what was not scored before the kill
    updates = {k for k, a in latest_alert.items() if a.get("update")}
    assert updates == {k for k in possible if final[k]["status"] == "NORMAL"}

    # Resumes you can see: one line says where the restarted run resumed, and the consumer
    # group's offsets are committed (what lag tools read): at the end, every message.
    starts = [orjson.loads(line) for line in done.stderr.splitlines()
              if line.startswith("{") and '"kafka_start"' in line]
    assert len(starts) == 1 and starts[0]["detail"].startswith(f"resumed from epoch {starts[0]['epoch']}, offsets {{")
    assert set(starts[0]["offsets"]) == {"0", "1", "2"} and 0 < sum(starts[0]["offsets"].values()) <= len(events)
    assert _committed(BROKER, "streamscore-fraud", t["in"]) == {p: n for p, n in _ends(BROKER, t["in"]).items()}


def _ends(broker: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": broker, "group.id": "ends"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def _committed(broker: str, group: str, topic: str) -> dict[int, int]:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker})
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in _ends(broker, topic)])
    [future] = admin.list_consumer_group_offsets([request]).values()
    return {tp.partition: tp.offset for tp in future.result(timeout=30).topic_partitions}
