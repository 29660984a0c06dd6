"""The scoring endpoint on loopback, next to the naive per-event pattern, in one run.

    .venv/bin/python -m benchmarks.endpoint [--requests 1000] [--batches 50] [--history 5000]

Needs the demo's Feast repo and model (``make model``). Steps:

1. copy ``feature_repo`` (definitions, store configs, data with the materialized online
   store) to a temporary folder and apply the definitions there (the live views), so the
   demo's repo is left as it is;
2. live rows: ``--history`` generated transactions (the demo's world) through the
   stream's own :class:`~features.transactions.CustomerFeatures`, each customer's last
   record written with :class:`~features.live.LiveWriter` (as the flow's write-back does);
3. a real server: ``python -m service.app`` in a process of its own (uvicorn, one
   worker) on a free 127.0.0.1 port, waited for on ``/healthz``;
4. the client (this process, ``httpx`` with keep-alive, one connection): single-event
   requests one after the other (p50 / p90 / p99 latency, requests/s), then batches of
   100 (requests/s, events/s, latency), after 50 warm-up requests; the events come after
   the history, so their customers have live rows;
5. the naive pattern in this process (:func:`benchmarks.naive.run`): per event the
   streaming features, ONE Feast ``get_online_features`` call per entity (customer,
   merchant) and ONE ``model.predict`` on a 1-row matrix, no HTTP.

Prints one JSON object. Nothing is asserted; figures depend on the machine's load
(``machine.load_avg_1m_at_start``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import orjson

from benchmarks import common, naive
from features.live import CUSTOMER_LIVE_VIEW, LiveWriter, feast_pusher
from features.store import open_store
from features.transactions import CustomerFeatures, parse_transaction

__all__ = ["run", "main"]

KEY = "bench-" + "k" * 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pcts(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds, dtype=float) * 1000.0
    return {f"p{p}_ms": round(float(np.percentile(a, p)), 3) for p in (50, 90, 99)} | {
        "mean_ms": round(float(a.mean()), 3)}


def copy_repo(src: Path, dest: Path) -> Path:
    """A copy of the Feast repo (the materialized online store and the sources) with the
    current definitions applied (the live views) to a NEW registry.

    The registry is not copied: it records the online store's absolute path, and Feast
    applies a changed path by dropping the tables at the old one (the original repo's)."""
    import importlib.util

    from feast import Entity, FeatureService, FeatureStore, FeatureView

    dest.mkdir(parents=True)
    for name in ("definitions.py", "feature_store.yaml", "feature_store.redis.yaml"):
        shutil.copy(src / name, dest / name)
    shutil.copytree(src / "data", dest / "data", ignore=shutil.ignore_patterns("registry*.db", ".materialized"))
    spec = importlib.util.spec_from_file_location("bench_feature_defs", dest / "definitions.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    objects = [v for v in vars(module).values() if isinstance(v, (Entity, FeatureView, FeatureService))]
    FeatureStore(repo_path=str(dest)).apply(objects)
    return dest


def write_live_rows(repo: Path, history: Sequence[dict]) -> dict[str, Any]:
    """Each history customer's live row, from the stream's own features, written as the flow does."""
    states: dict[str, CustomerFeatures] = {}
    records = []
    for e in history:
        tx = parse_transaction(e)
        f = states.setdefault(tx.customer_id, CustomerFeatures()).update(tx.t, tx.amount, tx.latitude, tx.longitude)
        records.append({**e, **f})
    store = open_store(repo)
    writer = LiveWriter(feast_pusher(store, CUSTOMER_LIVE_VIEW, "customer_id", "last_transaction_at"),
                        background=False)
    t = time.perf_counter()
    for i in range(0, len(records), 1000):  # the flow's batches
        writer.write_batch(records[i:i + 1000])
    seconds = time.perf_counter() - t
    return {"history_events": len(history), "customers": len(states), "rows_written": writer.stats.pushed,
            "store_calls": writer.stats.push_calls, "write_s": round(seconds, 3)}


def start_server(repo: Path, registry: Path, model_ref: str, port: int) -> subprocess.Popen:
    env = common.flow_env({"STREAMSCORE_API_KEYS": KEY, "STREAMSCORE_FEAST__REPO": str(repo),
                           "STREAMSCORE_MODEL__REGISTRY": str(registry), "STREAMSCORE_MODEL__REF": model_ref,
                           "STREAMSCORE_MODEL__POLL_S": "10"})
    return subprocess.Popen([sys.executable, "-m", "service.app", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=common.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(client: Any, proc: subprocess.Popen, timeout: float = 120.0) -> float:
    import httpx

    t = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {err[-2000:]}")
        try:
            if client.get("/healthz").status_code == 200:
                return time.perf_counter() - t
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError("server did not answer /healthz")


def measure(client: Any, events: Sequence[dict], n_single: int, n_batches: int, batch: int = 100) -> dict[str, Any]:
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    bodies = [orjson.dumps(e) for e in events]
    for b in bodies[:50]:  # warm-up: caches, connection, model
        client.post("/score", content=b, headers=headers).raise_for_status()
    lat: list[float] = []
    t0 = time.perf_counter()
    for i in range(n_single):
        t = time.perf_counter()
        r = client.post("/score", content=bodies[i % len(bodies)], headers=headers)
        lat.append(time.perf_counter() - t)
        r.raise_for_status()
    single_s = time.perf_counter() - t0
    floor: list[float] = []
    for _ in range(300):  # the HTTP round trip alone (no scoring): what the stack costs
        t = time.perf_counter()
        client.get("/healthz").raise_for_status()
        floor.append(time.perf_counter() - t)
    batches = [orjson.dumps(events[(i * batch) % len(events):(i * batch) % len(events) + batch])
               for i in range(n_batches)]
    blat: list[float] = []
    n_events = 0
    t0 = time.perf_counter()
    for body in batches:
        t = time.perf_counter()
        r = client.post("/score", content=body, headers=headers)
        blat.append(time.perf_counter() - t)
        r.raise_for_status()
        n_events += len(r.json())
    batch_s = time.perf_counter() - t0
    return {
        "single": {"requests": n_single, "requests_per_s": round(n_single / single_s, 1), **_pcts(lat)},
        "healthz_round_trip": _pcts(floor),
        f"batch_{batch}": {"requests": n_batches, "requests_per_s": round(n_batches / batch_s, 1),
                           "events_per_s": round(n_events / batch_s, 1), **_pcts(blat)},
    }


def run(feature_repo: Path = Path("feature_repo"), registry: Path = Path("model_registry"),
        model_ref: str = "fraud_model@production", history: int = 5000, n_single: int = 1000, n_batches: int = 50,
        naive_events: int = 1000) -> dict[str, Any]:
    import httpx

    out: dict[str, Any] = {"machine": common.machine()}
    events = common.fraud_events(history + max(n_single, n_batches * 100, naive_events), seed=123)
    past, coming = events[:history], events[history:]
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        t = time.perf_counter()
        repo = copy_repo(Path(feature_repo), Path(tmp) / "feature_repo")
        out["setup"] = {"apply_s": round(time.perf_counter() - t, 3), **write_live_rows(repo, past)}
        port = _free_port()
        proc = start_server(repo, Path(registry), model_ref, port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
                out["setup"]["server_start_s"] = round(wait_ready(client, proc), 3)
                out["endpoint"] = {"server": "uvicorn, 1 process, 127.0.0.1, httpx keep-alive client, sequential",
                                   **measure(client, coming, n_single, n_batches)}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        nv = naive.run(coming[:naive_events], Path(repo), Path(registry), model_ref)
        nv["ms_per_event"] = round(1000.0 / nv["events_per_s"], 3) if nv.get("events_per_s") else None
        nv["pattern"] = "per event: 1 get_online_features per entity (customer, merchant) + 1 predict, in-process"
        out["naive"] = nv
    single, many = out["endpoint"]["single"], out["endpoint"]["batch_100"]
    out["ratios"] = {
        "endpoint_batch_events_per_s / naive_events_per_s": round(many["events_per_s"] / nv["events_per_s"], 2),
        "endpoint_single_p50_ms / naive_ms_per_event": round(single["p50_ms"] / nv["ms_per_event"], 2),
    }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.endpoint", description=__doc__.split("\n\n")[0])
    p.add_argument("--feature-repo", type=Path, default=Path("feature_repo"))
    p.add_argument("--registry", type=Path, default=Path(os.environ.get("STREAMSCORE_MODEL__REGISTRY") or "model_registry"))
    p.add_argument("--model", default="fraud_model@production")
    p.add_argument("--history", type=int, default=5000, help="events whose customers get live rows")
    p.add_argument("--requests", type=int, default=1000, help="single-event requests")
    p.add_argument("--batches", type=int, default=50, help="requests of 100 events")
    p.add_argument("--naive-events", type=int, default=1000)
    a = p.parse_args(argv)
    if not (a.feature_repo / "data" / "online_store.db").exists() or not (a.registry / "fraud_model").is_dir():
        print("error: needs the demo's Feast repo and model: run `make model` first", file=sys.stderr)
        return 2
    result = run(a.feature_repo, a.registry, a.model, a.history, a.requests, a.batches, a.naive_events)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
