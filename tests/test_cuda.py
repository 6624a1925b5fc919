"""The CUDA paths: training steps against float64, the fast kernels switched off, SDPA, compiled
steps, the ImageNet pipeline's pinned, prefetching device copy, and bench_steps on the device.

Marked ``gpu`` (deselected by default) and skipped without a CUDA device. With
``ALGOPERF_GPU_TESTS_ON_CPU=1`` the device-agnostic ones run on the CPU instead, which checks
their logic on a machine without a GPU; the CUDA-only facts skip there.

    python -m pytest -m gpu tests/test_cuda.py
    ALGOPERF_GPU_TESTS_ON_CPU=1 python -m pytest -m gpu tests/test_cuda.py
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from test_bench_steps import bench  # noqa: F401  (a fixture: benchmarks/bench_steps.py)
from test_imagenet_data import data_dir, small_config  # noqa: F401  (data_dir: a fixture)
from test_imagenet_models import load_config

from algoperf_torch.distributed import DistInfo
from algoperf_torch.layers import fast
from algoperf_torch.spec import DataRequest, ForwardPassMode
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.imagenet_resnet import data as imagenet_data

pytestmark = pytest.mark.gpu

SMALL_MODELS = {
    "cifar": {"layers": [1, 1, 1, 1], "num_classes": 10},
    "imagenet_resnet": {"layers": [1, 1, 1, 1], "num_classes": 1000},
    "imagenet_vit": {"width": 64, "depth": 2, "mlp_dim": 128, "num_heads": 2},
}
BATCH = 4


@pytest.fixture
def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    if os.environ.get("ALGOPERF_GPU_TESTS_ON_CPU") == "1":
        return torch.device("cpu")
    pytest.skip("needs a CUDA device (ALGOPERF_GPU_TESTS_ON_CPU=1 runs it on the CPU)")


@pytest.fixture(autouse=True)
def full_fp32():
    """True fp32 (no TF32) and deterministic cuDNN: the bounds below are fp32's."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    ) = saved


def workload_on(name: str, device: torch.device, **changes) -> Workload:
    config = load_config(name, model=SMALL_MODELS[name])
    config = dataclasses.replace(config, **changes)
    return Workload(config, get_workload_functions(config.impl), DistInfo(device=device))


def loss_and_grads(workload: Workload, model: torch.nn.Module, batch: dict):
    """Mean training loss of one forward (no dropout) and every parameter's gradient."""
    model.zero_grad(set_to_none=True)
    logits, _ = workload.model_fn(
        model, batch, None, ForwardPassMode.TRAIN, None, update_batch_norm=True, dropout_rate=0.0
    )
    out = workload.loss_fn(batch["targets"], logits)
    loss = out.summed / out.n_valid_examples
    loss.backward()
    return loss.detach(), [p.grad.detach() for p in model.parameters()]


