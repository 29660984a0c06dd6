"""Parsing edge cases of Confluent-framed Avro and Protobuf (features/wire.py), on
confluent-kafka's in-memory mock:// registry; the real registry is in tests/e2e/test_registry.py."""

from __future__ import annotations

import uuid

import pytest

from features.records import DeadLetter, Raw, ValidationError, dead_letter
from features.wire import (
    TRANSACTION_FIELDS,
    WireDecoder,
    WireEncoder,
    avro_schema,
    decode_or_dead_letter,
    protobuf_message,
    registry_client,
)

TX = {"transaction_id": "t1", "customer_id": "C1", "merchant_id": "M1", "amount": 12.5, "merchant_category": "gas",
      "timestamp": "2026-10-06T00:00:23.197Z", "latitude": None, "longitude": 1.0, "is_fraud": 0, "fraud_pattern": ""}


def client():
    return registry_client(f"mock://{uuid.uuid4().hex}")


@pytest.mark.parametrize("fmt", ["avro", "protobuf"])
def test_round_trip_keeps_every_field_and_missing_optional_ones_stay_missing(fmt):
    c = client()
    schema = avro_schema("Transaction", TRANSACTION_FIELDS) if fmt == "avro" else protobuf_message(
        "Transaction", TRANSACTION_FIELDS)
    enc = WireEncoder(c, fmt, schema, "tx")
    dec = WireDecoder(c, fmt, None if fmt == "avro" else schema)
    out = dec(enc(TX))
    expected = {k: v for k, v in TX.items() if v is not None} if fmt == "protobuf" else TX
    assert out == expected


class FlakyClient:
    """A registry client whose lookups fail as an unreachable registry's do, while ``down``."""

    def __init__(self, inner) -> None:
        self.inner, self.down, self.calls = inner, False, 0

    def get_schema(self, schema_id, *a, **kw):
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        return self.inner.get_schema(schema_id, *a, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_registry_outage_cached_ids_decode_uncached_ones_dead_letter_then_the_breaker_stops_asking():
    c = client()
    enc1 = WireEncoder(c, "avro", avro_schema("A", TRANSACTION_FIELDS), "t1")
    enc2 = WireEncoder(c, "avro", avro_schema("B", TRANSACTION_FIELDS), "t2")
    known, unknown = enc1(TX), enc2(TX)
    flaky = FlakyClient(c)
    now = [0.0]
    dec = WireDecoder(flaky, "avro", failures=2, retry_s=10.0, clock=lambda: now[0])
    assert dec(known)["transaction_id"] == "t1"  # cached by id from now on
    flaky.down = True
    assert dec(known)["transaction_id"] == "t1"  # no lookup needed
    for _ in range(2):
        with pytest.raises(ValidationError, match="did not answer"):
            dec(unknown)
    asked = flaky.calls
    with pytest.raises(ValidationError, match="breaker open"):
        dec(unknown)
    assert flaky.calls == asked  # open: not asked
    flaky.down = False
    now[0] = 11.0  # after retry_s the registry is asked again, and answers
    assert dec(unknown)["transaction_id"] == "t1"
    assert not dec.breaker_open


def test_an_id_the_registry_does_not_know_is_asked_once():
    c = client()
    good = WireEncoder(c, "avro", avro_schema("A", TRANSACTION_FIELDS), "t")(TX)
    flaky = FlakyClient(c)
    dec = WireDecoder(flaky, "avro")
    bad = b"\x00" + (4242).to_bytes(4, "big") + good[5:]
    for _ in range(3):
        with pytest.raises(ValidationError, match="schema id 4242: unknown to"):
            dec(bad)
    assert flaky.calls == 1
    assert not dec.breaker_open  # a "no" is an answer, not an outage


@pytest.mark.parametrize("fmt", ["avro", "protobuf"])
def test_bad_records_each_name_what_is_wrong(fmt):
    c = client()
    schema = avro_schema("T", TRANSACTION_FIELDS) if fmt == "avro" else protobuf_message("T", TRANSACTION_FIELDS)
    good = WireEncoder(c, fmt, schema, "t")(TX)
    dec = WireDecoder(c, fmt, None if fmt == "avro" else schema)
    cases = {
        good[:3]: "truncated record: 3 bytes",
        b"\x01" + good[1:]: "first byte 0x01",
        b'{"a": 1}': "JSON on an Avro or Protobuf topic?",
        good[: len(good) - 9]: "body does not decode",
        b"": "truncated record: 0 bytes",
    }
    for data, reason in cases.items():
        with pytest.raises(ValidationError, match=reason.replace("?", r"\?")):
            dec(data)


def test_decode_dead_letter_keeps_the_bytes_and_json_shows_them_as_base64():
    letter = decode_or_dead_letter(Raw(b"\x00\x00\x01", "tx", 2, 9), WireDecoder(client(), "avro"))
    assert isinstance(letter, DeadLetter) and letter.step == "decode" and letter.raw_bytes == b"\x00\x00\x01"
    d = letter.to_dict()
    assert d["raw_base64"] == "AAAB" and (d["topic"], d["partition"], d["offset"]) == ("tx", 2, 9)
    # a later dead letter of a decoded record keeps the bytes too; JSON inputs have none
    decoded = Raw({"transaction_id": "t"}, "tx", 0, 1, wire=b"\x00abc")
    assert dead_letter(decoded.value, "bad", origin=decoded).raw_bytes == b"\x00abc"
    assert "raw_base64" not in dead_letter(b"{", "bad", origin=Raw(b"{", "tx", 0, 1)).to_dict()
