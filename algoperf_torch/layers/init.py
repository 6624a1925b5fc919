"""Parameter initialisers shared by the models (the reference's ``algoperf/init_utils.py``).

Used by the ImageNet models for convolutions and dense layers.

    python -m pytest tests/test_imagenet_models.py -k init
"""

from __future__ import annotations

import math

from torch import nn

# std of a standard normal truncated to [-2, 2]: dividing by it keeps the variance 1/fan_in.
_TRUNC_NORMAL_STD = 0.87962566103423978


def lecun_normal_(module: nn.Module) -> None:
    """LeCun-normal as a truncated normal on ``module.weight``; zero ``module.bias``.

    Matches the reference's ``pytorch_default_init`` [algoperf/init_utils.py]: std =
    sqrt(1/fan_in)/0.8796..., truncated at ±2 std, the same torch-RNG draws.
    """
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
    std = math.sqrt(1.0 / fan_in) / _TRUNC_NORMAL_STD
    nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, 0.0)
