"""Multihead attention pooling (MAP): a learned probe attends over the tokens.

As the reference ViT's ``MAPHead`` [algoperf/workloads/imagenet_vit/imagenet_pytorch/models.py]:
probe [1, 1, width] (xavier-uniform), cross-attention probe -> tokens (``mha``), then
x + MLP(LayerNorm(x)); returns the single pooled token. Build order (torch RNG): probe, ``mha``,
``layer_norm``, ``mlp``.

    python -m pytest tests/test_imagenet_models.py -k map
"""

from __future__ import annotations

import torch
from torch import nn

from algoperf_torch.layers.attention import CrossAttention
from algoperf_torch.layers.mlp import MlpBlock


class MAPHead(nn.Module):
    """[B, N, width] tokens -> [B, width] pooled representation."""

    def __init__(self, width: int, mlp_dim: int | None = None, num_heads: int = 12) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.xavier_uniform_(self.probe)
        self.mha = CrossAttention(width, num_heads, bias=True)
        self.layer_norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = MlpBlock(width, mlp_dim)

    def forward(self, x: torch.Tensor, dropout_rate: float = 0.0) -> torch.Tensor:
        probe = self.probe.expand(x.shape[0], -1, -1)  # [1, 1, D] -> [B, 1, D]
        x = self.mha(probe, x, dropout_rate=dropout_rate)  # [B, 1, D]
        x = x + self.mlp(self.layer_norm(x), dropout_rate)
        return x[:, 0]  # [B, D]
