"""The scoring endpoint with 1, 2 and 4 worker processes (``streamscore serve --workers N``):
requests/s and latency at 8 and 32 concurrent clients.

    .venv/bin/python -m benchmarks.endpoint_workers [--workers 1,2,4] [--clients 8,32] [--requests 600]

Needs the demo's Feast repo and model (``make model``). Set-up as :mod:`benchmarks.endpoint`
(a copy of the repo, live rows for ``--history`` customers). For each worker count: a real
server (``python -m service.app --workers N`` on a free 127.0.0.1 port) waited for until
/healthz has been answered by N distinct worker pids; then, for each client count, that
many concurrent clients (asyncio + httpx in this process, one keep-alive connection each)
send ``--requests`` single-transaction ``POST /score`` requests in all, after 50 warm-up
requests. Prints one JSON object and a table. Nothing is asserted; the client shares the
machine's cores with the server (``machine.load_avg_1m_at_start``).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import orjson

from benchmarks import common
from benchmarks.endpoint import KEY, _free_port, copy_repo, write_live_rows

__all__ = ["run", "main"]


def _start(repo: Path, registry: Path, model_ref: str, port: int, workers: int) -> subprocess.Popen:
    env = common.flow_env({"STREAMSCORE_API_KEYS": KEY, "STREAMSCORE_FEAST__REPO": str(repo),
                           "STREAMSCORE_MODEL__REGISTRY": str(registry), "STREAMSCORE_MODEL__REF": model_ref,
                           "STREAMSCORE_LOG__LEVEL": "WARNING"})
    return subprocess.Popen([sys.executable, "-m", "service.app", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers)], cwd=common.ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_workers(url: str, proc: subprocess.Popen, workers: int, timeout: float = 300.0) -> float:
    import httpx

    t = time.perf_counter()
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < workers and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:  # new connections: the kernel hands them to any worker
            pids.add(httpx.get(f"{url}/healthz", timeout=5).json()["pid"])
        except httpx.TransportError:
            time.sleep(0.2)
    if len(pids) < workers:
        raise RuntimeError(f"only {len(pids)} of {workers} workers answered")
    return time.perf_counter() - t


async def _load(url: str, events: Sequence[dict], clients: int, requests: int) -> dict[str, Any]:
    import httpx

    bodies = [orjson.dumps(e) for e in events]
    headers = {"X-API-Key": KEY, "content-type": "application/json"}
    latencies: list[float] = []
    codes: dict[str, int] = {}
    counter = iter(range(requests))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as c:
            for _ in range(5):  # warm-up, not counted
                await c.post("/score", content=bodies[0], headers=headers)
            for i in counter:
                t = time.perf_counter()
                r = await c.post("/score", content=bodies[i % len(bodies)], headers=headers)
                latencies.append(time.perf_counter() - t)
                codes[str(r.status_code)] = codes.get(str(r.status_code), 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000.0
    return {"clients": clients, "requests": len(latencies), "codes": codes,
            "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def run(feature_repo: Path, registry: Path, model_ref: str, workers: Sequence[int], clients: Sequence[int],
        requests: int, history: int = 3000) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": common.machine(), "rows": []}
    events = common.fraud_events(history + 2000, seed=321)
    past, coming = events[:history], events[history:]
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        repo = copy_repo(feature_repo, Path(tmp) / "feature_repo")
        write_live_rows(repo, past)
        for w in workers:
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            proc = _start(repo, registry, model_ref, port, w)
            try:
                start_s = _wait_workers(url, proc, w)
                for c in clients:
                    row = asyncio.run(_load(url, coming, c, requests))
                    out["rows"].append({"workers": w, "start_s": round(start_s, 1), **row})
                    print(orjson.dumps(out["rows"][-1]).decode(), file=sys.stderr, flush=True)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| workers | clients | requests/s | p50 | p99 |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['workers']} | {r['clients']} | {r['requests_per_s']:,.0f} | {r['p50_ms']} ms | "
                     f"{r['p99_ms']} ms |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.endpoint_workers", description=__doc__.split("\n\n")[0])
    p.add_argument("--feature-repo", type=Path, default=Path("feature_repo"))
    p.add_argument("--registry", type=Path, default=Path("model_registry"))
    p.add_argument("--model", default="fraud_model@production")
    p.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    p.add_argument("--clients", default="8,32", help="concurrent clients, comma-separated")
    p.add_argument("--requests", type=int, default=600, help="requests per (workers, clients) row")
    a = p.parse_args(argv)
    if not (a.feature_repo / "data" / "online_store.db").exists() or not (a.registry / "fraud_model").is_dir():
        print("error: needs the demo's Feast repo and model: run `make model` first", file=sys.stderr)
        return 2
    result = run(a.feature_repo, a.registry, a.model, [int(w) for w in a.workers.split(",")],
                 [int(c) for c in a.clients.split(",")], a.requests)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
