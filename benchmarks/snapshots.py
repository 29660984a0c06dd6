"""Crash recovery's cost: snapshot size per key and time per epoch.

    python -m benchmarks.snapshots [--keys N] [--quick] [--no-flow]     # prints one JSON object
    python -m benchmarks.snapshots --help                               # sizes, repeats, folders

Bytewax snapshots every key a stateful step touched in an epoch at the epoch's
end: :func:`dataflows.operators.stateful_object` returns ``state.snapshot()``,
and Bytewax 0.21.1 pickles it with ``pickle.dumps(snapshot)`` (its Rust
``ser_snap``: the default protocol, no argument) into one row of its SQLite
recovery partition (table ``snaps``, column ``ser_change``). (Its stateful
operator calls ``snapshot()`` at every epoch's end even without recovery, every
10 s by default; recovery adds the pickling and the write.) Everything here
runs the flow's own classes (:class:`models.fraud.CustomerState`,
:class:`models.fraud.ShardState`, :class:`models.iot.DeviceState`,
:class:`models.iot.ShardState`, :class:`models.iot.IoTPipeline`), keyed as the
flows key them, with the flows' default settings (``dataflows.scoring`` from an
empty environment):

1. ``sizes``: bytes of one key's pickled snapshot, as stored: a customer of the
   demo world (the busiest, 12 transactions a day, and a median one, about 2 a
   day) after 1, 10, 100 and 1,000 generated transactions; a hot customer after
   100,000 transactions 10 s apart (every tile, the exact tail and the recent ids
   full: the largest a customer gets, compared with :func:`customer_snapshot_bound`);
   an IoT device after 1, 100 and 10,000 generated readings, and one at 10 Hz;
   the shared detectors' shard states once warm;
2. ``epoch``: the time to snapshot and pickle K touched customers (about 10
   transactions each) as Bytewax does at the end of an epoch, in ms per epoch and
   µs per key; the same for devices and for the shard states; and, inside Bytewax
   (``run_main`` in this process), the CPU time recovery adds per touched key
   (pickling, the SQLite write) to the flow's customer step;
3. ``flow``: the fraud flow file to file (``python -m bytewax.run
   "dataflows.fraud:get_flow()"``, one worker) on the same generated events
   (20,000; the demo world's, and the same each of a new customer) without
   recovery and with recovery (``-r DIR -s 1 -b 0`` and ``-s 10``): wall seconds,
   events/s, the ratio to no recovery, the recovery directory's size on disk and
   per distinct customer, and what its ``snaps`` table holds per step.

Nothing is asserted here (``tests/benchmarks/test_snapshots.py`` checks the figures
are consistent); timings depend on the machine.
"""

from __future__ import annotations

import dataclasses

import argparse
import gc
import json
import math
import os
import pickle
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from benchmarks import common
from dataflows.operators import stateful_object
from dataflows.scoring import fraud_scoring_config, iot_scoring_config
from datagen.transactions import HISTORY_START, DatasetSpec, World, generate_transactions
from features.records import DeadLetter, ValidationError
from features.sensors import parse_reading
from features.transactions import parse_transaction
from models.fraud import CustomerState, FraudPipeline
from models.iot import DeviceState, IoTPipeline
from settings.config import FraudConfig, IoTConfig

__all__ = [
    "pickled_size",
    "fraud_config",
    "iot_config",
    "demo_customer_events",
    "customer_growth",
    "hot_customer",
    "customer_snapshot_bound",
    "device_growth",
    "device_snapshot_bound",
    "shard_sizes",
    "epoch_cost",
    "bytewax_epoch",
    "dir_bytes",
    "recovery_store",
    "recovery_runs",
    "run",
    "main",
]

#: per K touched keys; ``--keys`` sets the largest
CUSTOMER_EPOCH_KEYS = (1_000, 10_000, 100_000)
DEVICE_EPOCH_KEYS = (1_000, 10_000)


def pickled_size(snapshot: Any) -> int:
    """Bytes of a snapshot as Bytewax 0.21.1 stores it: ``pickle.dumps(snapshot)``
    (default protocol, as its ``ser_snap`` calls it).

    >>> pickled_size(None), pickled_size([0.5] * 500) - pickled_size([0.5] * 400)   # 9 bytes a float
    (4, 900)
    """
    return len(pickle.dumps(snapshot))


# --- the flow's settings -----------------------------------------------------------------


