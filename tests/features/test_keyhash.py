"""``features/keyhash.py``.

- The compiled SipHash-1-3 against a plain-Python transcription of the algorithm
  (Aumasson and Bernstein's reference, with 1 compression and 3 finalisation rounds), on
  every length around the 8-byte word boundary and random keys.
- The entity key read from a raw input (``entity_reader``) routes the input before it is
  parsed, so it must never disagree with the parser: whenever the parser accepts an input,
  the key read is the parser's entity, or None (then the flow parses where it read).
"""

from __future__ import annotations

import itertools
import json
import random

import pytest

from features.keyhash import entity_reader, key_hash, siphash13
from features.records import ValidationError
from features.sensors import SensorConfig, parse_reading
from features.transactions import parse_transaction

_M = (1 << 64) - 1


def reference_siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573

    def rounds(r: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(r):
            v0 = (v0 + v1) & _M
            v1 = ((v1 << 13) | (v1 >> 51)) & _M ^ v0
            v0 = ((v0 << 32) | (v0 >> 32)) & _M
            v2 = (v2 + v3) & _M
            v3 = ((v3 << 16) | (v3 >> 48)) & _M ^ v2
            v0 = (v0 + v3) & _M
            v3 = ((v3 << 21) | (v3 >> 43)) & _M ^ v0
            v2 = (v2 + v1) & _M
            v1 = ((v1 << 17) | (v1 >> 47)) & _M ^ v2
            v2 = ((v2 << 32) | (v2 >> 32)) & _M

    n = len(data)
    end = n - n % 8
    words = [int.from_bytes(data[i:i + 8], "little") for i in range(0, end, 8)]
    words.append(((n & 0xFF) << 56) | int.from_bytes(data[end:], "little"))
    for m in words:
        v3 ^= m
        rounds(1)
        v0 ^= m
    v2 ^= 0xFF
    rounds(3)
    return v0 ^ v1 ^ v2 ^ v3


@pytest.mark.parametrize("length", [*range(0, 33), 255, 256, 1000])
def test_equals_the_reference_on_every_length(length):
    rng = random.Random(length)
    for _ in range(5):
        data = bytes(rng.randrange(256) for _ in range(length))
        k0, k1 = rng.getrandbits(64), rng.getrandbits(64)
        assert siphash13(data) == reference_siphash13(data)
        assert siphash13(data, k0, k1) == reference_siphash13(data, k0, k1)


def test_known_value_of_rust_default_hasher():
    # Rust: `let mut h = DefaultHasher::new(); h.write(b""); h.finish()`
    assert siphash13(b"") == reference_siphash13(b"") == 0xD1FBA762150C532C


def test_key_hash_hashes_a_string_as_rust_does():
    for key in ("C000001", "", "dev-7", "é-ünïcode", "\udcff-lone-surrogate"):
        data = key.encode("utf-8", errors="surrogatepass") + b"\xff"
        assert key_hash(key) == reference_siphash13(data)

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
