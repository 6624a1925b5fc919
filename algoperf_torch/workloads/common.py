"""Pieces shared by the image-classification workloads: the loss and the metric.

The loss is the reference's (identical code in its ImageNet, CIFAR and MNIST PyTorch workloads):
``F.cross_entropy(reduction='none', label_smoothing=ε)``, masked by ``mask_batch``.

    python -m pytest tests/test_cifar.py tests/test_imagenet_models.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from algoperf_torch.evaluation import SummedMetrics
from algoperf_torch.spec import LossOutput, WorkloadConfig


def softmax_cross_entropy_loss(
    config: WorkloadConfig,
    label_batch: torch.Tensor,
    logits_batch: torch.Tensor,
    mask_batch: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Per-example softmax cross-entropy with label smoothing; labels as ints or soft targets."""
    per_example = F.cross_entropy(
        logits_batch, label_batch, reduction="none", label_smoothing=label_smoothing
    )
    if mask_batch is not None:
        per_example = per_example * mask_batch
        n_valid = mask_batch.sum()
    else:
        n_valid = torch.as_tensor(len(per_example), device=per_example.device)
    return LossOutput(per_example.sum(), n_valid, per_example)


def classification_metric(config: WorkloadConfig) -> SummedMetrics:
    return SummedMetrics()