def fraud_config() -> Any:
    """The fraud flow's :class:`~models.fraud.FraudScoringConfig` under default settings,
    run offline: no bound on future times (generated events are timed after the demo
    world's history, not now)."""
    return dataclasses.replace(fraud_scoring_config(FraudConfig.from_env({})), max_future_s=None)


def iot_config() -> Any:
    """The IoT flow's :class:`~models.iot.IoTScoringConfig` under default settings."""
    return iot_scoring_config(IoTConfig.from_env({}))


def _transaction_parser() -> Any:
    """``parse(raw, arrival)``: :func:`~features.transactions.parse_transaction` as
    :class:`~models.fraud.FraudPipeline` runs it offline (no bound on future times:
    generated events are timed after the demo world's history, not now)."""
    return parse_transaction


def _reading_parser() -> Any:
    """``parse(raw, arrival)``: :func:`~features.sensors.parse_reading` with the IoT
    flow's fields, as :class:`~models.iot.IoTPipeline` runs it."""
    features = iot_config().features

    def parse(raw: Any, arrival: float) -> Any:
        return parse_reading(raw, features, arrival)

    return parse


# --- 1. sizes ---------------------------------------------------------------------------------


def demo_customer_events(n: int, which: str = "busiest", seed: int = 5) -> tuple[list[dict], dict]:
    """The first ``n`` generated transactions of one customer of the demo world
    (``datagen.transactions``: its habits, trips and fraud incidents), from where
    the world's history ends: ``which`` is ``"busiest"`` (the highest rate) or
    ``"median"``. Returns ``(events, {"customer_id", "tx_per_day"})``."""
    spec = DatasetSpec()
    world = World.create(spec.seed, spec.n_customers, spec.n_merchants)
    freq = world.customers["frequency"]
    if which == "busiest":
        idx = int(freq.idxmax())
    elif which == "median":
        idx = int((freq - freq.median()).abs().idxmin())
    else:
        raise ValueError(f"which must be 'busiest' or 'median', got {which!r}")
    one = World(world.seed, world.customers.iloc[[idx]].reset_index(drop=True), world.merchants)
    rate = float(one.customers["frequency"].iat[0])
    start = HISTORY_START + timedelta(days=spec.history_days)
    days = n / rate * 1.2 + 1.0
    events = generate_transactions(one, start, days, seed=seed)
    while len(events) < n:  # Poisson shortfall
        days *= 1.3
        events = generate_transactions(one, start, days, seed=seed)
    return events[:n], {"customer_id": str(one.customers["customer_id"].iat[0]), "tx_per_day": rate}


def _span_days(first: Any, last: Any) -> float:
    return round((last.t - first.t) / 86_400.0, 2)


def customer_growth(counts: Sequence[int] = (1, 10, 100, 1_000), which: str = "busiest") -> dict:
    """Snapshot bytes of one demo-world customer's :class:`~models.fraud.CustomerState`
    after each of ``counts`` transactions (parsed by the flow's parser)."""
    cfg, parse = fraud_config(), _transaction_parser()
    events, who = demo_customer_events(max(counts), which)
    state = CustomerState(cfg)
    out: dict[str, Any] = {**who, "bytes": {}, "event_time_days": {}, "duplicates": 0}
    first = None
    wanted = set(counts)
    for i, ev in enumerate(events, 1):
        tx = parse(ev, 0.0)
        first = first or tx
        if isinstance(state.update(tx), DeadLetter):
            out["duplicates"] += 1
        if i in wanted:
            out["bytes"][str(i)] = pickled_size(state.snapshot())
            out["event_time_days"][str(i)] = _span_days(first, tx)
    return out


def customer_snapshot_bound(cfg: Any = None, id_len: int = 32) -> int:
    """An upper bound of a customer's pickled snapshot, from the configuration
    alone (what ``features/windows.py`` and ``features/dedup.py`` guarantee):
    per horizon at most ``tiles + ceil(lateness / width) + 2`` tiles of
    ``stride`` floats, an exact tail of at most ``max_events`` rows, at most
    ``dedup_max_ids`` ids of ``id_len`` characters with their times, the amount
    detector's three numbers; a pickled float is 9 bytes, a short string
    ``len + 3``; 1 KiB for the rest (dict keys, tags, list framing).

    >>> customer_snapshot_bound() > 30_000
    True
    """
    cfg = fraud_config() if cfg is None else cfg
    sp = CustomerState(cfg).features.windows.spec
    tiles = sum(sp.n_tiles + math.ceil(sp.lateness / w) + 2 for w in sp.widths)
    floats = tiles * sp.stride + sp.max_tail * sp.row + 2 + 2 * len(sp.widths) + 3
    return 9 * floats + cfg.dedup_max_ids * (id_len + 3 + 9) + 1024


