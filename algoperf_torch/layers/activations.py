"""Activation modules chosen by name, as the workload variants select them.

Names are the YAML values of ``model.activation``.

    python -m pytest tests/test_imagenet_models.py
"""

from __future__ import annotations

from torch import nn

ACTIVATIONS = ("relu", "silu", "gelu", "gelu_tanh")


def make_activation(name: str, inplace: bool = True) -> nn.Module:
    """``relu``/``silu`` (in place, as the reference), ``gelu`` (exact) or ``gelu_tanh``."""
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    if name == "silu":
        return nn.SiLU(inplace=inplace)
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
