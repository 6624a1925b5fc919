"""Criteo TSV parsing as the reference's TensorFlow pipeline does it (WORKLOADS.md §2.4).

Per line: label, 13 integer features, 26 categorical strings, tab-separated. A field that is
empty or equal to ``"-1"`` takes the default (0 for integers, ``"00000000"`` for strings), as
``tf.io.decode_csv(..., na_value='-1')``. Dense x -> log(max(x, 0) + 1) in float32. Categorical
string s in column i -> ``tf.strings.to_hash_bucket_fast(s + str(i), VOCAB_SIZES[i])``, which is
FarmHash ``Fingerprint64`` of the bytes modulo the bucket count; the bucket id is then cast to
float32 (ids above 2**24 lose their low bits, as in the reference)
[algoperf/workloads/criteo1tb/input_pipeline.py ``_parse_example_fn``].

    python -m pytest tests/test_criteo_hashing.py
"""

from __future__ import annotations

import numpy as np

NUM_DENSE = 13
NUM_SPARSE = 26
NUM_FIELDS = 1 + NUM_DENSE + NUM_SPARSE
ROW_WIDTH = 1 + NUM_DENSE + NUM_SPARSE
"""Columns of a prepared row: label, the 13 transformed dense values, the 26 float32 ids."""
NA_VALUE = "-1"
STRING_DEFAULT = "00000000"

# Raw per-column bucket counts [input_pipeline.py ``_VOCAB_SIZES``].
VOCAB_SIZES = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)  # fmt: skip


def fingerprint64(data: bytes | str) -> int:
    """FarmHash Fingerprint64 (TensorFlow's ``Fingerprint64``), an unsigned 64-bit int."""
    import farmhash  # pyfarmhash: the FarmHash C++ library's fingerprint functions

    return farmhash.fingerprint64(data)


def hash_bucket(value: str, column: int) -> int:
    """``to_hash_bucket_fast(value + str(column), VOCAB_SIZES[column])`` for one value."""
    if value in ("", NA_VALUE):
        value = STRING_DEFAULT
    return fingerprint64(value + str(column)) % VOCAB_SIZES[column]


def hash_column(values: np.ndarray, column: int) -> np.ndarray:
    """Bucket ids (int64) of an array of unique strings of one column (defaults applied)."""
    return np.fromiter((hash_bucket(v, column) for v in values), dtype=np.int64, count=len(values))


def dense_transform(x: np.ndarray) -> np.ndarray:
    """log(max(x, 0) + 1) of float32 values, in float32.

    ``max(x, 0) + 1`` is a float32 sum as in TensorFlow; the log is taken in float64 and rounded
    once, so the result is the correctly rounded float32 on any CPU (TensorFlow's float32 ``log``
    may differ from it by one unit in the last place).
    """
    x = np.maximum(np.asarray(x, dtype=np.float32), np.float32(0)) + np.float32(1)
    return np.log(x.astype(np.float64)).astype(np.float32)