def hot_customer(n: int = 100_000, gap_s: float = 10.0,
                 checkpoints: Sequence[int] = (1_000, 10_000, 50_000, 100_000)) -> dict:
    """One customer with ``n`` transactions ``gap_s`` apart (amounts, merchants and
    places of the demo world's busiest customer in turn; ids as long as the
    generator's): snapshot bytes at each checkpoint, the bound of
    :func:`customer_snapshot_bound`, and what the state holds at the end."""
    cfg, parse = fraud_config(), _transaction_parser()
    base, who = demo_customer_events(min(n, 1_000))
    t0 = parse(base[0], 0.0).t
    state = CustomerState(cfg)
    marks = {c for c in checkpoints if c <= n} | {n}
    out: dict[str, Any] = {"transactions": n, "gap_s": gap_s, "base_customer": who["customer_id"], "bytes": {},
                           "duplicates": 0}
    id_len = 0
    t = time.perf_counter()
    for i in range(n):
        ev = dict(base[i % len(base)])
        ev["transaction_id"] = tid = f"tx-hot-{i:012d}"
        ev["timestamp"] = t0 + i * gap_s
        id_len = max(id_len, len(tid))
        if isinstance(state.update(parse(ev, 0.0)), DeadLetter):
            out["duplicates"] += 1
        if i + 1 in marks:
            out["bytes"][str(i + 1)] = pickled_size(state.snapshot())
    out["update_us_per_tx"] = round((time.perf_counter() - t) / n * 1e6, 1) if n else None
    snap = state.snapshot()
    out["event_time_days"] = round((n - 1) * gap_s / 86_400.0, 2)
    out["bound_bytes"] = customer_snapshot_bound(cfg, id_len)
    w = state.features.windows
    out["held"] = {
        "tiles_per_horizon": w.tiles_per_horizon(),
        "tail_events": len(w),
        "recent_ids": len(state.ids),
    }
    out["same_size_with_highest_protocol"] = len(pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)) == len(
        pickle.dumps(snap))
    return out


def device_snapshot_bound(cfg: Any = None, id_len: int = 40) -> int:
    """An upper bound of a device's pickled snapshot from the configuration (as
    :func:`customer_snapshot_bound`; per sensor: value, slow, stuck and drift
    detectors, 18 numbers at most)."""
    cfg = iot_config() if cfg is None else cfg
    sp = DeviceState(cfg).features.windows.spec
    tiles = sum(sp.n_tiles + math.ceil(sp.lateness / w) + 2 for w in sp.widths)
    floats = tiles * sp.stride + sp.max_tail * sp.row + 2 + 2 * len(sp.widths) + 18 * len(cfg.sensors)
    return 9 * floats + cfg.dedup_max_ids * (id_len + 3 + 9) + 2048


def device_growth(counts: Sequence[int] = (1, 100, 10_000), hz: float | None = None) -> dict:
    """Snapshot bytes of one device's :class:`~models.iot.DeviceState` after each of
    ``counts`` readings: a generated device (``datagen.sensors``, one reading every
    30-90 s) or, with ``hz``, the generator's readings re-timed at ``hz`` a second
    (:func:`benchmarks.common.hot_device_readings`)."""
    cfg, parse = iot_config(), _reading_parser()
    n = max(counts)
    rows = common.hot_device_readings(n, hz) if hz else common.iot_readings(n, devices=1)
    state = DeviceState(cfg)
    out: dict[str, Any] = {"readings_per_s": hz, "bytes": {}, "event_time_days": {}, "duplicates": 0}
    wanted, first, id_len = set(counts), None, 0
    for i, row in enumerate(rows, 1):
        try:
            r = parse(row, 0.0)
        except ValidationError:  # a reading with no sensor value: a dead letter in the flow
            out["invalid"] = out.get("invalid", 0) + 1
            r = None
        if r is not None:
            first = first or r
            res = state.update(r)
            if isinstance(res, DeadLetter):
                out["duplicates"] += 1
            else:
                id_len = max(id_len, len(res.id))
        if i in wanted and first is not None:
            out["bytes"][str(i)] = pickled_size(state.snapshot())
            out["event_time_days"][str(i)] = _span_days(first, r or first)
    out["bound_bytes"] = device_snapshot_bound(cfg, id_len)
    return out


