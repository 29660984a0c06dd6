"""The shared operators: routing by type, restore from snapshots through Bytewax
recovery, and failed batches becoming dead letters."""

from __future__ import annotations

from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from dataflows.operators import Scorers, key_raw, prefetch_batches, score_batches, split_dead_letters, stateful_object
from features.records import DeadLetter, Raw, ValidationError, decode


def parse(raw, arrival):
    ev = decode(raw)
    if "id" not in ev:
        raise ValidationError("field 'id': missing")
    return ev


def parsed_where_read(up):
    """:func:`key_raw` when no entity can be read from an input: it is parsed where it was
    read (dead letters named by the parser, or the event keyed by its id)."""
    return key_raw("validate", up, lambda raw: None, parse, entity=lambda e: str(e["id"]), entity_name="id")


def test_an_input_field_named_error_is_not_a_failure():
    flow, ok, bad = Dataflow("t"), [], []
    items = ['{"id": 1, "error": "none"}', '{"id": 2, "error": {"code": 5}}', '{"x": 1}', b"\xff\xfe", "[1]"]
    v = parsed_where_read(op.input("in", flow, TestingSource(items)))
    op.output("ok", v.oks, TestingSink(ok))
    op.output("bad", v.errs, TestingSink(bad))
    run_main(flow)
    assert [e["id"] for _, e in ok] == [1, 2]
    assert all(isinstance(d, DeadLetter) for d in bad)
    assert [d.error.split(":")[0] for d in bad] == ["field 'id'", "not valid UTF-8", "expected a JSON object, got list"]
    assert bad[1].raw == "\ufffd\ufffd" and bad[0].step == "validate"


def test_kafka_origin_is_kept_in_dead_letters():
    flow, bad = Dataflow("t"), []
    items = [Raw(b"{oops", "tx", 2, 7), DeadLetter("Kafka consumer error: x", "", step="input", topic="tx",
                                                  partition=0, offset=1)]
    v = parsed_where_read(op.input("in", flow, TestingSource(items)))
    op.output("bad", v.errs, TestingSink(bad))
    run_main(flow)
    assert [(d.topic, d.partition, d.offset) for d in bad] == [("tx", 2, 7), ("tx", 0, 1)]
    assert bad[0].key("id") == "tx:2:7" and bad[0].to_dict()["offset"] == 7


class Running:
    """A per-key running total whose configuration (``scale``) comes from the builder."""

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.total = 0

    def snapshot(self) -> int:
        return self.total

    def load(self, snap: int) -> None:
        self.total = snap

    def update(self, value: int) -> tuple[int, int]:
        self.total += value
        return value, self.total * self.scale


def running_flow(items, out, scale=1):
    flow = Dataflow("restore")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(items, batch_size=1)), lambda x: str(x % 3))
    op.output("out", stateful_object("running", keyed, lambda: Running(scale), Running.update), TestingSink(out))
    return flow


def test_stateful_object_restores_state_and_takes_configuration_from_the_builder(tmp_path):
    values = list(range(1, 31))
    straight: list = []
    run_main(running_flow(values, straight))

    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    first: list = []
    aborting = values[:15] + [TestingSource.ABORT()] + values[15:]
    run_main(running_flow(aborting, first), epoch_interval=timedelta(0), recovery_config=recovery)
    assert len(first) == 15
    resumed: list = []
    run_main(running_flow(aborting, resumed), epoch_interval=timedelta(0), recovery_config=recovery)
    assert first + resumed == straight  # nothing lost, nothing counted twice

    # The snapshot holds data only: a restart under a new configuration applies it to restored keys.
    aborting = values[:15] + [TestingSource.ABORT()] + values[15:]  # an ABORT marker fires once
    (tmp_path / "b").mkdir()
    init_db_dir(tmp_path / "b", 1)
    recovery = RecoveryConfig(str(tmp_path / "b"))
    run_main(running_flow(aborting, []), epoch_interval=timedelta(0), recovery_config=recovery)
    rescaled: list = []
    run_main(running_flow(aborting, rescaled, scale=10), epoch_interval=timedelta(0), recovery_config=recovery)
    assert rescaled == [(k, (v, 10 * total)) for k, (v, total) in straight[15:]]


