"""The one hash of an entity key: SipHash-1-3, the hash Bytewax routes keys by.

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

>>> hex(siphash13(b""))
'0xd1fba762150c532c'
>>> key_hash("C000001") == siphash13("C000001".encode() + b"\\xff")
True
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

__all__ = ["siphash13", "key_hash"]


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