def _fraud_states(cfg: Any) -> Any:
    """The fraud flow's two stateful steps, exactly as the flow runs them
    (:meth:`models.fraud.FraudPipeline.steps`: ``CustomerState`` per customer, then
    ``ShardState.update_many`` per shard and batch). No model, no Feast."""
    return FraudPipeline(cfg)


def _feed(pipe: Any, events: Iterable[dict], batch: int = 1_000) -> None:
    events = list(events)
    for i in range(0, len(events), batch):
        pipe.steps(events[i:i + batch], arrival=0.0)


def _score_reading(scorer: Any, row: Mapping[str, Any]) -> bool:
    """:meth:`~models.iot.IoTPipeline.process` one reading; False for one the flow
    would dead-letter (no sensor value, a duplicate)."""
    try:
        scorer.process(row, arrival=0.0)
    except ValidationError:
        return False
    return True


def shard_sizes(checkpoints: Sequence[int] = (1_000, 5_000, 20_000), iot_devices: int = 200) -> dict:
    """Snapshot bytes of the shared detectors' shard states (fraud
    :class:`~models.fraud.ShardState`, IoT :class:`~models.iot.ShardState`) after
    each checkpoint of generated events, through the flow's steps (fraud: the
    customer step then the shard step per batch of 1,000; IoT: :class:`~models.iot.IoTPipeline`)."""
    n = max(checkpoints)
    fraud_events = common.fraud_events(n)
    pipe = _fraud_states(fraud_config())
    fraud: dict[str, Any] = {}
    done = 0
    for c in sorted(checkpoints):
        _feed(pipe, fraud_events[done:c])
        done = c
        sizes = [pickled_size(s.snapshot()) for s in pipe.shard_states.values()]
        fraud[str(c)] = {"shards": len(sizes), "max_bytes": max(sizes), "mean_bytes": round(statistics.mean(sizes))}
    scorer = IoTPipeline(iot_config())
    iot: dict[str, Any] = {}
    readings = common.iot_readings(n, devices=iot_devices)
    done = 0
    for c in sorted(checkpoints):
        for row in readings[done:c]:
            _score_reading(scorer, row)
        done = c
        sizes = [pickled_size(s.snapshot()) for s in scorer.shards.values()]
        iot[str(c)] = {"shards": len(sizes), "max_bytes": max(sizes), "mean_bytes": round(statistics.mean(sizes))}
    return {"fraud": fraud, "iot": {"devices": iot_devices, **iot}}


# --- 2. time per epoch ---------------------------------------------------------------------


def _time_snapshots(states: Sequence[Any], repeats: int) -> dict:
    """Snapshot and pickle every state as Bytewax 0.21.1 does at an epoch's end,
    ``repeats`` times (the median is reported): first ``snapshot()`` of every
    touched key, all kept (its stateful operator hands them on in one loop), then
    ``pickle.dumps`` of each, dropping it (its ``ser_snap`` drains them). Also
    timed apart: the same work one key at a time (each snapshot pickled and dropped
    at once), which keeps fewer objects alive for the garbage collector, and the
    Bytewax-shaped work with the cyclic garbage collector off (what it costs)."""
    dumps = pickle.dumps
    k = len(states)
    total, runs, snap_part, pickle_part, one_by_one, gc_off = 0, [], [], [], [], []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        snaps: list[Any] = [s.snapshot() for s in states]
        t1 = time.perf_counter()
        total = 0
        for i in range(k):
            total += len(dumps(snaps[i]))
            snaps[i] = None
        t2 = time.perf_counter()
        del snaps
        runs.append(t2 - t0)
        snap_part.append(t1 - t0)
        pickle_part.append(t2 - t1)
        gc.collect()
        t0 = time.perf_counter()
        for s in states:
            dumps(s.snapshot())
        one_by_one.append(time.perf_counter() - t0)
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            snaps = [s.snapshot() for s in states]
            for i in range(k):
                dumps(snaps[i])
                snaps[i] = None
            gc_off.append(time.perf_counter() - t0)
            del snaps
        finally:
            gc.enable()
    med = statistics.median(runs)

    def per_key(xs: list[float]) -> float | None:
        return round(statistics.median(xs) / k * 1e6, 2) if k else None

    return {
        "keys": k,
        "ms_per_epoch": round(med * 1e3, 2),
        "ms_per_epoch_min": round(min(runs) * 1e3, 2),
        "us_per_key": per_key(runs),
        "snapshot_us_per_key": per_key(snap_part),
        "pickle_us_per_key": per_key(pickle_part),
        "one_at_a_time_us_per_key": per_key(one_by_one),
        "gc_off_us_per_key": per_key(gc_off),
        "bytes_per_epoch": total,
        "bytes_per_key": round(total / k) if k else None,
    }


