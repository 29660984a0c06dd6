"""features.formats: suffix dispatch, raw streaming reads, writes, and the sinks' JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import orjson
import pandas as pd
import pytest

from features.formats import FORMATS, format_of, iter_raw, read_rows, to_json_line, to_json_lines, write_rows

ROOT = Path(__file__).resolve().parents[2]

ROWS = [
    {"id": "a", "amount": 1.5, "n": 1, "note": None, "ok": True},
    {"id": "b", "amount": -2.25, "n": 2, "note": "x, \"quoted\"\nnew line", "ok": False},
    {"id": "c", "amount": 3.0, "n": 3, "extra": "late key"},  # a key first seen late; missing keys
]


def test_module_is_engine_free_and_lazy() -> None:
    code = (
        "import sys, features.formats; "
        "print(sorted(m for m in ('bytewax', 'pyarrow', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_format_of() -> None:
    assert FORMATS == ("jsonl", "csv", "parquet")
    cases = {"a.jsonl": "jsonl", "a.NDJSON": "jsonl", "a.json": "jsonl", "dir.x/a.csv": "csv",
             "a.parquet": "parquet", "a.PQ": "parquet"}
    for name, fmt in cases.items():
        assert format_of(name) == fmt
        assert format_of(Path(name)) == fmt
    assert format_of("a.txt", "CSV") == "csv" and format_of("a.csv", "jsonl") == "jsonl"
    with pytest.raises(ValueError) as exc:
        format_of("data/events.txt")
    msg = str(exc.value)
    assert "data/events.txt" in msg
    assert all(s in msg for s in (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".pq"))
    with pytest.raises(ValueError, match="no_suffix"):
        format_of("no_suffix")
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        format_of("a.csv", "xml")


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "new" / "sub" / f"rows.{fmt}"  # parents are created
    assert write_rows(iter(ROWS), path) == 3
    back = read_rows(path)
    raw = list(iter_raw(path))
    assert len(back) == len(raw) == 3
    if fmt == "jsonl":
        assert back == ROWS  # absent keys stay absent
        assert all(isinstance(r, bytes) for r in raw) and [orjson.loads(r) for r in raw] == ROWS
        return
    assert raw == back
    # CSV and Parquet: every row has every column (union of keys, first-seen order)
    cols = ["id", "amount", "n", "note", "ok", "extra"]
    assert all(list(r) == cols for r in back)
    for got, want in zip(back, ROWS):
        for k in cols:
            v = want.get(k)
            if fmt == "csv":  # text; empty cell -> None
                assert got[k] == (None if v is None else str(v)), k
            else:
                assert got[k] == v, k


def test_jsonl_raw_lines_pass_through_unvalidated(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    good1, good2 = b'{"id": "a", "amount": 1}', b'{"id":"\xc3\xa9t\xc3\xa9"}'
    not_utf8, malformed, not_object = b'{"id": "\xff\xfe"}', b'{"id": "b", "amount": ', b"[1, 2]"
    path.write_bytes(b"\n".join([good1, not_utf8, b"", b"   ", malformed, not_object, good2 + b"\r"]) + b"\n")
    items = list(iter_raw(path))
    assert items == [good1, not_utf8, malformed, not_object, good2]  # bytes exactly as in the file
    assert all(type(i) is bytes for i in items)
    assert orjson.loads(items[0]) == {"id": "a", "amount": 1} and orjson.loads(items[-1]) == {"id": "été"}
    assert list(iter_raw(path, skip=2)) == [malformed, not_object, good2]  # blank lines do not count
    assert list(iter_raw(path, skip=5)) == [] and list(iter_raw(path, skip=99)) == []
    with pytest.raises(ValueError, match=r"in\.jsonl:2: not valid UTF-8"):
        read_rows(path)
    # a file saved with a UTF-8 byte order mark (Windows editors): the mark is not part of
    # the first event; the same bytes later in the file are left as they are
    bom = b"\xef\xbb\xbf"
    path.write_bytes(bom + good1 + b"\r\n" + bom + good2 + b"\r\n")
    assert list(iter_raw(path)) == [good1, bom + good2]
    path.write_bytes(bom + good1 + b"\n" + good2 + b"\n")
    assert read_rows(path) == [{"id": "a", "amount": 1}, {"id": "été"}]


def test_jsonl_writes_raw_lines_as_is(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    rows = [{"a": 1}, '{"a": 2', b'{"a": "\xff"}', {"a": float("nan")}]
    assert write_rows(rows, path) == 4
    assert path.read_bytes() == b'{"a":1}\n{"a": 2\n{"a": "\xff"}\n{"a":null}\n'
    assert list(iter_raw(path))[1:3] == [b'{"a": 2', b'{"a": "\xff"}']
    with pytest.raises(ValueError, match="line break"):
        write_rows(['{"a": 1}\n{"a": 2}'], tmp_path / "two.jsonl")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_raw_lines_only_in_jsonl(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"out.{fmt}"
    for raw in ('{"truncated', b"{bytes"):
        with pytest.raises(ValueError, match=r"malformed raw lines can only be written to \.jsonl") as exc:
            write_rows([{"a": 1}, raw], path)
        assert "row 1" in str(exc.value) and "\n" not in str(exc.value)
    assert not path.exists()


def test_csv_cells(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(
        b"\xef\xbb\xbfid,amount,note\r\n"  # BOM, CRLF
        b"a,1.5,\r\n"  # empty cell
        b"b,,\"\"\r\n"  # empty and quoted empty
        b"c\xff\xfe,2,caf\xe9\r\n"  # not UTF-8
        b"d\r\n"  # short row
        b"e,3,x,surplus,more\r\n"  # long row
    )
    rows = list(iter_raw(path))
    assert rows[0] == {"id": "a", "amount": "1.5", "note": None}
    assert rows[1] == {"id": "b", "amount": None, "note": None}
    assert rows[2]["amount"] == "2" and rows[2]["id"].startswith("c")  # undecodable bytes did not raise
    assert rows[2]["id"].encode("utf-8", "surrogateescape") == b"c\xff\xfe"
    assert rows[3] == {"id": "d", "amount": None, "note": None}
    assert rows[4] == {"id": "e", "amount": "3", "note": "x", "_extra": ["surplus", "more"]}
    assert all(type(v) is str or v is None for r in rows[:4] for v in r.values())
    assert [r["id"] for r in iter_raw(path, skip=3)] == ["d", "e"]
    # rows holding undecodable text are still written (bytes restored) and still valid JSON
    out = tmp_path / "again.csv"
    write_rows(rows[:3], out)
    assert b"c\xff\xfe,2,caf\xe9" in out.read_bytes()
    assert json.loads(to_json_line(rows[2]))["id"] == "c\ufffd\ufffd"


def test_parquet_skip_across_row_groups(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"i": list(range(1000)), "s": [f"r{i}" for i in range(1000)]}), path, row_group_size=128)
    assert pq.ParquetFile(path).metadata.num_row_groups == 8
    for skip in (0, 1, 127, 128, 129, 500, 999, 1000, 5000):
        for batch_size in (7, 1000):
            got = [r["i"] for r in iter_raw(path, batch_size=batch_size, skip=skip)]
            assert got == list(range(skip, 1000)), (skip, batch_size)
    assert next(iter_raw(path, skip=300)) == {"i": 300, "s": "r300"}


def test_parquet_mixed_column_is_written_as_text(tmp_path: Path) -> None:
    path = tmp_path / "mixed.parquet"
    write_rows([{"amount": 1.5, "ts": pd.Timestamp("2024-01-01", tz="UTC")}, {"amount": "twelve"}], path)
    assert [r["amount"] for r in read_rows(path)] == ["1.5", "twelve"]
    assert read_rows(path)[1]["ts"] is None


def test_iter_raw_is_lazy_and_checks_eagerly(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    it = iter_raw(path)
    assert iter(it) is it and not isinstance(it, (list, tuple))
    path.unlink()  # the file is opened on the first next(), not before
    with pytest.raises(FileNotFoundError):
        next(it)
    with pytest.raises(FileNotFoundError, match="in.jsonl"):
        iter_raw(path)  # a missing file is reported at once
    with pytest.raises(ValueError, match="x.txt"):
        iter_raw(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="skip"):
        iter_raw(tmp_path / "x.csv", skip=-1)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_large_file_is_streamed(tmp_path: Path, fmt: str) -> None:
    """Reading a 200k-line file allocates far less than the file's size."""
    path = tmp_path / f"big.{fmt}"
    n = 200_000
    line = '{"transaction_id": "tx-%08d", "customer_id": "C000001", "amount": 12.5, "note": "%s"}'
    if fmt == "jsonl":
        path.write_text("\n".join(line % (i, "x" * 40) for i in range(n)) + "\n")
    else:
        path.write_text("transaction_id,customer_id,amount,note\n"
                        + "".join(f"tx-{i:08d},C000001,12.5,{'x' * 40}\n" for i in range(n)))
    size = path.stat().st_size
    assert size > 10_000_000
    tracemalloc.start()
    try:
        count = 0
        last = None
        for item in iter_raw(path, skip=10):
            count += 1
            last = item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n - 10
    assert (b"tx-00199999" in last) if fmt == "jsonl" else last["transaction_id"] == "tx-00199999"
    assert peak < size / 20, (peak, size)


