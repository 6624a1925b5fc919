"""The ``imagenet_vit`` registry entry (and its variants, which only change YAML values).

Data are the ResNet workload's pipeline with RandAugment and mixup switched on for training
(``data.randaugment``, ``data.mixup_alpha`` in the YAML), as the reference's ViT workload does.

    python -m algoperf_torch workload=imagenet_vit data.data_dir=~/data
    python -m algoperf_torch workload=imagenet_vit_map data=synthetic max_steps=5
"""

from __future__ import annotations

import torch
from torch import nn

from algoperf_torch.spec import Batch, WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.common import classification_metric, softmax_cross_entropy_loss
from algoperf_torch.workloads.imagenet_resnet import data
from algoperf_torch.workloads.imagenet_vit.model import ViT


def build_model(config: WorkloadConfig) -> ViT:
    m = config.model
    return ViT(
        num_classes=int(m["num_classes"]),
        patch_size=int(m["patch_size"]),
        width=int(m["width"]),
        depth=int(m["depth"]),
        mlp_dim=int(m["mlp_dim"]),
        num_heads=int(m["num_heads"]),
        use_glu=bool(m["use_glu"]),
        use_post_layer_norm=bool(m["use_post_layer_norm"]),
        use_map=bool(m["use_map"]),
        dropout_rate=float(m["dropout_rate"]),
    )


def forward(
    model: nn.Module, batch: Batch, train: bool, dropout_rate: float | None
) -> torch.Tensor:
    """``dropout_rate=None`` uses the model's default (the reference's ``DROPOUT_RATE``, 0.0)."""
    return model(batch["inputs"], dropout_rate=dropout_rate)


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=data.input_iterator,
    synthetic_batch=data.synthetic_batch,
    loss=softmax_cross_entropy_loss,
    make_metric=classification_metric,
    forward=forward,
    is_output_param=lambda name: name in ("head.weight", "head.bias"),
)
