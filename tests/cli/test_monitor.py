"""``streamscore log land`` as a command: its log lines are the flows' JSON lines."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import orjson
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.kafka

BROKER = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def test_log_land_logs_json_lines(tmp_path):
    from confluent_kafka import Producer

    topic = f"land-json-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": BROKER})
    p.produce(topic, b"not json")  # the broker creates the topic
    assert p.flush(30) == 0
    res = subprocess.run([sys.executable, "-m", "cli.main", "log", "land", "--topic", topic, "--to",
                          str(tmp_path / "log"), "--group", f"g-{topic}", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BROKER})
    assert res.returncode == 0, res.stderr
    assert orjson.loads(res.stdout.strip().splitlines()[-1])["skipped"] == 1
    lines = [orjson.loads(line) for line in res.stderr.strip().splitlines()]  # every line is JSON
    assert [e for e in lines if e["event"] == "landed"][0]["skipped"] == 1
