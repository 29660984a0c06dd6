"""Produce events to a flow's input topic, at a rate or as fast as possible.

    python -m dataflows.replay [--flow fraud|iot] [--input FILE | --events N --seed S]
                               [--rate EVENTS_PER_S] [--topic T] [--partitions P]

Events come from the flow's generator (default) or from a ``.jsonl``, ``.csv``
or ``.parquet`` file. Each message's key is the event's id (``transaction_id``;
``device_id`` and ``timestamp`` for readings) and its value the event as JSON.
The topic is created with ``--partitions`` partitions when it does not exist.
Broker and librdkafka settings come from ``KAFKA_BOOTSTRAP_SERVERS`` and
``KAFKA_OPT_*``, as for the flows. Prints what it sent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from dataflows.config import Env, KafkaConfig
from dataflows.kafka import check_broker, client_config

__all__ = ["replay", "ensure_topic", "FLOWS"]


def _fraud_events(n: int, seed: int, bad_rate: float) -> Iterable[Any]:
    from datagen.transactions import iter_stream

    return iter_stream(n, seed, bad_rate)


def _iot_events(n: int, seed: int, bad_rate: float) -> Iterable[Any]:
    from datagen.sensors import generate_readings

    return generate_readings(readings=n, seed=seed)


def _fraud_key(ev: Any) -> str:
    return str(ev.get("transaction_id", "")) if isinstance(ev, dict) else ""


def _iot_key(ev: Any) -> str:
    return f"{ev.get('device_id', '')}@{ev.get('timestamp', '')}" if isinstance(ev, dict) else ""


#: flow -> (input topic, generator, message key)
FLOWS: dict[str, tuple[str, Callable[[int, int, float], Iterable[Any]], Callable[[Any], str]]] = {
    "fraud": ("transactions", _fraud_events, _fraud_key),
    "iot": ("iot-readings", _iot_events, _iot_key),
}


def read_file(path: Path) -> Iterator[Any]:
    """Events of a file: JSON Lines lines as text (even malformed ones), CSV/Parquet rows as dicts."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with path.open("rb") as f:
            for line in f:
                if line.strip():
                    yield line.rstrip(b"\r\n")
    elif suffix in (".csv", ".parquet"):
        import pandas as pd

        df = pd.read_csv(path, dtype=str, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(path)
        yield from df.to_dict("records")
    else:
        raise SystemExit(f"replay: {path}: expected a .jsonl, .csv or .parquet file")


def ensure_topic(kafka: KafkaConfig, topic: str, partitions: int) -> int:
    """Create ``topic`` when missing; returns its partition count."""
    existing = check_broker(kafka, (topic,))
    if topic in existing:
        return existing[topic]
    admin = AdminClient(client_config(kafka))
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
    try:
        fut.result(timeout=30)
    except Exception as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
    return partitions


def replay(
    events: Iterable[Any],
    kafka: KafkaConfig,
    topic: str,
    key: Callable[[Any], str],
    rate: float | None = None,
    total: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Produce ``events``; paced to ``rate`` events/s when given. Returns counts."""
    from tqdm import tqdm

    producer = Producer({"linger.ms": "5", "enable.idempotence": "true", **client_config(kafka)})
    failures: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    sent = nbytes = 0
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="ev", disable=not progress, file=sys.stderr)
    for ev in events:
        value = ev if isinstance(ev, bytes) else (ev.encode() if isinstance(ev, str) else orjson.dumps(ev))
        k = key(ev).encode() or None
        while True:
            try:
                producer.produce(topic, value=value, key=k, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        sent += 1
        nbytes += len(value)
        bar.update(1)
        if rate:
            ahead = sent / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
    left = producer.flush(60)
    bar.close()
    seconds = time.perf_counter() - t0
    if left or failures:
        raise RuntimeError(f"replay: {left} messages undelivered, {len(failures)} rejected "
                           f"(first: {failures[:1]}) on topic {topic!r}")
    return {"topic": topic, "sent": sent, "bytes": nbytes, "seconds": round(seconds, 3),
            "events_per_s": round(sent / seconds, 1) if seconds > 0 else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Produce events to a flow's input topic.")
    p.add_argument("--flow", choices=sorted(FLOWS), default="fraud")
    p.add_argument("--input", type=Path, help="a .jsonl, .csv or .parquet file (default: generate)")
    p.add_argument("--events", type=int, default=20_000, help="generated events")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bad-rate", type=float, default=0.0, help="share of malformed generated events")
    p.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    p.add_argument("--topic", default=None, help="default: SCORING_INPUT_TOPIC or the flow's input topic")
    p.add_argument("--partitions", type=int, default=3, help="partitions when creating the topic")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    default_topic, generate, key = FLOWS[a.flow]
    env = Env()
    kafka = KafkaConfig.from_env(env, {"input": default_topic, "scored": "", "alerts": "", "dead_letter": ""})
    topic = a.topic or kafka.input_topic
    partitions = ensure_topic(kafka, topic, a.partitions)
    events = read_file(a.input) if a.input else generate(a.events, a.seed, a.bad_rate)
    stats = replay(events, kafka, topic, key, a.rate, None if a.input else a.events, not a.no_progress)
    print(f"sent {stats['sent']} events ({stats['bytes']} bytes) to {topic} ({partitions} partitions) "
          f"on {kafka.bootstrap_servers} in {stats['seconds']}s: {stats['events_per_s']} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
