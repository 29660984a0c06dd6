"""Duplicates and idle keys: a re-delivered event is scored once and counted once,
and per-key state expires after an idle time in event time, across restarts too."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any, List, Optional

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSink, run_main

from settings.config import FraudConfig, IoTConfig
from dataflows.fraud import build_flow as build_fraud_flow
from dataflows.iot import build_flow as build_iot_flow
from dataflows.operators import stateful_object
from features.dedup import RecentIds
from features.records import format_time
from models.fraud import CustomerState, FraudScoringConfig
from models.iot import DeviceState, IoTScoringConfig
from features.sensors import parse_reading
from features.transactions import parse_transaction

T0 = 1_790_000_000.0


# --- RecentIds ----------------------------------------------------------------------


def test_recent_ids_horizon_cap_and_snapshot():
    ids = RecentIds(horizon_s=100, max_ids=3)
    assert [ids.check(i, t) for i, t in [("a", 0), ("b", 10), ("c", 20)]] == [None, None, None]
    assert ids.check("a", 30) == 0  # within the horizon and the cap
    assert ids.check("d", 40) is None  # the cap forgets the oldest: "a"
    assert ids.check("a", 41) is None and len(ids) == 3
    assert ids.check("b", 42) is None  # "b" was forgotten by the cap when "a" came back
    assert ids.check("x", 500) is None and len(ids) == 1  # the horizon forgets everything older than 400
    copy = RecentIds(100, 3)
    copy.load(ids.snapshot())
    assert copy.check("x", 510) == 500 and copy.snapshot() == ids.snapshot()
    assert RecentIds(0, 10).check("a", 0) is None and RecentIds(0, 10).snapshot() is None  # off


def test_a_hot_key_keeps_at_most_max_ids():
    ids = RecentIds(horizon_s=1e9, max_ids=256)
    for i in range(100_000):
        ids.check(f"t{i}", float(i))
    assert len(ids) == 256 and ids.check("t99999", 1e5) == 99_999.0 and ids.check("t0", 1e5) is None


# --- per-key state --------------------------------------------------------------------


def tx(i: str, t: float, customer: str = "C1", amount: float = 10.0) -> Any:
    return parse_transaction({"transaction_id": i, "customer_id": customer, "merchant_id": "M1",
                              "merchant_category": "gas", "amount": amount, "latitude": 40.7,
                              "longitude": -74.0, "timestamp": t}, arrival=t)


def test_a_duplicate_changes_no_customer_state():
    s = CustomerState(FraudScoringConfig(dedup_horizon_s=600))
    s.update(tx("a", T0))
    s.update(tx("b", T0 + 60))
    before = s.snapshot()
    dup = s.update(tx("a", T0, amount=999.0))  # same id, even with other values: the first copy wins
    assert dup.step == "dedup" and "transaction_id 'a' of customer 'C1'" in dup.error
    assert s.snapshot() == before
    assert s.update(tx("c", T0 + 120)).features["amount_count_1h"] == 3
    # beyond the horizon the id is new again (documented: the horizon bounds memory)
    assert not hasattr(s.update(tx("a", T0 + 800)), "step")


def test_dedup_off_scores_every_copy():
    s = CustomerState(FraudScoringConfig(dedup_horizon_s=0))
    assert s.update(tx("a", T0)).features["amount_count_1h"] == 1
    assert s.update(tx("a", T0)).features["amount_count_1h"] == 2


def test_an_idle_customer_starts_afresh_and_a_busy_one_does_not():
    cfg = FraudScoringConfig(idle_expiry_s=3600)
    s = CustomerState(cfg)
    s.update(tx("a", T0))
    kept = s.update(tx("b", T0 + 3600))  # exactly the idle time: kept
    assert kept.features["amount_count_24h"] == 2 and kept.features["time_since_last_transaction"] == 3600
    fresh = s.update(tx("c", T0 + 7201))
    assert fresh.features["amount_count_24h"] == 1 and fresh.features["time_since_last_transaction"] is None
    assert fresh.amount_warming and s.last_event_time == T0 + 7201


def test_iot_duplicate_readings_and_idle_devices():
    cfg = IoTScoringConfig(idle_expiry_s=600, warmup=2)
    dev = DeviceState(cfg)

    def rd(t: float, temp: float = 20.0, **extra: Any) -> Any:
        return parse_reading({"device_id": "d1", "timestamp": t, "temperature": temp, **extra}, cfg.features,
                             arrival=t)

    first = dev.update_many([rd(T0), rd(T0 + 1), rd(T0), rd(T0 + 2), rd(T0, temp=99.0)])
    # the same time and values again: a duplicate; the same time with other values: a reading
    assert [getattr(r, "step", "scored") for r in first] == ["scored", "scored", "dedup", "scored", "scored"]
    assert "id 'd1@" in first[2].error and dev.seq == 4
    again = dev.update(rd(T0 + 2000))  # idle 1998 s > 600 s: a new device as far as state goes
    assert dev.seq == 1 and again.features["dt_s"] is None and again.warming  # detectors re-warm
    no_time = parse_reading({"device_id": "d1", "temperature": 1.0}, cfg.features, arrival=T0 + 2001)
    assert [r.id for r in dev.update_many([no_time, no_time])][0].endswith("#2")  # timed by arrival: never dup


# --- the operator: idle keys are dropped --------------------------------------------


class _WallClock:
    """The wall clock the expiry operator reads (``time.monotonic``), moved by the test
    only: how much wall time passed between two batches is a number of the test's
    choosing, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:  # when Bytewax wakes the step: the real clock
        return time.time()

    def perf_counter(self) -> float:
        return time.perf_counter()


