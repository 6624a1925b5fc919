"""Fixed 2-D sine-cosine position embeddings (MoCo v3), as the reference ViT's ``posemb_sincos_2d``.

Computed on the fly for the patch grid of each input, so any image size works.

    python -m pytest tests/test_imagenet_models.py -k posemb
"""

from __future__ import annotations

import torch


def posemb_sincos_2d(
    height: int, width: int, dim: int, temperature: float = 10_000.0, device=None
) -> torch.Tensor:
    """[1, height*width, dim] embedding: [sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)] per token.

    ω_i = 1/temperature^(i/(dim/4 - 1)), tokens in row-major order (row y, column x)
    [algoperf/workloads/imagenet_vit/imagenet_pytorch/models.py ``posemb_sincos_2d``].
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    y, x = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    omega = torch.arange(dim // 4, device=device) / (dim // 4 - 1)
    omega = 1.0 / (temperature**omega)
    y = y.flatten()[:, None] * omega[None, :]  # [h*w, dim/4]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1)[None]  # [1, h*w, dim]
