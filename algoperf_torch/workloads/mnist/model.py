"""The reference's MNIST MLP: flatten -> Linear(784, 128) -> Sigmoid -> Linear(128, 10).

Parameter names (``net.layer1.*``, ``net.layer2.*``) and init are the reference's
[algoperf/workloads/mnist/mnist_pytorch/workload.py ``_Model``]: a first build keeps PyTorch's
default ``nn.Linear`` init (seeded by the runner); a later ``init_model_fn`` re-initialises the
same module in place with ``reset_parameters``. 101,770 parameters at full size.

    python -m algoperf_torch.workloads --shapes mnist
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from algoperf_torch.layers.init import lecun_normal_


class MLP(nn.Module):
    """Two-layer sigmoid MLP on flattened images."""

    def __init__(self, input_dim: int = 784, hidden_dim: int = 128, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            OrderedDict(
                [
                    ("layer1", nn.Linear(input_dim, hidden_dim, bias=True)),
                    ("layer1_sig", nn.Sigmoid()),
                    ("layer2", nn.Linear(hidden_dim, num_classes, bias=True)),
                ]
            )
        )

    def reset_parameters(self) -> None:
        """The reference's re-initialisation: LeCun truncated normal, zero bias (layer1, layer2)."""
        lecun_normal_(self.net.layer1)
        lecun_normal_(self.net.layer2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1))  # [B, C, H, W] -> [B, C*H*W]
