"""ViT-S/16 as the AlgoPerf reference builds it: no class token, sin-cos 2-D position embedding,
global average pooling (or a MAP head), ``tanh(pre_logits)`` and a zero-initialised head.

Mirrors [algoperf/workloads/imagenet_vit/imagenet_pytorch/models.py]: module names
(``pre_logits``, ``conv_patch_extract``, ``encoder.net.<i>.{layer_norm0, self_attention1,
layer_norm2, mlp3}``, ``encoder.encoder_norm``, ``head``, ``map``), init and torch-RNG order:
modules are built in that order (attention and MLP re-initialise themselves right away), then
``conv_patch_extract`` and ``pre_logits`` are redrawn with LeCun truncated-normal and ``head`` is
zeroed. One ``dropout_rate`` per call: after the position embedding, on attention weights,
after attention, inside the MLP and after it. Variants: ``use_glu``, ``use_post_layer_norm``
(no final ``encoder_norm``), ``use_map``. 22,122,472 parameters for S/16.

    python -m pytest tests/test_imagenet_models.py -k vit
"""

from __future__ import annotations

import torch
from torch import nn

from algoperf_torch.layers.attention import SelfAttention
from algoperf_torch.layers.fast import Linear, dropout
from algoperf_torch.layers.init import lecun_normal_
from algoperf_torch.layers.map_head import MAPHead
from algoperf_torch.layers.mlp import MlpBlock
from algoperf_torch.layers.posemb import posemb_sincos_2d


class Encoder1DBlock(nn.Module):
    """Self-attention + MLP, pre-LN (default) or post-LN residual block."""

    fast_kernels: bool = True  # layers/fast.py's dropout

    def __init__(
        self, width: int, mlp_dim: int, num_heads: int, use_glu: bool, use_post_layer_norm: bool
    ) -> None:
        super().__init__()
        self.use_post_layer_norm = use_post_layer_norm
        self.layer_norm0 = nn.LayerNorm(width, eps=1e-6)
        self.self_attention1 = SelfAttention(width, num_heads)
        self.layer_norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp3 = MlpBlock(width, mlp_dim, use_glu)

    def _dropout(self, x: torch.Tensor, rate: float) -> torch.Tensor:
        return dropout(x, rate, self.training, self.fast_kernels)

    def forward(self, x: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        if self.use_post_layer_norm:
            y = self._dropout(self.self_attention1(x, dropout_rate), dropout_rate)
            x = self.layer_norm0(x + y)
            y = self._dropout(self.mlp3(x, dropout_rate), dropout_rate)
            return self.layer_norm2(x + y)
        y = self.self_attention1(self.layer_norm0(x), dropout_rate)
        x = x + self._dropout(y, dropout_rate)
        y = self.mlp3(self.layer_norm2(x), dropout_rate)
        return x + self._dropout(y, dropout_rate)


class Encoder(nn.Module):
    """``depth`` blocks, then ``encoder_norm`` (pre-LN only)."""

    def __init__(
        self,
        depth: int,
        width: int,
        mlp_dim: int,
        num_heads: int,
        use_glu: bool = False,
        use_post_layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.net = nn.ModuleList(
            Encoder1DBlock(width, mlp_dim, num_heads, use_glu, use_post_layer_norm)
            for _ in range(depth)
        )
        self.encoder_norm = None if use_post_layer_norm else nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        for block in self.net:
            x = block(x, dropout_rate)
        return x if self.encoder_norm is None else self.encoder_norm(x)


class ViT(nn.Module):
    """Vision Transformer on [B, 3, H, W] images (H, W multiples of the patch size)."""

    fast_kernels: bool = True  # layers/fast.py's dropout (its Linears and attention have theirs)

    def __init__(
        self,
        num_classes: int = 1000,
        patch_size: int = 16,
        width: int = 384,
        depth: int = 12,
        mlp_dim: int = 1536,
        num_heads: int = 6,
        use_glu: bool = False,
        use_post_layer_norm: bool = False,
        use_map: bool = False,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.default_dropout_rate = dropout_rate  # the reference's DROPOUT_RATE
        # Construction order = the reference's torch-RNG order (see module docstring).
        self.pre_logits = Linear(width, width)
        self.conv_patch_extract = nn.Conv2d(
            3, width, patch_size, stride=patch_size, padding="valid"
        )
        self.encoder = Encoder(depth, width, mlp_dim, num_heads, use_glu, use_post_layer_norm)
        self.head = Linear(width, num_classes)
        self.map = MAPHead(width, mlp_dim, num_heads) if use_map else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        lecun_normal_(self.conv_patch_extract)
        lecun_normal_(self.pre_logits)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, dropout_rate: float | None = None) -> torch.Tensor:
        if dropout_rate is None:
            dropout_rate = self.default_dropout_rate
        x = self.conv_patch_extract(x)  # [B, 3, H, W] -> [B, D, H/p, W/p]
        n, c, h, w = x.shape
        pos = posemb_sincos_2d(h, w, c, device=x.device).to(x.dtype)  # [1, h*w, D]
        x = x.reshape(n, c, h * w).transpose(1, 2) + pos  # [B, h*w, D]
        x = dropout(x, dropout_rate, self.training, self.fast_kernels)
        x = self.encoder(x, dropout_rate)  # [B, h*w, D]
        x = x.mean(dim=1) if self.map is None else self.map(x, dropout_rate)  # [B, D]
        x = torch.tanh(self.pre_logits(x))  # [B, D]
        return self.head(x)  # [B, num_classes]
