"""The inference log: exactly the scored events, as Parquet by date, rotated by size,
resumed correctly; and the fraud flow's score-drift records."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest
from bytewax.testing import run_main

from settings.config import FraudConfig, IoTConfig
from dataflows.fraud import build_flow as build_fraud_flow
from dataflows.iot import build_flow as build_iot_flow
from datagen.transactions import stream_transactions, write_events
from models.fraud import LOG_SPEC, ScoreDrift
from models.inference_log import LogSpec, LogWriter, log_row


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()] if path.exists() else []


def log_rows(root: Path) -> list[dict]:
    return ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pylist()


def test_fraud_log_holds_exactly_the_scored_records(fraud_env, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    write_events(stream_transactions(3000, seed=21, spec=fraud_env.spec), src)
    cfg = FraudConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src), "STREAMSCORE_IO__OUTPUT_DIR": str(out),
                                "STREAMSCORE_FEAST__REPO": str(fraud_env.repo),
                                "STREAMSCORE_MODEL__REGISTRY": str(fraud_env.registry),
                                "STREAMSCORE_INFERENCE_LOG__MAX_ROWS": "400", "STREAMSCORE_IO__BATCH_SIZE": "100"})
    run_main(build_fraud_flow(cfg))
    scored = {r["transaction_id"]: r for r in read_jsonl(out / "scored.jsonl")}
    rows = log_rows(out / "inference_log")
    assert sorted(r["event_id"] for r in rows) == sorted(scored)
    for row in rows:
        rec = scored[row["event_id"]]
        assert (row["key"], row["model_version"], row["fraud_score"], row["risk_score"], row["status"],
                row["latency_ms"], row["amount_count_1h"]) == (
            rec["customer_id"], rec["model_version"], rec["fraud_score"], rec["risk_score"], rec["status"],
            rec["latency_ms"], rec["amount_count_1h"])
        assert row["scored_at"].isoformat(timespec="milliseconds").replace("+00:00", "Z") == rec["scored_at"]
        assert row["event_time"].isoformat(timespec="milliseconds").replace("+00:00", "Z") == rec["event_time"]
        assert str(row["date"]) == rec["scored_at"][:10]
    files = list((out / "inference_log").rglob("*.parquet"))
    assert len(files) >= 3000 // 400  # rotated by size
    assert all(ds.dataset(f).count_rows() <= 400 for f in files)
    assert not list((out / "inference_log").rglob(".*.tmp"))


def test_iot_log_holds_the_scored_readings_with_their_sensor_features(tmp_path):
    out = tmp_path / "out"
    cfg = IoTConfig.from_env({"STREAMSCORE_IO__GENERATOR_EVENTS": "1500", "STREAMSCORE_IO__OUTPUT_DIR": str(out),
                              "STREAMSCORE_IOT__DEVICE_PROFILE": "false"})
    run_main(build_iot_flow(cfg))
    scored = {r["id"]: r for r in read_jsonl(out / "scored.jsonl")}
    rows = {r["event_id"]: r for r in log_rows(out / "inference_log")}
    assert set(rows) == set(scored)
    some = next(r for r in rows.values() if r["temperature"] is not None)
    rec = scored[some["event_id"]]
    assert some["temperature"] == rec["temperature"]
    assert some["temperature_mean_300s"] == rec["features"]["temperature_mean_300s"]
    assert some["anomaly_score"] == rec["anomaly_score"] and some["key"] == rec["device_id"]


def test_log_off_with_kafka_outputs_by_default_and_on_demand():
    assert FraudConfig.from_env({}).io.log_enabled
    assert not FraudConfig.from_env({"STREAMSCORE_OUTPUT": "kafka"}).io.log_enabled
    assert FraudConfig.from_env({"STREAMSCORE_OUTPUT": "kafka", "STREAMSCORE_INFERENCE_LOG__ENABLED": "true"}).io.log_enabled
    assert not FraudConfig.from_env({"STREAMSCORE_INFERENCE_LOG__ENABLED": "false"}).io.log_enabled
    assert str(FraudConfig.from_env({}).io.log_dir) == "output/fraud/inference_log"


def _rec(i: int) -> dict:
    return {"transaction_id": f"t{i}", "customer_id": "C1", "fraud_score": 0.1, "model_version": "m/1",
            "status": "NORMAL", "latency_ms": 1.0, "scored_at": "2026-11-26T10:00:00.000Z",
            "event_time": "2026-11-26T09:00:00.000Z", "shadow_scores": {"m/2": 0.3}}


def test_a_resumed_writer_deletes_what_it_wrote_after_the_snapshot(tmp_path):
    w = LogWriter(tmp_path, LOG_SPEC, part=0, max_rows=10)
    w.write([log_row(_rec(i), LOG_SPEC) for i in range(25)])  # two files of 10 written, 5 buffered
    state = w.snapshot()  # the third file, then (run, 3)
    w.write([log_row(_rec(i), LOG_SPEC) for i in range(25, 45)])  # after the snapshot: two more files
    assert len(list(tmp_path.rglob("*.parquet"))) == 5
    # crash; the restart resumes from the snapshot: the two later files go, their events are scored again
    again = LogWriter(tmp_path, LOG_SPEC, part=0, max_rows=10, resume=state)
    assert len(list(tmp_path.rglob("*.parquet"))) == 3
    again.write([log_row(_rec(i), LOG_SPEC) for i in range(25, 45)])
    again.close()
    rows = log_rows(tmp_path)
    assert sorted(r["event_id"] for r in rows) == sorted(f"t{i}" for i in range(45))
    assert rows[0]["shadow_scores"] == [("m/2", 0.3)]
    # another partition's files are never touched
    other = LogWriter(tmp_path, LOG_SPEC, part=1, max_rows=10)
    other.write([log_row(_rec(99), LOG_SPEC)])
    other.close()
    LogWriter(tmp_path, LOG_SPEC, part=0, resume=state)
    assert "t99" in {r["event_id"] for r in log_rows(tmp_path)}


class _HeldWrites:
    """``pyarrow.parquet.write_table`` that waits until released (and counts its calls)."""

    def __init__(self, monkeypatch, fail: Exception | None = None):
        import threading

        import pyarrow.parquet as pq

        self.release, self.started, self.calls, self.fail = threading.Event(), threading.Event(), 0, fail
        real = pq.write_table

        def held(*args, **kwargs):
            self.calls += 1
            self.started.set()
            assert self.release.wait(30), "never released"
            if self.fail is not None:
                raise self.fail
            return real(*args, **kwargs)

        monkeypatch.setattr(pq, "write_table", held)


def test_a_background_writer_does_not_wait_for_the_file_but_its_close_does(tmp_path, monkeypatch):
    held = _HeldWrites(monkeypatch)
    w = LogWriter(tmp_path, LOG_SPEC, part=0, max_rows=10, background=True, snapshot_waits=False)
    w.write([log_row(_rec(i), LOG_SPEC) for i in range(10)])  # the size bound: a write starts, held
    assert held.started.wait(10) and not list(tmp_path.rglob("*.parquet"))  # ... and write() returned
    held.release.set()
    w.write([log_row(_rec(i), LOG_SPEC) for i in range(10, 15)])
    w._wait()
    held.release.clear()
    held.started.clear()
    assert w.snapshot()  # no recovery: the snapshot's write starts (held) and it returns
    assert held.started.wait(10) and held.calls == 2
    assert len(log_rows(tmp_path)) == 10 and w._buffered == 0  # nothing left buffered for a later epoch
    held.release.set()
    w.close()
    assert sorted(r["event_id"] for r in log_rows(tmp_path)) == sorted(f"t{i}" for i in range(15))


def test_a_snapshot_that_may_be_resumed_from_waits_for_every_row(tmp_path, monkeypatch):
    held = _HeldWrites(monkeypatch)
    held.release.set()
    w = LogWriter(tmp_path, LOG_SPEC, part=0, max_rows=10, background=True)  # recovery not known off
    w.write([log_row(_rec(i), LOG_SPEC) for i in range(15)])
    assert w.snapshot() == (w.run, 2) and len(log_rows(tmp_path)) == 15


def test_a_background_writer_with_recovery_has_every_row_written_when_its_snapshot_returns(tmp_path, monkeypatch):
    held = _HeldWrites(monkeypatch)
    held.release.set()
    w = LogWriter(tmp_path, LOG_SPEC, part=0, max_rows=10, run="0123456789ab", background=True)
    w.write([log_row(_rec(i), LOG_SPEC) for i in range(25)])
    run, seq = w.snapshot()
    assert (run, seq) == ("0123456789ab", 3) and len(log_rows(tmp_path)) == 25


def test_a_failed_background_write_raises_at_the_next_call(tmp_path, monkeypatch):
    held = _HeldWrites(monkeypatch, fail=OSError(28, "No space left on device"))
    w = LogWriter(tmp_path, LOG_SPEC, part=0, max_rows=10, background=True)
    w.write([log_row(_rec(i), LOG_SPEC) for i in range(10)])
    held.release.set()
    with pytest.raises(OSError, match="No space left"):
        w.close()


def test_log_rows_split_by_the_date_scored():
    spec = LogSpec("x", "id", "k", ("score",))
    row = log_row({"id": 1, "k": 2, "score": "0.5", "scored_at": "2026-11-26T23:59:59.999Z"}, spec)
    other = log_row({"id": 2, "k": 2, "score": 0.25, "scored_at": "2026-11-27T00:00:00.000Z",
                     "event_time": "not a time"}, spec)
    w = LogWriter(Path(__import__("tempfile").mkdtemp()), spec, 0)
    w.write([row, other])
    w.close()
    back = sorted(log_rows(w.root), key=lambda r: r["event_id"])
    assert [str(r["date"]) for r in back] == ["2026-11-26", "2026-11-27"]  # by the date scored
    assert [r["event_id"] for r in back] == ["1", "2"] and [r["score"] for r in back] == [0.5, 0.25]  # text made a number
    assert back[0]["scored_at"].microsecond == 999_000 and back[1]["event_time"] is None  # unreadable: null


def test_score_drift_fires_on_a_rising_score_stream_and_not_on_a_calm_one():
    import random

    rng = random.Random(3)

    def recs(n: int, shift: float, start: int) -> list[dict]:
        return [{"fraud_score": min(1.0, rng.betavariate(0.3, 20) + shift), "model_version": "m/1",
                 "transaction_id": f"t{start + i}", "event_time": None} for i in range(n)]

    calm = ScoreDrift()
    assert calm.update_many(recs(20_000, 0.0, 0)) == []
    shifted = ScoreDrift()
    assert shifted.update_many(recs(5000, 0.0, 0)) == []
    found = shifted.update_many(recs(2000, 0.1, 5000))
    assert found and found[0]["kind"] == "drift" and found[0]["model_version"] == "m/1"
    assert int(found[0]["transaction_id"][1:]) < 5000 + 1000  # found within 1,000 events of the shift
    again = ScoreDrift()
    again.load(shifted.snapshot())
    assert again.snapshot() == shifted.snapshot()


def test_fraud_flow_emits_drift_records_on_alerts_told_apart_by_kind(fraud_env, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    write_events(stream_transactions(2000, seed=22, spec=fraud_env.spec), src)
    cfg = FraudConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src), "STREAMSCORE_IO__OUTPUT_DIR": str(out),
                                "STREAMSCORE_FEAST__REPO": str(fraud_env.repo),
                                "STREAMSCORE_MODEL__REGISTRY": str(fraud_env.registry),
                                "STREAMSCORE_FRAUD__SCORE_DRIFT_THRESHOLD": "0.05", "STREAMSCORE_FRAUD__SCORE_DRIFT_MIN_INSTANCES": "20"})
    run_main(build_fraud_flow(cfg))
    alerts = read_jsonl(out / "alerts.jsonl")
    drifts = [a for a in alerts if a.get("kind") == "drift"]
    scored_alerts = [a for a in alerts if a.get("kind") != "drift"]
    assert drifts and all(d["detector"] == "fraud_score" and d["model_version"] for d in drifts)
    assert {a["transaction_id"] for a in scored_alerts} == {
        r["transaction_id"] for r in read_jsonl(out / "scored.jsonl") if r["status"] != "NORMAL"}
    off = FraudConfig.from_env({"STREAMSCORE_FRAUD__SCORE_DRIFT_THRESHOLD": "0"})
    assert off.score_drift_threshold == 0


@pytest.mark.kafka
def test_a_scored_topic_lands_in_the_same_layout(fraud_env, tmp_path, monkeypatch):
    """With Kafka outputs the scored topic is the log: landing it gives the same rows
    as the embedded default's log of the same run."""
    import os
    import time
    import uuid

    from confluent_kafka import Producer

    from monitoring.landing import land

    brokers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    write_events(stream_transactions(1500, seed=23, spec=fraud_env.spec), src)
    cfg = FraudConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": str(src), "STREAMSCORE_IO__OUTPUT_DIR": str(out),
                                "STREAMSCORE_FEAST__REPO": str(fraud_env.repo),
                                "STREAMSCORE_MODEL__REGISTRY": str(fraud_env.registry)})
    run_main(build_fraud_flow(cfg))
    topic = f"scored-land-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": brokers})
    lines = (out / "scored.jsonl").read_bytes().splitlines()
    for line in lines:
        p.produce(topic, line, key=orjson.loads(line)["transaction_id"].encode())
    p.produce(topic, b"not json")
    assert p.flush(30) == 0
    landed = tmp_path / "landed"
    counts = land(brokers, topic, landed, LOG_SPEC, group=f"land-{topic}")
    assert counts["rows"] == len(lines) and counts["skipped"] == 1
    key = lambda r: r["event_id"]  # noqa: E731
    want = sorted(log_rows(out / "inference_log"), key=key)
    got = sorted(log_rows(landed), key=key)
    assert [{k: v for k, v in r.items()} for r in got] == want
    # a second run continues from the committed offsets: nothing new, nothing twice
    assert land(brokers, topic, landed, LOG_SPEC, group=f"land-{topic}")["rows"] == 0
    # the command does the same
    from click.testing import CliRunner

    from cli.main import main

    res = CliRunner().invoke(main, ["log", "land", "--topic", topic, "--to", str(tmp_path / "cli"),
                                    "--group", f"cli-{topic}", "--json"],
                             env={"KAFKA_BOOTSTRAP_SERVERS": brokers})
    assert res.exit_code == 0, res.output
    assert orjson.loads(res.output.strip().splitlines()[-1])["rows"] == len(lines)
    assert sorted(log_rows(tmp_path / "cli"), key=key) == want
    # a landing stops at the end the topic had when it began, though producers go on
    # writing; the next one continues from there: every record once
    import threading

    stop, started = threading.Event(), threading.Event()

    def keep_producing() -> None:
        p2 = Producer({"bootstrap.servers": brokers, "linger.ms": "5"})
        while not stop.is_set():
            for line in lines[:200]:
                p2.produce(topic, line)
            p2.flush(30)
            started.set()
        p2.flush(30)

    writer = threading.Thread(target=keep_producing)
    writer.start()
    try:
        assert started.wait(30)
        more = land(brokers, topic, landed, LOG_SPEC, group=f"land-{topic}", max_rows=500)["rows"]
    finally:
        stop.set()
        writer.join()
    rest = land(brokers, topic, landed, LOG_SPEC, group=f"land-{topic}")["rows"]
    assert more >= 200, more  # at least what was there when it began
    assert len(log_rows(landed)) == len(lines) + more + rest
    with pytest.raises(RuntimeError, match="no-such-topic"):
        land(brokers, f"no-such-topic-{topic}", landed, LOG_SPEC, group=f"land-{topic}")

    # two landers of one group on a 2-partition topic share it: between them, every
    # record once (a rebalance commits what the losing lander read before it lets go)
    from confluent_kafka.admin import AdminClient, NewTopic

    shared = f"scored-shared-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": brokers})  # kept until its futures are done
    for f in admin.create_topics([NewTopic(shared, 2, 1)]).values():
        f.result(30)
    p3 = Producer({"bootstrap.servers": brokers, "linger.ms": "5", "queue.buffering.max.messages": "500000"})
    for k in range(80):
        for line in lines:
            p3.produce(shared, line, key=f"{k}".encode())
    assert p3.flush(30) == 0
    results: list[int] = []
    import monitoring.landing

    writing = threading.Event()

    class SlowWriter(monitoring.landing.LogWriter):  # slow enough that the rebalance comes mid-landing
        def write(self, rows):
            writing.set()
            time.sleep(0.02)
            super().write(rows)

    monkeypatch.setattr(monitoring.landing, "LogWriter", SlowWriter)

    def lander(i: int) -> None:
        results.append(land(brokers, shared, tmp_path / f"shared-{i}", LOG_SPEC, group=f"land-{shared}",
                            stall_s=10)["rows"])

    threads = [threading.Thread(target=lander, args=(i,)) for i in range(2)]
    threads[0].start()
    assert writing.wait(60)
    threads[1].start()  # the second joins while the first is landing: a rebalance
    for th in threads:
        th.join(120)
    assert len(results) == 2 and sum(results) == 80 * len(lines), results
    landed_ids = [r["event_id"] for i in range(2) if (tmp_path / f"shared-{i}").exists()
                  for r in log_rows(tmp_path / f"shared-{i}")]
    assert len(landed_ids) == 80 * len(lines)


