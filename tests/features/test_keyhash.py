"""``features/keyhash.py``: the compiled SipHash-1-3 against a plain-Python transcription
of the algorithm (Aumasson and Bernstein's reference, with 1 compression and 3
finalisation rounds), on every length around the 8-byte word boundary and random keys."""

from __future__ import annotations

import random

import pytest

from features.keyhash import key_hash, siphash13

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
