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

from datagen.transactions import stream_transactions, write_events

ROOT = Path(__file__).resolve().parents[1]
KEPT = ("amount_count_1h", "amount_count_24h", "amount_sum_7d", "amount_count_7d", "time_since_last_transaction",
        "fraud_score")


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_file_to_file_killed_and_resumed_equals_an_uninterrupted_run(fraud_env, tmp_path):
    events = stream_transactions(40_000, seed=17, spec=fraud_env.spec)
    src = tmp_path / "in.jsonl"
    write_events(events, src)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SCORING_", "IOT_", "KAFKA_OPT_", "BYTEWAX_"))}
    base.update(SCORING_SOURCE="file", SCORING_INPUT=str(src), SCORING_FEATURE_REPO=str(fraud_env.repo),
                SCORING_MODEL_REGISTRY=str(fraud_env.registry), SCORING_BATCH_SIZE="50")
    flow = [sys.executable, "-m", "bytewax.run", "dataflows.fraud:get_flow()"]

    straight = tmp_path / "straight"
    subprocess.run(flow, cwd=ROOT, env={**base, "SCORING_OUTPUT_DIR": str(straight)}, check=True,
                   capture_output=True, timeout=300)

    rec, out = tmp_path / "recovery", tmp_path / "resumed"
    rec.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(rec), "1"], cwd=ROOT, check=True,
                   capture_output=True, timeout=60)
    env = {**base, "SCORING_OUTPUT_DIR": str(out)}
    recovering = [*flow, "-r", str(rec), "-s", "1", "-b", "0"]
    proc = subprocess.Popen(recovering, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while lines(out / "scored.jsonl") < 15_000 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = lines(out / "scored.jsonl")
    assert 0 < killed_at < len(events)

    done = subprocess.run(recovering, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
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
