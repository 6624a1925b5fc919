"""Scrambled, shifted Halton points, bit-for-bit as AlgoPerf draws them.

    python -c "from algoperf_torch.tuning.halton import halton_points; print(halton_points(3, 2))"

Reproduces the reference's quasi-random generator [algoperf/halton.py `generate_sequence`,
`_generate_dim`; spec/RULES.md §3.1] for any number of dimensions `D` and points `N`:

1. Bases: the odd primes below 1000 (sieve of Sundaram; the bound grows by 1000 until there are
   more than `D` primes); drop the largest and take the `D` primes just below it, ascending.
2. Per base `b`: `numpy.random.RandomState(b)` shuffles `[1, ..., b - 1]` (legacy Fisher-Yates),
   `0` is prepended, giving the digit permutation; one `random_sample()` from the same generator
   is the dimension's shift.
3. Point `i` (1-based, the first 100 skipped) is the scrambled radical inverse of `i` in base `b`
   plus the shift, modulo 1.

The float operations are done in the reference's order so the values agree to the last bit.
What differs is only the order of the returned points: the reference shuffles them with the
unseeded global numpy RNG; `halton_points` returns them in sequence order and
`algoperf_torch.tuning.search_space.generate_search` shuffles them with a seeded generator.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

SKIP = 100  # leading points discarded [algoperf/halton.py `generate_sequence(skip=100)`]


def odd_primes_below(n: int) -> list[int]:
    """Odd primes below `n` (2 excluded), by the sieve of Sundaram, as the reference lists them.

    Args:
        n: exclusive upper bound.

    Returns:
        The odd primes `p < n` (for odd `n`, `p <= n - 2`), ascending.
    """
    half = (n - 2) // 2
    crossed = bytearray(half + 1)
    for i in range(1, half + 1):
        j = i
        while i + j + 2 * i * j <= half:
            crossed[i + j + 2 * i * j] = 1
            j += 1
    return [2 * k + 1 for k in range(1, half + 1) if not crossed[k]]


def halton_bases(num_dims: int) -> list[int]:
    """The prime base of each dimension: the `num_dims` primes below the largest one found.

    Args:
        num_dims: number of dimensions (hyperparameters), >= 1.

    Returns:
        `num_dims` primes, ascending; dimension 0 gets the smallest.
    """
    if num_dims < 1:
        raise ValueError(f"num_dims must be >= 1, got {num_dims}")
    bound = 1000
    primes = odd_primes_below(bound)
    while len(primes) < num_dims + 1:
        bound += 1000
        primes = odd_primes_below(bound)
    return primes[-num_dims - 1 : -1]


@cache
def digit_permutation_and_shift(base: int) -> tuple[tuple[int, ...], float]:
    """The digit scrambling and the shift of the dimension with prime base `base`.

    Args:
        base: the dimension's prime base.

    Returns:
        (permutation of `0..base-1` with `0` fixed, shift in [0, 1)).
    """
    rng = np.random.RandomState(base)
    digits = list(range(1, base))
    rng.shuffle(digits)  # numpy's legacy shuffle of a Python list, in place
    shift = float(rng.random_sample())
    return (0, *digits), shift


def scrambled_radical_inverse(index: int, base: int, permutation: tuple[int, ...]) -> float:
    """Radical inverse of `index` in `base` with each digit mapped through `permutation`.

    Args:
        index: the point's integer index (>= 1).
        base: the base.
        permutation: the digit map, length `base`.

    Returns:
        `sum_k permutation[a_k] / base**(k+1)` for the base-`base` digits `a_0, a_1, ...` of
        `index` (least significant first), summed in that order.
    """
    value = 0.0
    denominator = base
    while index:
        value += permutation[index % base] / denominator
        denominator *= base
        index //= base
    return value


def halton_points(num_points: int, num_dims: int, skip: int = SKIP) -> list[tuple[float, ...]]:
    """The reference's Halton points in sequence order (before its unseeded shuffle).

    Args:
        num_points: number of points `N`.
        num_dims: number of dimensions `D`.
        skip: leading indices discarded (the reference uses 100).

    Returns:
        `N` tuples of `D` floats in [0, 1); tuple `j` is sequence index `skip + 1 + j`.
    """
    if num_points < 0 or skip < 0:
        raise ValueError(f"num_points and skip must be >= 0, got {num_points}, {skip}")
    columns = []
    for base in halton_bases(num_dims):
        permutation, shift = digit_permutation_and_shift(base)
        columns.append(
            [
                math.fmod(scrambled_radical_inverse(i, base, permutation) + shift, 1.0)
                for i in range(skip + 1, skip + num_points + 1)
            ]
        )
    return list(zip(*columns, strict=True))
