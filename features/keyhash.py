"""The one hash of an entity key: SipHash-1-3, the hash Bytewax routes keys by.

Bytewax 0.21.1 runs each key of a stateful step on worker ``SipHash-1-3(key) %
worker_count`` (Rust's ``DefaultHasher`` with zero keys, over the key's bytes followed
by ``0xff``: how Rust hashes a ``String``). :func:`key_hash` is that hash, so the flows
can derive a key's detector shard from it (:func:`features.records.shard_of`) and
put the shard on the worker that already holds the key (:mod:`dataflows.placement`):
a transaction then does not cross to another process between its customer step and
its shard step. This module knows nothing of Bytewax; the placement module checks the
hash against where Bytewax really runs keys (``tests/dataflows/test_placement.py``).

>>> hex(siphash13(b""))
'0xd1fba762150c532c'
>>> key_hash("C000001") == siphash13("C000001".encode() + b"\\xff")
True
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["siphash13", "key_hash"]

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