def test_a_new_run_owns_its_log_unless_appending(tmp_path):
    from dataflows.startup import check_log
    from settings.config import IOConfig

    def files() -> list[str]:
        return sorted(p.name for p in (tmp_path / "inference_log").rglob("*.parquet"))

    def earlier_run(flow: str) -> None:
        w = LogWriter(tmp_path / "inference_log", LogSpec(flow, "transaction_id", "customer_id", ("fraud_score",)), 0)
        w.write([log_row(_rec(1), LOG_SPEC)])
        w.close()

    env = {"STREAMSCORE_IO__OUTPUT_DIR": str(tmp_path)}
    earlier_run("fraud"), earlier_run("iot")
    [check] = check_log(IOConfig.from_env({**env, "STREAMSCORE_INFERENCE_LOG__APPEND": "true"}), "fraud")
    check()
    assert len(files()) == 2  # appending: kept
    [check] = check_log(IOConfig.from_env({**env, "STREAMSCORE_IO__REPLACE_OUTPUTS": "false"}), "fraud")
    with pytest.raises(ValueError, match="holds another run's inference log"):
        check()
    [check] = check_log(IOConfig.from_env(env), "fraud")
    check()
    assert len(files()) == 1 and files()[0].startswith("iot-")  # only this flow's files go
    assert check_log(IOConfig.from_env({**env, "STREAMSCORE_INFERENCE_LOG__ENABLED": "false"}), "fraud") == []


