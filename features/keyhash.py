"""An entity's key: read cheaply from a raw input (:func:`entity_reader`), and hashed by
SipHash-1-3, the hash Bytewax routes keys by (:func:`key_hash`).

Bytewax 0.21.1 runs each key of a stateful step on worker ``SipHash-1-3(key) %
worker_count`` (Rust's ``DefaultHasher`` with zero keys, over the key's bytes followed
by ``0xff``: how Rust hashes a ``String``). :func:`key_hash` is that hash, so the flows
can derive a key's detector shard from it (:func:`features.records.shard_of`) and
put the shard on the worker that already holds the key (:mod:`dataflows.placement`):
a transaction then does not cross to another process between its customer step and
its shard step. This module knows nothing of Bytewax; the placement module checks the
hash against where Bytewax really runs keys (``tests/dataflows/test_placement.py``).

:func:`entity_reader` lets a flow key a raw message by its entity before parsing it, so
what crosses to the entity's worker is the message (bytes), not a parsed event.

>>> hex(siphash13(b""))
'0xd1fba762150c532c'
>>> key_hash("C000001") == siphash13("C000001".encode() + b"\\xff")
True
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Callable, Mapping

import msgspec

__all__ = ["siphash13", "key_hash", "entity_reader"]

_M = (1 << 64) - 1


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 of ``data`` with key ``(k0, k1)`` (Rust's ``std`` ``DefaultHasher``
    algorithm): one compression round per 8-byte word, three finalisation rounds."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    n = len(data)
    end = n - n % 8
    words = [int.from_bytes(data[i:i + 8], "little") for i in range(0, end, 8)]
    words.append(((n & 0xFF) << 56) | int.from_bytes(data[end:], "little"))
    rounds = [1] * len(words) + [3]  # the last entry: finalisation
    for i, r in enumerate(rounds):
        if r == 1:
            v3 ^= words[i]
        else:
            v2 ^= 0xFF
        for _ in range(r):  # one SipRound
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
        if r == 1:
            v0 ^= words[i]
    return v0 ^ v1 ^ v2 ^ v3


@lru_cache(maxsize=1 << 16)
def key_hash(key: str) -> int:
    """SipHash-1-3 of ``key`` as Rust hashes a ``String`` (UTF-8 bytes, then ``0xff``).
    About 10 µs in pure Python, so the last 65,536 keys are cached (a hot key costs a
    dictionary look-up)."""
    return siphash13(key.encode("utf-8", errors="surrogatepass") + b"\xff")


def entity_reader(field: str, numbers: bool = False) -> Callable[[Any], str | None]:
    """``read(raw)``: the entity key of a raw input without parsing the rest of it, for
    routing the input to its entity's worker before the full parse (about 0.3 µs for a
    fraud message, against about 10 µs for the parse).

    ``raw`` is JSON text or bytes (only the top-level ``field`` is decoded; every other
    field is skipped) or a mapping (a CSV or Parquet row, a decoded Avro record). The key
    is the field's value as text: a string, an integer (not a boolean) and, with
    ``numbers``, a finite float, as the flow's parser makes it (``str(value)``:
    ``customer_id`` of :func:`features.transactions.parse_transaction`, ``iot.key_field``
    of :func:`features.sensors.parse_reading`). ``None`` for anything else: not JSON,
    not an object, the field absent, null or of another type. The caller then parses
    the input where it is, and the parser names what is wrong (or, for an input only
    the parser's leniency reads, gives the key). An input whose key is read but which the
    parser then refuses is refused on the entity's worker, with the parser's reason.

    >>> read = entity_reader("customer_id")
    >>> read(b'{"transaction_id": "t1", "customer_id": "C1", "amount": 5}'), read('{"customer_id": 7}')
    ('C1', '7')
    >>> read(b'{"customer_id": true}'), read(b'{"customer_id": 1.5}'), read(b"{oops"), read({"x": 1})
    (None, None, None, None)
    >>> entity_reader("device_id", numbers=True)(b'{"device_id": 1.5}')
    '1.5'
    """
    kind: Any = (str | int | float | None) if numbers else (str | int | None)
    key_type = msgspec.defstruct("EntityKey", [("key", kind, None)], rename={"key": field})
    decoder = msgspec.json.Decoder(key_type)
    decode = decoder.decode
    decode_error = msgspec.DecodeError

    def text(v: Any) -> str | None:
        t = type(v)
        if t is str:
            return v
        if t is int:
            return str(v)
        if numbers and t is float and math.isfinite(v):
            return str(v)
        return None

    def read(raw: Any) -> str | None:
        if type(raw) is bytes or type(raw) is str:
            try:
                return text(decode(raw).key)
            except decode_error:
                return None
        if isinstance(raw, Mapping):
            return text(raw.get(field))
        return None

    return read