class Flaky:
    def score_batch(self, items):
        if any(i == 13 for i in items):
            raise RuntimeError("model exploded")
        return [i * 2 for i in items]


def test_a_failing_batch_becomes_dead_letters_and_the_flow_goes_on():
    flow, out = Dataflow("t"), []
    up = op.input("in", flow, TestingSource(list(range(20)), batch_size=5))
    op.output("out", score_batches("score", up, Flaky, lambda i: {"value": i}), TestingSink(out))
    run_main(flow)
    dead = [o for o in out if isinstance(o, DeadLetter)]
    assert sorted(o for o in out if not isinstance(o, DeadLetter)) == [i * 2 for i in range(20) if not 10 <= i < 15]
    assert [d.raw["value"] for d in dead] == [10, 11, 12, 13, 14]
    assert all("model exploded" in d.error and d.step == "score" for d in dead)


class Summing:
    def __init__(self) -> None:
        self.total = 0

    def snapshot(self):
        return self.total

    def load(self, snap) -> None:
        self.total = snap

    def batch(self, values):  # one output per batch of a key: a batch of columns
        self.total += sum(values)
        return [(len(values), self.total)]


def test_stateful_object_with_only_a_batch_step_may_give_fewer_outputs_than_inputs():
    import pytest

    flow, out = Dataflow("t"), []
    keyed = op.key_on("key", op.input("in", flow, TestingSource([1, 2, 3, 4], batch_size=4)), lambda v: str(v % 2))
    op.output("out", stateful_object("sum", keyed, Summing, None, Summing.batch), TestingSink(out))
    run_main(flow)
    assert sorted(out) == [("0", (2, 6)), ("1", (2, 4))]
    with pytest.raises(ValueError, match="step"):
        stateful_object("none", keyed, Summing, None, None)


class Seen:
    """Per-key state: the ids of its events, in order (``last_event_time`` as the flows' states have)."""

    def __init__(self) -> None:
        self.ids: list = []

    @property
    def last_event_time(self):
        return None if not self.ids else 0.0

    def snapshot(self):
        return list(self.ids)

    def load(self, snap) -> None:
        self.ids = list(snap)

    def update_many(self, events):
        self.ids += [e.fields["id"] for e in events]
        return [(e.fields["id"], e.fields.get("possible_repeat", False), len(self.ids)) for e in events]


def parse_event(raw, arrival):
    """An event with ``fields``, as the flows' parsers make (a possible repeat is marked in them)."""
    from types import SimpleNamespace

    fields = parse(raw, arrival)
    if not isinstance(fields["customer_id"], (str, int, float)) or isinstance(fields["customer_id"], bool):
        raise ValidationError("field 'customer_id': expected text")
    return SimpleNamespace(customer_id=str(int(fields["customer_id"]) if isinstance(fields["customer_id"], float)
                                           else fields["customer_id"]), fields=fields)


def keyed_raw_flow(items, ok, bad):
    from features.keyhash import entity_reader

    flow = Dataflow("raw")
    k = key_raw("validate", op.input("in", flow, TestingSource(items, batch_size=2)), entity_reader("customer_id"),
                parse_event, entity=lambda e: e.customer_id, entity_name="customer_id")
    out = split_dead_letters("split", op.key_rm("unkey", stateful_object(
        "state", k.oks, Seen, None, Seen.update_many, expire_after_s=3600.0, parse=parse_event)))
    op.output("ok", out.oks, TestingSink(ok))
    op.output("bad", op.merge("letters", k.errs, out.errs), TestingSink(bad))
    return flow


