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
    """Bucket ids (int64) of an array of strings of one column (defaults applied)."""
    import farmhash

    fp, suffix, buckets = farmhash.fingerprint64, str(column), VOCAB_SIZES[column]
    default = fp(STRING_DEFAULT + suffix) % buckets
    ids = [
        default if v == "" or v == NA_VALUE else fp(v + suffix) % buckets for v in values.tolist()
    ]
    return np.array(ids, dtype=np.int64)


def dense_transform(x: np.ndarray) -> np.ndarray:
    """log(max(x, 0) + 1) of float32 values, in float32.

    ``max(x, 0) + 1`` is a float32 sum as in TensorFlow; the log is taken in float64 and rounded
    once, so the result is the correctly rounded float32 on any CPU (TensorFlow's float32 ``log``
    may differ from it by one unit in the last place).
    """
    x = np.maximum(np.asarray(x, dtype=np.float32), np.float32(0)) + np.float32(1)
    return np.log(x.astype(np.float64)).astype(np.float32)


class ParseError(ValueError):
    """A raw Criteo line that the reference's ``decode_csv`` would reject."""


def _check_field_counts(block: bytes, where: str) -> int:
    """Number of lines in ``block``; every line must have 40 tab-separated fields."""
    lines = block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)
    if block.count(b"\t") == (NUM_FIELDS - 1) * lines:
        return lines
    for i, line in enumerate(block.split(b"\n")[:lines]):
        fields = line.count(b"\t") + 1
        if fields != NUM_FIELDS:
            raise ParseError(
                f"{where}, line {i + 1}: {fields} tab-separated fields, expected "
                f"{NUM_FIELDS} (label, {NUM_DENSE} integers, {NUM_SPARSE} categorical strings): "
                f"{line[:120]!r}"
            )
    return lines  # pragma: no cover - the counts above disagree only if some line is bad


def parse_lines(block: bytes, where: str = "input") -> np.ndarray:
    """Prepared rows float32 [n, 40] (label, dense transformed, float32 ids) of raw TSV lines.

    Args:
        block: whole lines, ``\\n``-terminated (the last terminator may be missing).
        where: named in error messages (file and first line number).
    """
    import csv
    import io

    import pandas as pd

    n = _check_field_counts(block, where)
    rows = np.empty((n, ROW_WIDTH), dtype=np.float32)
    if n == 0:
        return rows
    dense_cols = range(1, 1 + NUM_DENSE)
    cat_cols = range(1 + NUM_DENSE, NUM_FIELDS)
    # Categorical columns as str objects (pandas' "category" parser is several times slower).
    dtypes = {0: "float64", **{c: "float64" for c in dense_cols}, **{c: object for c in cat_cols}}
    try:
        frame = pd.read_csv(
            io.BytesIO(block),
            sep="\t",
            header=None,
            names=list(range(NUM_FIELDS)),
            dtype=dtypes,
            na_values={c: [NA_VALUE, ""] for c in range(1 + NUM_DENSE)},
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=False,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError) as e:
        raise ParseError(f"{where}: not a Criteo TSV record ({e})") from None
    if len(frame) != n:
        raise ParseError(f"{where}: parsed {len(frame)} records from {n} lines")
    # na / empty -> the reference's defaults: 0.0 for the label and the integers.
    rows[:, 0] = frame[0].fillna(0.0).to_numpy(np.float64).astype(np.float32)
    dense = frame[list(dense_cols)].fillna(0.0).to_numpy(np.float64).astype(np.float32)
    rows[:, 1 : 1 + NUM_DENSE] = dense_transform(dense)
    for i, c in enumerate(cat_cols):
        # Hash each distinct string once; empty and "-1" hash as the default "00000000".
        codes, uniques = pd.factorize(frame[c].to_numpy(dtype=object), use_na_sentinel=False)
        ids = hash_column(np.asarray(uniques, dtype=object), i)[codes]
        rows[:, 1 + NUM_DENSE + i] = ids.astype(np.float32)  # float32, as the reference's cast
    return rows