def test_a_run_that_crashed_before_its_first_snapshot_owns_what_it_wrote(tmp_path):
    """With recovery on the run id is stable (from the recovery folder): a restart with no
    committed snapshot deletes the first attempt's files, whose events are scored again."""
    first = LogWriter(tmp_path, LOG_SPEC, part=0, max_rows=5, run="0123456789ab")
    first.write([log_row(_rec(i), LOG_SPEC) for i in range(12)])  # three files written, then a crash
    assert len(list(tmp_path.rglob("*.parquet"))) == 3
    again = LogWriter(tmp_path, LOG_SPEC, part=0, max_rows=5, run="0123456789ab")
    assert list(tmp_path.rglob("*.parquet")) == []
    again.write([log_row(_rec(i), LOG_SPEC) for i in range(12)])
    again.close()
    assert sorted(r["event_id"] for r in log_rows(tmp_path)) == sorted(f"t{i}" for i in range(12))


def test_tables_and_rows_make_the_same_files(tmp_path):
    """A scored batch's Arrow table (LogWriter.write_table) is written as its rows would be:
    one file per date of scored_at, at most max_rows rows each."""
    from models.inference_log import columns, schema, to_table

    spec = LogSpec("demo", "id", "user", scores=("score",), features=("amount",))
    recs = [{"id": f"e{i}", "user": "u", "score": i / 10, "amount": float(i), "status": "NORMAL",
             "scored_at": f"2026-11-{26 + i // 5}T10:00:00.000Z", "event_time": "2026-11-26T09:00:00.000Z"}
            for i in range(10)]
    rows = [log_row(r, spec) for r in recs]
    by_rows, by_table = LogWriter(tmp_path / "rows", spec, 0, max_rows=3), LogWriter(tmp_path / "t", spec, 0, max_rows=3)
    by_rows.write(rows)
    by_rows.close()
    by_table.write_table(to_table(rows[:5], schema(spec)))  # one date
    by_table.write_table(to_table(rows[5:], schema(spec)))  # the next
    by_table.close()

    def files(root: Path) -> list[tuple[str, list[dict]]]:
        return [(p.parent.name, ds.dataset(p, format="parquet").to_table().to_pylist())
                for p in sorted(root.glob("date=*/*.parquet"), key=lambda p: (p.parent.name, p.name[-14:]))]

    assert files(tmp_path / "t") == files(tmp_path / "rows")
    assert [d for d, _ in files(tmp_path / "t")] == ["date=2026-11-26"] * 2 + ["date=2026-11-27"] * 2
    assert len(columns(spec)) == len(schema(spec))


