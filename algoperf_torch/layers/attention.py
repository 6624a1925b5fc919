"""Multi-head attention blocks through ``layers.fast.attention`` (scaled dot-product attention).

``SelfAttention`` is the reference ViT's (separate ``query``/``key``/``value``/``out`` projections,
xavier-uniform weights, zero biases) [algoperf/workloads/imagenet_vit/imagenet_pytorch/models.py];
``CrossAttention`` is the reference WMT ``MultiheadAttention`` with ``self_attn=False``
(``q_proj``, a fused ``kv_proj``, ``out_proj``; xavier-uniform weights, biases N(0, 1e-6))
[algoperf/workloads/wmt/wmt_pytorch/models_dropout.py], which the ViT MAP head uses. The
parameter names are the reference's: the optimizer-facing parameter types derive from them.

    python -m pytest tests/test_imagenet_models.py
"""

from __future__ import annotations

import torch
from torch import nn

from algoperf_torch.layers.fast import Linear, attention


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, num_heads, d // num_heads).transpose(1, 2)  # [B, N, D] -> [B, H, N, D/H]


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, hd = x.shape
    return x.transpose(1, 2).reshape(b, n, h * hd)  # [B, H, N, D/H] -> [B, N, D]


class SelfAttention(nn.Module):
    """Self-attention with separate Q/K/V/out projections; dropout on the attention weights."""

    fast_kernels: bool = True  # layers/fast.py's attention dropout

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        # Built (torch default init) then re-initialised, in this order, as the reference.
        self.query = Linear(width, width)
        self.key = Linear(width, width)
        self.value = Linear(width, width)
        self.out = Linear(width, width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.query, self.key, self.value, self.out):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, dropout_rate: float = 0.0) -> torch.Tensor:
        q = _split_heads(self.query(x), self.num_heads)  # [B, H, N, D/H]
        k = _split_heads(self.key(x), self.num_heads)
        v = _split_heads(self.value(x), self.num_heads)
        p = dropout_rate if self.training else 0.0
        y = attention(q, k, v, p, self.fast_kernels)  # scale 1/sqrt(D/H)
        return self.out(_merge_heads(y))  # [B, N, D]


class CrossAttention(nn.Module):
    """Queries attend to a memory: ``q_proj(x)`` against ``kv_proj(mem)``; no mask."""

    fast_kernels: bool = True  # layers/fast.py's attention dropout

    def __init__(self, width: int, num_heads: int, bias: bool = True) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.width = width
        self.num_heads = num_heads
        self.q_proj = Linear(width, width, bias=bias)
        self.kv_proj = Linear(width, 2 * width, bias=bias)
        self.out_proj = Linear(width, width, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.q_proj, self.kv_proj, self.out_proj):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.normal_(module.bias, std=1e-6)

    def forward(
        self, x: torch.Tensor, mem: torch.Tensor, dropout_rate: float = 0.0
    ) -> torch.Tensor:
        q = _split_heads(self.q_proj(x), self.num_heads)  # [B, Nq, D] -> [B, H, Nq, D/H]
        k, v = self.kv_proj(mem).split(self.width, dim=2)  # [B, Nk, 2D] -> 2 x [B, Nk, D]
        k = _split_heads(k, self.num_heads)
        v = _split_heads(v, self.num_heads)
        p = dropout_rate if self.training else 0.0
        y = attention(q, k, v, p, self.fast_kernels)  # [B, H, Nq, D/H]
        return self.out_proj(_merge_heads(y))  # [B, Nq, D]