def epoch_cost(keys: Sequence[int] = CUSTOMER_EPOCH_KEYS, device_keys: Sequence[int] = DEVICE_EPOCH_KEYS,
               base_events: int = 20_000, repeats: int = 3) -> dict:
    """What an epoch's end costs: snapshot + pickle of K touched keys.

    Customers: ``base_events`` generated transactions of the demo world (about 10
    per customer) through the flow's customer and shard steps; K states are
    those customers' states, each put into a new :class:`~models.fraud.CustomerState`
    with ``load`` in turn (a state's snapshot cost depends on what it holds, not on
    how it got there), so K can exceed the world's 2,000 customers. Devices: the
    same with ``base_events`` generated readings of 1,000 devices (about 20 each).
    The shard states (one per shard, touched every epoch) are timed apart.
    Medians of ``repeats`` runs."""
    cfg = fraud_config()
    pipe = _fraud_states(cfg)
    _feed(pipe, common.fraud_events(base_events))
    protos = [s.snapshot() for s in pipe.customer_states.values()]
    states = []
    for i in range(max(keys, default=0)):
        s = CustomerState(cfg)
        s.load(protos[i % len(protos)])
        states.append(s)
    out: dict[str, Any] = {
        "customers": {"base_events": base_events, "distinct_in_base": len(protos),
                      "events_per_customer": round(base_events / len(protos), 1),
                      "per_k": [_time_snapshots(states[:k], repeats) for k in keys]},
        "fraud_shards": _time_snapshots(list(pipe.shard_states.values()), max(repeats, 5)),
    }
    del states
    icfg = iot_config()
    scorer = IoTPipeline(icfg)
    for row in common.iot_readings(base_events, devices=1_000):
        _score_reading(scorer, row)
    dprotos = [d.snapshot() for d in scorer.devices.values()]
    devices = []
    for i in range(max(device_keys, default=0)):
        d = DeviceState(icfg)
        d.load(dprotos[i % len(dprotos)])
        devices.append(d)
    out["devices"] = {"base_events": base_events, "distinct_in_base": len(dprotos),
                      "per_k": [_time_snapshots(devices[:k], repeats) for k in device_keys]}
    out["iot_shards"] = _time_snapshots(list(scorer.shards.values()), max(repeats, 5))
    return out


