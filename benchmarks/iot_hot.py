"""One hot IoT device through the IoT flow vs River's loop on the same readings, in one run.

``python -m benchmarks.iot_hot --hot 20000 --many 20000 --devices 200``

Runs, in this order and in one process (each flow in a subprocess of its own, as
:mod:`benchmarks.run` does): the IoT flow file to file on ``--hot`` readings of ONE
device (:func:`benchmarks.common.hot_device_readings`), River's
``MinMaxScaler() | HalfSpaceTrees()`` loop over the same readings
(:func:`benchmarks.run.river_hot_loop`), and the IoT flow on ``--many`` readings over
``--devices`` devices. Prints one JSON document: events/s of each and the ratio
``hot_device_over_river``. Nothing asserts a figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import common
from benchmarks.run import river_hot_loop


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hot", type=int, default=20_000, help="readings of the one hot device")
    p.add_argument("--many", type=int, default=20_000, help="readings of the many-devices run (0: skip)")
    p.add_argument("--devices", type=int, default=200, help="devices of the many-devices run")
    p.add_argument("--work", type=Path, default=Path("output/bench/iot_hot"))
    a = p.parse_args(argv)
    hot = common.hot_device_readings(a.hot)
    common.write_jsonl(hot, a.work / "hot.jsonl")
    keep = ("events_per_s", "scored", "dead_letters", "wall_s", "cpu_s", "peak_rss_mb")
    out: dict = {}
    r = common.run_flow_file("iot", a.work / "hot.jsonl", a.work / "out-hot")
    out["file_iot_hot"] = {k: r.get(k) for k in keep}
    out["river_hot_loop"] = river_hot_loop(hot)
    if a.many:
        common.write_jsonl(common.iot_readings(a.many, a.devices), a.work / "many.jsonl")
        r = common.run_flow_file("iot", a.work / "many.jsonl", a.work / "out-many")
        out["file_iot_many"] = {k: r.get(k) for k in keep}
    hot_eps, river_eps = out["file_iot_hot"]["events_per_s"], out["river_hot_loop"]["events_per_s"]
    out["hot_device_over_river"] = round(hot_eps / river_eps, 3) if hot_eps and river_eps else None
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
