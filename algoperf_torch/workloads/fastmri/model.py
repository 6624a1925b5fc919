"""The fastMRI U-Net as the AlgoPerf reference builds it (WORKLOADS.md §3.1).

Mirrors [algoperf/workloads/fastmri/fastmri_pytorch/models.py] (itself adapted from
facebookresearch/fastMRI): the same module names (``down_sample_layers.<i>.conv_layers.<j>``,
``conv``, ``up_conv.<i>``, ``up_conv.<last>.{0,1}``, ``up_transpose_conv.<i>.layers.0``), the
same layer indices inside each block (conv 0/4, norm 1/5, activation 2/6, dropout 3/7), and the
same torch-RNG order: modules are built encoder first, then stage by stage the transpose conv
before its conv block (torch default inits), but ``up_conv`` is registered before
``up_transpose_conv``, so the LeCun truncated-normal re-init that follows (one pass over
``modules()``) visits the decoder's conv blocks first. Norm layers draw nothing.

Variants (YAML ``model:``): ``num_channels``/``num_pool_layers`` (model_size: 64/3),
``use_tanh`` (Tanh instead of LeakyReLU(0.2) everywhere), ``use_layer_norm`` (GroupNorm(1, C,
eps 1e-6) in the conv blocks only; the transpose-conv blocks keep InstanceNorm2d).
7,756,097 parameters for the base model.

    python -m pytest tests/test_fastmri_model.py
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from algoperf_torch.layers.init import lecun_normal_


class Dropout2d(nn.Module):
    """Whole-channel dropout whose rate is an argument of ``forward`` (one rate per call)."""

    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        return F.dropout2d(x, p, training=self.training)


class ConvBlock(nn.Module):
    """(3x3 conv, no bias -> norm -> activation -> Dropout2d) twice.

    ``conv_layers`` is an ``nn.Sequential`` only so that the parameter names carry the
    reference's indices; ``forward`` threads the dropout rate through it.
    """

    def __init__(self, in_chans: int, out_chans: int, use_tanh: bool, use_layer_norm: bool):
        super().__init__()
        if use_layer_norm:
            norm = functools.partial(nn.GroupNorm, 1, eps=1e-6)
        else:
            norm = nn.InstanceNorm2d  # eps 1e-5, no affine, no running statistics
        self.conv_layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            norm(out_chans),
            _activation(use_tanh),
            Dropout2d(),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            norm(out_chans),
            _activation(use_tanh),
            Dropout2d(),
        )

    def forward(self, x: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        for layer in self.conv_layers:
            x = layer(x, dropout_rate) if isinstance(layer, Dropout2d) else layer(x)
        return x


class TransposeConvBlock(nn.Module):
    """2x2 stride-2 transpose conv (no bias) -> InstanceNorm2d -> activation; no dropout."""

    def __init__(self, in_chans: int, out_chans: int, use_tanh: bool):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans),
            _activation(use_tanh),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class FinalBlock(nn.Sequential):
    """The last decoder stage: ConvBlock then a 1x1 conv with bias (``up_conv.<last>.{0,1}``)."""

    def forward(self, x: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        return self[1](self[0](x, dropout_rate))


def _activation(use_tanh: bool) -> nn.Module:
    return nn.Tanh() if use_tanh else nn.LeakyReLU(negative_slope=0.2, inplace=True)


class UNet(nn.Module):
    """U-Net on [B, in_chans, H, W] images -> [B, out_chans, H, W].

    Args:
        num_channels: channels of the first encoder block (doubled at every level).
        num_pool_layers: encoder levels (each followed by 2x2 average pooling).
        use_tanh, use_layer_norm: the variants' switches.
        dropout_rate: the rate used when ``forward`` gets none (reference ``DROPOUT_RATE``).
    """

    def __init__(
        self,
        in_chans: int = 1,
        out_chans: int = 1,
        num_channels: int = 32,
        num_pool_layers: int = 4,
        use_tanh: bool = False,
        use_layer_norm: bool = False,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.dropout_rate = dropout_rate
        ch = num_channels
        self.down_sample_layers = nn.ModuleList([ConvBlock(in_chans, ch, use_tanh, use_layer_norm)])
        for _ in range(num_pool_layers - 1):
            self.down_sample_layers.append(ConvBlock(ch, ch * 2, use_tanh, use_layer_norm))
            ch *= 2
        self.conv = ConvBlock(ch, ch * 2, use_tanh, use_layer_norm)

        # Registered in this order (it decides the re-init order below); each stage builds its
        # transpose conv before its conv block (it decides the default-init draws).
        self.up_conv = nn.ModuleList()
        self.up_transpose_conv = nn.ModuleList()
        for _ in range(num_pool_layers - 1):
            self.up_transpose_conv.append(TransposeConvBlock(ch * 2, ch, use_tanh))
            self.up_conv.append(ConvBlock(ch * 2, ch, use_tanh, use_layer_norm))
            ch //= 2
        self.up_transpose_conv.append(TransposeConvBlock(ch * 2, ch, use_tanh))
        self.up_conv.append(
            FinalBlock(
                ConvBlock(ch * 2, ch, use_tanh, use_layer_norm),
                nn.Conv2d(ch, out_chans, kernel_size=1, stride=1),
            )
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                # torch's fan-in of a ConvTranspose2d weight [in, out, k, k] is out * k * k.
                lecun_normal_(m)

    def forward(self, x: torch.Tensor, dropout_rate: float | None = None) -> torch.Tensor:
        p = self.dropout_rate if dropout_rate is None else dropout_rate
        skips = []
        out = x  # [B, 1, H, W]
        for layer in self.down_sample_layers:
            out = layer(out, p)
            skips.append(out)
            out = F.avg_pool2d(out, kernel_size=2, stride=2, padding=0)  # H, W halve
        out = self.conv(out, p)
        for transpose_conv, conv in zip(self.up_transpose_conv, self.up_conv):
            skip = skips.pop()
            out = transpose_conv(out)  # [B, C, h, w] -> [B, C/2, 2h, 2w]
            # Odd sizes: reflect-pad one row/column at the bottom/right to meet the skip.
            pad_right = int(out.shape[-1] != skip.shape[-1])
            pad_bottom = int(out.shape[-2] != skip.shape[-2])
            if pad_right or pad_bottom:
                out = F.pad(out, [0, pad_right, 0, pad_bottom], "reflect")
            out = torch.cat([out, skip], dim=1)  # upsampled first, skip second
            out = conv(out, p)
        return out
