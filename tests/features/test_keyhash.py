"""The entity key read from a raw input (features/keyhash.py: entity_reader) routes the input
before it is parsed, so it must never disagree with the parser: whenever the parser accepts an
input, the key read is the parser's entity, or None (then the flow parses where it read)."""

from __future__ import annotations

import itertools
import json

import pytest

from features.keyhash import entity_reader, key_hash, siphash13
from features.records import ValidationError
from features.sensors import SensorConfig, parse_reading
from features.transactions import parse_transaction

KEY_VALUES = ["C1", "", " C1 ", "é", "12", 7, -3, 0, 10**30, 1.0, 2.5, -0.0, 1e300, True, False, None, [1], {"a": 1}]


def _tx(cid):
    d = {"transaction_id": "t1", "merchant_id": "M1", "merchant_category": "gas", "amount": 5.0,
         "latitude": 1.0, "longitude": 2.0, "timestamp": "2026-10-06T00:00:00Z"}
    if cid is not _ABSENT:
        d["customer_id"] = cid
    return d


_ABSENT = object()


def _inputs(event: dict) -> list:
    """The event as a row mapping, JSON bytes and JSON text; then with the key field twice
    (the last one counts, for the parser as for the reader) and nested under another field."""
    js = json.dumps(event, ensure_ascii=False).encode()  # big integers and Infinity too
    out = [event, js, js.decode()]
    if "customer_id" in event or "device_id" in event:
        field = "customer_id" if "customer_id" in event else "device_id"
        out.append(b'{"%s": "decoy", ' % field.encode() + js[1:])  # duplicate field: the last one wins
        out.append(b'{"meta": {"%s": "nested"}, ' % field.encode() + js[1:])
    return out


def _agrees(read, parse, raw) -> str | None:
    """The parser's entity when it accepts ``raw`` (and the reader agrees), else None."""
    try:
        entity = parse(raw)
    except ValidationError:
        return None
    key = read(raw)
    assert key is None or key == entity, (raw, key, entity)
    return entity if key is not None else None


def test_the_customer_read_from_a_raw_input_is_the_parsers():
    read = entity_reader("customer_id")
    read_by_reader = 0
    for v in [*KEY_VALUES, _ABSENT]:
        for raw in _inputs(_tx(v)):
            read_by_reader += _agrees(read, lambda r: parse_transaction(r).customer_id, raw) is not None
    assert read_by_reader >= 20  # the common forms are read without parsing


def test_the_device_read_from_a_raw_input_is_the_parsers():
    cfg = SensorConfig(sensors=("temperature",))
    read = entity_reader(cfg.key_field, numbers=True)
    read_by_reader = 0
    for v, t in itertools.product([*KEY_VALUES, float("inf")], ["2026-10-06T00:00:00Z", None]):
        event = {"device_id": v, "timestamp": t, "temperature": 20.5}
        for raw in _inputs(event):
            read_by_reader += _agrees(read, lambda r: parse_reading(r, cfg, arrival=0.0).device, raw) is not None
    assert read_by_reader >= 40


def test_unreadable_inputs_give_no_key():
    read = entity_reader("customer_id")
    for raw in [b"", b"{oops", b"[1]", b"\xff\xfe", "null", b'{"customer_id": null}', b'{"x": 1}', 42, None,
                b'\xef\xbb\xbf{"customer_id": "C1"}']:
        assert read(raw) is None, raw


def test_a_field_name_that_is_not_an_identifier():
    assert entity_reader("device-id")(b'{"device-id": "d1"}') == "d1"


@pytest.mark.parametrize("key", ["", "C000001", "é" * 9, "a" * 64])
def test_key_hash_is_siphash13_of_the_utf8_bytes_and_0xff(key):
    assert key_hash(key) == siphash13(key.encode() + b"\xff")
