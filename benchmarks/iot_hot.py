"""One hot IoT device through the IoT flow vs River's loop on the same readings, in one run.

``python -m benchmarks.iot_hot --hot 20000 --many 20000 --devices 200 [--rounds 3] [--baseline DIR]``

Runs, in this order and in one process (each flow in a subprocess of its own, as
:mod:`benchmarks.run` does), ``--rounds`` times: with ``--baseline``, the IoT flow of
that other checkout (e.g. ``/work/main``: unchanged code, for a back-to-back
comparison) file to file on ``--hot`` readings of ONE device
(:func:`benchmarks.common.hot_device_readings`); this checkout's flow on the same file;
River's ``MinMaxScaler() | HalfSpaceTrees()`` loop over the same readings
(:func:`benchmarks.run.river_hot_loop`); and the IoT flow on ``--many`` readings over
``--devices`` devices. Prints one JSON document: events/s of each and the ratio
``hot_device_over_river`` (``baseline_over_river`` for the baseline) per round, and
their medians over the rounds. Nothing asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks import common
from benchmarks.run import river_hot_loop

_KEEP = ("events_per_s", "scored", "dead_letters", "wall_s", "cpu_s", "peak_rss_mb")


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hot", type=int, default=20_000, help="readings of the one hot device")
    p.add_argument("--many", type=int, default=20_000, help="readings of the many-devices run (0: skip)")
    p.add_argument("--devices", type=int, default=200, help="devices of the many-devices run")
    p.add_argument("--rounds", type=int, default=1, help="rounds, each running every flow once (medians printed)")
    p.add_argument("--baseline", type=Path, help="another checkout whose flow runs on the hot file too, each round")
    p.add_argument("--work", type=Path, default=Path("output/bench/iot_hot"))
    a = p.parse_args(argv)
    work = a.work.resolve()  # the baseline's flow runs in its own folder
    hot = common.hot_device_readings(a.hot)
    common.write_jsonl(hot, work / "hot.jsonl")
    if a.many:
        common.write_jsonl(common.iot_readings(a.many, a.devices), work / "many.jsonl")
    rounds: list[dict] = []
    for i in range(a.rounds):
        out: dict = {}
        if a.baseline is not None:
            r = common.run_flow_file("iot", work / "hot.jsonl", work / "out-baseline", root=a.baseline.resolve())
            out["baseline_iot_hot"] = {k: r.get(k) for k in _KEEP}
        r = common.run_flow_file("iot", work / "hot.jsonl", work / "out-hot")
        out["file_iot_hot"] = {k: r.get(k) for k in _KEEP}
        out["river_hot_loop"] = river_hot_loop(hot)
        if a.many:
            r = common.run_flow_file("iot", work / "many.jsonl", work / "out-many")
            out["file_iot_many"] = {k: r.get(k) for k in _KEEP}
        river_eps = out["river_hot_loop"]["events_per_s"]
        out["hot_device_over_river"] = _ratio(out["file_iot_hot"]["events_per_s"], river_eps)
        if a.baseline is not None:
            out["baseline_over_river"] = _ratio(out["baseline_iot_hot"]["events_per_s"], river_eps)
        rounds.append(out)
    if a.rounds == 1:
        print(json.dumps(rounds[0], indent=1))
        return 0
    medians = {k: statistics.median(r[k] for r in rounds if r.get(k) is not None)
               for k in ("hot_device_over_river", "baseline_over_river") if any(r.get(k) for r in rounds)}
    print(json.dumps({"rounds": rounds, "median": medians}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
