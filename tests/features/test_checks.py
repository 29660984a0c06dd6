"""Every class with plain-data state (``snapshot()`` / ``load(snap)``) in features/ and
models/ passes the one generic check, :func:`features.checks.check_state`.

Each case is ``(name, make, step, events)`` (plus where to snapshot and which
wall-clock fields to leave out): a small realistic stream, long enough that the state
at the snapshot matters (detectors past their warm-up, windows that have evicted,
ids to recognise). The test also checks that each case means something: the object
is warm at the snapshot, and a fresh object (never loaded) answers the rest of the
stream differently, so "restore is exact" cannot pass on a ``load`` that does nothing.

The classes are those ``grep -rn "def snapshot" features models`` finds; a new one
needs a case here (``test_every_class_with_a_snapshot_has_a_case``).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.checks import check_state, difference
from features.dedup import RecentIds
from features.records import DeadLetter, format_time
from features.sensors import DeviceFeatures, SensorConfig, parse_reading
from features.store import MERCHANT_DEFAULTS, PROFILE_DEFAULTS, CachedLookup
from features.transactions import CustomerFeatures, Transaction, parse_transaction
from features.windows import TiledWindows
from models.detectors import DriftMonitor, KeyDetector, ShardDetector, StuckDetector
from models.detectors.hst import HalfSpaceTrees
from models.fraud import CustomerState, FraudPipeline, FraudScoringConfig, ScoreDrift
from models.fraud import ShardState as FraudShardState
from models.inference_log import LogSpec, LogWriter, log_row
from models.iot import DeviceState, IoTScoringConfig
from models.iot import ShardState as IoTShardState

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0  # 2026-09-21, event time of the streams
WALL_CLOCK = frozenset({"scored_at", "latency_ms", "received_at"})  # stamped with time.time()


@dataclass
class Case:
    name: str
    make: Callable[[], Any]
    step: Callable[[Any, Any], Any]
    events: list[Any]
    split: int | None = None
    ignore: frozenset[str] = frozenset()
    #: what must hold of the object at the snapshot for the case to mean something
    ready: Callable[[Any], bool] | None = None
    covers: tuple[type, ...] = field(default_factory=tuple)  # classes whose snapshot/load the case exercises


# ------------------------------------------------------------------ streams


def transaction_raws(n: int, seed: int, customers: int = 1, dup_every: int = 23) -> list[dict]:
    """Raw transactions (as they arrive): gaps of minutes with a few of hours, a lognormal
    amount per customer with an odd large one, purchases near home with a trip now and
    then, timestamps up to 5 minutes out of order, and a re-delivered copy every
    ``dup_every`` events."""
    rng = random.Random(seed)
    t = T0
    out: list[dict] = []
    for i in range(n):
        t += rng.expovariate(1 / 900.0) if rng.random() > 0.05 else rng.uniform(3 * 3600, 9 * 3600)
        c = rng.randrange(customers)
        away = rng.random() < 0.04
        raw = {
            "transaction_id": f"tx-{seed}-{i:05d}",
            "customer_id": f"C{c:06d}",
            "merchant_id": f"M{rng.randrange(50):05d}",
            "merchant_category": rng.choice(["grocery", "gas", "online", "travel", "restaurant"]),
            "amount": round(math.exp(rng.gauss(3.2 + 0.3 * c, 0.7)) * (25 if rng.random() < 0.02 else 1), 2),
            "timestamp": format_time(t - rng.uniform(0, 300)),
            "latitude": round((48.86 if away else 40.71) + rng.gauss(0, 0.05), 5),
            "longitude": round((2.35 if away else -74.0) + rng.gauss(0, 0.05), 5),
            "channel": rng.choice(["web", "pos", "app"]),
        }
        out.append(raw)
        if dup_every and i % dup_every == dup_every - 1:
            out.append(dict(out[rng.randrange(max(0, len(out) - 6), len(out))]))  # a producer retry
    return out


def transactions(raws: list[dict]) -> list[Transaction]:
    return [parse_transaction(r, arrival=T0) for r in raws]


SENSORS = ("temperature", "humidity", "pressure")


def reading_rows(n: int, seed: int, device: str = "dev-1", gap: float = 30.0, stuck_at: int | None = None) -> list[dict]:
    """Raw readings of one device: noisy sensors, a missing value now and then, readings
    up to 90 s out of order, a stuck temperature run, a slow pressure drift in the
    second half, a re-delivered copy every 40 readings and one reading with no time.
    The stuck run is the 12 readings from ``stuck_at`` (default: a third of the way)."""
    rng = random.Random(seed)
    out: list[dict] = []
    stuck = None
    stuck_at = n // 3 if stuck_at is None else stuck_at
    for i in range(n):
        t = T0 + gap * i + rng.uniform(-gap / 3, gap / 3) - (rng.uniform(0, 90) if rng.random() < 0.1 else 0.0)
        vals: dict[str, Any] = {
            "temperature": round(rng.gauss(21.0, 0.3), 2),
            "humidity": round(rng.gauss(45.0, 1.5), 2),
            "pressure": round(rng.gauss(1012.0, 0.4) + (0.05 * (i - n // 2) if i > n // 2 else 0.0), 2),
        }
        if stuck_at <= i < stuck_at + 12:
            stuck = stuck if stuck is not None else vals["temperature"]
            vals["temperature"] = stuck
        if rng.random() < 0.05:
            vals[rng.choice(SENSORS)] = None
        if i % 37 == 11:
            vals["humidity"] = round(vals["humidity"] + 12.0, 2)  # a spike
        row = {"device_id": device, "timestamp": format_time(t), **vals, "firmware": "1.4.2"}
        if i == n // 4:
            del row["timestamp"]  # timed by its arrival
        out.append(row)
        if i % 40 == 39:
            out.append(dict(out[-2]))  # the same reading delivered again
    return out


def readings(rows: list[dict], config: SensorConfig) -> list:
    out = []
    for k, r in enumerate(rows):
        out.append(parse_reading(r, config, arrival=T0 + 30.0 * k + 5.0))
    return out


def batches(items: list, sizes: tuple[int, ...] = (1, 5, 1, 12, 3, 30, 2, 8)) -> list[list]:
    out: list[list] = []
    i = 0
    for n in itertools.cycle(sizes):
        if i >= len(items):
            return out
        out.append(items[i:i + n])
        i += n
    return out


# ------------------------------------------------------------------ cases: features/


def case_tiled_windows(_: Path) -> Case:
    rng = random.Random(1)
    events = []
    for i in range(700):
        t = T0 + 2.0 * i
        late = rng.random()
        if late < 0.1:
            t -= rng.uniform(0, 20)  # within the lateness
        elif late < 0.13:
            t -= rng.uniform(40, 900)  # beyond it, some beyond the retention
        x = None if rng.random() < 0.03 else round(rng.gauss(5.0, 2.0), 3)
        events.append((t, {"x": x, "y": round(rng.uniform(0, 1), 3)}))

    def step(w: TiledWindows, ev):
        t, vals = ev
        mask = w.insert(t, vals)
        return mask, w.aggregates(t), w.previous(t)

    return Case("TiledWindows", lambda: TiledWindows((60.0, 600.0), ("x",), 20.0, tiles=12, extra_fields=("y",),
                                                     max_tail=50, min_tail=3),
                step, events, split=450, ready=lambda w: w.floor > -math.inf and w.tile_count() > 0,
                covers=(TiledWindows,))


def case_recent_ids(_: Path) -> Case:
    rng = random.Random(2)
    events: list[tuple[str, float]] = []
    seen: list[str] = []
    for i in range(400):
        t = T0 + 20.0 * i
        if seen and rng.random() < 0.25:
            eid = rng.choice(seen[-30:])  # a re-delivery, recent or already forgotten
        else:
            eid = f"e{i}"
            seen.append(eid)
        events.append((eid, t))
    return Case("RecentIds", lambda: RecentIds(horizon_s=300.0, max_ids=12), lambda ids, ev: ids.check(*ev), events,
                ready=lambda ids: len(ids) == 12, covers=(RecentIds,))


def case_customer_features(_: Path) -> Case:
    txs = transactions(transaction_raws(320, seed=3, dup_every=0))
    return Case("CustomerFeatures", lambda: CustomerFeatures(lateness_s=600.0, max_events=64),
                lambda f, tx: f.update(tx.t, tx.amount, tx.latitude, tx.longitude), txs,
                ready=lambda f: f.windows.floor > -math.inf, covers=(CustomerFeatures,))


def case_device_features(_: Path) -> Case:
    cfg = SensorConfig(windows_s=(300.0, 3600.0), lateness_s=120.0, max_events=64)
    rows = [r for r in reading_rows(400, seed=4) if "timestamp" in r]
    return Case("DeviceFeatures", lambda: DeviceFeatures(cfg), lambda d, r: d.update(r.t, r.values),
                readings(rows, cfg), split=250, ready=lambda d: d.windows.floor > -math.inf,
                covers=(DeviceFeatures,))


# ------------------------------------------------------------------ cases: models/detectors


def case_key_detector(_: Path) -> Case:
    rng = random.Random(5)
    values: list[float | None] = [round(rng.gauss(50.0, 2.0), 3) for _ in range(240)]
    for i in range(0, 240, 29):
        values[i] = None if i % 2 else float("nan")
    for i in range(150, 240):
        v = values[i]
        if v is not None and v == v:
            values[i] = v + 6.0  # a level shift
    values[60] = 95.0  # a spike
    return Case("KeyDetector", lambda: KeyDetector(alpha=0.05, warmup=20, scale=3.0), KeyDetector.score_learn, values,
                split=120, ready=lambda d: not d.warming_up, covers=(KeyDetector,))


def case_stuck_detector(_: Path) -> Case:
    rng = random.Random(6)
    values: list[float | None] = [round(rng.gauss(20.0, 0.3), 2) for _ in range(260)]
    for start in (90, 170, 230):
        values[start:start + 10] = [values[start]] * 10  # stuck runs
    values[100] = None
    return Case("StuckDetector", lambda: StuckDetector(warmup=30), StuckDetector.score_learn, values, split=140,
                ready=lambda d: not d.warming_up, covers=(StuckDetector,))


def case_drift_monitor(_: Path) -> Case:
    rng = random.Random(7)
    # the level rises by 0.15 at 140, detected at 165: after the snapshot, with the sums built before it
    scores = [abs(rng.gauss(0.05, 0.03)) + (0.15 if i >= 140 else 0.0) for i in range(280)]
    return Case("DriftMonitor", lambda: DriftMonitor(threshold=3.0, min_instances=30), DriftMonitor.update, scores,
                split=150, ready=lambda d: d.ph._x_mean.n >= 30, covers=(DriftMonitor,))


HST_FEATURES = ("a", "b", "c")


def hst_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row: dict[str, float | None] = {"a": rng.betavariate(2, 5), "b": rng.random(), "c": min(1.0, rng.expovariate(8))}
        if i % 31 == 7:
            row["b"] = None  # missing: goes down the heavier side
        if i % 43 == 20:
            row = {"a": 0.99, "b": 0.01, "c": 0.98}  # an outlier
        rows.append(row)
    return rows


def case_half_space_trees(_: Path) -> Case:
    def step(h: HalfSpaceTrees, x: dict) -> float:
        s = h.score_one(x)
        h.learn_one(x)
        return s

    return Case("HalfSpaceTrees", lambda: HalfSpaceTrees(n_trees=5, height=4, window_size=25, seed=3,
                                                         features=HST_FEATURES),
                step, hst_rows(160, 8), split=88, ready=lambda h: not h._first_window, covers=(HalfSpaceTrees,))


def case_shard_detector(_: Path) -> Case:
    rows = [{k: None if v is None else 10.0 * v for k, v in r.items()} for r in hst_rows(260, 9)]
    return Case("ShardDetector", lambda: ShardDetector(HST_FEATURES, window_size=30, calib_warmup=10, seed=3),
                ShardDetector.score_learn_many, batches(rows), split=18,  # after 117 rows
                ready=lambda d: not d.warming_up, covers=(ShardDetector,))


# ------------------------------------------------------------------ cases: models/fraud

FCFG = FraudScoringConfig(amount_warmup=5, shard_window=30, shard_calib_warmup=10, shards=2,
                          dedup_horizon_s=3600.0, dedup_max_ids=32)


def case_customer_state(_: Path) -> Case:
    txs = transactions(transaction_raws(160, seed=10))
    return Case("fraud.CustomerState", lambda: CustomerState(FCFG), CustomerState.update, txs, split=90,
                ignore=WALL_CLOCK, ready=lambda s: not s.amount_detector.warming_up and len(s.ids) > 0,
                covers=(CustomerState,))


def featured_transactions(n: int, seed: int, customers: int) -> list[Transaction]:
    """Transactions after their CustomerState (the shard step's input), duplicates dropped."""
    states: dict[str, CustomerState] = {}
    out = []
    for tx in transactions(transaction_raws(n, seed=seed, customers=customers)):
        res = states.setdefault(tx.customer_id, CustomerState(FCFG)).update(tx)
        if not isinstance(res, DeadLetter):
            out.append(res)
    return out


def case_fraud_shard_state(_: Path) -> Case:
    txs = featured_transactions(220, seed=11, customers=5)
    return Case("fraud.ShardState", lambda: FraudShardState(FCFG), FraudShardState.update_many, batches(txs),
                split=20, ready=lambda s: not s.detector.warming_up, covers=(FraudShardState,))


def case_score_drift(_: Path) -> Case:
    rng = random.Random(12)
    recs = [{"fraud_score": min(1.0, rng.betavariate(0.5, 12) + (0.3 if i >= 260 else 0.0)), "model_version": "m/1",
             "transaction_id": f"t{i}", "event_time": format_time(T0 + 60 * i)} for i in range(340)]
    return Case("ScoreDrift", lambda: ScoreDrift(threshold=3.0, min_instances=40), ScoreDrift.update_many,
                batches(recs, (10, 1, 25, 4)), split=25, ignore=WALL_CLOCK,
                ready=lambda d: d.monitor.ph._x_mean.n >= 40, covers=(ScoreDrift,))


class StubModel:
    """A model stand-in: probability grows with the 1-hour amount sum; no explanation."""

    version = "stub/1"

    def predict(self, X):
        return np.minimum(np.nan_to_num(X[:, 0]) / 5000.0 + 0.01, 1.0)

    def explain(self, X, top=3):
        return [[] for _ in range(len(X))]


def case_fraud_pipeline(_: Path) -> Case:
    raws: list[Any] = transaction_raws(300, seed=13, customers=6)  # C4, C5 in shard 0, the others in shard 1
    raws.insert(40, {"transaction_id": "bad-1", "customer_id": "C000001"})  # refused: dead letter in place
    raws.insert(200, '{"transaction_id": "bad-2", "amount": "a lot"')  # not JSON

    def make() -> FraudPipeline:
        def nowhere(keys: Any) -> dict:  # a feature store that knows nobody
            return {}

        return FraudPipeline(FCFG, StubModel(), CachedLookup(nowhere, PROFILE_DEFAULTS),  # type: ignore[arg-type]
                             CachedLookup(nowhere, MERCHANT_DEFAULTS))

    return Case("FraudPipeline", make, lambda p, batch: p.process(batch, arrival=T0), batches(raws), split=22,
                ignore=WALL_CLOCK, ready=lambda p: len(p.shard_states) == 2 and all(
                    not s.detector.warming_up for s in p.shard_states.values()),
                covers=(FraudPipeline,))


# ------------------------------------------------------------------ cases: models/iot

ICFG = IoTScoringConfig(warmup=15, shard_window=30, shard_calib_warmup=10, n_shards=1, drift_threshold=2.0,
                        drift_min_instances=10, dedup_horizon_s=900.0, dedup_max_ids=64,
                        features=SensorConfig(windows_s=(300.0, 1800.0), lateness_s=120.0, max_events=64))


def case_device_state(_: Path) -> Case:
    rs = readings(reading_rows(260, seed=14, stuck_at=140), ICFG.features)  # stuck across the snapshot
    return Case("iot.DeviceState", lambda: DeviceState(ICFG), DeviceState.update, rs, split=150, ignore=WALL_CLOCK,
                ready=lambda d: not d.level["temperature"].warming_up and len(d.ids) > 0,
                covers=(DeviceState,))


def case_iot_shard_state(_: Path) -> Case:
    devices: dict[str, DeviceState] = {}
    results = []
    rows = sorted((r for k in range(4) for r in reading_rows(60, seed=20 + k, device=f"dev-{k}")),
                  key=lambda r: r.get("timestamp", ""))
    for res in (devices.setdefault(r.device, DeviceState(ICFG)).update(r) for r in readings(rows, ICFG.features)):
        if not isinstance(res, DeadLetter):
            results.append(res)
    return Case("iot.ShardState", lambda: IoTShardState(ICFG), IoTShardState.update_many, batches(results), split=16,
                ignore=WALL_CLOCK, ready=lambda s: not s.detector.warming_up, covers=(IoTShardState,))


# ------------------------------------------------------------------ cases: models/inference_log

LOG_SPEC = LogSpec("fraud", "transaction_id", "customer_id", scores=("fraud_score",), features=("amount",))


class ResumableLogWriter:
    """:class:`LogWriter` under the check's contract. Its ``snapshot()`` is the recovery
    state ``(run, next seq)``; its restore is the constructor (``resume=``), so ``load``
    builds the writer again from the current configuration with ``resume=snap``. Each
    object writes into a folder of its own; ``write`` returns the files it wrote, by
    name, with their rows."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.writer = self._writer(None)

    def _writer(self, resume: Any) -> LogWriter:
        return LogWriter(self.root, LOG_SPEC, part=3, max_rows=7, flush_s=1e9, resume=resume)

    def write(self, rows: list[tuple]) -> list[tuple[str, list[dict]]]:
        import pyarrow.parquet as pq

        before = set(self.root.rglob("*.parquet"))
        self.writer.write(rows)
        new = sorted(set(self.root.rglob("*.parquet")) - before)
        return [(str(p.relative_to(self.root)), pq.read_table(p).to_pylist()) for p in new]

    def snapshot(self) -> tuple[str, int]:
        return self.writer.snapshot()

    def load(self, snap: tuple[str, int]) -> None:
        self.writer = self._writer(snap)


def case_log_writer(tmp_path: Path) -> Case:
    rng = random.Random(15)
    recs = [{"transaction_id": f"t{i}", "customer_id": f"C{i % 5}", "fraud_score": round(rng.random(), 4),
             "amount": round(rng.uniform(1, 500), 2), "model_version": "m/1", "status": "NORMAL", "latency_ms": 1.5,
             "scored_at": format_time(T0 + 3000 * i), "event_time": format_time(T0 + 3000 * i - 2)}
            for i in range(80)]  # scored over 3 days: files in 3 date partitions
    rows = [log_row(r, LOG_SPEC) for r in recs]
    folders = (tmp_path / f"writer-{k}" for k in itertools.count())
    return Case("LogWriter", lambda: ResumableLogWriter(next(folders)), ResumableLogWriter.write,
                batches(rows, (3, 9, 1, 5)), split=7, ready=lambda w: w.writer.seq > 0, covers=(LogWriter,))


CASES = [
    case_tiled_windows, case_recent_ids, case_customer_features, case_device_features,
    case_key_detector, case_stuck_detector, case_drift_monitor, case_half_space_trees, case_shard_detector,
    case_customer_state, case_fraud_shard_state, case_score_drift, case_fraud_pipeline,
    case_device_state, case_iot_shard_state, case_log_writer,
]


def _outputs(obj: Any, step: Callable, events: list) -> list:
    return [copy.deepcopy(step(obj, copy.deepcopy(e))) for e in events]


@pytest.mark.parametrize("build", CASES, ids=[c.__name__.removeprefix("case_") for c in CASES])
def test_state_snapshot_and_load(build, tmp_path: Path) -> None:
    case = build(tmp_path)
    check_state(case.make, case.step, case.events, split=case.split, ignore=case.ignore, name=case.name)

    # the case means something: at the snapshot the state is past its warm-up, and an
    # object that never saw the beginning (no load) answers the rest differently
    split = len(case.events) // 2 if case.split is None else case.split
    head, rest = case.events[:split], case.events[split:]
    a = case.make()
    _outputs(a, case.step, head)
    if case.ready is not None:
        assert case.ready(a), f"{case.name}: the stream is too short: not warm at the snapshot"
    expected = _outputs(a, case.step, rest)
    assert difference(expected, _outputs(case.make(), case.step, rest), ignore=case.ignore) is not None, (
        f"{case.name}: a fresh object answers the rest of the stream like the restored one: the case tests nothing")


def test_every_class_with_a_snapshot_has_a_case(tmp_path: Path) -> None:
    """Each class of features/ and models/ with a ``def snapshot(self`` method has a case."""
    found = set()
    for path in sorted((ROOT / "features").rglob("*.py")) + sorted((ROOT / "models").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        cls = None
        for line in path.read_text().splitlines():
            if m := re.match(r"class (\w+)(\(Protocol\))?", line):
                cls = None if m[2] else m[1]  # a Protocol (features.checks.Stateful) only describes one
            elif re.match(r"\s+def snapshot\(self", line) and cls is not None:
                found.add((module, cls))
    assert len(found) >= 16, sorted(found)
    covered = {(c.__module__, c.__name__) for build in CASES for c in build(tmp_path).covers}
    assert found - covered == set(), f"classes with a snapshot() and no case: {sorted(found - covered)}"
