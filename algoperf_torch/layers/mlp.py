"""The transformer MLP block of the reference ViT (``MlpBlock``), optionally gated (GLU).

h = GELU_tanh(linear1(x)); with ``use_glu`` h ← h ⊙ glu_linear(h); dropout; linear2(h).
Every Linear is built with torch's default init, then re-drawn in module order: xavier-uniform
weight, bias N(0, 1e-6) [algoperf/workloads/imagenet_vit/imagenet_pytorch/models.py].

    python -m pytest tests/test_imagenet_models.py
"""

from __future__ import annotations

import torch
from torch import nn

from algoperf_torch.layers.fast import Linear, dropout


class MlpBlock(nn.Module):
    """width -> mlp_dim -> width feed-forward block; ``glu_linear`` only when ``use_glu``."""

    fast_kernels: bool = True  # layers/fast.py's dropout

    def __init__(self, width: int, mlp_dim: int | None = None, use_glu: bool = False) -> None:
        super().__init__()
        mlp_dim = mlp_dim or 4 * width
        self.use_glu = use_glu
        self.linear1 = Linear(width, mlp_dim)
        self.act_fnc = nn.GELU(approximate="tanh")
        self.glu_linear = Linear(mlp_dim, mlp_dim) if use_glu else None
        self.linear2 = Linear(mlp_dim, width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.normal_(module.bias, std=1e-6)

    def forward(self, x: torch.Tensor, dropout_rate: float = 0.0) -> torch.Tensor:
        x = self.act_fnc(self.linear1(x))  # [B, N, width] -> [B, N, mlp_dim]
        if self.glu_linear is not None:
            x = x * self.glu_linear(x)
        x = dropout(x, dropout_rate, self.training, self.fast_kernels)
        return self.linear2(x)  # [B, N, width]
