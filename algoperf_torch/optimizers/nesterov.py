"""Nesterov momentum SGD with coupled L2 weight decay, the AlgoPerf paper baseline.

The reference's PyTorch baseline is ``torch.optim.SGD(..., nesterov=True)`` [algorithms/
archived_paper_baselines/nesterov/pytorch/submission.py]; JAX ``optax.sgd(nesterov=True)`` after
``add_decayed_weights`` is the same map (RULES.md §5.2):

    g' = g + wd p;  b <- beta1 b + g';  p <- p - lr_t (g' + beta1 b)

Everything else (schedule, search space shape) is the Momentum baseline's; see ``momentum.py``.

    python -m algoperf_torch optimizer=nesterov
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from algoperf_torch.optimizers import momentum


def build(params: Iterable, h: Mapping[str, Any]) -> torch.optim.SGD:
    """``torch.optim.SGD(nesterov=True)`` from a search-space point (keys of ``nesterov.json``)."""
    return momentum.build(params, h, nesterov=True)
