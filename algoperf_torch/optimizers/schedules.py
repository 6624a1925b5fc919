"""Learning-rate schedules as pure functions of the step (a multiplier on the peak learning rate).

Each matches the PyTorch reference baseline that uses it, step for step (RULES.md §5.1, §5.2):
``t`` is the number of earlier ``update_params`` calls, so step 0 runs with the first value.

    python -m pytest tests/test_schedules.py
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

Schedule = Callable[[int], float]

# torch.optim.lr_scheduler.LinearLR(start_factor=1e-10) as the reference baselines build it.
WARMUP_START_FACTOR = 1e-10


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


def warmup_linear_decay(hparams: Mapping[str, Any], step_hint: int) -> Schedule:
    """Linear warmup to 1, then linear decay to ``end_factor`` at ``decay_steps_factor*step_hint``.

    The Momentum/Nesterov baselines' schedule [algorithms/archived_paper_baselines/momentum/
    pytorch/submission.py]: ``decay_steps_factor`` and ``end_factor`` come from the hparams.
    """
    warmup = warmup_steps(hparams, step_hint)
    decay_end = int(float(hparams["decay_steps_factor"]) * step_hint)
    end = float(hparams["end_factor"])

    def factor(t: int) -> float:
        if t < warmup:
            return WARMUP_START_FACTOR + (1.0 - WARMUP_START_FACTOR) * t / warmup
        frac = min(1.0, (t - warmup) / max(decay_end - warmup, 1))
        return 1.0 + (end - 1.0) * frac

    return factor


def constant(hparams: Mapping[str, Any], step_hint: int) -> Schedule:
    """No schedule (e.g. schedule-free optimizers, which warm up internally)."""
    return lambda t: 1.0
