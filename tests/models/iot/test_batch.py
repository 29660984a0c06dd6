"""models.iot.batch: a shard's scored batch (ScoredReadings) gives, from its columns, exactly
what its records give one by one: the JSON lines of both outputs, the inference log's rows,
the metrics' columns; the device profiles go at the end of each record."""

from __future__ import annotations

from features.formats import to_json_line
from features.json_columns import _MARK
from features.records import POSSIBLE_REPEAT, RecordBatch, batch_or_dead_letters, parse_time
from features.sensors import parse_reading
from models.inference_log import log_row, schema, to_table
from models.iot import IoTScoringConfig, ScoredReadings, ShardState, log_spec
from models.status import NORMAL, alert_of

from tests.models.iot.test_state import CONFIGS, run_steps, stream

T0 = parse_time("2024-01-01T00:00:00Z")


def scored(cfg: IoTScoringConfig, readings: list, batch: int = 500) -> list[ScoredReadings]:
    """The shard step's scored batches, the flow's two steps run as the dataflow runs them."""
    return [b for b in run_steps(cfg, readings, ShardState.score_batches, batch) if isinstance(b, ScoredReadings)]


def odd_readings(cfg: IoTScoringConfig) -> list:
    """Readings whose input fields name what a record or the log sets (an ``id``, a
    ``status``, a feature, ``shadow_scores``), hold sensors as text, or repeat after a resume."""
    f = cfg.features
    s0, s1 = f.sensors[0], f.sensors[1]
    raw = [
        {f.key_field: "odd", f.time_field: T0 + 1, s0: "20.5", s1: 3},
        {f.key_field: "odd", f.time_field: T0 + 2, s0: 21.0, "id": "mine", "status": "x"},
        {f.key_field: "odd", f.time_field: T0 + 3, s0: 99.0, "dt_s": 5.0},
        {f.key_field: "odd", f.time_field: T0 + 4, s1: 2.5, "shadow_scores": {"m": 1.0}},
        {f.key_field: "odd", f.time_field: T0 + 5, s0: 21.5, POSSIBLE_REPEAT: True},
        {f.key_field: 7, f.time_field: T0 + 6, s0: 1.0, "note": "a \"quoted\", text"},
        # what a line made from the columns could get wrong: nested objects, the text that
        # marks a boundary, escapes, lone surrogates (undecodable CSV bytes), in keys too
        {f.key_field: 'dq"x\\', f.time_field: T0 + 7, s0: 1.5, "nested": [{"a": 1}, {"b": _MARK}], "u": "é€😀"},
        {f.key_field: "odd", f.time_field: T0 + 8, s0: 2.5, _MARK: "},{", "lone": "\udcff"},
        {f.key_field: "é-dev", f.time_field: T0 + 9, s0: 3.5, s1: 1.0, f.sensors[2]: 2.0},
        {f.key_field: "odd", s0: 22.0, s1: 4.0, f.sensors[2]: 5.0, "no time": True},
    ]
    return [parse_reading(x, f, T0) for x in raw]


def test_lines_keys_and_statuses_are_those_of_the_records() -> None:
    for name, cfg in CONFIGS.items():
        batches = scored(cfg, stream(cfg, n=1500) + odd_readings(cfg))
        assert sum(map(len, batches)) > 1000 and any(b.alert_rows() for b in batches), name
        for b in batches:
            recs = [dict(r) for r in b.records()]
            assert isinstance(b, RecordBatch) and len(b) == len(recs)
            assert b.lines("scored") == [to_json_line(r) for r in recs]
            assert b.text("scored") == b"".join(to_json_line(r) + b"\n" for r in recs)
            alerts = [a for a in map(alert_of, recs) if a is not None]
            assert b.lines("alerts") == [to_json_line(a) for a in alerts]
            assert b.text("alerts") == b"".join(to_json_line(a) + b"\n" for a in alerts)
            assert b.output_records("alerts") == alerts
            assert b.keys("scored") == [r["id"] for r in recs] and b.keys("alerts") == [a["id"] for a in alerts]
            assert b.output_statuses("scored") == [r["status"] for r in recs]
            assert b.output_statuses("alerts") == [a["status"] for a in alerts]
            latency, scores, versions, own, shadows = b.metric_columns()
            assert latency == [r["latency_ms"] for r in recs] and scores == [r["anomaly_score"] for r in recs]
            assert versions == [r["model_version"] for r in recs] and own == shadows == [None] * len(recs)
        # a NORMAL repeat after a resume is on the alerts output as an update
        repeats = [a for b in batches for a in b.output_records("alerts") if a.get(POSSIBLE_REPEAT)]
        assert repeats and all(a["update"] is True for a in repeats if a["status"] == NORMAL)


