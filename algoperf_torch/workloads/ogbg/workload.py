"""The ``ogbg`` registry entry (and its variants ``ogbg_gelu``, ``ogbg_silu``, ``ogbg_model_size``,
which only change YAML values): graph network, masked sigmoid BCE, mAP (WORKLOADS.md §8).

    python -m algoperf_torch.data ogbg --data-dir ~/data
    python -m algoperf_torch workload=ogbg data.data_dir=~/data
    python -m algoperf_torch workload=ogbg_model_size data=synthetic max_steps=5
"""

from __future__ import annotations

import torch
from torch import nn

from algoperf_torch.spec import Batch, WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.ogbg import data, metrics
from algoperf_torch.workloads.ogbg.model import GNN, GNNConfig


def build_model(config: WorkloadConfig) -> GNN:
    m = config.model
    return GNN(
        GNNConfig(
            num_outputs=int(m["num_outputs"]),
            activation=str(m["activation"]),
            latent_dim=int(m["latent_dim"]),
            hidden_dims=tuple(int(d) for d in m["hidden_dims"]),
            num_message_passing_steps=int(m["num_message_passing_steps"]),
            dropout_rate=float(m["dropout_rate"]),
        )
    )


def forward(
    model: nn.Module, batch: Batch, train: bool, dropout_rate: float | None
) -> torch.Tensor:
    """Logits ``[b + 1, 128]``; ``dropout_rate=None`` uses the reference's default, 0.1."""
    return model(batch["inputs"], dropout_rate=dropout_rate)


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=data.input_iterator,
    synthetic_batch=data.synthetic_batch,
    loss=metrics.loss,
    make_metric=metrics.make_metric,
    forward=forward,
    is_output_param=lambda name: name in ("decoder.weight", "decoder.bias"),
)