@dataclass
class Point:
    x: float
    y: float


class Alert(msgspec.Struct):
    status: str
    where: Point
    score: float


def test_to_json_line() -> None:
    rec = {
        "nan": float("nan"),
        "inf": -math.inf,
        "np_nan": np.float64("nan"),
        "np_inf32": np.float32("inf"),
        "np_int": np.int64(7),
        "np_bool": np.bool_(True),
        "arr": np.array([1.0, np.nan]),
        "alert": Alert("CRITICAL", Point(1.0, float("nan")), 0.9),
        "ts": pd.Timestamp("2024-01-01T00:00:00Z"),
        "nat": pd.NaT,
        "raw": b"\xff{",
        "tags": {"a"},
    }
    line = to_json_line(rec)
    assert isinstance(line, bytes) and b"\n" not in line
    back = json.loads(line)  # valid JSON: no NaN / Infinity tokens
    assert back == {
        "nan": None, "inf": None, "np_nan": None, "np_inf32": None, "np_int": 7, "np_bool": True,
        "arr": [1.0, None], "alert": {"status": "CRITICAL", "where": {"x": 1.0, "y": None}, "score": 0.9},
        "ts": "2024-01-01T00:00:00+00:00", "nat": None, "raw": "\ufffd{", "tags": ["a"],
    }
    # undecodable text (lone surrogates) and non-string keys do not fail a sink
    assert json.loads(to_json_line({"raw": "ab\udcff", 1: "one"})) == {"raw": "ab\ufffd", "1": "one"}
    assert to_json_line({"a": 1}) == b'{"a":1}'
    with pytest.raises(TypeError):
        to_json_line({"x": object()})


