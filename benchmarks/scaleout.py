"""Scale-out on a Kafka backfill: one process, then two, back to back on the same events.

``python -m benchmarks.scaleout [--events 100000] [--repeats 2]`` runs
:func:`benchmarks.kafka_bench.backfill` with 1 then 2 processes (``python -m
bytewax.run`` / ``python -m bytewax.testing ... -p 2``, 3 input partitions,
``tail=false``), ``repeats`` times, on one list of events, and prints one JSON
object: each run's sustained events/s (from the scored messages' timestamps) and
whole-run events/s, the 2p/1p ratio of each pair, and where the CPU went during each
run, read from ``/proc``: each flow process's own CPU seconds, the broker's, and the
machine's busy CPU (so other work on the machine shows as ``other_cpu_s``).

Each run also gives the µs of CPU per event of each flow process in the steady phase
(``cpu_us_per_event_steady``), and each pair the 1p/2p ratio of their totals
(``cpu_efficiency_2p``): steadier than events/s on a shared machine. ``--baseline DIR`` runs the
flow of another checkout (an export of main) in a pair before each of this one's, on the same
events, keyed the same way (by customer: :func:`benchmarks.kafka_bench.backfill`).

``--payload`` prints instead what each keyed exchange moves and its pickle round trip
per item (:func:`payload_costs`).

Only a pair run back to back is compared: the machine is shared, so absolute figures
drift from one minute to the next.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from benchmarks import common, kafka_bench

__all__ = ["CpuWatch", "main", "pair"]

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def _busy_cpu() -> float:
    """CPU seconds the whole machine spent busy since boot (every core)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / _TICK


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _pids(match: Callable[[str], bool]) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if match(cmd):
                out.append(int(d.name))
    return out