def bytewax_epoch(keys: Sequence[int] = (1_000, 20_000), repeats: int = 3) -> dict:
    """What recovery adds per touched key inside Bytewax itself, in this process:
    the flow's customer step (:func:`dataflows.operators.stateful_object` over
    :class:`~models.fraud.CustomerState`, wired as ``dataflows/fraud.py`` wires it)
    run with ``bytewax.testing.run_main`` (one worker) over K transactions of K new
    customers, without recovery and with it (``RecoveryConfig`` on a fresh
    directory from ``init_db_dir(dir, 1)``, backup interval 0). The run is one
    epoch, so every key is snapshotted once at its end. Bytewax calls
    ``snapshot()`` at every epoch's end with or without recovery; recovery adds the
    pickling, the SQLite write and the collection of older rows. CPU seconds of this
    process (``time.process_time``), medians of ``repeats`` runs taking turns."""
    import tempfile

    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSink, TestingSource, run_main

    cfg = fraud_config()
    base = common.fraud_events(min(max(keys, default=1), 20_000))
    out: dict[str, Any] = {"repeats": repeats, "per_k": []}
    for k in keys:
        txs = [parse_transaction(e, 0.0) for e in common.distinct_customer_events(k, base, "epoch")]

        def flow() -> Dataflow:
            f = Dataflow("snapshots_bench")
            keyed = op.key_on("by_customer", op.input("in", f, TestingSource(txs, batch_size=1_000)),
                              lambda tx: tx.customer_id)
            featured = stateful_object("customer_features", keyed, lambda: CustomerState(cfg), CustomerState.update,
                                       expire_after_s=cfg.idle_expiry_s or None)
            op.output("out", op.map("count", featured, lambda kv: 1), TestingSink([]))
            return f

        cpu: dict[str, list[float]] = {"off": [], "recovery": []}
        store: dict = {}
        size = 0
        for _ in range(max(1, repeats)):
            for mode in ("off", "recovery"):
                with tempfile.TemporaryDirectory(prefix="snapbench-") as tmp:
                    kw: dict[str, Any] = {"epoch_interval": timedelta(seconds=3_600)}
                    if mode == "recovery":
                        init_db_dir(Path(tmp), 1)
                        kw["recovery_config"] = RecoveryConfig(Path(tmp), backup_interval=timedelta(0))
                    dataflow = flow()
                    gc.collect()
                    t = time.process_time()
                    run_main(dataflow, **kw)
                    cpu[mode].append(time.process_time() - t)
                    if mode == "recovery":
                        store, size = recovery_store(Path(tmp)), dir_bytes(Path(tmp))
        off, rec = statistics.median(cpu["off"]), statistics.median(cpu["recovery"])
        step = store.get("steps", {}).get("snapshots_bench.customer_features.stateful", {})
        out["per_k"].append({
            "keys": k,
            "cpu_s_off": round(off, 3),
            "cpu_s_recovery": round(rec, 3),
            "recovery_us_per_key": round((rec - off) / k * 1e6, 1) if k else None,
            "each": {m: [round(x, 3) for x in v] for m, v in cpu.items()},
            "stored_rows": step.get("rows"),
            "stored_bytes_per_key": step.get("mean_bytes"),
            "recovery_dir_bytes": size,
        })
    return out


