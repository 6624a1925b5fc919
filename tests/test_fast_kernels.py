"""The fast CPU kernels (layers/fast.py) compute the same math as the reference's kernels.

Layer level, bounds from the standard error analysis of a dot product (Higham, "Accuracy and
Stability of Numerical Algorithms", §3.1): a length-n fp32 sum of products computed in any order
is off from the exact value by at most gamma_n * sum|a_i b_i|, gamma_n = n u / (1 - n u),
u = 2^-24. Two correct kernels are therefore within 2 gamma_n |a| |b| of each other, elementwise:
a bound that holds for every BLAS and summation order, not a reading of today's digits.

Model level (small ResNet, CIFAR ResNet, ViT: loss and every gradient), where no closed form is
practical: the float64 result is the truth, and the fast fp32 path's error must be of the same
order as the plain fp32 path's (at most ``ERROR_RATIO`` times it, or a few units of roundoff of
the result's norm when the plain error happens to be tiny). A wrong kernel (a missing bias, a
transposed weight, a wrong layout) is off by O(1), many orders above that.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from algoperf_torch import rng as prng
from algoperf_torch.distributed import DistInfo
from algoperf_torch.layers import fast
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.__main__ import load_config

U = 2.0**-24
ERROR_RATIO = 16.0  # two correct fp32 orders differ in error by a small factor (sqrt(n) worst)


def gamma(n: int) -> float:
    return n * U / (1 - n * U)


class OpLog(TorchDispatchMode):
    """The aten ops a region runs, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _linear_grads(fn, x, w, b, g):
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = fn(x, w, b)
    y.backward(g)
    return y.detach(), x.grad, w.grad, b.grad


@pytest.mark.parametrize("shape", [(64, 48), (4, 40, 96), (3, 17, 33)])
@pytest.mark.parametrize("out_features", [24, 130])
def test_onednn_linear_is_linear_within_the_dot_product_bound(shape, out_features):
    gen = torch.Generator().manual_seed(0)
    k = shape[-1]
    x = torch.randn(*shape, generator=gen)
    w = torch.randn(out_features, k, generator=gen)
    b = torch.randn(out_features, generator=gen)
    g = torch.randn(*shape[:-1], out_features, generator=gen)
    assert fast.use_onednn_linear(x, w, b)
    log = OpLog()
    with log:
        fast_out = _linear_grads(fast.onednn_linear, x, w, b, g)
    assert any("convolution" in op for op in log.ops), "the fast path did not run oneDNN"
    plain = _linear_grads(F.linear, x, w, b, g)
    m = x.numel() // k
    x2, g2 = x.reshape(m, k).abs(), g.reshape(m, out_features).abs()
    bounds = [  # |y|: K products + bias; dx: N products; dW, db: M products
        2 * gamma(k + 1) * (x.abs() @ w.abs().T + b.abs()),
        2 * gamma(out_features) * (g.abs() @ w.abs()),
        2 * gamma(m) * (g2.T @ x2),
        2 * gamma(m) * g2.sum(0),
    ]
    for name, a, p, bound in zip(("y", "dx", "dW", "db"), fast_out, plain, bounds, strict=True):
        assert a.shape == p.shape, name
        excess = ((a - p).abs() - bound).max().item()
        assert excess <= 0, f"{name}: off by more than 2 gamma_n |a||b| (excess {excess:.3g})"


def test_linear_falls_back_where_onednn_does_not_apply():
    lin = fast.Linear(8, 4)
    few_rows = torch.randn(3, 8)
    assert not fast.use_onednn_linear(few_rows, lin.weight, lin.bias)
    assert not fast.use_onednn_linear(torch.randn(64, 8, dtype=torch.float64), lin.weight, None)
    assert torch.equal(lin(few_rows), F.linear(few_rows, lin.weight, lin.bias))
    lin.fast_kernels = False
    x = torch.randn(64, 8)
    assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))


def test_channels_last_conv_is_the_same_conv():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 12, 12, generator=gen)
    w = torch.randn(24, 16, 3, 3, generator=gen)
    xl = fast.channels_last(x, True)
    assert xl.is_contiguous(memory_format=torch.channels_last) and torch.equal(xl, x)
    assert fast.channels_last(x, False) is x
    assert fast.channels_last(x.double(), True).is_contiguous()  # fp32 only
    bound = 2 * gamma(16 * 9) * F.conv2d(x.abs(), w.abs(), padding=1)
    diff = (F.conv2d(xl, w, padding=1) - F.conv2d(x, w, padding=1)).abs()
    assert (diff <= bound).all()


# --- whole models ---------------------------------------------------------------------------
SMALL = {
    "imagenet_resnet": ({"layers": [1, 1, 1, 1], "num_classes": 10}, 2, 64),
    "cifar": ({"layers": [1, 1, 1, 1]}, 4, 32),
    "imagenet_vit": (
        {
            "width": 64,
            "depth": 2,
            "num_heads": 4,
            "mlp_dim": 128,
            "patch_size": 8,
            "num_classes": 10,
        },
        4,
        32,
    ),
}


def _small_model(name: str):
    config = load_config(name)
    overrides, batch, size = SMALL[name]
    config = dataclasses.replace(config, model={**config.model, **overrides})
    torch.manual_seed(0)
    model = get_workload_functions(config.impl).build_model(config)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    return model, x, y


def _loss_and_grads(model, x, y, on: bool, dtype=torch.float32):
    model = copy.deepcopy(model).to(dtype)
    fast.set_fast_kernels(model, on)
    model.train()
    log = OpLog()
    with log:
        loss = F.cross_entropy(model(x.to(dtype)), y)
        loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
    return loss.double(), grads, log.ops


@pytest.mark.parametrize("name", list(SMALL))
def test_fast_model_matches_the_plain_one(name):
    model, x, y = _small_model(name)
    loss64, grads64, _ = _loss_and_grads(model, x, y, False, torch.float64)
    loss_p, grads_p, ops_plain = _loss_and_grads(model, x, y, False)
    loss_f, grads_f, ops_fast = _loss_and_grads(model, x, y, True)
    assert ops_fast != ops_plain, "the fast path ran the same kernels as the plain one"
    for what, exact, plain, fast_ in (
        ("loss", loss64.reshape(1), loss_p.reshape(1), loss_f.reshape(1)),
        ("grads", grads64, grads_p, grads_f),
    ):
        plain_err = (plain - exact).norm().item()
        floor = 64 * U * exact.norm().item()
        fast_err = (fast_ - exact).norm().item()
        assert fast_err <= ERROR_RATIO * max(plain_err, floor), (
            f"{name} {what}: fast error {fast_err:.3g} vs plain {plain_err:.3g}"
        )


def test_workload_config_switches_the_model():
    config = dataclasses.replace(load_config("imagenet_vit"), fast_kernels=False)
    config = dataclasses.replace(config, model={**config.model, **SMALL["imagenet_vit"][0]})
    workload = Workload(config, get_workload_functions(config.impl), DistInfo())
    model, _ = workload.init_model_fn(prng.prng_key(0))
    switches = [m.fast_kernels for m in model.modules() if hasattr(m, "fast_kernels")]
    assert switches and not any(switches)
    with pytest.raises(ValueError, match="fast_kernels='yes'"):
        dataclasses.replace(config, fast_kernels="yes")
