"""AdamW (Loshchilov & Hutter, 2019) as the AlgoPerf paper baseline configures it.

The reference's PyTorch baseline is ``torch.optim.AdamW(lr, betas=(1 - one_minus_beta1, beta2),
eps=1e-8, weight_decay)`` on every parameter [algorithms/archived_paper_baselines/adamw/pytorch/
submission.py]; its JAX twin ``optax.adamw`` is the same map (RULES.md §5.2). Per parameter:

    p <- p (1 - lr_t wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr_t / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

which is exactly torch's update, so we configure torch's class (``foreach``) and add nothing.
Schedule: ``schedules.warmup_cosine`` with ``W = int(warmup_factor * step_hint)`` as the JAX file;
the PyTorch file passes the float ``warmup_factor * step_hint`` to ``SequentialLR``, whose
milestone then never fires for non-integral W — we follow JAX (DESIGN.md decision 3).

    python -m algoperf_torch optimizer=adamw
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from algoperf_torch.optimizers import _hparams as hp


def build(params: Iterable, h: Mapping[str, Any]) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` from a search-space point (keys of ``adamw.json``).

    Args:
        params: parameters or parameter groups.
        h: hyperparameters: learning_rate, one_minus_beta1, beta2, weight_decay, epsilon (1e-8).

    Returns:
        The optimizer, its ``lr`` the peak learning rate.
    """
    return torch.optim.AdamW(
        params,
        lr=hp.learning_rate(h),
        betas=(hp.beta1(h), hp.beta2(h)),
        eps=hp.epsilon(h),
        weight_decay=hp.weight_decay(h),
        foreach=True,
    )
