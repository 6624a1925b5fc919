"""Faster CPU kernels for the same math: a switch every model layer that has one obeys.

The reference's models run whatever kernel ``torch`` picks for their layout. Two picks cost a
lot on CPU, and both have a faster equivalent that computes the same products in another
order, so outputs agree to float rounding (tests/test_fast_kernels.py):

- ``Linear``: torch routes an fp32 ``nn.Linear`` to the BLAS (MKL in the x86 wheels), which on
  some CPUs runs at half the speed of oneDNN, the library torch already uses for convolutions
  (measured by ``benchmarks/bench_steps.py``: its "as a 1x1 conv" peak). ``onednn_linear`` writes
  ``x @ W.T + b`` as a 1x1 convolution over a ``[1, K, M, 1]`` channels-last view of ``x``: the
  same M x K by K x N product, forward and backward, through oneDNN, with no copy of ``x``.
- Convolutions: oneDNN's kernels are channels-last; an NCHW activation is reordered to that
  layout and back around every convolution, forward and backward. ``channels_last`` turns a
  conv net's input channels-last once, so every layer after it stays in that layout.

Parameters never change layout or shape (a submission may ``view`` them), and the switch only
acts on CPU fp32 tensors: on CUDA, and in float64, the reference's kernels run. With
``fast_kernels`` off (``workload.fast_kernels=false``) a model runs exactly the reference's
kernels, bit for bit.

    python -m pytest tests/test_fast_kernels.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Below this many rows the oneDNN call's fixed cost outweighs its faster product.
ONEDNN_MIN_ROWS = 32


def _cpu_fp32(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors)


def use_onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether ``onednn_linear`` applies: CPU fp32, oneDNN built in, enough rows."""
    return (
        _cpu_fp32(x, weight, bias)
        and torch._C._has_mkldnn  # torch.backends.mkldnn.is_available(), which dynamo won't trace
        and x.dim() >= 2
        and x.numel() >= ONEDNN_MIN_ROWS * x.shape[-1] > 0
    )


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` as a 1x1 convolution (oneDNN's GEMM on CPU)."""
    out_features, k = weight.shape
    lead = x.shape[:-1]
    rows = x.reshape(-1, k)  # [M, K]; a view when x is contiguous
    m = rows.shape[0]
    image = rows.view(1, m, 1, k).permute(0, 3, 1, 2)  # [1, K, M, 1], channels-last strides
    y = F.conv2d(image, weight.view(out_features, k, 1, 1), bias)  # [1, N, M, 1] channels-last
    return y.permute(0, 2, 3, 1).reshape(*lead, out_features)  # [..., N], no copy


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, init and names) whose CPU fp32 product runs through
    oneDNN while ``fast_kernels`` is on; see the module docstring."""

    fast_kernels: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast_kernels and use_onednn_linear(x, self.weight, self.bias):
            return onednn_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def channels_last(x: torch.Tensor, fast_kernels: bool) -> torch.Tensor:
    """A CPU fp32 ``[B, C, H, W]`` activation in channels-last layout (values unchanged)."""
    if fast_kernels and x.dim() == 4 and _cpu_fp32(x):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def set_fast_kernels(model: nn.Module, on: bool) -> None:
    """Switch every module of ``model`` that has a ``fast_kernels`` attribute."""
    for module in model.modules():
        if hasattr(module, "fast_kernels"):
            module.fast_kernels = on
