"""The reference's numpy re-implementation of JAX's PRNG API, bit for bit (RULES.md §2.8).

With ``--framework=pytorch`` the reference derives every seed through these three functions
[algoperf/random_utils.py]; reproducing them gives our trials the same model-init seeds, data
seeds and per-step rngs as a reference PyTorch run with the same ``rng_seed``.

    python -m pytest tests/test_rng.py
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MAX_INT32 = 2**31 - 1

RandomState = np.ndarray | list[int]


def _reduce_seed(seed: Any) -> Any:
    # The reference's ``_signed_to_unsigned``: every element modulo 2**31 - 1. It maps any other
    # type (e.g. a numpy scalar) to None, i.e. OS entropy; we refuse that instead.
    if isinstance(seed, int):
        return seed % _MAX_INT32
    if isinstance(seed, list):
        return [s % _MAX_INT32 for s in seed]
    if isinstance(seed, np.ndarray):
        return np.array([s % _MAX_INT32 for s in seed.tolist()])
    raise TypeError(
        f"rng seed {seed!r} of type {type(seed).__name__}: expected an int, a list or an ndarray "
        "(the reference would silently seed from OS entropy here)"
    )


def split(seed: Any, num: int = 2) -> np.ndarray:
    """``num`` new keys (an ``num x 2`` int32 array) from ``seed``."""
    rs = np.random.RandomState(_reduce_seed(seed))
    return rs.randint(0, _MAX_INT32, size=[num, 2], dtype=np.int32)


def prng_key(seed: int) -> np.ndarray:
    """``PRNGKey(seed)``: the first row of ``split(seed, 2)``."""
    return split(seed, 2)[0]


def fold_in(seed: Any, data: Any) -> list:
    """``fold_in(seed, data)``: one int32 drawn from ``seed``, paired with ``data``."""
    rs = np.random.RandomState(_reduce_seed(seed))
    new_seed = rs.randint(0, _MAX_INT32, dtype=np.int32)
    return [int(new_seed), data]
