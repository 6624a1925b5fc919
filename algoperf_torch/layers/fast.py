"""Faster CPU kernels for the same math: a switch every model layer that has one obeys.

The reference's models run whatever kernel ``torch`` picks for their layout. Two picks cost a
lot on CPU, and both have a faster equivalent that computes the same products in another
order, so outputs agree to float rounding (tests/test_fast_kernels.py):

- ``Linear``: torch routes an fp32 ``nn.Linear`` to the BLAS (MKL in the x86 wheels), which on
  AMD CPUs runs at half the speed of oneDNN, the library torch already uses for convolutions
  (measured by ``benchmarks/bench_steps.py``, its "as a 1x1 conv" peak: on a 2-core AMD EPYC
  MKL ~190 GFLOP/s, oneDNN ~360; on a 2-core Intel Xeon MKL 415, oneDNN 303, where MKL also
  ran a ViT-S/16 step 6 % faster). ``onednn_linear`` writes ``x @ W.T + b`` as a 1x1
  convolution over a ``[1, K, M, 1]`` channels-last view of ``x``: the same M x K by K x N
  product, forward and backward, through oneDNN, with no copy of ``x``. ``Linear`` takes that
  route where ``onednn_gemm_preferred()`` (MKL on a CPU that is not Intel's), and keeps MKL's
  GEMM on Intel CPUs.
- Convolutions: oneDNN's kernels are channels-last; an NCHW activation is reordered to that
  layout and back around every convolution, forward and backward. ``channels_last`` turns a
  conv net's input channels-last once, so every layer after it stays in that layout.
- Dropout: torch's CPU ``F.dropout`` draws its mask with ``bernoulli_``, one thread walking one
  Mersenne Twister (a quarter of a ViT-S/16 training step at rate 0.1). ``dropout`` draws the
  same Bernoulli(1 - p) mask from uniforms in fixed chunks, each chunk from its own generator
  seeded by one draw of torch's, on every intra-op thread, and applies it as the reference does
  (``x * noise``, ``noise = mask / (1 - p)`` in float32, so a kept value is bitwise the
  reference's). The mask is a different draw than ``bernoulli_``'s: the same distribution,
  still fixed by ``torch.manual_seed``, the same on any number of threads. ``attention`` runs
  ``F.scaled_dot_product_attention`` but, when it must drop attention weights (where torch's CPU
  kernel falls back to explicit softmax and ``bernoulli_`` anyway), spells that math out with
  this dropout.

Parameters never change layout or shape (a submission may ``view`` them), and the switch only
acts on CPU fp32 tensors: on CUDA, in float64 and inside ``torch.compile`` (whose own kernels
fuse these ops), the reference's kernels run. With ``fast_kernels`` off
(``workload.fast_kernels=false``) a model runs exactly the reference's kernels, bit for bit.

    python -m pytest tests/test_fast_kernels.py
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

# A dropout mask is drawn in chunks of this many elements, chunk i from a generator seeded with
# (seed + i) mod 2^32: the split, not the thread count, fixes the draw. 2^18 floats (1 MiB) keep
# the per-chunk cost (a generator, a task) under 1 % of the chunk's draw.
MASK_CHUNK = 1 << 18

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


def cpuinfo_field(key: str) -> str:
    """The first ``key`` line of /proc/cpuinfo (``vendor_id``: "GenuineIntel", "AuthenticAMD";
    ``model name``), "" where there is none (not Linux, no such field)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                name, sep, value = line.partition(":")
                if sep and name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return ""


def _cpu_vendor() -> str:
    return cpuinfo_field("vendor_id")


@functools.cache
def onednn_gemm_preferred() -> bool:
    """Whether a CPU fp32 GEMM is faster through oneDNN than through torch's BLAS here: the BLAS
    is MKL and the CPU is x86 but not Intel's (MKL's slow path; see the module docstring)."""
    return (
        torch._C._has_mkldnn
        and torch.backends.mkl.is_available()
        and _cpu_vendor() not in ("", "GenuineIntel")
    )


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, init and names) whose CPU fp32 product runs through
    oneDNN while ``fast_kernels`` and ``onednn_gemm`` are on; see the module docstring.
    ``set_fast_kernels`` sets ``onednn_gemm`` to this machine's choice."""

    fast_kernels: bool = True
    onednn_gemm: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast_kernels and self.onednn_gemm and use_onednn_linear(x, self.weight, self.bias):
            return onednn_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


