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
import os

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
    lin.onednn_gemm = True
    few_rows = torch.randn(3, 8)
    assert not fast.use_onednn_linear(few_rows, lin.weight, lin.bias)
    assert not fast.use_onednn_linear(torch.randn(64, 8, dtype=torch.float64), lin.weight, None)
    assert torch.equal(lin(few_rows), F.linear(few_rows, lin.weight, lin.bias))
    x = torch.randn(64, 8)
    log = OpLog()
    with log:
        lin(x)
    assert any("convolution" in op for op in log.ops), log.ops  # the oneDNN route
    lin.onednn_gemm = False  # an Intel CPU's choice: MKL's GEMM, the reference's kernel
    assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))
    lin.onednn_gemm, lin.fast_kernels = True, False
    assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))


def test_set_fast_kernels_picks_the_gemm_route_by_cpu(monkeypatch):
    model = torch.nn.Sequential(fast.Linear(8, 4), fast.Linear(4, 2))
    fast.set_fast_kernels(model, True, onednn_gemm=True)
    assert all(m.onednn_gemm for m in model)
    fast.onednn_gemm_preferred.cache_clear()
    try:
        for vendor, expected in (("GenuineIntel", False), ("AuthenticAMD", True), ("", False)):
            monkeypatch.setattr(fast, "_cpu_vendor", lambda v=vendor: v)
            fast.onednn_gemm_preferred.cache_clear()
            fast.set_fast_kernels(model, True)
            mkl = torch.backends.mkl.is_available() and torch._C._has_mkldnn
            assert [m.onednn_gemm for m in model] == [expected and mkl] * 2, vendor
    finally:
        fast.onednn_gemm_preferred.cache_clear()


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
    fast.set_fast_kernels(model, on, onednn_gemm=True)  # the oneDNN route on any CPU
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


# --- dropout ------------------------------------------------------------------------------------
def _noise(shape, keep, seed):
    return fast.dropout_noise(shape, keep, torch.Generator().manual_seed(seed))


def test_dropout_noise_is_the_references_distribution_and_scale():
    keep, n = 0.9, 1_000_000
    noise = _noise((n,), keep, 0)
    scale = fast.dropout_scale(keep)
    # The reference's kept value: F.dropout's float32 1 / keep, bitwise.
    assert scale == F.dropout(torch.ones(1000), 1 - keep, True).max().item()
    kept = noise != 0
    assert torch.all(noise[kept] == scale)
    # Kept counts are Binomial(m, keep): within 6 sigma, overall and in every chunk.
    for part in (kept, *kept.split(fast.MASK_CHUNK)):
        m = part.numel()
        sigma = (m * keep * (1 - keep)) ** 0.5
        assert abs(part.sum().item() - m * keep) <= 6 * sigma
    # Neighbouring chunks (generators seeded seed + i) are not the same draw.
    a, b = kept[: fast.MASK_CHUNK], kept[fast.MASK_CHUNK : 2 * fast.MASK_CHUNK]
    agree = (a == b).double().mean().item()
    expected = keep**2 + (1 - keep) ** 2  # independent masks agree this often
    assert abs(agree - expected) <= 6 * (expected * (1 - expected) / fast.MASK_CHUNK) ** 0.5


def test_dropout_noise_follows_the_seed_not_the_thread_count():
    shape = (3, fast.MASK_CHUNK + 1000)  # three chunks and a bit: several threads draw
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _noise(shape, 0.7, 5)
        torch.set_num_threads(max(2, threads))
        many = _noise(shape, 0.7, 5)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)
    assert not torch.equal(one, _noise(shape, 0.7, 6))
    if hasattr(os, "fork"):  # a forked child (a data worker) draws on threads of its own
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            os.close(read)
            ok = torch.equal(_noise(shape, 0.7, 5), many)
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            assert f.read() == b"1"
        os.waitpid(pid, 0)
    torch.manual_seed(3)
    first = fast.dropout_noise(shape, 0.7)  # torch's default generator, as torch.manual_seed sets
    torch.manual_seed(3)
    assert torch.equal(first, fast.dropout_noise(shape, 0.7))
    with pytest.raises(ValueError, match="keep probability 0.0"):
        fast.dropout_noise(shape, 0.0)


def test_fast_dropout_is_the_reference_formula_with_its_mask():
    p = 0.1
    x = torch.randn(4, 50, 70, requires_grad=True)
    g = torch.randn(4, 50, 70)
    torch.manual_seed(11)
    y = fast.dropout(x, p, True)
    y.backward(g)
    torch.manual_seed(11)
    noise = fast.dropout_noise(x.shape, 1 - p)
    # The reference: mask.div_(1 - p), then x * mask; backward grad * mask.
    reference_noise = (noise != 0).float().div_(1 - p)
    assert torch.equal(noise, reference_noise)
    assert torch.equal(y, x.detach() * reference_noise)
    assert torch.equal(x.grad, g * reference_noise)


def test_fast_dropout_falls_back_to_torch():
    x = torch.randn(64, 64)
    assert torch.equal(fast.dropout(x, 0.3, False), x)
    assert torch.equal(fast.dropout(x, 0.0, True), x)
    for args in ((x, 0.3, True, False), (x.double(), 0.3, True)):  # switched off; float64
        torch.manual_seed(1)
        got = fast.dropout(*args)
        torch.manual_seed(1)
        assert torch.equal(got, F.dropout(args[0], 0.3, True))
    with pytest.raises(ValueError, match="between 0 and 1"):
        fast.dropout(x, 1.5, True)


def test_fast_attention_is_dropped_softmax_attention():
    gen = torch.Generator().manual_seed(4)
    b, h, n, d = 2, 3, 20, 16
    q, k, v = (torch.randn(b, h, n, d, generator=gen) for _ in range(3))
    assert torch.equal(fast.attention(q, k, v, 0.0), F.scaled_dot_product_attention(q, k, v))
    torch.manual_seed(8)
    y = fast.attention(q, k, v, 0.25)
    torch.manual_seed(8)
    noise = fast.dropout_noise((b, h, n, n), 0.75).double()
    q64, k64, v64 = q.double(), k.double(), v.double()
    scores = q64 @ k64.transpose(-2, -1) / d**0.5
    weights = noise * scores.softmax(-1)
    exact = weights @ v64
    # fp32 scores are off by <= gamma_d |q||k| / sqrt(d); softmax turns an absolute score error
    # e into a relative weight error <= 2e; the weighted sum adds gamma_n. Twice that, on
    # |weights| |v|, bounds any correct fp32 evaluation order.
    score_err = (gamma(d) * (q64.abs() @ k64.abs().transpose(-2, -1)) / d**0.5).amax()
    bound = 2 * (2 * score_err + gamma(n + 8)) * (weights.abs() @ v64.abs())
    assert ((y.double() - exact).abs() <= bound).all()
    with pytest.raises(AssertionError):  # a wrong mask is far outside that bound
        torch.manual_seed(9)
        assert ((fast.attention(q, k, v, 0.25).double() - exact).abs() <= bound).all()


def test_vit_draws_no_bernoulli_mask_with_fast_kernels():
    model, x, y = _small_model("imagenet_vit")
    model.train()
    ops = {}
    for on in (False, True):
        fast.set_fast_kernels(model, on)
        log = OpLog()
        with log:
            F.cross_entropy(model(x, dropout_rate=0.1), y).backward()
        ops[on] = log.ops
    assert any("bernoulli" in op for op in ops[False])
    assert not any("bernoulli" in op for op in ops[True])
