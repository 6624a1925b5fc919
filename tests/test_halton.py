"""The Halton generator reproduces the reference's points, checked against independent derivations.

    .venv/bin/python -m pytest tests/test_halton.py -q

Reference values (marked RULES) were derived by running the reference's `algoperf/halton.py`
(spec/RULES.md §3.1); the others are computed by hand here, from the raw MT19937 stream.
"""

import math

import numpy as np
import pytest

from algoperf_torch.tuning.halton import (
    digit_permutation_and_shift,
    halton_bases,
    halton_points,
    odd_primes_below,
    scrambled_radical_inverse,
)
from algoperf_torch.tuning.search_space import generate_search

ADAMW_SPACE = {  # archived AdamW baseline space, in its JSON key order (RULES §5.2)
    "learning_rate": {"min": 1e-4, "max": 1e-2, "scaling": "log"},
    "one_minus_beta1": {"min": 0.02, "max": 0.5, "scaling": "log"},
    "beta2": {"feasible_points": [0.999]},
    "warmup_factor": {"feasible_points": [0.05]},
    "weight_decay": {"min": 5e-3, "max": 1.0, "scaling": "log"},
    "label_smoothing": {"feasible_points": [0.1, 0.2]},
    "dropout_rate": {"feasible_points": [0.0, 0.1]},
}
MOMENTUM_SPACE = {
    "learning_rate": {"min": 0.02, "max": 5.0, "scaling": "log"},
    "one_minus_beta1": {"min": 0.005, "max": 0.3, "scaling": "log"},
    "warmup_factor": {"feasible_points": [0.05]},
    "weight_decay": {"min": 1e-7, "max": 5e-5, "scaling": "log"},
    "label_smoothing": {"feasible_points": [0.1, 0.2]},
    "dropout_rate": {"feasible_points": [0.0, 0.1]},
    "decay_steps_factor": {"feasible_points": [0.9]},
    "end_factor": {"feasible_points": [0.001, 0.01]},
}


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


def test_primes_and_bases():
    assert odd_primes_below(30) == [3, 5, 7, 11, 13, 17, 19, 23, 29]
    primes = odd_primes_below(1000)
    assert primes == [p for p in range(3, 1000) if _is_prime(p)]
    assert len(primes) == 167
    assert halton_bases(6) == [953, 967, 971, 977, 983, 991]  # RULES
    assert halton_bases(7) == [947, 953, 967, 971, 977, 983, 991]
    assert halton_bases(8)[:2] == [941, 947]
    # More dimensions than odd primes below 1000: the bound grows to 2000.
    bases = halton_bases(170)
    assert bases[-1] == max(p for p in range(1000, 2000) if _is_prime(p) and p < 1999)
    assert len(bases) == 170 and all(_is_prime(b) for b in bases)


def test_radical_inverse_by_hand():
    identity = (0, 1, 2)
    # 5 = 12 in base 3: digits a0=2, a1=1 -> 2/3 + 1/9.
    assert scrambled_radical_inverse(5, 3, identity) == pytest.approx(7 / 9)
    # Swapping digits 1 and 2: 1/3 + 2/9.
    assert scrambled_radical_inverse(5, 3, (0, 2, 1)) == pytest.approx(5 / 9)
    # 101 = 10202 in base 3 (1*81 + 0*27 + 2*9 + 0*3 + 2): a0=2, a1=0, a2=2, a3=0, a4=1.
    expected = 2 / 3 + 0 / 9 + 2 / 27 + 0 / 81 + 1 / 243
    assert scrambled_radical_inverse(101, 3, identity) == pytest.approx(expected)


