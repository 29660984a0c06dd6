"""Per-reading cost of each stage of the IoT flow's own classes, in one process (no Bytewax):
parse, device step, shard step, inference-log table, metrics, JSON lines.

``python -m benchmarks.iot_stages --readings 20000 [--devices 1]``: readings of ONE hot
device (:func:`benchmarks.common.hot_device_readings`) or of ``--devices`` devices, fed in
batches of 1,000 as the flow's file source gives them (a device's readings of a batch
together, as ``stateful_batch`` hands them); the garbage collector's start-up objects are
frozen first, as the flow does. The shard step gives one scored batch per shard
(:class:`models.iot.ScoredReadings`); the log, metrics and JSON stages take it whole, as the
flow's outputs do. Prints CPU µs (this thread's time: steadier than wall time on a shared
machine) per reading per stage (JSON)."""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections import defaultdict

import orjson

from benchmarks import common


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=20_000)
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--batch", type=int, default=1_000)
    a = p.parse_args(argv)
    from dataflows.metrics import METRICS
    from features.records import parse_or_dead_letter
    from features.sensors import parse_reading
    from models.iot import DeviceState, IoTScoringConfig, ShardState, log_spec, warm_up

    rows = (common.hot_device_readings(a.readings) if a.devices == 1 else common.iot_readings(a.readings, a.devices))
    lines = [orjson.dumps(r) for r in rows]
    cfg = IoTScoringConfig()
    spec = log_spec(cfg)
    warm_up()
    gc.collect()
    gc.freeze()
    devices: dict[str, DeviceState] = {}
    shards: dict[int, ShardState] = {}
    cost: dict[str, float] = defaultdict(float)
    n = 0
    for b in range(0, len(lines), a.batch):
        t0 = time.thread_time()
        now = time.time()
        parsed = [parse_or_dead_letter(x, lambda raw, arr: parse_reading(raw, cfg.features, arr), now)
                  for x in lines[b:b + a.batch]]
        readings = [r for r in parsed if not hasattr(r, "error")]
        t1 = time.thread_time()
        by_dev: dict[str, list] = defaultdict(list)
        for r in readings:
            by_dev[r.device].append(r)
        results = []
        for dev, rs in by_dev.items():
            st = devices.get(dev) or devices.setdefault(dev, DeviceState(cfg))
            results.extend(x for x in st.score_batch(rs) if not hasattr(x, "error"))
        t2 = time.thread_time()
        by_shard: dict[int, list] = defaultdict(list)
        for r in results:
            by_shard[r.shard].append(r)
        scored = []
        for sh, rs in by_shard.items():
            scored.extend((shards.get(sh) or shards.setdefault(sh, ShardState(cfg))).score_batches(rs))
        t3 = time.thread_time()
        log = [s.log_table(spec) for s in scored]
        t4 = time.thread_time()
        for s in scored:  # as the flow's outputs count a batch
            METRICS.observe_batch("iot", "scored", s)
            METRICS.observe_batch("iot", "alerts", s)
        t5 = time.thread_time()
        out = [s.text(kind) for s in scored for kind in ("scored", "alerts")]  # as the file outputs write them
        t6 = time.thread_time()
        if b:  # the first batch warms caches
            n += sum(map(len, scored))
            for k, d in (("parse", t1 - t0), ("device", t2 - t1), ("shard", t3 - t2), ("log", t4 - t3),
                         ("metrics", t5 - t4), ("json", t6 - t5)):
                cost[k] += d
        del log, out
    res = {k: round(1e6 * v / n, 2) for k, v in cost.items()}
    res["total"] = round(sum(res.values()), 2)
    print(json.dumps({"readings": n, "devices": a.devices, "us_per_reading": res}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
