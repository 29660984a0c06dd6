"""Write-back of live features: the fraud flow's scored records -> each customer's latest
streaming features in the Feast online store (SQLite, and Redis with ``-m redis``), read
back through the ``fraud_live`` feature service; the IoT flow's readings -> ``device_live``;
the writer's batching, rate limit and failure handling; an unreachable store is logged and
never raises."""

from __future__ import annotations

import math
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from structlog.testing import capture_logs

from settings.config import FraudConfig, IoTConfig
from dataflows.fraud import build_flow as build_fraud_flow
from dataflows.iot import build_flow as build_iot_flow
from dataflows.connectors.writeback import fraud_writeback, iot_writeback, write_back
from datagen.transactions import stream_transactions, write_events
from features.live import CUSTOMER_LIVE_FEATURES, LiveWriter, device_live_row, feast_pusher, live_row
from features.records import parse_time
from features.store import open_store
from tests.conftest import apply_and_materialize, make_feature_repo

REDIS = os.environ.get("REDIS_CONNECTION_STRING", "127.0.0.1:6379")


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def run_fraud_flow(events: list[dict], tmp: Path, repo: Path, registry: Path, **env: str) -> list[dict]:
    """The real fraud flow, file to file, in-process; its scored records."""
    tmp.mkdir(parents=True, exist_ok=True)
    write_events(events, tmp / "in.jsonl")
    cfg = FraudConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(tmp / "in.jsonl"),
                                "STREAMSCORE_IO__OUTPUT_DIR": str(tmp / "out"), "STREAMSCORE_IO__BATCH_SIZE": "100",
                                "STREAMSCORE_FEAST__REPO": str(repo), "STREAMSCORE_MODEL__REGISTRY": str(registry), **env})
    run_main(build_fraud_flow(cfg))
    return read_jsonl(tmp / "out" / "scored.jsonl")


def push_records(records: list[dict], build: Any, batch_size: int = 100) -> list[LiveWriter]:
    """A small dataflow: the records as a source -> write_back; the writers it built."""
    writers: list[LiveWriter] = []

    def builder() -> LiveWriter:
        writers.append(build())
        return writers[-1]

    flow = Dataflow("writeback_test")
    write_back("live", op.input("in", flow, TestingSource(records, batch_size)), builder)
    run_main(flow)
    return writers


def latest_by_customer(records: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in records:
        c = r["customer_id"]
        if c not in out or parse_time(r["timestamp"]) >= parse_time(out[c]["timestamp"]):
            out[c] = r
    return out


def read_live(store: Any, customers: list[str], merchant: str) -> dict[str, dict]:
    """Through the fraud_live feature service, as the endpoint (and `feast serve`) reads."""
    resp = store.get_online_features(features=store.get_feature_service("fraud_live"),
                                     entity_rows=[{"customer_id": c, "merchant_id": merchant} for c in customers],
                                     ).to_dict()
    return {c: {k: v[i] for k, v in resp.items()} for i, c in enumerate(customers)}


@pytest.fixture(scope="module")
def scored(fraud_env, tmp_path_factory) -> list[dict]:
    """600 events of the test world through the real fraud flow (6 batches of 100)."""
    events = stream_transactions(600, seed=31, spec=fraud_env.spec)
    return run_fraud_flow(events, tmp_path_factory.mktemp("wb_flow"), fraud_env.repo, fraud_env.registry)


def check_store_holds_latest(store: Any, scored: list[dict]) -> None:
    latest = latest_by_customer(scored)
    customers = sorted(latest)
    live = read_live(store, customers, scored[0]["merchant_id"])
    for c in customers:
        want, got = live_row(latest[c]), live[c]
        assert got["last_transaction_id"] == latest[c]["transaction_id"], c
        for name in CUSTOMER_LIVE_FEATURES:
            if want[name] is None:
                assert got[name] is None, (c, name)
            elif isinstance(want[name], float):
                assert got[name] == pytest.approx(want[name], rel=1e-12), (c, name)
            else:
                assert got[name] == want[name], (c, name)
        # the service also serves the profile next to the live features
        assert got["avg_transaction_amount"] is not None and got["merchant_risk_score"] is not None
    assert read_live(store, ["nobody-at-all"], "M-none")["nobody-at-all"]["amount_count_1h"] is None


def test_write_back_to_sqlite_serves_each_customers_latest_features(fraud_env, scored, tmp_path):
    repo = make_feature_repo(tmp_path / "repo", fraud_env.repo / "data")
    writers = push_records(scored, fraud_writeback(repo))
    (w,) = writers  # one worker, one writer
    latest = latest_by_customer(scored)
    st = w.stats.as_dict()
    assert st["records"] == len(scored) and st["rows"] == len(scored) and st["failures"] == 0
    # batched: one store call per upstream batch at most, one row per customer and call
    assert 1 <= st["push_calls"] <= 6
    assert len(latest) <= st["pushed"] < len(scored)
    check_store_holds_latest(open_store(repo), scored)


def test_the_fraud_flow_writes_back_with_scoring_writeback(fraud_env, tmp_path):
    repo = make_feature_repo(tmp_path / "repo", fraud_env.repo / "data")
    events = stream_transactions(300, seed=32, spec=fraud_env.spec)
    out = run_fraud_flow(events, tmp_path / "run", repo, fraud_env.registry, STREAMSCORE_WRITEBACK__ENABLED="true")
    check_store_holds_latest(open_store(repo), out)


def forget_live_rows(customers: Any) -> None:
    """Redis keeps the row with the newer event time, so rows another run wrote for these
    customers (the demo world has the same ids) would win: forget their customer_live
    timestamps (their other views stay; no flushall under other tests' feet)."""
    import redis
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    host, port = REDIS.split(":")
    client = redis.Redis(host=host, port=int(port))
    for c in customers:
        key = _redis_key("streamscore", EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=c)]))
        client.hdel(key, "_ts:customer_live")