def relative_error(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """||got - want|| / ||want|| over all tensors together, in float64 on the CPU."""
    num = sum(float((g.cpu().double() - w).pow(2).sum()) for g, w in zip(got, want))
    den = sum(float(w.pow(2).sum()) for w in want)
    return (num / den) ** 0.5


def batch_of(name: str, config, device: torch.device, dtype=torch.float32) -> dict:
    batch = get_workload_functions(config.impl).synthetic_batch(
        config, BATCH, torch.Generator().manual_seed(3)
    )
    return {k: (v.to(dtype) if v.is_floating_point() else v).to(device) for k, v in batch.items()}


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_training_step_on_the_device_matches_float64(device, name):
    """fp32 on the device against the same step in float64 on the CPU. The bound: fp32's
    rounding (6e-8) grown by the sums of a few thousand terms per output (convolutions of
    up to 4,608 products, BN reductions) and by BN's division by the batch spread of 4 images;
    a wrong kernel or a lost layout gives O(1) errors."""
    w32 = workload_on(name, device)
    model32, _ = w32.init_model_fn([0])
    w64 = workload_on(name, torch.device("cpu"))
    model64, _ = w64.init_model_fn([0])
    model64 = model64.double()
    for p32, p64 in zip(model32.parameters(), model64.parameters()):
        assert p32.device.type == device.type
        torch.testing.assert_close(p32.detach().cpu().double(), p64.detach(), rtol=0, atol=0)
    loss32, grads32 = loss_and_grads(w32, model32, batch_of(name, w32.config, device))
    loss64, grads64 = loss_and_grads(
        w64, model64, batch_of(name, w64.config, torch.device("cpu"), torch.float64)
    )
    assert abs(float(loss32) - float(loss64)) <= 1e-4 * abs(float(loss64))
    assert relative_error(grads32, grads64) <= 1e-3


def test_fast_kernels_are_the_reference_kernels_off_the_cpu(device):
    if device.type == "cpu":
        pytest.skip("on the CPU the fast kernels are a different rounding (test_fast_kernels.py)")
    for name in sorted(SMALL_MODELS):
        outputs = []
        for on in (True, False):
            w = workload_on(name, device, fast_kernels=on)
            model, _ = w.init_model_fn([0])
            gen = torch.Generator().manual_seed(1)
            with torch.no_grad():  # ViT's zero-initialised head would give zero logits
                for p in model.parameters():
                    if not p.any():
                        p.copy_(0.01 * torch.randn(p.shape, generator=gen))
            batch = batch_of(name, w.config, device)
            torch.manual_seed(5)  # the same dropout masks on both
            logits, _ = w.model_fn(
                model, batch, None, ForwardPassMode.TRAIN, None, True, dropout_rate=0.1
            )
            outputs.append(logits)
        # Forward only: cuDNN is deterministic here (the fixture), SDPA's backward may not be.
        assert outputs[0].abs().max() > 0 and torch.equal(*outputs), name


def test_attention_on_the_device_matches_float64(device):
    """SDPA (p = 0) on the device against softmax(q k^T / sqrt(d)) v in float64. Scores of
    unit-variance q, k are O(1), so the softmax is well conditioned: fp32 rounding over a
    64-term dot product and a 128-term average stays far below 1e-4 of the output's scale."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 128, 64, generator=gen) for _ in range(3))
    got = fast.attention(*(t.to(device) for t in (q, k, v)), 0.0, fast_kernels=True)
    q64, k64, v64 = q.double(), k.double(), v.double()
    want = torch.softmax(q64 @ k64.transpose(-1, -2) / 8.0, dim=-1) @ v64
    assert got.device.type == device.type
    assert float((got.cpu().double() - want).abs().max()) <= 1e-4 * float(want.abs().max())


def test_compiled_step_matches_eager_on_the_device(device):
    w = workload_on("cifar", device)
    model, _ = w.init_model_fn([0])
    compiled = torch.compile(model)
    batch = batch_of("cifar", w.config, device)
    loss, grads = loss_and_grads(w, model, batch)
    loss_c, grads_c = loss_and_grads(w, compiled, batch)
    assert abs(float(loss_c) - float(loss)) <= 1e-4 * abs(float(loss))
    assert relative_error(grads_c, [g.cpu().double() for g in grads]) <= 1e-3


@pytest.mark.parametrize("workers", [0, 2])
def test_imagenet_batches_on_the_device_equal_the_cpu_ones(device, data_dir, workers):  # noqa: F811
    """The pinned copy on a side stream, prefetched one batch ahead, must hand over the same
    batches as the CPU path, across an epoch boundary (18 images, 4 a batch)."""
    config = small_config()
    got = imagenet_data.input_iterator(
        config, DataRequest("train", data_dir, 4, seed=1, num_workers=workers, device=device)
    )
    want = imagenet_data.input_iterator(
        config, DataRequest("train", data_dir, 4, seed=1, num_workers=workers)
    )
    for i in range(6):
        a, b = next(got), next(want)
        assert a["inputs"].device.type == device.type, i
        assert torch.equal(a["targets"].cpu(), b["targets"]), i
        # (x - mean) / std elementwise: exactly rounded on both, a 1-ulp slack all the same.
        torch.testing.assert_close(a["inputs"].cpu(), b["inputs"], rtol=2e-7, atol=1e-6)


def test_bench_steps_times_a_step_on_the_device(device, bench):  # noqa: F811
    options = bench.Options(device=device.type, steps=2, warmup=1, compile=False)
    row = bench.bench_workload("digits", options)
    eager = row["modes"]["eager"]
    assert len(eager["times_s"]) == 2 and all(t > 0 for t in eager["times_s"])
    assert eager["peak_mem_mib"] > 0  # max_memory_allocated on CUDA, RSS on the CPU
    assert row["batch_size"] == bench.DEFAULT_BATCH[device.type]["digits"]
