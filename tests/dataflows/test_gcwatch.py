"""The garbage-collection policy of a flow process (dataflows/gcwatch.py).

The policy's one precondition: a key's state holds no reference cycle, so a
frozen state that is dropped (an expired key) is still freed by reference
counting. The policy itself runs in a subprocess: freezing would change the GC
of the whole test session.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator

from benchmarks import common
from dataflows.gcwatch import GcPauses
from features.transactions import parse_transaction
from models.fraud import CustomerState
from models.fraud.config import FraudScoringConfig
from tests.conftest import ROOT


def _cycle_through(root: object) -> list[str] | None:
    """A reference cycle among the objects reachable from ``root``, as type names
    (``None`` if there is none). It walks the reference graph itself (``gc.get_referents``),
    so garbage made meanwhile by anything else in the process (a kernel compiling, another
    thread) cannot be mistaken for the state's. Classes, modules and functions are shared
    by every state and are not followed."""
    shared = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    on_path: dict[int, int] = {}
    path: list[object] = []
    done: set[int] = set()
    stack: list[tuple[object, Iterator[object]]] = [(root, iter(gc.get_referents(root)))]
    on_path[id(root)] = 0
    path.append(root)
    while stack:
        obj, children = stack[-1]
        for child in children:
            if isinstance(child, shared) or not gc.is_tracked(child):
                continue
            if id(child) in on_path:
                return [type(o).__name__ for o in path[on_path[id(child)]:]] + [type(child).__name__]
            if id(child) not in done:
                on_path[id(child)] = len(path)
                path.append(child)
                stack.append((child, iter(gc.get_referents(child))))
                break
        else:
            stack.pop()
            path.pop()
            del on_path[id(obj)]
            done.add(id(obj))
    return None


def test_the_cycle_finder_finds_a_cycle():
    a: list[object] = [1.0]
    b = {"back": a}
    a.append(b)
    assert _cycle_through({"state": a}) == ["list", "dict", "list"]
    assert _cycle_through({"state": [1.0, {"x": [2.0]}]}) is None


def test_a_customer_state_holds_no_reference_cycle():
    cfg = FraudScoringConfig()
    txs = [parse_transaction(e) for e in common.fraud_events(300)]
    for i in range(0, 200, 7):
        s = CustomerState(cfg)
        for tx in txs[i: i + 5 + i % 11]:
            s.update(tx)
        restored = CustomerState(cfg)
        restored.load(s.snapshot())
        assert _cycle_through(s) is None, i
        assert _cycle_through(restored) is None, i


_POLICY = textwrap.dedent("""
    import gc, json, sys
    from dataflows.gcwatch import watch_gc
    watch_gc(freeze=sys.argv[1] == "on")
    states = [{"n": [float(i)], "t": [1.0, 2.0]} for i in range(50_000)]   # long-lived, like per-key states
    gc.collect()
    frozen = gc.get_freeze_count()
    garbage = [[i] for i in range(20_000)]   # short-lived, acyclic, alive at a full collection
    gc.collect()
    del garbage                              # freed by reference counting, frozen or not
    print("RESULT", json.dumps({"gen2": len(gc.get_objects(2)), "frozen_states": frozen,
                      "frozen_after_drop": gc.get_freeze_count()}))
""")


def _policy(mode: str) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", _POLICY, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])


def test_freezing_leaves_full_collections_nothing_old_to_traverse():
    off, on = _policy("off"), _policy("on")
    assert off["gen2"] > 100_000 and off["frozen_states"] == 0  # 50,000 states (150,000 objects) traversed each time
    assert on["gen2"] < 5_000 and on["frozen_states"] > 150_000
    # the dropped objects left the permanent generation: freezing does not keep garbage
    assert on["frozen_after_drop"] <= on["frozen_states"] + 5_000


def test_a_thaw_every_hour_reclaims_cycles_among_frozen_objects():
    now = [0.0]
    p = GcPauses(log_ms=1e9, freeze_survivors=True, thaw_every_s=3600.0, clock=lambda: now[0])
    was = gc.get_freeze_count()
    try:
        p.on_gc("start", {"generation": 2})
        p.on_gc("stop", {"generation": 2, "collected": 0})
        assert gc.get_freeze_count() > was  # frozen after a full collection
        now[0] = 3601.0
        p.on_gc("start", {"generation": 2})
        p.on_gc("stop", {"generation": 2, "collected": 0})
        assert gc.get_freeze_count() == 0  # thawed: the next full collection traverses everything
    finally:
        gc.unfreeze()
    assert p.count[2] == 2


_DEADLOCK = textwrap.dedent("""
    import gc
    from dataflows.gcwatch import watch_gc
    from dataflows.metrics import METRICS
    watcher = watch_gc()
    gc.set_threshold(1)  # a collection at nearly every allocation, also inside prometheus_client's lock
    for i in range(200):  # each new label set writes the multiprocess mmap file under its one lock
        METRICS.records.labels("f", "scored", f"status-{i}").inc()
    gc.set_threshold(700)
    pending = len(watcher.pending)
    METRICS.flush_deferred()  # what counting the next batch does
    print("RESULT", pending, len(watcher.pending), sum(watcher.count))
""")


def test_a_collection_inside_a_locked_metric_does_not_deadlock_the_worker(tmp_path):
    """The callback observed the histogram itself; with ``PROMETHEUS_MULTIPROC_DIR`` set
    (Feast sets it when imported), a collection inside ``prometheus_client``'s lock then
    waited on that lock forever (a flow hung so, in the suite)."""
    import os

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _DEADLOCK], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    pending, after, collections = map(int, result.split()[1:])
    assert collections > 100 and pending > 0 and after == 0  # counted in the callback, observed at the flush
