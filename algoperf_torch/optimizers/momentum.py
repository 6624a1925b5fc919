"""Heavy-ball momentum SGD with coupled L2 weight decay, the AlgoPerf paper baseline.

The reference's PyTorch baseline is ``torch.optim.SGD(lr, momentum=1 - one_minus_beta1,
weight_decay, nesterov=False)`` (dampening 0) on every parameter [algorithms/
archived_paper_baselines/momentum/pytorch/submission.py]; the JAX twin
(``add_decayed_weights`` then ``optax.sgd``) is the same map (RULES.md §5.2):

    g' = g + wd p;  b <- beta1 b + g'  (b starts as g');  p <- p - lr_t b

torch's SGD computes exactly this, so we configure it (``foreach``). Schedule:
``schedules.warmup_linear_decay`` (optax linear warmup from 0, linear decay to
``lr * end_factor``, float32 as the reference's ``LambdaLR``).

    python -m algoperf_torch optimizer=momentum
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from algoperf_torch.optimizers import _hparams as hp


def build(params: Iterable, h: Mapping[str, Any], *, nesterov: bool = False) -> torch.optim.SGD:
    """``torch.optim.SGD`` with momentum from a search-space point (keys of ``momentum.json``).

    Args:
        params: parameters or parameter groups.
        h: hyperparameters: learning_rate, one_minus_beta1, weight_decay (and the schedule's
            warmup_factor, decay_steps_factor, end_factor, checked here).
        nesterov: Nesterov momentum (the ``nesterov`` baseline).

    Returns:
        The optimizer, its ``lr`` the peak learning rate.
    """
    hp.number(h, "warmup_factor", lo=0.0, hi=1.0)
    hp.number(h, "decay_steps_factor", lo=0.0)
    hp.number(h, "end_factor", lo=0.0)
    return torch.optim.SGD(
        params,
        lr=hp.learning_rate(h),
        momentum=hp.beta1(h),
        dampening=0.0,
        weight_decay=hp.weight_decay(h),
        nesterov=nesterov,
        foreach=True,
    )
