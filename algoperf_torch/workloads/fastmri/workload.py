"""The ``fastmri`` registry entry (and its variants, which only change YAML values).

The variants select channels/pools, Tanh and GroupNorm through ``model:``.

    python -m algoperf_torch workload=fastmri data.data_dir=~/data
    python -m algoperf_torch workload=fastmri_tanh data=synthetic max_steps=3
"""

from __future__ import annotations

import torch
from torch import nn

from algoperf_torch.spec import Batch, WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.fastmri import data
from algoperf_torch.workloads.fastmri.metrics import l1_loss, make_metric
from algoperf_torch.workloads.fastmri.model import UNet


def build_model(config: WorkloadConfig) -> UNet:
    m = config.model
    return UNet(
        num_channels=int(m["num_channels"]),
        num_pool_layers=int(m["num_pool_layers"]),
        use_tanh=bool(m["use_tanh"]),
        use_layer_norm=bool(m["use_layer_norm"]),
        dropout_rate=float(m["dropout_rate"]),
    )


def forward(
    model: nn.Module, batch: Batch, train: bool, dropout_rate: float | None
) -> torch.Tensor:
    """[B, 320, 320] -> [B, 1, 320, 320] -> U-Net -> [B, 320, 320] (reference ``model_fn``)."""
    return model(batch["inputs"].unsqueeze(1), dropout_rate=dropout_rate).squeeze(1)


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=data.input_iterator,
    synthetic_batch=data.synthetic_batch,
    loss=l1_loss,
    make_metric=make_metric,
    forward=forward,
    is_output_param=lambda name: name in ("up_conv.3.1.weight", "up_conv.3.1.bias"),
)
