"""The snapshot benchmark (``python -m benchmarks.snapshots``) at tiny sizes: its
figures are sane and consistent, a hot key's snapshot stays under the bound its
configuration implies, and Bytewax stores exactly the bytes the benchmark counts.
No timing is asserted."""

from __future__ import annotations

import math
import pickle
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks import snapshots as S


@pytest.fixture(scope="module")
def cfg():
    return S.fraud_config()


def test_the_flows_default_settings_are_measured(cfg) -> None:
    # what bounds a key's state: the lateness (600 s), the exact tail (512), the recent ids (256)
    assert (cfg.lateness_s, cfg.max_events, cfg.dedup_max_ids) == (600.0, 512, 256)
    assert S.iot_config().features.windows_s == (300.0, 3600.0)


def test_a_customer_grows_with_its_history_under_the_bound(cfg) -> None:
    r = S.customer_growth((1, 10, 100), "busiest")
    b = r["bytes"]
    assert r["duplicates"] == 0 and r["tx_per_day"] > 0
    assert 0 < b["1"] < b["10"] < b["100"] < S.customer_snapshot_bound(cfg)
    assert r["event_time_days"]["1"] == 0.0 < r["event_time_days"]["100"]


def test_a_hot_customer_is_bounded_by_its_configuration(cfg) -> None:
    from models.fraud import CustomerState

    r = S.hot_customer(20_000, gap_s=10.0, checkpoints=(1_000, 10_000))
    b, held = r["bytes"], r["held"]
    assert set(b) == {"1000", "10000", "20000"} and r["duplicates"] == 0
    # what features/windows.py and features/dedup.py promise, whatever the rate
    sp = CustomerState(cfg).features.windows.spec
    assert all(n <= sp.n_tiles + math.ceil(sp.lateness / w) + 2 for n, w in zip(held["tiles_per_horizon"], sp.widths))
    assert held["tail_events"] == cfg.max_events  # 20,000 events in 2.3 days: the exact tail is full
    assert held["recent_ids"] == cfg.dedup_max_ids  # so are the recent ids (360 an hour at 10 s)
    assert b["20000"] <= r["bound_bytes"] == S.customer_snapshot_bound(cfg, len("tx-hot-000000000000"))
    # doubling the events adds only the 7-day tiles of the new days (a few hundred bytes)
    assert 0 <= b["20000"] - b["10000"] < 0.05 * b["20000"]
    assert r["same_size_with_highest_protocol"]


def test_devices_flatten_once_their_windows_are_full() -> None:
    r = S.device_growth((1, 100, 1_000))
    b = r["bytes"]
    assert b["1"] < b["100"]
    assert abs(b["1000"] - b["100"]) <= 0.1 * b["100"]  # 100 readings already span more than 1 h + lateness
    assert b["1000"] <= r["bound_bytes"]
    hot = S.device_growth((1, 2_000), hz=10.0)  # 10 readings a second: 200 s of event time
    assert hot["bytes"]["1"] < hot["bytes"]["2000"] <= hot["bound_bytes"]


def test_shard_snapshots_are_constant_once_warm() -> None:
    r = S.shard_sizes((1_500, 3_000), iot_devices=20)
    for flow in ("fraud", "iot"):
        early, late = r[flow]["1500"], r[flow]["3000"]
        assert early["shards"] == late["shards"] == 4
        assert abs(late["max_bytes"] - early["max_bytes"]) <= 0.01 * early["max_bytes"]
        assert 10_000 < late["max_bytes"] < 64 * 1024  # the HalfSpaceTrees masses: about 21 KiB


def test_epoch_figures_are_consistent(cfg) -> None:
    r = S.epoch_cost(keys=(50, 200), device_keys=(20,), base_events=1_000, repeats=1)
    c = r["customers"]
    assert [x["keys"] for x in c["per_k"]] == [50, 200]
    for x in c["per_k"] + r["devices"]["per_k"]:
        assert x["bytes_per_epoch"] > 0 and x["ms_per_epoch"] > 0
        assert x["bytes_per_key"] == round(x["bytes_per_epoch"] / x["keys"])
        # both are rounded (ms to 0.01, so up to 5 µs over the keys; µs to 0.01)
        assert x["us_per_key"] == pytest.approx(x["ms_per_epoch"] * 1e3 / x["keys"], abs=0.02 + 5.0 / x["keys"])
    small, big = c["per_k"]
    assert 300 < big["bytes_per_key"] < S.customer_snapshot_bound(cfg)
    assert big["bytes_per_epoch"] > small["bytes_per_epoch"]
    assert r["fraud_shards"]["keys"] == r["iot_shards"]["keys"] == cfg.shards


def test_bytewax_stores_exactly_the_pickled_snapshot(cfg, tmp_path: Path) -> None:
    """Run the flow's customer step with Bytewax recovery in-process, then compare
    every stored row with ``pickle.dumps(snapshot())`` of the same state run in a loop."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSink, TestingSource, run_main

    from benchmarks import common
    from dataflows.operators import stateful_object
    from features.transactions import parse_transaction
    from models.fraud import CustomerState

    events = common.fraud_events(600)
    flow = Dataflow("snapbench")
    txs = op.map("parse", op.input("in", flow, TestingSource(events)), lambda e: parse_transaction(e, 0.0))
    keyed = op.key_on("by_customer", txs, lambda tx: tx.customer_id)
    out: list = []
    op.output("out", stateful_object("customer_features", keyed, lambda: CustomerState(cfg), CustomerState.update),
              TestingSink(out))
    init_db_dir(tmp_path, 1)
    run_main(flow, epoch_interval=timedelta(seconds=60), recovery_config=RecoveryConfig(tmp_path))  # one epoch
    assert len(out) == len(events)

    states: dict[str, CustomerState] = {}
    for e in events:
        tx = parse_transaction(e, 0.0)
        states.setdefault(tx.customer_id, CustomerState(cfg)).update(tx)
    con = sqlite3.connect(tmp_path / "part-0.sqlite3")
    try:
        stored = dict(con.execute("SELECT state_key, ser_change FROM snaps WHERE step_id = ?",
                                  ("snapbench.customer_features.stateful",)).fetchall())
    finally:
        con.close()
    assert stored.keys() == states.keys()
    assert all(stored[k] == pickle.dumps(s.snapshot()) for k, s in states.items())
    assert all(len(stored[k]) == S.pickled_size(s.snapshot()) for k, s in states.items())

    store = S.recovery_store(tmp_path)
    step = store["steps"]["snapbench.customer_features.stateful"]
    assert step["rows"] == len(states)  # one row per key
    assert step["bytes"] == sum(len(v) for v in stored.values())
    assert store["partitions"] == 1 and S.dir_bytes(tmp_path) >= store["snapshot_bytes"]


def test_bytewax_epoch_counts_one_stored_row_per_key() -> None:
    r = S.bytewax_epoch((150,), repeats=1)
    (x,) = r["per_k"]
    assert x["keys"] == x["stored_rows"] == 150
    assert x["cpu_s_off"] > 0 and x["cpu_s_recovery"] > 0
    # the CPU seconds are rounded to the millisecond
    assert x["recovery_us_per_key"] == pytest.approx((x["cpu_s_recovery"] - x["cpu_s_off"]) / 150 * 1e6,
                                                     abs=2e-3 / 150 * 1e6)
    assert 300 < x["stored_bytes_per_key"] < 1_000  # one transaction's state
    assert x["recovery_dir_bytes"] > 150 * x["stored_bytes_per_key"]