class CpuWatch:
    """While open, samples the CPU time of every process whose command line holds
    ``needle`` and whose working directory is ``cwd`` (the flow's processes), of the broker (a ``java`` process running Kafka),
    and of the whole machine."""

    def __init__(self, needle: str, cwd: Path = kafka_bench.ROOT, every_s: float = 0.2) -> None:
        self.needle, self.cwd, self.every_s = needle, Path(cwd).resolve(), every_s
        self.flow: dict[int, tuple[str, float]] = {}
        self.samples: list[tuple[float, dict[int, float], float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now: dict[int, float] = {}
        for pid in _pids(lambda c: self.needle in c and "benchmarks.scaleout" not in c):
            if _cwd(pid) != self.cwd:  # another checkout's flow (the machine is shared)
                continue
            cpu = _proc_cpu(pid)
            if cpu is not None:
                name = "bytewax.testing (parent)" if "bytewax.testing" in self._cmd(pid) else self._role(pid)
                self.flow[pid] = (name, cpu)
                now[pid] = cpu
        self.samples.append((time.time(), now, _busy_cpu(), sum(_proc_cpu(p) or 0.0 for p in self.broker)))

    def _cmd(self, pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""

    def _role(self, pid: int) -> str:
        args = self._cmd(pid).split()
        return f"process {args[args.index('-i') + 1]}" if "-i" in args else "process 0 (alone)"

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> "CpuWatch":
        self.broker = _pids(lambda c: c.startswith("java ") and "kafka" in c)
        self._broker0 = sum(_proc_cpu(p) or 0.0 for p in self.broker)
        self._busy0, self._t0 = _busy_cpu(), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.wall_s = time.perf_counter() - self._t0
        self.busy_s = _busy_cpu() - self._busy0
        self.broker_s = sum(_proc_cpu(p) or 0.0 for p in self.broker) - self._broker0

    def between(self, t0: float, t1: float) -> dict[str, Any]:
        """CPU seconds from epoch ``t0`` to ``t1`` (the nearest samples inside): per flow
        process, the broker, the machine; and the cores each used on average."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}
        (a, fa, ba, ka), (b, fb, bb, kb) = inside[0], inside[-1]
        span = b - a
        flow = {f"{self.flow[pid][0]} [{pid}]": round((fb[pid] - fa[pid]) / span, 2) for pid in fb if pid in fa}
        busy = (bb - ba) / span
        broker = (kb - ka) / span
        return {"span_s": round(span, 2), "flow_cores": flow, "broker_cores": round(broker, 2),
                "machine_cores_busy": round(busy, 2),
                "other_cores": round(busy - broker - sum(flow.values()), 2)}

    def summary(self) -> dict[str, Any]:
        flow = {f"{name} [{pid}]": round(cpu, 2) for pid, (name, cpu) in sorted(self.flow.items())}
        flow_s = sum(cpu for _, cpu in self.flow.values())
        return {"wall_s": round(self.wall_s, 2), "flow_cpu_s": flow, "broker_cpu_s": round(self.broker_s, 2),
                "machine_busy_cpu_s": round(self.busy_s, 2),
                "other_cpu_s": round(self.busy_s - flow_s - self.broker_s, 2),
                "cores_busy_mean": round(self.busy_s / self.wall_s, 2) if self.wall_s else None}


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_per_event(steady: dict[str, Any], events_per_s: float | None) -> dict[str, float]:
    """µs of CPU per scored event in the steady phase: each flow process's, and all of them
    together (``total``): its cores divided by the events/s. Steadier than events/s on a
    shared machine, where the flow gets whatever cores the other work leaves it.

    >>> cpu_per_event({"flow_cores": {"process 0 [7]": 0.5, "process 1 [8]": 0.4}}, 9000.0)
    {'process 0 [7]': 55.6, 'process 1 [8]': 44.4, 'total': 100.0}
    """
    cores = steady.get("flow_cores") or {}
    if not cores or not events_per_s:
        return {}
    out = {name: round(c / events_per_s * 1e6, 1) for name, c in cores.items()}
    out["total"] = round(sum(cores.values()) / events_per_s * 1e6, 1)
    return out


def one_run(broker: kafka_bench.Broker, events: list[dict], processes: int, threads: int = 1,
            root: Path = kafka_bench.ROOT) -> dict[str, Any]:
    """One backfill (topic filled first, then the flow timed), with its CPU; ``threads``
    worker threads per process (``BYTEWAX_WORKERS_PER_PROCESS``, which ``bytewax.run`` reads);
    ``root``: the checkout whose flow runs."""
    load = _load()
    saved = dict(broker.flow_env)
    if threads > 1:
        broker.flow_env["BYTEWAX_WORKERS_PER_PROCESS"] = str(threads)
    try:
        with CpuWatch("dataflows.fraud:get_flow()", cwd=root) as cpu:
            r = kafka_bench.backfill(broker, events, processes, root=root)
    finally:
        broker.flow_env = saved
    scored_topic = broker.created_topics[-3]  # kafka_bench.Broker.topics: in, scored, alerts, dead
    stamps = sorted(v / 1000.0 for v in kafka_bench._read(broker, scored_topic, len(events), 60).values())
    steady = cpu.between(stamps[0], stamps[-1]) if stamps else {}
    return {**r, "threads": threads, "load_before": load, "cpu_whole_run": cpu.summary(), "cpu_steady": steady,
            "cpu_us_per_event_steady": cpu_per_event(steady, r.get("events_per_s"))}


def pair(broker: kafka_bench.Broker, events: list[dict], threads: bool = False,
         root: Path = kafka_bench.ROOT) -> dict[str, Any]:
    """1 process then 2 processes on ``events``, and their ratios; with ``threads``, then also
    1 process of 2 worker threads (the same exchanges by key, and nothing pickled).
    ``root``: the checkout whose flow runs (default this one)."""
    one, two = one_run(broker, events, 1, root=root), one_run(broker, events, 2, root=root)
    extra = {"1p_2threads": one_run(broker, events, 1, threads=2, root=root)} if threads else {}

    def ratio(k: str) -> float | None:
        return round(two[k] / one[k], 3) if one.get(k) and two.get(k) else None

    def efficiency() -> float | None:  # 1p's CPU per event over 2p's: 1.0 when splitting costs nothing
        a, b = (one.get("cpu_us_per_event_steady") or {}).get("total"), (two.get("cpu_us_per_event_steady") or {}).get("total")
        return round(a / b, 3) if a and b else None

    return {"root": str(root), "1p": one, "2p": two, "ratio_sustained": ratio("events_per_s"),
            "ratio_whole_run": ratio("events_per_s_whole_run"), "cpu_efficiency_2p": efficiency(), **extra}


def payload_costs(n: int = 3000, repeats: int = 3) -> dict[str, dict[str, float]]:
    """What each keyed exchange moves, and its pickle round trip per item (``pickle.dumps``
    then ``pickle.loads``: what Bytewax does to an item that moves to another process):
    µs per item (the best of ``repeats``) and bytes. The first keyed exchange (to the customer's
    worker) moves the message as :func:`dataflows.operators.key_raw` sends it on, with its key."""
    import pickle
    import timeit

    from dataflows.scoring import fraud_scoring_config
    from models.fraud import CustomerState
    from settings.config import FraudConfig

    from dataflows.operators import arrived
    from features.records import Raw

    sc = fraud_scoring_config(FraudConfig.from_env())
    raws = [orjson.dumps(e) for e in common.fraud_events(n)]
    validated = [sc.parse(r, time.time()) for r in raws]
    now = time.time()
    messages = [(tx.customer_id, arrived(Raw(r, "bench-backfill2p-in-0a1b2c", 1, 123456 + i), now))
                for i, (r, tx) in enumerate(zip(raws, validated))]
    featured: list[Any] = []
    states: dict[str, Any] = {}
    for r in raws:
        tx = sc.parse(r, time.time())
        featured.extend(states.setdefault(tx.customer_id, CustomerState(sc)).update_many([tx]))
    featured = [t for t in featured if type(t) is type(validated[0])]
    drift = [{"model_version": "fraud_model/1", "fraud_score": 0.1, "transaction_id": t.transaction_id,
              "event_time": "2026-10-06T00:00:03.840Z"} for t in validated]
    out = {}
    for name, items in (("kafka message bytes", raws),
                        ("(customer, arrived message): crosses to the customer's worker", messages),
                        ("validated Transaction: crossed there before", validated),
                        ("Transaction with features", featured), ("score-drift item", drift)):
        best = min(timeit.repeat(lambda: [pickle.loads(pickle.dumps(x)) for x in items], number=1, repeat=repeats))
        out[name] = {"us_per_item": round(best / len(items) * 1e6, 1),
                     "bytes": round(sum(len(pickle.dumps(x)) for x in items) / len(items))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--feature-repo", default="feature_repo")
    ap.add_argument("--registry", default="model_registry")
    ap.add_argument("--threads", action="store_true", help="also 1 process with 2 worker threads, after each pair")
    ap.add_argument("--payload", action="store_true", help="only the pickle cost of what crosses, per item")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout (e.g. an export of main) whose flow runs a pair before each of this one's, "
                         "on the same events and topics' keys")
    args = ap.parse_args(argv)
    if args.payload:
        print(orjson.dumps({"load_1m": _load(), **payload_costs()}, option=orjson.OPT_INDENT_2).decode())
        return 0
    repo_env = {"STREAMSCORE_FEAST__REPO": str(Path(args.feature_repo).resolve()),  # as benchmarks.run builds it
                "STREAMSCORE_MODEL__REGISTRY": str(Path(args.registry).resolve())}
    events = common.fraud_events(args.events)
    out: dict[str, Any] = {"events": len(events), "machine": common.machine(), "pairs": []}
    with kafka_bench.Broker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), repo_env) as broker:
        for _ in range(args.repeats):
            for root in ([args.baseline.resolve()] if args.baseline else []) + [kafka_bench.ROOT]:
                out["pairs"].append(pair(broker, events, args.threads, root))
                print(orjson.dumps(out["pairs"][-1]).decode(), file=sys.stderr, flush=True)
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
