"""Reading and checking hyperparameters: each getter names the bad key, value and allowed range.

The optimizer builders in ``algoperf_torch.optimizers`` call these so that a bad search-space
point fails at ``init_optimizer_state`` with a message that says what to change.

    python -m pytest tests/test_optimizers.py -k invalid
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

Hparams = Mapping[str, Any]


def number(
    h: Hparams,
    key: str,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    hi_open: bool = False,
    default: float | None = None,
) -> float:
    """``float(h[key])`` checked against ``[lo, hi]`` (``(`` / ``)`` where open).

    Args:
        h: the hyperparameters.
        key: the name to read.
        lo, hi: allowed bounds; ``lo_open``/``hi_open`` exclude the bound itself.
        default: used when ``key`` is absent; absent without a default is an error.

    Returns:
        The value as a Python float.
    """
    if key not in h:
        if default is None:
            raise ValueError(f"hyperparameter {key!r} is required (got keys {sorted(h)})")
        return float(default)
    try:
        value = float(h[key])
    except (TypeError, ValueError):
        raise ValueError(f"hyperparameter {key}={h[key]!r} must be a number") from None
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if math.isnan(value) or below or above:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"hyperparameter {key}={value!r} is outside {left}{lo}, {hi}{right}")
    return value


def learning_rate(h: Hparams) -> float:
    """The peak learning rate, ``>= 0``."""
    return number(h, "learning_rate", lo=0.0)


def beta1(h: Hparams) -> float:
    """``1 - one_minus_beta1``; ``one_minus_beta1`` must lie in ``(0, 1]`` so beta1 is in [0, 1)."""
    return 1.0 - number(h, "one_minus_beta1", lo=0.0, hi=1.0, lo_open=True)


def beta2(h: Hparams, default: float | None = None) -> float:
    """``beta2`` in ``[0, 1)``."""
    return number(h, "beta2", lo=0.0, hi=1.0, hi_open=True, default=default)


def weight_decay(h: Hparams) -> float:
    """``weight_decay >= 0``."""
    return number(h, "weight_decay", lo=0.0)


def epsilon(h: Hparams, default: float = 1e-8) -> float:
    """``epsilon >= 0`` (the reference baselines fix it to 1e-8)."""
    return number(h, "epsilon", lo=0.0, default=default)


def integer(h: Hparams, key: str, *, lo: int, default: int) -> int:
    """An integer ``>= lo`` (floats that are whole numbers are accepted, as YAML may give)."""
    value = number(h, key, lo=lo, default=default)
    if value != math.floor(value):
        raise ValueError(f"hyperparameter {key}={value!r} must be a whole number")
    return int(value)


def flag(h: Hparams, key: str, default: bool) -> bool:
    """A boolean (``true``/``false``, or 0/1)."""
    value = h.get(key, default)
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ValueError(f"hyperparameter {key}={value!r} must be true or false")


def choice(h: Hparams, key: str, allowed: tuple[str, ...], default: str) -> str:
    """One of ``allowed`` (case-insensitive; returned upper-cased as written in ``allowed``)."""
    value = str(h.get(key, default))
    for a in allowed:
        if value.upper() == a.upper():
            return a
    raise ValueError(f"hyperparameter {key}={value!r} must be one of {', '.join(allowed)}")