class _Stepped(StatefulSourcePartition[Any, int]):
    """Emits its groups in order, one at a time: a group goes only once the step has
    output every item of the ones before, with the wall clock set to the group's time,
    and once its ``ready()`` says the expiry checks it waits for have run (returning
    nothing meanwhile, so the worker keeps running and its timers fire)."""

    def __init__(self, groups: list[tuple[float, list, Any]], clock: _WallClock, out: list,
                 late: list, resume: Optional[int]):
        self.groups, self.clock, self.out, self.late = groups, clock, out, late
        self.i = resume or 0
        self.sent = sum(len(g[1]) for g in groups[: self.i])
        self.deadline: float | None = None

    def next_batch(self) -> List[Any]:
        if self.i >= len(self.groups):
            raise StopIteration
        at, items, ready = self.groups[self.i]
        if len(self.out) < self.sent:
            return []  # the step has not output the previous groups yet
        self.clock.now = at
        if ready is not None and not ready():
            self.deadline = self.deadline or time.monotonic() + 60  # only a guard against hanging
            if time.monotonic() < self.deadline:
                return []
            self.late.append(at)
        self.i, self.deadline = self.i + 1, None
        self.sent += len(items)
        return items

    def next_awake(self):
        from datetime import datetime, timezone

        return datetime.now(timezone.utc) + timedelta(seconds=0.01)

    def snapshot(self) -> int:
        return self.i


class _SteppedSource(FixedPartitionedSource[Any, int]):
    def __init__(self, groups, clock=None, out=None, late=None):
        self.groups, self.clock = groups, clock or _WallClock()
        self.out = out if out is not None else []
        self.late = late if late is not None else []

    def list_parts(self):
        return ["stepped"]

    def build_part(self, step_id, for_part, resume_state):
        return _Stepped(self.groups, self.clock, self.out, self.late, resume_state)


class _Last:
    """A per-key state with ``last_event_time`` (the contract of expiry) and a count."""

    built: list[str] = []

    def __init__(self) -> None:
        self.n, self.t, self.key = 0, None, None

    @property
    def last_event_time(self):
        return self.t

    def snapshot(self):
        return (self.n, self.t)

    def load(self, snap):
        self.n, self.t = snap


def _count(state: _Last, item: tuple[str, float]) -> tuple[str, int]:
    state.key = item[0]
    state.n += 1
    state.t = item[1] if state.t is None else max(state.t, item[1])
    return item[0], state.n