def test_raw_inputs_are_keyed_then_parsed_by_the_keyed_step_with_their_origin():
    """key_raw + stateful_object(parse=...): every input ends scored or dead-lettered once, with
    the validate step's reasons and Kafka origin wherever it is parsed; the order of a key's
    events is kept; a resumed run's possible repeats stay marked."""
    ok: list = []
    bad: list = []
    items = [
        Raw(b'{"customer_id": "C1", "id": 1}', "tx", 0, 10),
        Raw(b'{"customer_id": "C1"}', "tx", 0, 11),  # key read, refused by the parser: on the key's worker
        Raw(b"{oops", "tx", 1, 12),  # no key: refused where it was read
        Raw(b'{"customer_id": 1.0, "id": 3}', "tx", 1, 13),  # the reader does not take 1.0; the parser does
        Raw(b'{"customer_id": "C1", "id": 2}', "tx", 0, 14, possible_repeat=True),
        DeadLetter("Kafka consumer error: x", "", step="input", topic="tx", partition=0, offset=15),
        '{"customer_id": 7, "id": 4}',
        b'{"customer_id": 1, "id": 5}',  # read by the reader: the same customer as 1.0, parsed elsewhere
    ]
    run_main(keyed_raw_flow(items, ok, bad))
    assert sorted(ok) == [(1, False, 1), (2, True, 2), (3, False, 1), (4, False, 1), (5, False, 2)]
    assert sorted((d.step, d.offset, d.error.split(":")[0]) for d in bad) == [
        ("input", 15, "Kafka consumer error"), ("validate", 11, "field 'id'"), ("validate", 12, "not valid JSON")]


def test_a_key_whose_values_never_parse_keeps_no_state(tmp_path):
    import sqlite3

    init_db_dir(tmp_path, 1)
    items = [b'{"customer_id": "BAD"}', b'{"customer_id": "GOOD", "id": 1}', b'{"customer_id": "BAD"}']
    ok: list = []
    bad: list = []
    run_main(keyed_raw_flow(items, ok, bad), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))
    assert len(ok) == 1 and len(bad) == 2
    [db] = tmp_path.glob("*.sqlite3")
    with sqlite3.connect(db) as conn:
        keys = {k for k, ser in conn.execute("SELECT state_key, ser_change FROM snaps WHERE step_id LIKE '%state%'")
                if ser is not None}
    assert keys == {"GOOD"}


def test_key_raw_logs_an_entity_split_over_partitions_once():
    from structlog.testing import capture_logs

    def run(items):
        ok: list = []
        bad: list = []
        with capture_logs() as logs:
            run_main(keyed_raw_flow(items, ok, bad))
        return ok, [e for e in logs if e["event"] == "input_partitioning_splits_entities"]

    keyed = [Raw(b'{"customer_id": "C%d", "id": %d}' % (i % 3, i), "tx", i % 3, i) for i in range(30)]
    ok, warnings = run(keyed)
    assert len(ok) == 30 and warnings == []
    split = [Raw(b'{"customer_id": "C%d", "id": %d}' % (i % 3, i), "tx", i % 2, i) for i in range(30)]
    ok, warnings = run(split)
    assert len(ok) == 30 and len(warnings) == 1
    w = warnings[0]
    assert (w["key"], w["partitions"], w["topic"], w["log_level"]) == ("C0", [0, 1], "tx", "warning")
    assert "customer_id 'C0' arrived on partitions 0 and 1 of 'tx'" in w["detail"]


class Ahead:
    """A scorer that records what it was asked to prefetch, and by which instance."""

    built = 0

    def __init__(self) -> None:
        Ahead.built += 1
        self.asked: list[list[int]] = []
        self.scored: list[list[int]] = []

    def prefetch(self, items):
        self.asked.append(list(items))
        if 13 in items:
            raise RuntimeError("store client broke")

    def score_batch(self, items):
        self.scored.append(list(items))
        return [i * 10 for i in items]


def test_prefetch_hands_owned_items_to_the_same_scorer_and_passes_batches_on():
    Ahead.built = 0
    scorers, out = Scorers(Ahead), []
    flow = Dataflow("prefetch")
    ahead = prefetch_batches("ahead", op.input("in", flow, TestingSource([1, 2, 3, 13, 4], batch_size=2)), scorers,
                             lambda i: i % 2 == 1)
    op.output("out", score_batches("score", ahead, scorers, lambda i: i), TestingSink(out))
    run_main(flow)
    assert out == [10, 20, 30, 130, 40]  # a failing prefetch costs nothing
    assert Ahead.built == 1  # one scorer for the worker: the prefetch and the scoring share it
    [scorer] = scorers._by_thread.values()
    assert scorer.asked == [[1], [3, 13]] and scorer.scored == [[1, 2], [3, 13], [4]]
