"""Criteo hashing and parsing: FarmHash Fingerprint64 bucketing, float32 ids, dense transform.

``fingerprint64_reference`` below is an independent pure-Python transcription of FarmHash's
``farmhashna::Hash64`` (which ``Fingerprint64`` is, and TensorFlow's ``to_hash_bucket_fast``
uses), written for this test from the published algorithm; the package hashes with the C++
library (pyfarmhash). Known answers: TensorFlow's documented ``to_hash_bucket_fast`` example and
the frozen values of TensorFlow's ``fingerprint_test.cc``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from algoperf_torch.workloads.criteo1tb import hashing

M = (1 << 64) - 1
K0, K1, K2 = 0xC3A5C85C97CB3127, 0xB492B66FBE98F273, 0x9AE16A3B2F90404F
KMUL = 0x9DDFEA08EB382D69


def _f64(s: bytes, i: int) -> int:
    return int.from_bytes(s[i : i + 8], "little")


def _f32(s: bytes, i: int) -> int:
    return int.from_bytes(s[i : i + 4], "little")


def _rot(v: int, r: int) -> int:
    return v if r == 0 else ((v >> r) | (v << (64 - r))) & M


def _mix(v: int) -> int:
    return v ^ (v >> 47)


def _h16(u: int, v: int, mul: int = KMUL) -> int:
    a = _mix(((u ^ v) * mul) & M)
    b = _mix(((v ^ a) * mul) & M)
    return (b * mul) & M


def _len0to16(s: bytes) -> int:
    n = len(s)
    if n >= 8:
        mul = K2 + n * 2
        a = (_f64(s, 0) + K2) & M
        b = _f64(s, n - 8)
        c = (_rot(b, 37) * mul + a) & M
        d = ((_rot(a, 25) + b) * mul) & M
        return _h16(c, d, mul)
    if n >= 4:
        mul = K2 + n * 2
        return _h16((n + (_f32(s, 0) << 3)) & M, _f32(s, n - 4), mul)
    if n > 0:
        y = s[0] + (s[n >> 1] << 8)
        z = n + (s[n - 1] << 2)
        return (_mix(((y * K2) ^ (z * K0)) & M) * K2) & M
    return K2


def _len17to32(s: bytes) -> int:
    n = len(s)
    mul = K2 + n * 2
    a = (_f64(s, 0) * K1) & M
    b = _f64(s, 8)
    c = (_f64(s, n - 8) * mul) & M
    d = (_f64(s, n - 16) * K2) & M
    return _h16(
        (_rot((a + b) & M, 43) + _rot(c, 30) + d) & M, (a + _rot((b + K2) & M, 18) + c) & M, mul
    )


def _len33to64(s: bytes) -> int:
    n = len(s)
    mul = K2 + n * 2
    a = (_f64(s, 0) * K2) & M
    b = _f64(s, 8)
    c = (_f64(s, n - 8) * mul) & M
    d = (_f64(s, n - 16) * K2) & M
    y = (_rot((a + b) & M, 43) + _rot(c, 30) + d) & M
    z = _h16(y, (a + _rot((b + K2) & M, 18) + c) & M, mul)
    e = (_f64(s, 16) * mul) & M
    f = _f64(s, 24)
    g = ((y + _f64(s, n - 32)) * mul) & M
    h = ((z + _f64(s, n - 24)) * mul) & M
    return _h16(
        (_rot((e + f) & M, 43) + _rot(g, 30) + h) & M, (e + _rot((f + a) & M, 18) + g) & M, mul
    )


def _weak32(s: bytes, i: int, a: int, b: int) -> tuple[int, int]:
    w, x, y, z = _f64(s, i), _f64(s, i + 8), _f64(s, i + 16), _f64(s, i + 24)
    a = (a + w) & M
    b = _rot((b + a + z) & M, 21)
    c = a
    a = (a + x + y) & M
    b = (b + _rot(a, 44)) & M
    return (a + z) & M, (b + c) & M


def fingerprint64_reference(s: bytes) -> int:
    n = len(s)
    if n <= 16:
        return _len0to16(s)
    if n <= 32:
        return _len17to32(s)
    if n <= 64:
        return _len33to64(s)
    seed = 81
    x, y = seed, (seed * K1 + 113) & M
    z = (_mix((y * K2 + 113) & M) * K2) & M
    v, w = (0, 0), (0, 0)
    x = (x * K2 + _f64(s, 0)) & M
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    i = 0
    while True:
        x = (_rot((x + y + v[0] + _f64(s, i + 8)) & M, 37) * K1) & M
        y = (_rot((y + v[1] + _f64(s, i + 48)) & M, 42) * K1) & M
        x ^= w[1]
        y = (y + v[0] + _f64(s, i + 40)) & M
        z = (_rot((z + w[0]) & M, 33) * K1) & M
        v = _weak32(s, i, (v[1] * K1) & M, (x + w[0]) & M)
        w = _weak32(s, i + 32, (z + w[1]) & M, (y + _f64(s, i + 16)) & M)
        z, x = x, z
        i += 64
        if i == end:
            break
    mul = K1 + ((z & 0xFF) << 1)
    i = last64
    w0 = (w[0] + ((n - 1) & 63)) & M
    v0 = (v[0] + w0) & M
    w0 = (w0 + v0) & M
    v, w = (v0, v[1]), (w0, w[1])
    x = (_rot((x + y + v[0] + _f64(s, i + 8)) & M, 37) * mul) & M
    y = (_rot((y + v[1] + _f64(s, i + 48)) & M, 42) * mul) & M
    x ^= (w[1] * 9) & M
    y = (y + v[0] * 9 + _f64(s, i + 40)) & M
    z = (_rot((z + w[0]) & M, 33) * mul) & M
    v = _weak32(s, i, (v[1] * mul) & M, (x + w[0]) & M)
    w = _weak32(s, i + 32, (z + w[1]) & M, (y + _f64(s, i + 16)) & M)
    z, x = x, z
    return _h16(
        (_h16(v[0], w[0], mul) + _mix(y) * K0 + z) & M, (_h16(v[1], w[1], mul) + x) & M, mul
    )


def test_tensorflow_documented_example():
    # tf.strings.to_hash_bucket_fast(["Hello", "TensorFlow", "2.x"], 3) == [0, 2, 2]
    assert [hashing.fingerprint64(s) % 3 for s in ("Hello", "TensorFlow", "2.x")] == [0, 2, 2]
    assert [fingerprint64_reference(s.encode()) % 3 for s in ("Hello", "TensorFlow", "2.x")] == [
        0,
        2,
        2,
    ]


def test_frozen_fingerprints():
    # tensorflow/core/platform/fingerprint_test.cc "IsForeverFrozen"; "" is FarmHash's k2.
    for s, value in (("Hello", 15404698994557526151), ("World", 18308117990299812472), ("", K2)):
        assert hashing.fingerprint64(s) == value
        assert fingerprint64_reference(s.encode()) == value


def test_library_equals_transcription_at_every_length_path():
    rng = random.Random(0)
    for n in [*range(0, 80), 127, 128, 129, 200, 1000]:
        s = bytes(rng.randrange(256) for _ in range(n))
        assert hashing.fingerprint64(s) == fingerprint64_reference(s), n


def test_hash_bucket_appends_the_column_and_applies_defaults():
    v = "68fd1e64"
    for col in (0, 9, 25):
        expected = fingerprint64_reference(f"{v}{col}".encode()) % hashing.VOCAB_SIZES[col]
        assert hashing.hash_bucket(v, col) == expected
    default = fingerprint64_reference(b"0000000012") % hashing.VOCAB_SIZES[12]
    assert hashing.hash_bucket("", 12) == hashing.hash_bucket("-1", 12) == default
    assert hashing.hash_bucket("-2", 12) != default  # only "-1" is the na value
    ids = hashing.hash_column(np.array(["a", "", "b"], dtype=object), 3)
    assert ids.dtype == np.int64 and ids[1] == hashing.hash_bucket("00000000", 3)


def test_large_bucket_ids_round_to_float32():
    # Ids above 2**24 are not all representable: float32 keeps 24 significant bits.
    ids = np.array([2**24 + 1, 39_884_405, 16_777_215], dtype=np.int64)
    f = ids.astype(np.float32)
    assert f[0] == 2**24 and f[1] == 39_884_404 and f[2] == 16_777_215
    col0 = [str(i) for i in range(400)]
    hashed = hashing.hash_column(np.array(col0, dtype=object), 0)
    big = hashed[hashed > 2**24]
    assert len(big) > 0 and (big.astype(np.float32).astype(np.int64) != big).any()


@pytest.mark.parametrize(
    ("x", "expected"),
    [(0.0, 0.0), (-5.0, 0.0), (1.0, np.log(2.0)), (1e6, np.log(1e6 + 1)), (2**25, 25 * np.log(2))],
)
def test_dense_transform(x, expected):
    out = hashing.dense_transform(np.array([x], dtype=np.float32))
    assert out.dtype == np.float32
    assert out[0] == np.float32(expected)