def _legacy_permutation_and_shift(base: int) -> tuple[tuple[int, ...], float]:
    """numpy's legacy `RandomState(base).shuffle` + `random_sample`, from raw 32-bit words."""
    gen = np.random.MT19937()
    gen._legacy_seeding(base)  # what RandomState(int) does
    words = iter(int(w) for w in gen.random_raw(10 * base))
    digits = list(range(1, base))
    for i in range(len(digits) - 1, 0, -1):
        mask = (1 << i.bit_length()) - 1  # smallest all-ones mask covering i
        j = next(w & mask for w in words if (w & mask) <= i)
        digits[i], digits[j] = digits[j], digits[i]
    a, b = next(words) >> 5, next(words) >> 6
    return (0, *digits), (a * 67108864.0 + b) / 9007199254740992.0


@pytest.mark.parametrize("base", [3, 5, 947, 991])
def test_permutation_and_shift_match_the_raw_mt19937_stream(base):
    assert digit_permutation_and_shift(base) == _legacy_permutation_and_shift(base)


def test_base_947_matches_reference():
    permutation, shift = digit_permutation_and_shift(947)
    assert permutation[:7] == (0, 241, 807, 269, 225, 688, 315)  # RULES
    assert shift == 0.32853577176599935  # RULES
    assert sorted(permutation) == list(range(947))


def test_first_point_of_seven_dims_matches_reference():
    (u,) = halton_points(1, 7)
    assert u == (  # RULES: exact values of the reference at index 101
        0.648493533117636,
        0.7565722923221863,
        0.3641415259118679,
        0.6914475933545885,
        0.13714606964468423,
        0.2739744372653363,
        0.28612427728381884,
    )


def test_points_are_shifted_radical_inverses_of_101_onwards():
    points = halton_points(4, 2)
    for d, base in enumerate(halton_bases(2)):
        perm, shift = _legacy_permutation_and_shift(base)
        for j, point in enumerate(points):
            x = scrambled_radical_inverse(101 + j, base, perm)
            assert point[d] == math.fmod(x + shift, 1.0)


def test_adamw_space_points_match_reference():
    points = generate_search(ADAMW_SPACE, 5)  # seed None: sequence order 101..105
    keys = ("learning_rate", "one_minus_beta1", "weight_decay", "label_smoothing", "dropout_rate")
    expected = [  # RULES
        (0.001981468015, 0.2283876798, 0.01034063537, 0.1, 0.0),
        (0.0002366315233, 0.03838470137, 0.358796133, 0.2, 0.1),
        (0.0009554263255, 0.2640879982, 0.0195031866, 0.1, 0.0),
        (0.0001005477818, 0.02851493692, 0.01263832761, 0.1, 0.0),
        (0.0001976656023, 0.2022389796, 0.01230024073, 0.1, 0.1),
    ]
    for point, want in zip(points, expected, strict=True):
        assert list(point) == list(ADAMW_SPACE)
        assert point["beta2"] == 0.999 and point["warmup_factor"] == 0.05
        for key, value in zip(keys, want, strict=True):
            assert point[key] == pytest.approx(value, rel=1e-9)
    assert all(isinstance(p["learning_rate"], float) for p in points)


def test_momentum_space_first_point_matches_reference():
    (point,) = generate_search(MOMENTUM_SPACE, 1)
    assert point["learning_rate"] == pytest.approx(0.4394877561, rel=1e-9)
    assert point["one_minus_beta1"] == pytest.approx(0.07113602459, rel=1e-9)
    assert point["weight_decay"] == pytest.approx(9.611851573e-07, rel=1e-9)
    assert (point["label_smoothing"], point["dropout_rate"], point["end_factor"]) == (
        0.2,
        0.0,
        0.001,
    )


def test_first_n_sets_are_nested_and_seed_only_reorders():
    five = generate_search(ADAMW_SPACE, 5)
    three = generate_search(ADAMW_SPACE, 3)
    assert five[:3] == three
    shuffled = generate_search(ADAMW_SPACE, 5, seed=7)
    assert shuffled == generate_search(ADAMW_SPACE, 5, seed=7)
    assert sorted(map(str, shuffled)) == sorted(map(str, five))
    assert shuffled != five or generate_search(ADAMW_SPACE, 5, seed=8) != five
