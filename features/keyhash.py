"""An entity's key: read cheaply from a raw input (:func:`entity_reader`), and hashed by
SipHash-1-3, the hash Bytewax routes keys by (:func:`key_hash`).

Bytewax 0.21.1 runs each key of a stateful step on worker ``SipHash-1-3(key) %
worker_count`` (Rust's ``DefaultHasher`` with zero keys, over the key's bytes followed
by ``0xff``: how Rust hashes a ``String``). :func:`key_hash` is that hash, so the flows
can derive a key's detector shard from it (:func:`features.records.shard_of`) and
put the shard on the worker that already holds the key (:mod:`dataflows.placement`):
a transaction then does not cross to another process between its customer step and
its shard step. This module knows nothing of Bytewax; the placement module checks the
hash against where Bytewax really runs keys (``tests/dataflows/test_placement.py``),
and ``tests/features/test_keyhash.py`` checks the compiled hash against a plain-Python
transcription of the algorithm.

The hash is compiled by numba (``cache=True``, like :mod:`features.window_kernel`):
about 0.5 µs per key against 8-10 µs in plain Python, which matters when more keys
are active than :func:`key_hash`'s cache holds (a million customers).

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
import numba
import numpy as np

__all__ = ["siphash13", "key_hash", "entity_reader", "routing_key", "is_utf8"]


@numba.njit(cache=True, inline="always")
def _rotl(x, b):
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@numba.njit(cache=True, inline="always")
def _round(v0, v1, v2, v3):
    """One SipRound."""
    v0 += v1
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 += v3
    v3 = _rotl(v3, 16) ^ v2
    v0 += v3
    v3 = _rotl(v3, 21) ^ v0
    v2 += v1
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@numba.njit(cache=True)
def _siphash13(data, k0, k1):
    v0 = k0 ^ np.uint64(0x736F6D6570736575)
    v1 = k1 ^ np.uint64(0x646F72616E646F6D)
    v2 = k0 ^ np.uint64(0x6C7967656E657261)
    v3 = k1 ^ np.uint64(0x7465646279746573)
    n = len(data)
    end = n - n % 8
    for i in range(0, end + 8, 8):
        m = np.uint64(0)
        if i < end:  # a whole little-endian word
            for j in range(8):
                m |= np.uint64(data[i + j]) << np.uint64(8 * j)
        else:  # the last word: the remaining bytes, and the length in the top byte
            for j in range(n - end):
                m |= np.uint64(data[i + j]) << np.uint64(8 * j)
            m |= np.uint64(n & 0xFF) << np.uint64(56)
        v3 ^= m
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)  # one compression round
        v0 ^= m
    v2 ^= np.uint64(0xFF)
    for _ in range(3):  # three finalisation rounds
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 of ``data`` with key ``(k0, k1)`` (Rust's ``std`` ``DefaultHasher``
    algorithm): one compression round per 8-byte word, three finalisation rounds."""
    return int(_siphash13(bytes(data), np.uint64(k0), np.uint64(k1)))


@lru_cache(maxsize=1 << 16)
def key_hash(key: str) -> int:
    """SipHash-1-3 of ``key`` as Rust hashes a ``String`` (UTF-8 bytes, then ``0xff``).
    The last 65,536 keys are cached (a hot key costs a dictionary look-up)."""
    return int(_siphash13(key.encode("utf-8", errors="surrogatepass") + b"\xff", _ZERO, _ZERO))


_ZERO = np.uint64(0)


def routing_key(key: str) -> str:
    """``key`` as a stream engine can route it: itself when it is text UTF-8 can hold (all but
    a few keys: checked in about 50 ns), else with each lone surrogate written as its byte's
    escape (``\\xff``). Lone surrogates are how undecodable input bytes survive reading (a CSV
    file that is not UTF-8: :data:`features.formats.CSV_ERRORS`); Bytewax refuses such a key
    (its Rust side takes keys as UTF-8 ``String``) and stops the whole flow. The escape keeps
    two keys that differ only in their undecodable bytes apart.

    >>> routing_key("C000001"), routing_key("dev\\udcff\\udcfe"), routing_key("café")
    ('C000001', 'dev\\\\xff\\\\xfe', 'café')
    """
    if is_utf8(key):
        return key
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(key: str) -> bool:
    """Whether UTF-8 can hold ``key``: false only for text holding lone surrogates (undecodable
    input bytes), which Bytewax, Feast and Arrow refuse. ASCII is answered at once.

    >>> is_utf8("C1"), is_utf8("café"), is_utf8("C\\udcff")
    (True, True, False)
    """
    if key.isascii():
        return True
    try:
        key.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


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
