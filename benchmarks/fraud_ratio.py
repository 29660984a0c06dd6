"""The fraud flow file to file against the plain-loop reference, back to back, on the same events.

    python -m benchmarks.fraud_ratio [--events 30000] [--rounds 2] [--stages] [--baseline DIR]

Generates ``--events`` transactions once (:func:`benchmarks.common.fraud_events`, the
demo's world), then, ``--rounds`` times in turn: the fraud flow file to file in a
process of its own (:func:`benchmarks.common.run_flow_file`, exactly as ``make bench``
runs it: events/s from the scored records' own ``scored_at``, start-up excluded), and
:func:`benchmarks.reference.run` on the same file. Prints each round's figures and its
ratio, then the median ratio; with ``--stages`` also the flow's own stages in a plain
loop (:func:`benchmarks.fraud_throughput.stage_costs`, µs/event). Alternating the two
in one command keeps them under the same machine load. ``--baseline DIR``: another
checkout of the project (e.g. ``git worktree add DIR <commit>``, with the same Feast repo
and model), whose flow runs too in every round, before this one's: a before/after in one
run. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import orjson

from benchmarks import common, reference

__all__ = ["run", "main"]


def run(events: int = 30_000, rounds: int = 2, stages: bool = False, work: Path = Path("output/bench/ratio"),
        feature_repo: Path = Path("feature_repo"), registry: Path = Path("model_registry"),
        baseline: Path | None = None) -> dict:
    """Every round's flow and reference figures and ratio; the median ratio (and the
    baseline checkout's, with ``baseline``)."""
    work = work.resolve()  # the baseline's flow runs in its own folder
    work.mkdir(parents=True, exist_ok=True)
    path = work / "fraud.jsonl"
    common.write_jsonl(common.fraud_events(events), path)
    env = {"STREAMSCORE_FEAST__REPO": str(feature_repo.resolve()), "STREAMSCORE_MODEL__REGISTRY": str(registry.resolve())}
    out: dict = {"events": events, "rounds": []}
    for i in range(rounds):
        row: dict = {}
        if baseline is not None:
            base = common.run_flow_file("fraud", path, work / "out-baseline", env, root=baseline.resolve())
            row.update(baseline_events_per_s=base["events_per_s"], baseline_cpu_s=base["cpu_s"])
        flow = common.run_flow_file("fraud", path, work / "out", env)
        ref = reference.run(path, work / "reference_scored.jsonl", feature_repo, registry)
        ratio = flow["events_per_s"] / ref["events_per_s"]
        row.update(flow_events_per_s=flow["events_per_s"], flow_cpu_s=flow["cpu_s"], flow_wall_s=flow["wall_s"],
                   latency_ms=flow["latency_ms"], reference_events_per_s=ref["events_per_s"], ratio=round(ratio, 3))
        if baseline is not None:
            row["baseline_ratio"] = round(row["baseline_events_per_s"] / ref["events_per_s"], 3)
        out["rounds"].append(row)
        print(f"round {i + 1}: flow {flow['events_per_s']:,.0f}/s, reference {ref['events_per_s']:,.0f}/s, "
              f"ratio {ratio:.2f}x" + (f"; baseline {row['baseline_events_per_s']:,.0f}/s, "
                                       f"{row['baseline_ratio']:.2f}x" if baseline is not None else ""), flush=True)
    out["median_ratio"] = round(statistics.median(r["ratio"] for r in out["rounds"]), 3)
    if baseline is not None:
        out["median_baseline_ratio"] = round(statistics.median(r["baseline_ratio"] for r in out["rounds"]), 3)
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
    p.add_argument("--baseline", type=Path, help="another checkout whose flow runs too, in every round")
    a = p.parse_args(argv)
    print(orjson.dumps(run(a.events, a.rounds, a.stages, baseline=a.baseline), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
