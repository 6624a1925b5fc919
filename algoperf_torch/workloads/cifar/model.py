"""ResNet-18 for 32x32 CIFAR-10 images: 3x3 stem, no max-pool, four BasicBlock stages, 4x4 pool.

Parameter names (``conv1``, ``bn1``, ``layer{1..4}.{i}.conv1/bn1/conv2/bn2``,
``layer{2..4}.0.downsample.conv/bn``, ``fc``), construction order and init follow the reference
[algoperf/workloads/cifar/cifar_pytorch/models.py ``ResNet``/``resnet18``, whose ``BasicBlock``
comes from algoperf/workloads/imagenet_resnet/imagenet_pytorch/models.py], so a given torch seed
gives the same initial weights under the same torch version. 11,173,962 parameters (WORKLOADS.md
§11).

    python -m pytest tests/test_cifar.py
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from algoperf_torch.layers.batch_norm import BatchNorm2d
from algoperf_torch.layers.fast import channels_last
from algoperf_torch.layers.init import lecun_normal_


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs with a residual connection; ``stride`` on the first conv.

    ``downsample`` is built by the caller *before* the block, as in the reference, so the torch
    RNG draws the projection's default init first.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with the CIFAR stem; ``layers`` = blocks per stage ([2, 2, 2, 2] is ResNet-18).

    ``fast_kernels``: a CPU input is made channels-last first (``layers/fast.py``)."""

    fast_kernels: bool = True

    def __init__(self, layers: list[int] | tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = BatchNorm2d(64)
        self.layer1 = self._make_layer(64, layers[0], stride=1)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        self.reset_parameters()

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("conv", nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False)),
                        ("bn", BatchNorm2d(planes)),
                    ]
                )
            )
        stage = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        stage += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def reset_parameters(self) -> None:
        """The reference's init; RNG draws: every conv in ``modules()`` order, then ``fc.weight``.

        Also what the reference runs, in place and without re-seeding, on a second
        ``init_model_fn`` call.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                lecun_normal_(m)  # the reference's pytorch_default_init
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=1e-2)
        nn.init.zeros_(self.fc.bias)
        # Each residual branch starts at zero, so every block begins as the identity
        # (Goyal et al. 2017, https://arxiv.org/abs/1706.02677).
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = channels_last(x, self.fast_kernels)  # values unchanged
        x = F.relu(self.bn1(self.conv1(x)))  # [B, 3, 32, 32] -> [B, 64, 32, 32]
        x = self.layer1(x)  # [B, 64, 32, 32]
        x = self.layer2(x)  # [B, 128, 16, 16]
        x = self.layer3(x)  # [B, 256, 8, 8]
        x = self.layer4(x)  # [B, 512, 4, 4]
        x = F.avg_pool2d(x, 4)  # [B, 512, 1, 1]
        return self.fc(torch.flatten(x, 1))  # [B, 512] -> [B, num_classes]