def test_to_json_lines_equals_to_json_line_of_each() -> None:
    """One orjson call for a batch of records, cut at a marker between them: the same bytes
    as record by record, also when a record holds the marker's text or cannot be
    serialised as it is (then the batch goes record by record)."""
    from features.formats import _BETWEEN

    rec = {"id": "t1", "amount": 20.6, "nan": float("nan"), "arr": np.array([1.0, np.nan]), "n": np.int64(3),
           "nested": {"a": [1, {"b": None}]}, "text": 'a "quoted", {comma} \\ \n', "ts": pd.Timestamp("2024-01-01")}
    plain = [dict(rec, id=f"t{i}", amount=i / 7) for i in range(50)]
    cases = {
        "plain": plain,
        "the marker as a value": plain[:3] + [dict(rec, text=_BETWEEN), dict(rec, text=[_BETWEEN, 1])] + plain[3:6],
        "the marker as a record": [plain[0], _BETWEEN, plain[1], _BETWEEN, _BETWEEN],
        "the marker as a key": [plain[0], {_BETWEEN: _BETWEEN}, plain[1]],
        "lone surrogates": plain[:3] + [dict(rec, text="ab\udcff")] + plain[3:5],
        "a key not text": plain[:2] + [{1: "one"}],
        "other values": [1, "x", None, [1, 2], 2.5, plain[0]],
        "one": plain[:1],
        "none": [],
    }
    for name, records in cases.items():
        assert to_json_lines(records) == [to_json_line(r) for r in records], name
    with pytest.raises(TypeError):
        to_json_lines([{"a": 1}, {"x": object()}])


def _run_replay(*args: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "cli.replay", "--no-progress", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def test_replay_cli_errors_are_one_line(tmp_path: Path) -> None:
    """The replay tool reads files with iter_raw; its failures are one line, no traceback."""
    down = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "STREAMSCORE_KAFKA__CHECK_TIMEOUT_S": "1",
            "KAFKA_OPT_SASL_PASSWORD": "hunter2-secret"}
    bad_name = _run_replay("--input", str(tmp_path / "events.txt"), **down)
    missing = _run_replay("--input", str(tmp_path / "events.jsonl"), **down)
    (tmp_path / "ok.jsonl").write_bytes(b'{"transaction_id": "t1"}\n')
    unreachable = _run_replay("--input", str(tmp_path / "ok.jsonl"), **down)
    for res, code, text in ((bad_name, 2, "cannot tell the format"), (missing, 2, "no such file"),
                            (unreachable, 1, "KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:1': broker unreachable")):
        assert res.returncode == code, res.stderr
        assert res.stderr.startswith("error: ") and text in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
        assert "hunter2" not in res.stderr and res.stdout == ""


def test_replay_message_values_and_keys(monkeypatch) -> None:
    """Messages are keyed by the flow's entity (the customer; the device: ``iot.key_field``),
    so one entity's events stay in one partition, in order."""
    from cli.replay import FLOWS, _encode, key_on

    fraud_key, iot_key = key_on(FLOWS["fraud"][2]()), key_on(FLOWS["iot"][2]())
    line = b'{"transaction_id": "t1", "customer_id": "C7", "amount": 1}'
    assert _encode(line) == line and fraud_key(line) == "C7"  # JSON Lines lines go as they are
    assert _encode(b"{not json\xff") == b"{not json\xff" and fraud_key(b"{not json\xff") == ""
    assert orjson.loads(_encode({"transaction_id": "t2", "amount": None})) == {"transaction_id": "t2", "amount": None}
    assert _encode({"id": "c\udcff"}) == b'{"id":"c\xff"}'  # a CSV row's undecodable bytes are sent back as bytes
    assert iot_key({"device_id": "d1", "timestamp": "T"}) == "d1" and iot_key(b"[1]") == ""
    monkeypatch.setenv("STREAMSCORE_IOT__KEY_FIELD", "sensor")
    assert key_on(FLOWS["iot"][2]())({"sensor": 12, "device_id": "d1"}) == "12"