@pytest.mark.redis
def test_write_back_to_redis(fraud_env, scored, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_CONNECTION_STRING", REDIS)
    repo = make_feature_repo(tmp_path / "repo", fraud_env.repo / "data")
    apply_and_materialize(repo, "feature_store.redis.yaml")
    store = open_store(repo, "feature_store.redis.yaml")
    forget_live_rows(latest_by_customer(scored))
    (w,) = push_records(scored, fraud_writeback(repo, "feature_store.redis.yaml"))
    assert w.stats.failures == 0 and w.stats.pushed >= len(latest_by_customer(scored))
    check_store_holds_latest(store, scored)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_store_is_logged_and_never_raises(fraud_env, scored, tmp_path):
    """The online store cannot be opened for writing (its SQLite file is a folder): the
    flow runs to its end, the failure is logged once per outage and counted, and the rows
    are kept for a retry and reported unwritten at the end."""
    repo = make_feature_repo(tmp_path / "repo", fraud_env.repo / "data")
    (repo / "data" / "online_store.db").unlink()
    (repo / "data" / "online_store.db").mkdir()
    with capture_logs() as logs:
        (w,) = push_records(scored, fraud_writeback(repo, retry_s=0.05, close_timeout_s=5.0))
    events = [e["event"] for e in logs]
    assert events.count("live_push_failed") == 1, events  # once per outage, not per call
    assert "unable to open database file" in next(e for e in logs if e["event"] == "live_push_failed")["error"]
    n = len(latest_by_customer(scored))
    assert w.stats.failures >= 2 and w.stats.pushed == 0 and w.waiting == n  # the last try was at close
    assert next(e for e in logs if e["event"] == "live_writer_closed")["unwritten"] == n


@pytest.mark.redis
def test_redis_down_is_logged_and_never_raises(fraud_env, scored, tmp_path, monkeypatch):
    """Nothing listens where Redis should be: redis-py gives up after its retries (about
    3-8 s per call here); the flow does not wait for it (rows are written from the
    writer's thread) and ends; the failure is logged and counted.

    Each store call is held until the flow has ended (then it goes on to the closed
    port): the flow must end while its writer's call is still out, which it could not
    if it waited for the store (in a batch, or at its end beyond ``close_timeout_s``)."""
    import dataflows.connectors.writeback as writeback_mod

    repo = make_feature_repo(tmp_path / "repo", fraud_env.repo / "data")
    (repo / "data" / "registry_redis.db").write_bytes((repo / "data" / "registry.db").read_bytes())
    monkeypatch.setenv("REDIS_CONNECTION_STRING", f"127.0.0.1:{_closed_port()}")
    flow_ended = threading.Event()
    started: list[int] = []
    returned: list[int] = []
    held_too_long: list[int] = []

    def held_pusher(*args: Any, **kwargs: Any) -> Any:
        push = feast_pusher(*args, **kwargs)

        def held(rows: list) -> None:
            started.append(len(rows))
            try:
                if not flow_ended.wait(120):  # only a guard against hanging: set when the flow ends
                    held_too_long.append(len(rows))
                push(rows)
            finally:
                returned.append(len(rows))

        return held

    monkeypatch.setattr(writeback_mod, "feast_pusher", held_pusher)
    with capture_logs() as logs:
        (w,) = push_records(scored, fraud_writeback(repo, "feature_store.redis.yaml", close_timeout_s=0.5))
        out_at_end = (len(started), len(returned))
        flow_ended.set()
        deadline = time.monotonic() + 60  # a guard against hanging: redis-py's retries take seconds
        while not w.stats.failures and time.monotonic() < deadline:
            time.sleep(0.1)
    assert held_too_long == [] and out_at_end == (1, 0)  # the flow ended while its one store call was out
    failed = [e for e in logs if e["event"] == "live_push_failed"]
    assert len(failed) == 1 and "Connection refused" in failed[0]["error"]
    assert w.stats.failures >= 1 and w.stats.pushed == 0 and w.waiting == len(latest_by_customer(scored))
    closed = [e for e in logs if e["event"] == "live_writer_closed"]  # at the flow's end: all still out
    assert len(closed) == 1 and closed[0]["unwritten"] >= len(latest_by_customer(scored))


def test_a_store_that_does_not_open_is_logged_and_never_raises(scored, tmp_path):
    with capture_logs() as logs:
        writers = push_records(scored[:50], fraud_writeback(tmp_path / "no-such-repo"), batch_size=10)
    assert writers == []
    events = [e["event"] for e in logs]
    assert "live_writer_unavailable" in events and "live_rows_unwritten" in events
    assert next(e for e in logs if e["event"] == "live_rows_unwritten")["records"] == 50


# --- IoT -------------------------------------------------------------------------------------


@pytest.mark.parametrize("store_yaml", [None, pytest.param("feature_store.redis.yaml", marks=pytest.mark.redis)],
                         ids=["sqlite", "redis"])
def test_iot_flow_writes_back_each_devices_latest_reading(fraud_env, tmp_path, monkeypatch, store_yaml):
    """The IoT flow with STREAMSCORE_WRITEBACK__ENABLED=true: Feast serves every device's latest reading."""
    import uuid

    from datagen.sensors import generate_readings

    repo = make_feature_repo(tmp_path / "repo", fraud_env.repo / "data")
    if store_yaml:
        monkeypatch.setenv("REDIS_CONNECTION_STRING", REDIS)
        apply_and_materialize(repo, store_yaml)
    run_id = uuid.uuid4().hex[:8]  # device ids of their own: Redis keeps the newest row of a key
    readings = [dict(r, device_id=f"{r['device_id']}-{run_id}") for r in generate_readings(devices=5, readings=400, seed=3)]
    write_events(readings, tmp_path / "in.jsonl")
    env = {"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(tmp_path / "in.jsonl"),
           "STREAMSCORE_IO__OUTPUT_DIR": str(tmp_path / "out"), "STREAMSCORE_IO__BATCH_SIZE": "50", "STREAMSCORE_IOT__DEVICE_PROFILE": "false",
           "STREAMSCORE_WRITEBACK__ENABLED": "true", "STREAMSCORE_FEAST__REPO": str(repo)}
    if store_yaml:
        env["STREAMSCORE_FEATURE_STORE_YAML"] = store_yaml
    run_main(build_iot_flow(IoTConfig.from_env(env)))
    out = read_jsonl(tmp_path / "out" / "scored.jsonl")
    latest: dict[str, dict] = {}
    for r in out:
        row = device_live_row(r)
        if row["device_id"] not in latest or row["last_reading_at"] >= latest[row["device_id"]]["last_reading_at"]:
            latest[row["device_id"]] = row
    assert len(latest) == 5
    store = open_store(repo, store_yaml)
    names = ["last_reading_at", "anomaly_score", "status", "features_json", "dt_s", "temperature_mean_300s"]
    resp = store.get_online_features(features=[f"device_live:{n}" for n in names],
                                     entity_rows=[{"device_id": d} for d in sorted(latest)]).to_dict()
    for i, d in enumerate(sorted(latest)):
        want = latest[d]
        assert resp["last_reading_at"][i] == want["last_reading_at"]
        assert resp["status"][i] == want["status"]
        assert orjson.loads(resp["features_json"][i]) == orjson.loads(want["features_json"])
        assert resp["temperature_mean_300s"][i] == pytest.approx(want["temperature_mean_300s"])


def test_device_rows_skip_drift_records():
    assert device_live_row({"kind": "drift", "id": "d@2026-01-01T00:00:00.000Z"}) is None
    row = device_live_row({"kind": "reading", "id": "dev@x@2026-01-01T00:00:00.000Z#3", "status": "NORMAL",
                           "anomaly_score": None, "features": {"dt_s": None, "a_mean_60s": 1.5}})
    assert row["device_id"] == "dev@x" and row["last_reading_at"] == parse_time("2026-01-01T00:00:00Z")
    assert row["a_mean_60s"] == 1.5 and "dt_s" not in row


# --- the writer --------------------------------------------------------------------------------


def rec(k: str, t: float, **extra: Any) -> dict:
    return {"k": k, "t": t, **extra}


def writer(pushed: list, **kw: Any) -> LiveWriter:
    return LiveWriter(pushed.append, row=dict, key="k", time_field="t", background=False, **kw)


def keys_times(batch: list[dict]) -> list[tuple[str, float]]:
    return [(r["k"], r["t"]) for r in batch]


def test_one_call_per_batch_last_row_per_key_and_no_rollback():
    pushed: list = []
    w = writer(pushed)
    assert w.write_batch([rec("a", 1), rec("b", 5), rec("a", 3), rec("a", 2)]) == 2
    assert [keys_times(b) for b in pushed] == [[("a", 3), ("b", 5)]]
    assert w.write_batch([rec("a", 2.5), rec("b", 6)]) == 1  # a's 2.5 is older than what the store has
    assert keys_times(pushed[-1]) == [("b", 6)]
    st = w.stats.as_dict()
    assert st["superseded"] == 2 and st["older"] == 1 and st["push_calls"] == 2 and st["pushed"] == 3


def test_rate_limit_holds_rows_in_event_time_and_loses_none():
    pushed: list = []
    w = writer(pushed, min_interval_s=60)
    w.write_batch([rec("a", 0)])
    w.write_batch([rec("a", 10)])  # within 60 s of a's last write: held
    w.write_batch([rec("a", 20), rec("b", 30)])  # a's newer row replaces the held one
    assert [keys_times(b) for b in pushed] == [[("a", 0)], [("b", 30)]] and w.waiting == 1
    w.write_batch([rec("c", 61)])  # the clock passes a's due time (0 + 60): its latest held row goes
    assert keys_times(pushed[-1]) == [("c", 61), ("a", 20)] or keys_times(pushed[-1]) == [("a", 20), ("c", 61)]
    w.write_batch([rec("c", 70)])
    assert w.waiting == 1 and w.flush() and keys_times(pushed[-1]) == [("c", 70)] and w.waiting == 0


def test_rate_limit_on_random_streams_one_write_per_interval_and_the_last_row_always_written():
    rng = random.Random(3)
    for _ in range(200):
        clock, writes = [0.0], {}

        def push(rows: list) -> None:
            for r in rows:
                writes.setdefault(r["k"], []).append((clock[0], r["t"]))

        w = LiveWriter(push, row=dict, key="k", time_field="t", background=False, min_interval_s=60)
        t, last = 0.0, {}
        for _ in range(40):
            batch = []
            for _ in range(rng.randint(1, 5)):
                t += rng.random() * 30
                k = f"k{rng.randint(0, 3)}"
                batch.append(rec(k, t))
                last[k] = t
            clock[0] = t  # the writer's clock: the newest event time of the batches
            w.write_batch(batch)
        for k, ws in writes.items():
            at = [c for c, _ in ws]
            assert all(b - a >= 60 for a, b in zip(at, at[1:])), (k, at)
        clock[0] = math.inf
        assert w.flush() and {k: ws[-1][1] for k, ws in writes.items()} == last


def test_failures_are_counted_logged_once_and_retried_newest_row_wins():
    pushed: list = []
    down = threading.Event()
    down.set()

    def push(rows: list) -> None:
        if down.is_set():
            raise ConnectionError("store down")
        pushed.append(rows)

    w = LiveWriter(push, row=dict, key="k", time_field="t", background=False, retry_s=0.0)
    with capture_logs() as logs:
        w.write_batch([rec("a", 1), rec("b", 1)])
        w.write_batch([rec("a", 2)])
        down.clear()
        w.write_batch([rec("c", 3)])
    assert [e["event"] for e in logs] == ["live_push_failed", "live_push_recovered"]
    assert sorted(keys_times(pushed[0])) == [("a", 2), ("b", 1), ("c", 3)]  # kept, and a's newer row won
    assert w.stats.failures == 2 and w.stats.pushed == 3


def test_a_record_without_a_row_is_counted_never_raised():
    pushed: list = []
    w = LiveWriter(pushed.append, background=False)  # fraud rows: live_row
    with capture_logs() as logs:
        w.write_batch([{"customer_id": "C1", "amount_count_7d": 1},  # no other window feature
                       {"customer_id": "C2", "timestamp": "bad",
                        **{f"amount_count_{h}": 1 for h in ("1h", "24h", "7d")}},
                       {"customer_id": "C3"}])  # no window features at all: no row, not invalid
    assert w.stats.invalid == 2 and pushed == [] and [e["event"] for e in logs] == ["live_row_invalid"]


def test_background_writer_never_blocks_the_stream():
    """The store call hangs until the test releases it: the stream's 50 batches all return
    while it still hangs (a writer that waited for the store could only return once the
    call had ended), nothing else is pushed meanwhile, and the batches coalesce."""
    release = threading.Event()
    calls: list = []
    ended: list = []  # store calls that returned
    stream = threading.get_ident()

    def slow(rows: list) -> None:
        calls.append(rows)
        if threading.get_ident() != stream:  # (a call made by the stream itself returns, to fail fast)
            release.wait(60)  # only a guard against hanging: the test releases it
        ended.append(rows)

    w = LiveWriter(slow, row=dict, key="k", time_field="t")
    w.write_batch([rec("k0", 0.0)])
    deadline = time.monotonic() + 30
    while not calls and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(calls) == 1
    for i in range(1, 51):  # while the first call hangs, batches coalesce: one row per key waits
        w.write_batch([rec(f"k{i % 5}", float(i))])
    assert ended == []  # every batch returned while the store call hung
    assert len(calls) == 1 and w.waiting == 1 + 5  # in the call + waiting
    assert w.stats.records == 51 and w.stats.superseded == 50 - 5  # a waiting row replaced, not queued twice
    release.set()
    assert w.close(30.0) and w.stats.pushed == 1 + 5 and w.waiting == 0
    assert len(calls) == len(ended) == 2 and sorted(keys_times(calls[1])) == [(f"k{i}", float(45 + (i or 5)))
                                                                              for i in range(5)]


def test_writeback_start_check_names_the_missing_view(fraud_env):
    from dataflows.connectors.writeback import check_live_view

    check_live_view(fraud_env.repo, None, "customer_live")  # applied by the fixture: fine
    with pytest.raises(ValueError, match=r"writeback.enabled=true: feast.repo=.* has no feature view 'nope'"):
        check_live_view(fraud_env.repo, None, "nope")


def test_a_key_with_undecodable_bytes_is_invalid_not_a_poison_row():
    """A CSV's undecodable bytes survive reading as lone surrogates. In a key they would fail
    every push the row joins (the store's keys are UTF-8), so the row is counted invalid;
    in other text they become U+FFFD, as in the JSON outputs. The other rows are written."""
    pushed: list = []
    w = writer(pushed)
    with capture_logs() as logs:
        w.write_batch([rec("a", 1), {"k": "C\udcff", "t": 2.0}, {"k": "b", "t": 3.0, "m": "M\udce9"}, rec("é", 4)])
    assert [keys_times(b) for b in pushed] == [[("a", 1), ("b", 3.0), ("é", 4)]]
    assert pushed[0][1]["m"] == "M\ufffd"
    assert w.stats.invalid == 1 and w.stats.failures == 0
    assert [e["event"] for e in logs] == ["live_row_invalid"] and "surrogates" in logs[0]["error"]
