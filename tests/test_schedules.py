"""Learning-rate schedules vs their closed forms and torch's own schedulers.

python -m pytest tests/test_schedules.py
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from algoperf_torch.optimizers import schedules


def _torch_factors(step_hint: int, warmup_factor: float, n: int) -> list[float]:
    """The reference's SequentialLR(LinearLR, CosineAnnealingLR) factors, via torch."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    w = int(warmup_factor * step_hint)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-10, end_factor=1.0, total_iters=w)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(step_hint - w, 1))
    seq = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[w])
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        seq.step()
    return out


@pytest.mark.parametrize("step_hint,warmup_factor", [(100, 0.1), (57, 0.05), (40, 0.02)])
def test_warmup_cosine_matches_torch_sequential_lr(step_hint: int, warmup_factor: float) -> None:
    f = schedules.warmup_cosine({"warmup_factor": warmup_factor}, step_hint)
    ref = _torch_factors(step_hint, warmup_factor, int(1.3 * step_hint))
    np.testing.assert_allclose([f(t) for t in range(len(ref))], ref, rtol=1e-9, atol=1e-12)


def test_warmup_cosine_closed_form() -> None:
    f = schedules.warmup_cosine({"warmup_factor": 0.1}, 100)
    assert f(0) == pytest.approx(1e-10)
    assert f(5) == pytest.approx(0.5)
    assert f(10) == 1.0
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    assert f(145) == pytest.approx(0.5)  # torch's cosine is periodic past the end


def _optax_poly_f32(init: float, end: float, steps: int, count: int) -> float:
    """optax.polynomial_schedule(power=1) in float32, written with torch float32 tensors."""
    c = torch.tensor(min(max(count, 0), steps), dtype=torch.float32)
    frac = 1 - c / torch.tensor(steps, dtype=torch.float32)
    return (
        torch.tensor(init - end, dtype=torch.float32) * frac
        + torch.tensor(end, dtype=torch.float32)
    ).item()


def test_warmup_linear_decay_matches_float32_optax() -> None:
    lr, step_hint = 0.4394877561366806, 1000
    h = {"learning_rate": lr, "warmup_factor": 0.05, "decay_steps_factor": 0.9, "end_factor": 0.001}
    f = schedules.warmup_linear_decay(h, step_hint)
    w, d = 50, int((1000 - 50) * 0.9)
    for t in [0, 1, 7, 49, 50, 51, 300, w + d - 1, w + d, w + d + 500]:
        ref = _optax_poly_f32(0.0, lr, w, t) if t < w else _optax_poly_f32(lr, lr * 0.001, d, t - w)
        assert f(t) == ref / lr, t  # exact: the same correctly rounded float32 ops, same order
    assert f(0) == 0.0
    assert f(w) == pytest.approx(1.0, rel=1e-7)
    assert f(w + d) == pytest.approx(0.001, rel=1e-6)
    assert f(w + d + 100) == f(w + d)


def test_warmup_cosine_optax_clamps_at_zero() -> None:
    f = schedules.warmup_cosine_optax({"learning_rate": 0.01, "warmup_factor": 0.1}, 100)
    assert f(0) == 0.0
    assert f(5) == pytest.approx(0.5, rel=1e-6)
    assert f(10) == pytest.approx(1.0, rel=1e-6)
    assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)), abs=1e-6)
    assert f(100) == pytest.approx(0.0, abs=1e-7)
    assert f(150) == pytest.approx(0.0, abs=1e-7)


def test_schedule_free_warmup() -> None:
    f = schedules.schedule_free_warmup({"warmup_factor": 0.02}, 1000)  # W = int(20 * 0.75) = 15
    assert [f(t) for t in (0, 1, 14, 15, 500)] == [1 / 15, 2 / 15, 1.0, 1.0, 1.0]
    assert schedules.constant({}, 10)(3) == 1.0