def test_idle_keys_are_dropped_in_event_time_and_only_then(monkeypatch):
    """Expiry after 50 s of event time, checked at most every 0.5 s of wall time. The
    wall clock the step reads is the test's: it moves only from one group to the next,
    and a group waits until the expiry checks it names have run (counted), so what is
    asserted does not depend on how fast the machine is."""
    import dataflows.operators as operators_mod

    clock = _WallClock()
    monkeypatch.setattr(operators_mod, "time", clock)
    checks: list[tuple[str, float, bool]] = []  # (key, wall time, dropped) of every expiry check
    on_notify = operators_mod._ObjectLogic.on_notify

    def counted(self):
        emit, keep = on_notify(self)
        checks.append((self.state.key, clock.now, keep == StatefulBatchLogic.DISCARD))
        return emit, keep

    monkeypatch.setattr(operators_mod._ObjectLogic, "on_notify", counted)

    def checked(key: str, dropped: bool | None = None):
        """Ready once ``key`` was checked at the current wall time (with that outcome)."""
        return lambda: any(k == key and at == clock.now and dropped in (None, d) for k, at, d in checks)

    # "c" lags far behind the clock in event time, but sends a batch every 0.1 s of wall
    # time (well under check_every_s): it is active, so never dropped; every 4th batch
    # waits until "c" was checked 0.1 s after its previous one
    lagging = [(round(0.9 + 0.1 * i, 1), [("c", 10.0)], checked("c") if i % 4 == 3 else None) for i in range(16)]
    groups = [
        (0.0, [("a", 0.0), ("b", 0.0)], None),
        (0.3, [("b", 40.0)], None),   # event time moved 40 s: "a" (idle 50 s allowed) stays
        (0.6, [("a", 45.0)], checked("a")),  # "a" had no batch for 0.6 s, but is within 50 s: count 2
        (0.85, [("b", 200.0)], None),  # 155 s past "a": it is dropped at its next check
        *lagging,
        (2.5, [("a", 201.0)], lambda: any(k == "a" and d for k, _, d in checks)),  # a new "a": count 1
    ]
    flow, out, late = Dataflow("expiry"), [], []
    keyed = op.key_on("key", op.input("in", flow, _SteppedSource(groups, clock, out, late)), lambda x: x[0])
    op.output("out", stateful_object("count", keyed, _Last, _count, expire_after_s=50.0, check_every_s=0.5),
              TestingSink(out))
    run_main(flow)
    assert late == []  # every check a group waited for ran
    got = [v for _, v in out]
    assert [v for v in got if v[0] != "c"] == [("a", 1), ("b", 1), ("b", 2), ("a", 2), ("b", 3), ("a", 1)]
    assert [v for v in got if v[0] == "c"] == [("c", i) for i in range(1, 17)]
    # the checks the groups waited for, and what they decided
    assert ("a", 0.6, False) in checks and {at for k, at, _ in checks if k == "c"} >= {1.2, 1.6, 2.0, 2.4}
    assert not any(d for k, _, d in checks if k in ("b", "c"))  # active or not idle: never dropped
    assert [at for k, at, d in checks if k == "a" and d] and all(at >= 0.6 + 0.5 for k, at, d in checks
                                                                 if k == "a" and d)


def test_expiry_is_off_without_a_time_and_rejects_a_bad_setting():
    with pytest.raises(ValueError, match="expire_after_s"):
        flow = Dataflow("bad")
        keyed = op.key_on("key", op.input("in", flow, _SteppedSource([])), lambda x: x[0])
        stateful_object("count", keyed, _Last, _count, expire_after_s=0.0)


# --- the fraud flow across a restart -----------------------------------------------


def _line(i: str, customer: str, t: float, amount: float = 20.0) -> bytes:
    return orjson.dumps({"transaction_id": i, "customer_id": customer, "merchant_id": "M00001",
                         "merchant_category": "grocery", "amount": amount, "latitude": 40.7,
                         "longitude": -74.0, "timestamp": format_time(t)})


def _read(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()] if path.exists() else []


