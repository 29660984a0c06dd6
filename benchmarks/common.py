"""Shared pieces of the benchmark harness (``python -m benchmarks.run``).

* :func:`machine`: the machine line of the table (CPU model, cores, Python, Bytewax).
* generated inputs: :func:`fraud_events`, :func:`iot_readings`, :func:`hot_device_readings`,
  :func:`distinct_customer_events`, written once per run with :func:`write_jsonl`;
* :func:`run_flow_file`: one flow, file to file, in a subprocess of its own
  (``python -m bytewax.run "dataflows.<flow>:get_flow()"`` with ``STREAMSCORE_*``),
  so start-up is real and peak RSS is that process's own (``os.wait4``);
* :func:`records_throughput`: events/s and latency from the scored records' own
  ``scored_at`` and ``latency_ms``, start-up and time to first scored record excluded.

Nothing here asserts a figure; it only measures.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import orjson

from datagen.sensors import generate_readings
from features.records import format_time, parse_time

ROOT = Path(__file__).resolve().parents[1]


# --- the machine ---------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "?"

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "bytewax": ver("bytewax"),
        "river": ver("river"),
        "lightgbm": ver("lightgbm"),
        "feast": ver("feast"),
        "platform": platform.platform(),
        "load_avg_1m_at_start": round(load, 2),
    }


# --- generated inputs ------------------------------------------------------------------


def fraud_events(n: int, seed: int = 123) -> list[dict]:
    """``n`` generated card transactions (the demo's world, after its history)."""
    from datagen.transactions import stream_transactions  # lazy: pulls pandas (~1.4 s)

    return stream_transactions(n, seed=seed)


def iot_readings(n: int, devices: int, seed: int = 7) -> list[dict]:
    """``n`` generated readings from ``devices`` devices, in event-time order."""
    return list(generate_readings(devices=devices, readings=n, seed=seed))


def hot_device_readings(n: int, hz: float = 10.0, seed: int = 11) -> list[dict]:
    """``n`` readings of ONE device at ``hz`` readings per second of event time
    (the generator's values and faults, re-timed: one hot key)."""
    rows = list(generate_readings(devices=1, readings=n, seed=seed))
    t0 = parse_time(rows[0]["timestamp"]) if rows else 0.0
    for i, r in enumerate(rows):
        r["timestamp"] = format_time(t0 + i / hz)
    return rows


def distinct_customer_events(n: int, base: Sequence[dict], seed_prefix: str = "bench") -> Iterable[dict]:
    """``n`` transactions of ``n`` distinct customers (``<prefix>-c<i>``), amounts,
    merchants and places taken from ``base`` in turn, one second of event time
    apart (none is late). A generator: a million events are never all in memory."""
    t0 = parse_time(base[0]["timestamp"])
    m = len(base)
    for i in range(n):
        ev = dict(base[i % m])
        ev["transaction_id"] = f"{seed_prefix}-tx{i:08d}"
        ev["customer_id"] = f"{seed_prefix}-c{i:08d}"
        ev["timestamp"] = format_time(t0 + i)
        yield ev


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write rows as JSON Lines; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("wb") as f:
        buf: list[bytes] = []
        for r in rows:
            buf.append(orjson.dumps(r))
            n += 1
            if len(buf) >= 10_000:
                f.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            f.write(b"\n".join(buf) + b"\n")
    return n


# --- measuring ---------------------------------------------------------------------------


def percentiles(values: Sequence[float], ps: Sequence[int] = (50, 95, 99)) -> dict[str, float | None]:
    if len(values) == 0:
        return {f"p{p}": None for p in ps}
    a = np.asarray(values, dtype=float)
    return {f"p{p}": round(float(np.percentile(a, p)), 1) for p in ps}


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def steady_rate(stamps: Sequence[float]) -> tuple[float | None, float]:
    """Events/s between the first and the last timestamp, the events at the first
    timestamp not counted (they were done before the clock started): ``(rate, span_s)``."""
    if len(stamps) < 2:
        return None, 0.0
    a = np.sort(np.asarray(stamps, dtype=float))
    first, last = a[0], a[-1]
    span = float(last - first)
    if span <= 0:
        return None, span
    after_first = int(len(a) - np.searchsorted(a, first, side="right"))
    return after_first / span, span


def records_throughput(scored_path: Path, launched_at: float | None = None) -> dict[str, Any]:
    """Figures of a run from its scored records (``scored_at`` ISO, ``latency_ms``):
    steady events/s from the first scored record to the last, the in-flow latency
    (arrival in the flow -> scored), and, given the launch time, start-up (launch ->
    first arrival in the flow) and time to the first scored record."""
    scored_at: list[float] = []
    latency: list[float] = []
    with scored_path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            r = orjson.loads(line)
            scored_at.append(_epoch(r["scored_at"]))
            latency.append(float(r["latency_ms"]))
    out: dict[str, Any] = {"scored": len(scored_at)}
    if not scored_at:
        return out
    rate, span = steady_rate(scored_at)
    arrivals = [s - lat / 1000.0 for s, lat in zip(scored_at, latency)]
    out["events_per_s"] = None if rate is None else round(rate, 1)
    out["steady_span_s"] = round(span, 3)
    out["latency_ms"] = percentiles(latency)
    if launched_at is not None:
        out["startup_s"] = round(min(arrivals) - launched_at, 3)
        out["first_scored_s"] = round(min(scored_at) - launched_at, 3)
    return out


def wait_rusage(proc: subprocess.Popen, timeout: float | None = None) -> tuple[int, Any]:
    """Wait for ``proc`` (polling up to ``timeout`` s); returns ``(returncode,
    resource usage)`` of that very process, from ``os.wait4`` (``ru_maxrss``: peak RSS
    in KiB; ``ru_utime + ru_stime``: its CPU seconds, whatever else runs)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            return code, usage
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise TimeoutError(f"{proc.args} did not finish within {timeout}s")
        time.sleep(0.05)


def flow_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a flow subprocess: ours (without settings of the flows or of
    Bytewax recovery, nor the ``PROMETHEUS_MULTIPROC_DIR`` that importing Feast sets in this
    process), quiet logs, then ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STREAMSCORE_", "SCORING_", "IOT_", "BYTEWAX_", "PROMETHEUS_MULTIPROC"))}
    env.update({"STREAMSCORE_LOG__LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_flow_file(flow: str, input_path: Path, out_dir: Path, extra_env: Mapping[str, str] | None = None,
                  timeout: float = 3600.0, keep_outputs: bool = False, args: Sequence[str] = (),
                  keep_stderr: bool = False, root: Path = ROOT) -> dict[str, Any]:
    """Run ``dataflows.<flow>:get_flow()`` file to file in a subprocess (``args``: more
    ``bytewax.run`` arguments, e.g. recovery's ``-r DIR -s 1``); figures from its
    records. ``root``: the checkout whose flow runs (default this one). ``wall_s`` runs from launch to exit (start-up included); ``cpu_s`` is
    the process's own CPU time; ``keep_stderr``: the flow's log lines as ``stderr``."""
    env = flow_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(input_path), "STREAMSCORE_OUTPUT": "file",
                    "STREAMSCORE_IO__OUTPUT_DIR": str(out_dir), **(extra_env or {})})
    cmd = [sys.executable, "-m", "bytewax.run", f"dataflows.{flow}:get_flow()", *args]
    launched = time.time()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr_chunks: list[bytes] = []
    # drain stderr in the background so a chatty flow never blocks on a full pipe
    import threading

    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    code, usage = wait_rusage(proc, timeout)
    wall = time.perf_counter() - t
    reader.join(5)
    if code != 0:
        tail = b"".join(stderr_chunks).decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{tail}")
    out = records_throughput(out_dir / "scored.jsonl", launched)
    n_in = sum(1 for _ in input_path.open("rb"))
    dead = sum(1 for _ in (out_dir / "dead_letter.jsonl").open("rb")) if (out_dir / "dead_letter.jsonl").exists() else 0
    out.update({
        "flow": flow,
        "input_events": n_in,
        "dead_letters": dead,
        "wall_s": round(wall, 3),
        "events_per_s_whole_run": round(n_in / wall, 1) if wall > 0 else None,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "command": shlex.join(["python", *cmd[1:]]),
    })
    if keep_stderr:
        out["stderr"] = b"".join(stderr_chunks).decode(errors="replace")
    if not keep_outputs:
        for name in ("scored.jsonl", "alerts.jsonl", "dead_letter.jsonl"):
            (out_dir / name).unlink(missing_ok=True)
    return out


def take(it: Iterable[Any], n: int) -> list[Any]:
    return list(islice(it, n))
