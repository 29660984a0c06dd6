"""Resident memory of per-customer state.

    python -m benchmarks.memory [--keys 100000]      # prints one JSON object

Feeds one transaction for each of ``--keys`` distinct customers through the
flow's own per-customer step, :class:`models.fraud.CustomerState` (streaming
feature history + amount detector), keeping the states in a dict keyed by
customer id as a keyed step does, and reports the growth of this process's
resident set size (``/proc/self/statm``), per 100,000 keys. Run it in a fresh
process (``benchmarks.run`` does) so freed memory of earlier work does not hide
the growth.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time

from features.transactions import Transaction
from models.fraud import CustomerState, FraudScoringConfig

__all__ = ["rss_mb", "customer_state_memory"]


def rss_mb() -> float:
    """Current resident set size of this process, MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def customer_state_memory(keys: int = 100_000, events_per_key: int = 1) -> dict:
    cfg = FraudScoringConfig()
    # warm the code paths (imports, caches) before the baseline
    warm = CustomerState(cfg)
    for j in range(3):
        warm.update(Transaction("w", "W", "M1", "gas", 20.0 + j, 40.7, -74.0, t=1.79e9 + j))
    gc.collect()
    before = rss_mb()
    states: dict[str, CustomerState] = {}
    t0 = time.perf_counter()
    for j in range(events_per_key):
        for i in range(keys):
            cid = f"C{i:08d}"
            s = states.get(cid)
            if s is None:
                s = states[cid] = CustomerState(cfg)
            s.update(Transaction(f"t{i}-{j}", cid, "M00001", "grocery", 10.0 + (i % 97), 40.7 + (i % 13) * 0.01,
                                 -74.0, t=1.79e9 + i * 0.01 + j * 60.0))
    seconds = time.perf_counter() - t0
    gc.collect()
    after = rss_mb()
    growth = after - before
    return {
        "keys": keys,
        "events_per_key": events_per_key,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "rss_growth_mb": round(growth, 1),
        "mb_per_100k_keys": round(growth * 100_000 / keys, 1),
        "bytes_per_key": round(growth * 2**20 / keys),
        "seconds": round(seconds, 3),
        "state_kept": len(states),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--events-per-key", type=int, default=1)
    a = p.parse_args(argv)
    print(json.dumps(customer_state_memory(a.keys, a.events_per_key)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
