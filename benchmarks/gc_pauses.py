"""Garbage-collection pauses of the fraud flow, with and without ``state.gc_freeze``.

    python -m benchmarks.gc_pauses [--events 100000]

Runs the fraud flow file to file twice on the same events (every event a new
customer, so the per-key state grows as in a long run), once with
``STREAMSCORE_STATE__GC_FREEZE=false`` and once with ``true``, and prints each run's
``gc_summary`` (:mod:`dataflows.gcwatch`: collections, total and longest pause per
generation) and its events/s. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson

from benchmarks import common

__all__ = ["run"]


def _summary(stderr: str) -> dict[str, Any]:
    """The last ``gc_summary`` line of a flow's log.

    >>> log = ['{"event": "flow_ready"}', '{"event": "gc_summary", "frozen": 5, "gen0": {}, "gen1": {}, "gen2": {}}']
    >>> _summary(chr(10).join(log))["frozen"]
    5
    """
    for line in reversed(stderr.splitlines()):
        if '"gc_summary"' in line:
            rec = orjson.loads(line)
            return {k: rec[k] for k in ("frozen", "gen0", "gen1", "gen2")}
    return {}


def run(events: int = 100_000, work: Path | None = None, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """``{"off": {...}, "on": {...}}``: each run's GC summary and events/s (``extra_env``:
    more settings for both runs, e.g. the Feast repo and model registry)."""
    work = work or Path(tempfile.mkdtemp(prefix="gc-bench-"))
    path = work / "distinct.jsonl"
    base = common.fraud_events(min(events, 20_000))
    common.write_jsonl(common.take(common.distinct_customer_events(events, base), events), path)
    out: dict[str, Any] = {"events": events}
    for label, freeze in (("off", "false"), ("on", "true")):
        res = common.run_flow_file("fraud", path, work / f"out-{label}", {
            **(extra_env or {}), "STREAMSCORE_STATE__GC_FREEZE": freeze, "STREAMSCORE_LOG__LEVEL": "INFO"},
            keep_stderr=True)
        out[label] = {"events_per_s": res.get("events_per_s"), "cpu_s": res.get("cpu_s"),
                      "peak_rss_mb": res.get("peak_rss_mb"), **_summary(res.pop("stderr", ""))}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000)
    print(json.dumps(run(p.parse_args(argv).events), indent=1))


if __name__ == "__main__":
    main()
