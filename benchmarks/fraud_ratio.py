"""The fraud flow file to file against the plain-loop reference, back to back, on the same events.

    python -m benchmarks.fraud_ratio [--events 30000] [--rounds 2] [--stages]

Generates ``--events`` transactions once (:func:`benchmarks.common.fraud_events`, the
demo's world), then, ``--rounds`` times in turn: the fraud flow file to file in a
process of its own (:func:`benchmarks.common.run_flow_file`, exactly as ``make bench``
runs it: events/s from the scored records' own ``scored_at``, start-up excluded), and
:func:`benchmarks.reference.run` on the same file. Prints each round's figures and its
ratio, then the median ratio; with ``--stages`` also the flow's own stages in a plain
loop (:func:`benchmarks.fraud_throughput.stage_costs`, µs/event). Alternating the two
in one command keeps them under the same machine load. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import orjson

from benchmarks import common, reference

__all__ = ["run", "main"]


def run(events: int = 30_000, rounds: int = 2, stages: bool = False, work: Path = Path("output/bench/ratio"),
        feature_repo: Path = Path("feature_repo"), registry: Path = Path("model_registry")) -> dict:
    """Every round's flow and reference figures and ratio; the median ratio."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "fraud.jsonl"
    common.write_jsonl(common.fraud_events(events), path)
    env = {"STREAMSCORE_FEAST__REPO": str(feature_repo.resolve()), "STREAMSCORE_MODEL__REGISTRY": str(registry.resolve())}
    out: dict = {"events": events, "rounds": []}
    for i in range(rounds):
        flow = common.run_flow_file("fraud", path, work / "out", env)
        ref = reference.run(path, work / "reference_scored.jsonl", feature_repo, registry)
        ratio = flow["events_per_s"] / ref["events_per_s"]
        out["rounds"].append({"flow_events_per_s": flow["events_per_s"], "flow_cpu_s": flow["cpu_s"],
                              "flow_wall_s": flow["wall_s"], "latency_ms": flow["latency_ms"],
                              "reference_events_per_s": ref["events_per_s"], "ratio": round(ratio, 3)})
        print(f"round {i + 1}: flow {flow['events_per_s']:,.0f}/s, reference {ref['events_per_s']:,.0f}/s, "
              f"ratio {ratio:.2f}x", flush=True)
    out["median_ratio"] = round(statistics.median(r["ratio"] for r in out["rounds"]), 3)
    if stages:
        from benchmarks.fraud_throughput import stage_costs  # lazy: pulls river

        costs = stage_costs(common.fraud_events(min(events, 20_000)), feature_repo, registry)
        out["stage_costs_us"] = {k: round(v, 1) for k, v in costs.items()}
        out["stage_costs_us"]["total"] = round(sum(costs.values()), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fraud_ratio", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--stages", action="store_true", help="also the flow's own stages in a plain loop")
    a = p.parse_args(argv)
    print(orjson.dumps(run(a.events, a.rounds, a.stages), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
