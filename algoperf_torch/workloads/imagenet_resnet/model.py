"""ResNet-50 (v1.5: stride on the 3x3 conv) as the AlgoPerf reference builds it.

Mirrors [algoperf/workloads/imagenet_resnet/imagenet_pytorch/models.py] (torchvision-derived):
the same module names (``conv1``/``bn1``/``layer1..4``/``fc``; per block ``conv1..3``, ``bn1..3``,
``downsample.conv``/``downsample.bn``), the same init and the same torch-RNG order: every module
is built first (torch default inits), then one pass over ``modules()`` redraws each conv with
LeCun truncated-normal and sets BN to (1, 0), then ``fc.weight`` ~ N(0, 0.01), ``fc.bias`` = 0,
and finally each block's ``bn3.weight`` = ``bn_init_scale`` (0: zero-init residual; the
``large_bn_init`` variant uses 8). BatchNorm is our switchable ``BatchNorm2d`` (torch defaults
momentum 0.1, eps 1e-5) so ``update_batch_norm=False`` freezes the running statistics.
25,557,032 parameters.

    python -m pytest tests/test_imagenet_models.py -k resnet
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from algoperf_torch.layers.activations import make_activation
from algoperf_torch.layers.batch_norm import BatchNorm2d
from algoperf_torch.layers.fast import channels_last
from algoperf_torch.layers.init import lecun_normal_


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand (x4), residual add, activation."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        act_fnc: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = BatchNorm2d(planes * self.expansion)
        # One activation module shared by the whole network (no parameters), as the reference.
        self.act_fnc = act_fnc if act_fnc is not None else nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act_fnc(self.bn1(self.conv1(x)))  # [B, Cin, H, W] -> [B, P, H, W]
        out = self.act_fnc(self.bn2(self.conv2(out)))  # -> [B, P, H/s, W/s]
        out = self.bn3(self.conv3(out))  # -> [B, 4P, H/s, W/s]
        out = out + identity
        return self.act_fnc(out)


class ResNet(nn.Module):
    """ImageNet ResNet with Bottleneck blocks; ``layers=(3, 4, 6, 3)`` is ResNet-50.

    With ``fast_kernels`` (``layers/fast.py``) a CPU input is made channels-last first, so every
    convolution runs in oneDNN's layout without reorders; the parameters keep theirs."""

    fast_kernels: bool = True

    def __init__(
        self,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        num_classes: int = 1000,
        activation: str = "relu",
        bn_init_scale: float = 0.0,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(64)
        self.act_fnc = make_activation(activation)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0], stride=1)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        self.reset_parameters(bn_init_scale)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("conv", conv1x1(self.inplanes, planes * Bottleneck.expansion, stride)),
                        ("bn", BatchNorm2d(planes * Bottleneck.expansion)),
                    ]
                )
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, self.act_fnc)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [
            Bottleneck(self.inplanes, planes, act_fnc=self.act_fnc) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def reset_parameters(self, bn_init_scale: float) -> None:
        for m in self.modules():  # registration order fixes the torch-RNG draws
            if isinstance(m, nn.Conv2d):
                lecun_normal_(m)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=1e-2)
        nn.init.zeros_(self.fc.bias)
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.constant_(m.bn3.weight, bn_init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = channels_last(x, self.fast_kernels)  # values unchanged
        x = self.maxpool(self.act_fnc(self.bn1(self.conv1(x))))  # [B, 3, H, W] -> [B, 64, H/4, W/4]
        x = self.layer1(x)  # [B, 256, H/4, W/4]
        x = self.layer2(x)  # [B, 512, H/8, W/8]
        x = self.layer3(x)  # [B, 1024, H/16, W/16]
        x = self.layer4(x)  # [B, 2048, H/32, W/32]
        x = torch.flatten(self.avgpool(x), 1)  # [B, 2048]
        return self.fc(x)  # [B, num_classes]