# --- 3. the flow, with and without recovery ----------------------------------------------------


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (0 when it does not exist).

    >>> dir_bytes(Path("/nonexistent/nowhere"))
    0
    """
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def recovery_store(path: Path) -> dict:
    """What a Bytewax recovery directory holds: per step of its ``snaps`` tables
    (all partitions), the rows (one per key: older epochs are collected with
    ``-b 0``), the live snapshot bytes (``ser_change``), mean and max per row."""
    steps: dict[str, dict[str, float]] = {}
    for db in sorted(Path(path).glob("*.sqlite3")):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT step_id, COUNT(*), COALESCE(SUM(LENGTH(ser_change)), 0), MAX(LENGTH(ser_change))"
                " FROM snaps GROUP BY step_id").fetchall()
        finally:
            con.close()
        for step, n, total, biggest in rows:
            s = steps.setdefault(step, {"rows": 0, "bytes": 0, "max_bytes": 0})
            s["rows"] += n
            s["bytes"] += total
            s["max_bytes"] = max(s["max_bytes"], biggest or 0)
    for s in steps.values():
        s["mean_bytes"] = round(s["bytes"] / s["rows"]) if s["rows"] else 0
    return {"partitions": len(list(Path(path).glob("*.sqlite3"))), "steps": steps,
            "snapshot_bytes": sum(s["bytes"] for s in steps.values())}


#: the inputs of the flow runs: the demo world's events (about 10 per customer in
#: 20,000), and the same events each of a new customer (every event a new key: the
#: most keys an epoch can touch)
FLOW_INPUTS = ("demo", "distinct")


def recovery_runs(events: int = 20_000, intervals: Sequence[float] = (1, 10), work: Path = Path(
        "output/bench/snapshots"), feature_repo: Path = Path("feature_repo"), registry: Path = Path("model_registry"),
        repeats: int = 1, inputs: Sequence[str] = FLOW_INPUTS, timeout: float = 1_800.0, keep: bool = False) -> dict:
    """The fraud flow file to file, one worker, on ``events`` generated transactions
    (``"demo"``: :func:`benchmarks.common.fraud_events`; ``"distinct"``: the same
    each of a new customer, :func:`benchmarks.common.distinct_customer_events`),
    without recovery, then with recovery at each snapshot interval (``-r DIR -s S
    -b 0`` on a fresh directory made by ``python -m bytewax.recovery DIR 1``).

    Each configuration runs ``repeats`` times, the configurations taking turns (so
    a change of the machine's load hits them alike); wall seconds, CPU seconds of
    the flow's process (user + system, from ``os.wait4``: what the flow itself
    spent, less sensitive than wall time to other work on the machine) and
    events/s are medians, the rest is from the last run. After a run with recovery: the
    directory's size on disk (SQLite keeps the pages of collected snapshots for
    reuse, so it exceeds the live snapshots) and what its ``snaps`` table holds
    (:func:`recovery_store`)."""
    unknown = set(inputs) - set(FLOW_INPUTS)
    if unknown:
        raise ValueError(f"inputs must be among {FLOW_INPUTS}, got {sorted(unknown)}")
    work = Path(work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    demo = common.fraud_events(events)
    rows = {"demo": demo, "distinct": list(common.distinct_customer_events(events, demo))}
    srcs = {name: work / f"{name}.jsonl" for name in inputs}
    customers = {}
    for name in inputs:
        common.write_jsonl(rows[name], srcs[name])
        customers[name] = len({r["customer_id"] for r in rows[name]})
    del rows, demo
    repo_env = {"STREAMSCORE_FEAST__REPO": str(Path(feature_repo).resolve()),
                "STREAMSCORE_MODEL__REGISTRY": str(Path(registry).resolve())}
    configs = [(name, s) for name in inputs for s in (None, *intervals)]
    done: dict[tuple[str, float | None], list[dict]] = {c: [] for c in configs}
    try:
        for _ in range(max(1, repeats)):
            for name, s in configs:
                label = f"{name}-{'off' if s is None else f'{s:g}s'}"
                rec, out_dir = work / f"recovery-{label}", work / f"out-{label}"
                shutil.rmtree(rec, ignore_errors=True)
                shutil.rmtree(out_dir, ignore_errors=True)
                args: list[str] = []
                if s is not None:
                    rec.mkdir()
                    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(rec), "1"], cwd=common.ROOT,
                                   check=True, capture_output=True, timeout=120)
                    args = ["-r", str(rec), "-s", f"{s:g}", "-b", "0"]
                r = common.run_flow_file("fraud", srcs[name], out_dir, repo_env, timeout, keep_outputs=True,
                                         args=args)
                if s is not None:
                    size = dir_bytes(rec)
                    r["recovery_dir_bytes"] = size
                    r["recovery_dir_bytes_per_customer"] = round(size / customers[name]) if customers[name] else None
                    r["store"] = recovery_store(rec)
                done[(name, s)].append(r)
                if not keep:
                    shutil.rmtree(out_dir, ignore_errors=True)
                    shutil.rmtree(rec, ignore_errors=True)
    finally:
        if not keep:
            for src in srcs.values():
                src.unlink(missing_ok=True)

    def med(xs: list[dict], key: str) -> float | None:
        vals = [x[key] for x in xs if x.get(key) is not None]
        return round(statistics.median(vals), 3) if vals else None

    out: dict[str, Any] = {"events": events, "workers": 1, "repeats": max(1, repeats), "inputs": {}}
    for name in inputs:
        runs = []
        for s in (None, *intervals):
            each = done[(name, s)]
            r = {"snapshot_interval_s": s, **each[-1]}
            for key in ("wall_s", "cpu_s", "events_per_s", "events_per_s_whole_run"):
                r[key] = med(each, key)
            r["each"] = [{k: x.get(k) for k in ("wall_s", "cpu_s", "events_per_s")} for x in each]
            runs.append(r)
        off = runs[0]
        for r in runs[1:]:
            r["events_per_s_vs_off"] = (round(r["events_per_s"] / off["events_per_s"], 3)
                                        if r["events_per_s"] and off["events_per_s"] else None)
            r["wall_vs_off"] = round(r["wall_s"] / off["wall_s"], 3) if r["wall_s"] and off["wall_s"] else None
            r["cpu_vs_off"] = round(r["cpu_s"] / off["cpu_s"], 3) if r["cpu_s"] and off["cpu_s"] else None
            r["cpu_s_more_than_off"] = (round(r["cpu_s"] - off["cpu_s"], 3)
                                        if r["cpu_s"] is not None and off["cpu_s"] is not None else None)
        out["inputs"][name] = {"distinct_customers": customers[name], "runs": runs}
    return out


# --- everything --------------------------------------------------------------------------------


def run(keys: int = 100_000, quick: bool = False, flow: bool = True, flow_events: int | None = None,
        hot_tx: int = 100_000, work: Path = Path("output/bench/snapshots"), feature_repo: Path = Path("feature_repo"),
        registry: Path = Path("model_registry"), repeats: int | None = None,
        flow_inputs: Sequence[str] = FLOW_INPUTS, base_events: int = 20_000) -> dict:
    """Every measurement of this module; JSON-ready. ``keys`` is the largest K of
    the customer epochs. ``quick``: K up to 10,000; 5,000 flow events instead of
    20,000, each configuration run once instead of twice. ``base_events``: the
    generated events behind the epochs' states and the last shard checkpoint (the
    10 Hz device gets 2.5 times as many readings, at most 50,000). The flow runs go
    first, while this process is small (a child's peak RSS counts what it shared
    with its parent when forked)."""
    if quick:
        keys = min(keys, 10_000)
    flow_events = flow_events or (5_000 if quick else 20_000)
    repeats = repeats or (1 if quick else 2)
    hot_readings = min(50_000, int(2.5 * base_events))
    started = time.perf_counter()
    doc: dict[str, Any] = {"machine": common.machine(),
                           "serialization": "pickle.dumps(state.snapshot()), protocol "
                                            f"{pickle.DEFAULT_PROTOCOL} (Bytewax's default)"}
    ck = [k for k in CUSTOMER_EPOCH_KEYS if k < keys] + [keys]
    dk = [k for k in DEVICE_EPOCH_KEYS if k <= keys] or [keys]
    if flow:
        t = time.perf_counter()
        doc["flow"] = recovery_runs(flow_events, (1, 10), work, feature_repo, registry, repeats, flow_inputs)
        doc["flow"]["seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    doc["sizes"] = {
        "customer": customer_growth((1, 10, 100, 1_000), "busiest"),
        "customer_median": customer_growth((1, 10, 100, 1_000), "median"),
        "hot_customer": hot_customer(hot_tx, 10.0, tuple(c for c in (1_000, 10_000, 50_000, 100_000) if c < hot_tx)),
        "device": device_growth((1, 100, 10_000)),
        "hot_device_10hz": device_growth(
            tuple(sorted({c for c in (1, 100, 10_000) if c < hot_readings} | {hot_readings})), hz=10.0),
        "shards": shard_sizes(tuple(sorted({c for c in (1_000, 5_000) if c < base_events} | {base_events}))),
    }
    doc["sizes"]["seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    doc["epoch"] = epoch_cost(ck, dk, base_events)
    doc["epoch"]["bytewax"] = bytewax_epoch(sorted({k for k in (1_000, 20_000) if k < keys} | {min(keys, 20_000)}))
    doc["epoch"]["seconds"] = round(time.perf_counter() - t, 1)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    try:
        doc["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.snapshots", description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=100_000, help="largest K of touched customers per epoch (100,000)")
    p.add_argument("--quick", action="store_true", help="K up to 10,000 and 5,000 flow events")
    p.add_argument("--flow-events", type=int, default=None, help="events of the flow runs (20,000; quick 5,000)")
    p.add_argument("--hot-tx", type=int, default=100_000, help="transactions of the hot customer (100,000)")
    p.add_argument("--base-events", type=int, default=20_000,
                   help="events behind the epochs' states and the warm shards (20,000)")
    p.add_argument("--no-flow", action="store_true", help="skip the flow runs (sizes and epochs only)")
    p.add_argument("--repeats", type=int, default=None, help="runs of each flow configuration (2; quick 1)")
    p.add_argument("--flow-inputs", default=",".join(FLOW_INPUTS),
                   help=f"comma-separated flow inputs among {','.join(FLOW_INPUTS)} (both)")
    p.add_argument("--work", type=Path, default=Path("output/bench/snapshots"), help="scratch folder of the flow runs")
    p.add_argument("--feature-repo", type=Path, default=Path("feature_repo"))
    p.add_argument("--registry", type=Path, default=Path("model_registry"))
    a = p.parse_args(argv)
    os.chdir(common.ROOT)
    doc = run(a.keys, a.quick, not a.no_flow, a.flow_events, a.hot_tx, a.work, a.feature_repo, a.registry,
              a.repeats, tuple(x for x in a.flow_inputs.split(",") if x), a.base_events)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
