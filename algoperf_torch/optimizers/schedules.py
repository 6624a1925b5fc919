"""Learning-rate schedules as pure functions of the step (a multiplier on the peak learning rate).

Each matches the reference baseline that uses it, step for step (RULES.md §5.1, §5.2): ``t`` is
the number of earlier ``update_params`` calls, so step 0 runs with the first value. The adapter
wraps the function in ``torch.optim.lr_scheduler.LambdaLR``, stepped once per update.

    python -m pytest tests/test_schedules.py
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Schedule = Callable[[int], float]

# torch.optim.lr_scheduler.LinearLR(start_factor=1e-10) as the reference baselines build it.
WARMUP_START_FACTOR = 1e-10
# The self-tuning Schedule-Free AdamW submission shortens its warmup to 0.75 of the step hint
# [submissions_algorithms: submissions/self_tuning/schedule_free_adamw/submission.py].
SCHEDULE_FREE_STEP_HINT_FACTOR = 0.75


def warmup_steps(hparams: Mapping[str, Any], step_hint: int) -> int:
    """``int(warmup_factor * step_hint)``, the reference's warmup length."""
    return int(float(hparams["warmup_factor"]) * step_hint)


def warmup_cosine(hparams: Mapping[str, Any], step_hint: int) -> Schedule:
    """Linear warmup from 1e-10 to 1, then cosine decay over ``step_hint - W`` steps.

    The reference's ``SequentialLR([LinearLR, CosineAnnealingLR])``
    [algorithms/baselines/external_tuning/pytorch_nadamw_full_budget.py]. Past the end, torch's
    closed-form cosine keeps its period ``2T``: the factor rises again, as in the reference.
    """
    warmup = warmup_steps(hparams, step_hint)
    decay = max(step_hint - warmup, 1)

    def factor(t: int) -> float:
        if t < warmup:
            return WARMUP_START_FACTOR + (1.0 - WARMUP_START_FACTOR) * t / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (t - warmup) / decay))

    return factor


def warmup_cosine_optax(hparams: Mapping[str, Any], step_hint: int) -> Schedule:
    """The JAX baselines' warmup + cosine: ``t/W`` from exactly 0, then cosine clamped at 0.

    ``optax.join_schedules([linear_schedule(0, lr, W), cosine_decay_schedule(lr, T)], [W])``
    [algorithms/archived_paper_baselines/lamb/jax/submission.py, shampoo/jax/submission.py],
    ``T = max(step_hint - W, 1)``. Unlike torch's cosine it stays at 0 after ``W + T``. Values are
    rounded to float32 as optax computes them (the cosine may differ from XLA's by one ulp).
    """
    lr = float(hparams["learning_rate"])
    warmup = warmup_steps(hparams, step_hint)
    decay = max(step_hint - warmup, 1)

    def value(t: int) -> np.float32:
        if t < warmup:  # linear_schedule(0 -> lr): (0 - lr) * frac + lr
            return np.float32(-lr) * _f32_frac_left(t, warmup) + np.float32(lr)
        count = np.float32(min(t - warmup, decay))
        cosine = np.float32(0.5) * (
            np.float32(1.0) + np.cos(np.float32(math.pi) * count / np.float32(decay))
        )
        return np.float32(lr) * cosine

    def factor(t: int) -> float:
        return float(value(t)) / lr if lr > 0 else 0.0

    return factor


def warmup_linear_decay(hparams: Mapping[str, Any], step_hint: int) -> Schedule:
    """Linear warmup from 0, linear decay to ``end_factor`` over ``D`` steps, then constant.

    The Momentum/Nesterov baselines' schedule [algorithms/archived_paper_baselines/momentum/
    pytorch/submission.py ``create_lr_schedule_fn``]: ``W = int(warmup_factor*step_hint)``,
    ``D = int((step_hint - W) * decay_steps_factor)``, optax ``linear_schedule(0, lr, W)`` joined
    at ``W`` with ``polynomial_schedule(lr, lr*end_factor, power=1, D)``, evaluated in float32 and
    divided by ``lr`` in a ``LambdaLR`` (``schedule(t).item() / lr``). We reproduce those float32
    roundings, so the factors equal the reference's bit for bit.
    """
    lr = float(hparams["learning_rate"])
    warmup = warmup_steps(hparams, step_hint)
    decay = int((step_hint - warmup) * float(hparams["decay_steps_factor"]))
    end_value = lr * float(hparams["end_factor"])

    def value(t: int) -> np.float32:
        if t < warmup:  # linear_schedule(0 -> lr): (0 - lr) * frac + lr
            return np.float32(-lr) * _f32_frac_left(t, warmup) + np.float32(lr)
        if decay <= 0:  # optax returns the constant init value
            return np.float32(lr)
        frac = _f32_frac_left(min(t - warmup, decay), decay)
        return np.float32(lr - end_value) * frac + np.float32(end_value)

    def factor(t: int) -> float:
        return float(value(t)) / lr if lr > 0 else 0.0

    return factor


def _f32_frac_left(count: int, steps: int) -> np.float32:
    """``1 - clip(count, 0, steps) / steps`` in float32, as optax's polynomial schedule."""
    count = min(max(count, 0), steps)
    return np.float32(1.0) - np.float32(count) / np.float32(steps)


def schedule_free_warmup(hparams: Mapping[str, Any], step_hint: int) -> Schedule:
    """``(t + 1) / W`` for ``t < W``, then 1: Schedule-Free AdamW's internal warmup.

    The self-tuning winner computes ``lr * (k+1)/W`` inside its optimizer with
    ``W = int(warmup_factor * step_hint * 0.75)`` [submissions_algorithms: submissions/
    self_tuning/schedule_free_adamw/submission.py]; as a ``LambdaLR`` factor the optimizer sees
    the same warmed-up ``lr`` (and so the same ``lr_max`` and averaging weights).
    """
    warmup = int(float(hparams["warmup_factor"]) * step_hint * SCHEDULE_FREE_STEP_HINT_FACTOR)

    def factor(t: int) -> float:
        return (t + 1) / warmup if t < warmup else 1.0

    return factor


def constant(hparams: Mapping[str, Any], step_hint: int) -> Schedule:
    """No schedule (e.g. schedule-free optimizers with internal warmup)."""
    return lambda t: 1.0