@functools.cache
def _mask_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """Threads that draw mask chunks (torch's uniform_ releases the GIL); made on first use, one
    pool per process (``pid``: a forked child, e.g. a data worker, has none of its parent's
    threads, so it must not reuse the parent's pool)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="algoperf-dropout-mask")


def dropout_noise(
    shape: torch.Size | tuple[int, ...], keep: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The reference's dropout noise ``bernoulli(keep) / keep`` (float32, 0 or ``dropout_scale``)
    for a CPU tensor of ``shape``, each element kept with probability ``keep``, independently.

    One 32-bit seed comes from ``generator`` (torch's default one when None); chunk i of the
    flattened noise (``MASK_CHUNK`` elements) takes uniforms u from a generator seeded with
    ``(seed + i) mod 2^32``, drawn on up to ``torch.get_num_threads()`` threads (the result does
    not depend on how many). An element is kept where ``floor(u + keep) = 1``, i.e.
    u >= 1 - keep: vectorised float ops instead of a comparison into bools and a cast back.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep probability {keep!r} is outside (0, 1]")
    n = math.prod(shape)
    noise = torch.empty(n)
    seed = int(torch.randint(0, 2**32, (), generator=generator))
    chunks = range(0, n, MASK_CHUNK)

    def draw(i: int) -> None:
        g = torch.Generator().manual_seed((seed + i) % 2**32)
        noise[chunks[i] : chunks[i] + MASK_CHUNK].uniform_(generator=g)

    workers = min(torch.get_num_threads(), len(chunks))
    if workers > 1:
        list(_mask_pool(workers, os.getpid()).map(draw, range(len(chunks))))
    else:
        for i in range(len(chunks)):
            draw(i)
    return noise.add_(keep).floor_().mul_(dropout_scale(keep)).view(shape)


def dropout_scale(keep: float) -> float:
    """``1 / keep`` as the reference's float32 ``mask.div_(keep)`` computes it."""
    return torch.ones(()).div_(keep).item()


class _TimesNoise(torch.autograd.Function):
    """``x * noise`` and ``grad * noise``, as the reference's dropout, with ``noise`` not a graph
    input (it is drawn, not learned)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(noise)
        return x * noise

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (noise,) = ctx.saved_tensors
        return grad * noise, None


def use_fast_dropout(x: torch.Tensor, p: float, training: bool) -> bool:
    """Whether ``dropout`` draws its own mask: training, 0 < p < 1, CPU fp32, eager."""
    return training and 0.0 < p < 1.0 and _cpu_fp32(x) and not torch.compiler.is_compiling()


def dropout(x: torch.Tensor, p: float, training: bool, fast_kernels: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)``; with ``fast_kernels`` on CPU fp32 the mask comes from
    ``dropout_noise`` (see the module docstring). Bad ``p`` is ``F.dropout``'s error."""
    if fast_kernels and use_fast_dropout(x, p, training):
        return _TimesNoise.apply(x, dropout_noise(x.shape, 1.0 - p))
    return F.dropout(x, p, training=training)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, fast_kernels: bool = True
) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)`` (no mask, scale
    1/sqrt(d)); when it drops weights on CPU fp32 with ``fast_kernels``, the same math written
    out, ``dropout(softmax(q k^T / sqrt(d))) v``, with ``dropout``'s mask."""
    if fast_kernels and use_fast_dropout(q, dropout_p, True) and _cpu_fp32(k, v):
        weights = torch.matmul(q * (q.shape[-1] ** -0.5), k.transpose(-2, -1)).softmax(dim=-1)
        return torch.matmul(dropout(weights, dropout_p, True), v)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


def channels_last(x: torch.Tensor, fast_kernels: bool) -> torch.Tensor:
    """A CPU fp32 ``[B, C, H, W]`` activation in channels-last layout (values unchanged)."""
    if fast_kernels and x.dim() == 4 and _cpu_fp32(x):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def set_fast_kernels(model: nn.Module, on: bool, onednn_gemm: bool | None = None) -> None:
    """Switch every module of ``model`` that has a ``fast_kernels`` attribute; every ``Linear``'s
    GEMM route is ``onednn_gemm``, or this machine's faster one (``onednn_gemm_preferred``)."""
    if onednn_gemm is None:
        onednn_gemm = onednn_gemm_preferred()
    for module in model.modules():
        if hasattr(module, "fast_kernels"):
            module.fast_kernels = on
        if isinstance(module, Linear):
            module.onednn_gemm = onednn_gemm