def test_a_table_over_two_dates_or_without_a_time_splits_as_its_rows(tmp_path):
    """A table whose rows were scored on one date goes to that date's folder whole; one over
    two dates, or with rows without a scoring time, is split by date (``unknown``) as rows are."""
    from models.inference_log import _by_date, schema, to_table

    spec = LogSpec("demo", "id", "user", scores=("score",))
    recs = [{"id": f"e{i}", "user": "u", "score": 0.1, "scored_at": at}
            for i, at in enumerate(["2026-11-26T23:59:59.999Z", "2026-11-26T00:00:00.000Z",
                                    "2026-11-27T00:00:00.000Z", None])]
    table = to_table([log_row(r, spec) for r in recs], schema(spec))
    assert [(d, t["event_id"].to_pylist()) for d, t in _by_date(table.slice(0, 2))] == [("2026-11-26", ["e0", "e1"])]
    assert [(d, t["event_id"].to_pylist()) for d, t in _by_date(table)] == [
        ("2026-11-26", ["e0", "e1"]), ("2026-11-27", ["e2"]), ("unknown", ["e3"])]
    assert [(d, t["event_id"].to_pylist()) for d, t in _by_date(table.slice(2, 1))] == [("2026-11-27", ["e2"])]


def test_float_columns_are_written_without_a_dictionary(tmp_path):
    """Scores and features have about as many values as rows: their Parquet columns are not
    dictionary-encoded (it cost most of the write and made the files larger); text columns
    are. The rows read back are those written."""
    import pyarrow.parquet as pq

    from models.inference_log import columns, schema, to_table

    spec = LogSpec("demo", "id", "user", scores=("score",), features=("amount", "ratio"))
    recs = [{"id": f"e{i}", "user": f"u{i % 3}", "score": i / 997, "amount": i * 1.37, "ratio": None if i % 5 else 0.5,
             "status": "NORMAL", "model_version": "m/1", "latency_ms": i / 10,
             "scored_at": "2026-11-26T10:00:00.000Z", "event_time": "2026-11-26T09:00:00.000Z"} for i in range(500)]
    table = to_table([log_row(r, spec) for r in recs], schema(spec))
    w = LogWriter(tmp_path, spec, 0)
    w.write_table(table)
    w.close()
    (path,) = tmp_path.glob("date=*/*.parquet")
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(j).path_in_schema: meta.column(j).encodings for j in range(meta.num_columns)}
    dictionary = {name for name, enc in encodings.items() if any("DICTIONARY" in e for e in enc)}
    assert {"score", "amount", "ratio", "latency_ms"}.isdisjoint(dictionary)
    assert {"event_id", "key", "flow", "status", "model_version"} <= dictionary
    assert pq.read_table(path).select(list(columns(spec))).equals(table)