def test_duplicates_and_idle_expiry_hold_across_a_restart(fraud_env, tmp_path):
    """Run 1 scores some transactions with recovery on; run 2 resumes on the same
    (grown) file: a copy of a run-1 id is still a duplicate, a customer back within
    the idle time keeps its windows, one back after it starts afresh."""
    now = time.time() - 3 * 86400
    src, out, rec = tmp_path / "in.jsonl", tmp_path / "out", tmp_path / "recovery"
    rec.mkdir()
    init_db_dir(rec, 1)
    env = {"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src), "STREAMSCORE_IO__OUTPUT_DIR": str(out),
           "STREAMSCORE_FEAST__REPO": str(fraud_env.repo), "STREAMSCORE_MODEL__REGISTRY": str(fraud_env.registry),
           "STREAMSCORE_FRAUD__IDLE_EXPIRY_S": "7200", "STREAMSCORE_STATE__DEDUP_HORIZON_S": "86400", "STREAMSCORE_IO__BATCH_SIZE": "2"}
    part1 = [_line("a1", "C_busy", now), _line("b1", "C_idle", now), _line("a2", "C_busy", now + 60),
             _line("a2", "C_busy", now + 60)]
    src.write_bytes(b"\n".join(part1) + b"\n")
    run_main(build_fraud_flow(FraudConfig.from_env(env)), epoch_interval=timedelta(seconds=0),
             recovery_config=RecoveryConfig(str(rec)))
    first_dead = _read(out / "dead_letter.jsonl")
    assert [d["step"] for d in first_dead] == ["dedup"] and "'a2'" in first_dead[0]["error"]

    part2 = [_line("a1", "C_busy", now), _line("a3", "C_busy", now + 3600), _line("b2", "C_idle", now + 3 * 3600)]
    with src.open("ab") as f:
        f.write(b"\n".join(part2) + b"\n")
    # resumes: the store holds run 1's state and input offset (only the new lines are read)
    run_main(build_fraud_flow(FraudConfig.from_env(env)), epoch_interval=timedelta(seconds=0),
             recovery_config=RecoveryConfig(str(rec)))
    scored = {r["transaction_id"]: r for r in _read(out / "scored.jsonl")}
    dead = _read(out / "dead_letter.jsonl")
    assert sorted(scored) == ["a1", "a2", "a3", "b1", "b2"]
    assert [d["raw"]["transaction_id"] for d in dead] == ["a2", "a1"]  # a1 again after the restart: duplicate
    assert scored["a3"]["amount_count_24h"] == 3 and scored["a3"]["time_since_last_transaction"] == 3540
    assert scored["b2"]["amount_count_24h"] == 1 and scored["b2"]["time_since_last_transaction"] is None


def test_iot_flow_refuses_a_repeated_reading(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    now = time.time() - 3600
    rows = [{"device_id": "d1", "timestamp": format_time(now + i), "temperature": 20.0 + i} for i in range(5)]
    src.write_bytes(b"\n".join(orjson.dumps(r) for r in [*rows, rows[2], rows[4]]) + b"\n")
    cfg = IoTConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src), "STREAMSCORE_IO__OUTPUT_DIR": str(out),
                              "STREAMSCORE_IOT__DEVICE_PROFILE": "false"})
    run_main(build_iot_flow(cfg))
    scored, dead = _read(out / "scored.jsonl"), _read(out / "dead_letter.jsonl")
    assert len(scored) == 5 and len(dead) == 2 and {d["step"] for d in dead} == {"dedup"}
    assert sorted(d["raw"]["temperature"] for d in dead) == [22.0, 24.0]


def test_training_history_leaves_out_the_copies_the_stream_would_refuse(tmp_path):
    from models.train import load_history

    rows = [{"transaction_id": i, "customer_id": c, "merchant_id": "M1", "merchant_category": "gas", "amount": 5.0,
             "latitude": 1.0, "longitude": 2.0, "timestamp": T0 + k, "is_fraud": 0}
            for k, (i, c) in enumerate([("a", "C1"), ("a", "C1"), ("a", "C2"), ("b", "C1")])]
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    assert [(tx.transaction_id, tx.customer_id) for tx in load_history(path)] == [("a", "C1"), ("a", "C2"), ("b", "C1")]