def test_log_table_is_the_records_log_rows() -> None:
    """From the columns (the common case) or, where an input field could stand in for a
    log column, from the records: the same table as log_row of every record."""
    for name, cfg in CONFIGS.items():
        spec = log_spec(cfg)
        batches = scored(cfg, stream(cfg, n=1500) + odd_readings(cfg))
        for b in batches:
            want = to_table([log_row(r, spec) for r in b.records()], schema(spec))
            got = b.log_table(spec)
            assert got.schema == want.schema and got.equals(want), name
        assert any(b.readings[0].device == "odd" for b in batches)


def test_profiles_go_last_and_replace_what_was_made() -> None:
    cfg = CONFIGS["default"]
    (b, *_) = scored(cfg, [r for r in stream(cfg, n=600) if r.device == "hot"])
    before = b.lines("scored")
    profile = {"site": "lab", "model": "X"}
    b.set_profiles([(profile, True)] * len(b))
    rec = b.records()[0]
    assert list(rec)[-2:] == ["device_profile", "device_known"] and rec["device_profile"] is profile
    assert b.lines("scored") == [to_json_line(r) for r in b.records()] != before
    assert b.field_values("device_id") == ["hot"] * len(b) and b.field_values("kind") == ["reading"] * len(b)


def test_small_and_large_batches_give_the_same_lines() -> None:
    """A batch of a few rows makes its lines record by record, a larger one from its
    columns: the same bytes either way."""
    cfg = CONFIGS["default"]
    readings = stream(cfg, n=400) + odd_readings(cfg)
    for size in (1, 7, 200):
        batches = scored(cfg, readings, batch=size)
        assert all(len(b) < 24 for b in batches) if size < 24 else any(len(b) >= 24 for b in batches)
        for b in batches:
            recs = b.records()
            assert b.text("scored") == b"".join(to_json_line(r) + b"\n" for r in recs)
            assert b.lines("alerts") == [to_json_line(a) for a in map(alert_of, recs) if a is not None]


def test_profiles_of_each_row_are_each_rows() -> None:
    """Rows of several devices, profiles equal in value but not in JSON (key order, 1 and
    1.0), unknown devices: each line is its record's."""
    cfg = CONFIGS["default"]
    batches = scored(cfg, stream(cfg, n=1500) + odd_readings(cfg))
    kinds = [({"site": "a", "n": 1}, True), ({"n": 1, "site": "a"}, True), ({"site": "a", "n": 1.0}, True),
             ({"site": None}, False), (None, False)]
    for b in batches:
        b.set_profiles([kinds[hash(r.device) % len(kinds)] if j % 3 else kinds[j % len(kinds)]
                        for j, r in enumerate(b.readings)])
        assert b.lines("scored") == [to_json_line(r) for r in b.records()]
        assert b.lines("alerts") == [to_json_line(a) for a in map(alert_of, b.records()) if a is not None]


def test_a_failed_step_on_a_batch_dead_letters_each_record() -> None:
    cfg = CONFIGS["default"]
    (b, *_) = scored(cfg, [r for r in stream(cfg, n=300) if r.device == "hot"])

    def fail(items: list) -> list:
        raise RuntimeError("store down")

    letters = batch_or_dead_letters(fail, [b], lambda r: r, "device_profile")
    assert len(letters) == len(b) > 10
    assert [d.raw["id"] for d in letters] == b.ids and all(d.step == "device_profile" for d in letters)
    assert letters[0].error == "scoring failed: RuntimeError: store down"


def test_an_empty_batch_gives_nothing() -> None:
    cfg = CONFIGS["default"]
    assert ShardState(cfg).score_batches([]) == [] and ShardState(cfg).update_batches([]) == []


def test_undecodable_text_in_the_key_gets_the_replacement_character() -> None:
    """A lone surrogate (an undecodable byte of a CSV input) in the device id is in the
    record's id too: the line is to_json_line's, U+FFFD in both places."""
    cfg = CONFIGS["default"]
    f = cfg.features
    readings = [parse_reading({f.key_field: "\udcfe-dev", f.time_field: T0 + i, f.sensors[0]: 1.0 + i % 3,
                               f.sensors[1]: 2.0, f.sensors[2]: 3.0}, f, T0) for i in range(40)]
    (b,) = scored(cfg, readings)
    assert b.lines("scored") == [to_json_line(r) for r in b.records()]
    assert b"\xef\xbf\xbd-dev@" in b.lines("scored")[0]


def test_a_field_nested_as_deep_as_a_record_can_be_written_keeps_its_line() -> None:
    """An input field nested as deep as orjson writes inside a record: the batch's one call
    over every row's fields is one level deeper and fails; that row's line is still its
    record's (before, making the batch's text raised orjson's recursion error)."""
    cfg = next(iter(CONFIGS.values()))
    deep: object = 1
    for _ in range(253):
        deep = [deep]
    readings = stream(cfg, n=600)
    readings[300].fields["deep"] = deep
    batches = scored(cfg, readings)
    assert any(len(b) >= 24 and any(r.fields.get("deep") is deep for r in b.readings) for b in batches)
    for b in batches:
        recs = b.records()
        assert b.text("scored") == b"".join(to_json_line(r) + b"\n" for r in recs)
