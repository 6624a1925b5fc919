"""BatchNorm whose running statistics can be frozen by an explicit switch.

The reference freezes statistics for ``model_fn(update_batch_norm=False)`` by patching each BN
layer's momentum to 0 from outside [algoperf/pytorch_utils.py ``update_batch_norm_fn``]. Here the
layer owns the switch: with ``update_running_stats = False`` a training-mode forward still
normalises with batch statistics and still counts ``num_batches_tracked``, but leaves
``running_mean``/``running_var`` unchanged (exactly the reference's momentum-0 effect).

    python -m pytest tests/test_layers.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _SwitchableBatchNorm(nn.modules.batchnorm._BatchNorm):
    update_running_stats: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and self.track_running_stats):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average, as torch
            momentum = 1.0 / float(self.num_batches_tracked)
        else:
            momentum = self.momentum
        if not self.update_running_stats:
            momentum = 0.0
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=True,
            momentum=momentum,
            eps=self.eps,
        )


class BatchNorm1d(_SwitchableBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with the ``update_running_stats`` switch."""


class BatchNorm2d(_SwitchableBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with the ``update_running_stats`` switch."""


def set_running_stats_update(model: nn.Module, update: bool) -> None:
    """Switch every switchable BatchNorm in ``model`` (the reference's ``update_batch_norm``):
    ours, and any custom BN with an ``update_running_stats`` switch (the LibriSpeech models')."""
    for module in model.modules():
        if isinstance(module, _SwitchableBatchNorm) or hasattr(module, "update_running_stats"):
            module.update_running_stats = update
