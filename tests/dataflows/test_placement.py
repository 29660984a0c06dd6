"""Scale-out: shard keys spread over every worker, and a flow gives the same per-key
results with 1 worker, 2 worker threads, 2 local processes and a 2-process cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main

from dataflows.placement import enough_shards, shard_keys, total_workers, worker_of
from features.records import shard_of
from models.inference_log import FILE_PATTERN
from datagen.transactions import stream_transactions, write_events

ROOT = Path(__file__).resolve().parents[2]


def where_bytewax_runs(keys: list[str], workers: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    flow = Dataflow("where")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda k: k)
    counted = op.stateful_map("count", keyed, lambda n, _v: ((n or 0) + 1, n))
    op.inspect_debug("who", counted, lambda _s, item, _e, worker: seen.__setitem__(item[0], worker))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return seen


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_worker_of_is_where_bytewax_runs_a_key(workers):
    keys = [f"k{i}" for i in range(30)] + ["0", "1", "shard-0", "C000001", "dev-0001", "ü-ключ"]
    seen = where_bytewax_runs(keys, workers)
    assert seen == {k: worker_of(k, workers) for k in keys}


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_shard_keys_put_shards_on_every_worker(workers):
    keys = shard_keys(max(4, workers))
    seen = where_bytewax_runs(keys, workers)
    assert [seen[k] for k in keys] == [s % workers for s in range(len(keys))]


class Shards(SimpleNamespace):  # the one setting enough_shards reads, with pydantic's model_copy
    def model_copy(self, update: dict) -> "Shards":
        return Shards(**{**vars(self), **update})


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_a_keys_shard_runs_on_the_worker_that_holds_the_key(workers):
    """A transaction does not cross to another worker between its customer step and its
    shard step: with the shard count a multiple of the workers (``enough_shards``), the
    shard of a key (``shard_of``) runs where Bytewax runs the key itself."""
    shards = enough_shards(Shards(shards=4), ["bytewax.run", "m:flow", "-w", str(workers)]).shards
    assert shards % workers == 0
    customers = [f"C{i:06d}" for i in range(60)] + [f"dev-{i:04d}" for i in range(20)]
    keys = shard_keys(shards)
    seen = where_bytewax_runs(customers + keys, workers)
    assert {c: seen[keys[shard_of(c, shards)]] for c in customers} == {c: seen[c] for c in customers}


def test_worker_count_from_the_command_line_and_bytewax_variables(tmp_path):
    assert total_workers(["-m", "bytewax.run", "m:flow", "-w", "3"], {}) == 3
    assert total_workers(["bytewax.testing", "m:flow", "-p", "2", "-w", "2"], {}) == 4
    assert total_workers(["bytewax.run", "m:flow", "-i", "1", "-a", "h1:2101;h2:2101"], {}) == 2
    assert total_workers(["bytewax.run", "m:flow"], {}) is None
    # bytewax.run reads each flag's variable when the flag is absent; the flag wins
    env = {"BYTEWAX_WORKERS_PER_PROCESS": "4", "BYTEWAX_ADDRESSES": "h1:2101;h2:2101;h3:2101"}
    assert total_workers(["bytewax.run", "m:flow"], env) == 12
    assert total_workers(["bytewax.run", "m:flow", "-w", "1"], env) == 3
    hosts = tmp_path / "hosts"
    hosts.write_text("h1:2101\nh2:2101\n\n")
    helm = {"BYTEWAX_HOSTFILE_PATH": str(hosts), "BYTEWAX_POD_NAME": "flow-1", "BYTEWAX_STATEFULSET_NAME": "flow"}
    assert total_workers(["bytewax.run", "m:flow", "-w", "2"], helm) == 4
    # argparse's other spellings: attached values and unambiguous long prefixes
    assert total_workers(["bytewax.run", "m:flow", "-w2"], env) == 6
    assert total_workers(["bytewax.run", "m:flow", "--work", "2", "--addr=h1:1;h2:1"], env) == 4
    assert total_workers(["bytewax.run", "m:flow", "--workers-per-process=5"], {}) == 5
    # a process id on the command line uses the hostfile, as bytewax.run does
    assert total_workers(["bytewax.run", "m:flow", "-i", "0", "-w", "2"], {"BYTEWAX_HOSTFILE_PATH": str(hosts)}) == 4


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def pq_dataset(root: Path):
    import pyarrow.dataset as ds

    return ds.dataset(root, format="parquet", partitioning="hive")


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


KEPT = ("amount_count_1h", "amount_sum_24h", "amount_mean_7d", "time_since_last_transaction", "speed_kmh",
        "avg_transaction_amount", "merchant_risk_score", "fraud_score", "customer_known")


def test_fraud_flow_same_per_key_results_for_every_layout(fraud_env, tmp_path):
    """Per-key features, Feast values and the model's score are identical whatever the
    layout; the shared detector's score depends on the order events reach its shard,
    which differs between layouts, so it is not compared. Every worker runs a scorer."""
    events = stream_transactions(1500, seed=12, spec=fraud_env.spec)
    src = tmp_path / "in.jsonl"
    write_events(events, src)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_", "IOT_", "KAFKA_OPT_"))}
    base.update(STREAMSCORE_SOURCE="file", STREAMSCORE_INPUT=str(src), STREAMSCORE_FEAST__REPO=str(fraud_env.repo),
                STREAMSCORE_MODEL__REGISTRY=str(fraud_env.registry), STREAMSCORE_IO__BATCH_SIZE="200")
    flow_ref = "dataflows.fraud:get_flow()"
    def cluster() -> list[list[str]]:  # ports taken just before use, so nothing else takes them first
        p0, p1 = free_ports(2)
        return [[sys.executable, "-m", "bytewax.run", flow_ref, "-i", str(i), "-a",
                 f"127.0.0.1:{p0};127.0.0.1:{p1}"] for i in (0, 1)]

    layouts = {
        "1 worker": lambda: [[sys.executable, "-m", "bytewax.run", flow_ref]],
        # the worker count given the way bytewax.run also takes it: a variable
        "2 threads": lambda: [[sys.executable, "-m", "bytewax.run", flow_ref]],
        "2 processes": lambda: [[sys.executable, "-m", "bytewax.testing", flow_ref, "-p", "2"]],
        "2-process cluster": cluster,
    }
    results: dict[str, dict[str, tuple]] = {}
    for name, commands_of in layouts.items():
        commands = commands_of()
        out = tmp_path / name.replace(" ", "_")
        env = {**base, "STREAMSCORE_IO__OUTPUT_DIR": str(out)}
        if name == "2 threads":
            env["BYTEWAX_WORKERS_PER_PROCESS"] = "2"
        procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for c in commands]
        logs = ""
        for p in procs:
            stdout, stderr = p.communicate(timeout=240)
            assert p.returncode == 0, f"{name}: {stderr[-3000:]}"
            logs += stderr
        scorers = logs.count('"event": "scorer_ready"')
        assert scorers == (1 if name == "1 worker" else 2), f"{name}: {scorers} scorers"
        scored = read_jsonl(out / "scored.jsonl")
        assert len(scored) + len(read_jsonl(out / "dead_letter.jsonl")) == len(events)
        results[name] = {r["transaction_id"]: tuple(r.get(k) for k in KEPT) for r in scored}
        # the inference log holds exactly the scored events, whoever wrote them
        log = pq_dataset(out / "inference_log").to_table(columns=["event_id", "fraud_score"]).to_pylist()
        assert sorted((x["event_id"], x["fraud_score"]) for x in log) == sorted(
            (r["transaction_id"], r["fraud_score"]) for r in scored), name
        parts = {FILE_PATTERN.match(f.name)["part"] for f in (out / "inference_log").rglob("*.parquet")}
        assert len(parts) == scorers, f"{name}: log partitions {sorted(parts)}"  # one per worker
        # each row written by the worker that scored it: partition j holds worker j's customers
        customer = {r["transaction_id"]: r["customer_id"] for r in scored}
        for f in (out / "inference_log").rglob("*.parquet"):
            part = int(FILE_PATTERN.match(f.name)["part"])
            ids = pq_dataset(f).to_table(columns=["event_id"])["event_id"].to_pylist()
            assert {worker_of(customer[i], scorers) for i in ids} == {part}, f"{name}: {f.name}"
    reference = results["1 worker"]
    assert len(reference) == len(events)
    for name, got in results.items():
        assert got == reference, name
