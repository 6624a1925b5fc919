"""SAM's two passes and Schedule-Free AdamW against explicit formulas (and the schedulefree package).

python -m pytest tests/test_optim_sam_schedule_free.py
"""

from __future__ import annotations

import math

import pytest
import schedulefree
import torch

from algoperf_torch.optimizers.sam import SAM
from algoperf_torch.optimizers.schedule_free_adamw import ScheduleFreeAdamW

F64 = torch.float64


def _quartic(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return ((x @ w).tanh() ** 2).sum() + (w**4).sum()


def test_sam_two_passes_then_adamw() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, dtype=F64, generator=gen)
    w0 = torch.randn(3, 2, dtype=F64, generator=gen)
    b0 = torch.randn(2, dtype=F64, generator=gen)
    rho, lr, b1, b2, wd, eps = 0.05, 0.01, 0.9, 0.999, 0.1, 1e-8

    w, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())
    opt = SAM([w, b], rho=rho, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    passes = []

    def loss_at(wt, bt):
        return _quartic(wt, x) + (bt**2).sum()

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = loss_at(w, b)
        loss.backward()
        passes.append((w.detach().clone(), b.detach().clone()))
        return loss

    closure()
    opt.step(closure)
    assert len(passes) == 2

    # explicit: ascent point from the first gradient, AdamW step with the second
    wr, br = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    gw, gb = torch.autograd.grad(loss_at(wr, br), (wr, br))
    norm = torch.sqrt((gw**2).sum() + (gb**2).sum())
    we, be = (w0 + rho * gw / norm).requires_grad_(), (b0 + rho * gb / norm).requires_grad_()
    torch.testing.assert_close(passes[1][0], we.detach())
    gw2, gb2 = torch.autograd.grad(loss_at(we, be), (we, be))
    for p, p0, g in ((w, w0, gw2), (b, b0, gb2)):
        m, v = (1 - b1) * g, (1 - b2) * g * g
        ref = p0 * (1 - lr * wd) - lr / (1 - b1) * m / (v.sqrt() / math.sqrt(1 - b2) + eps)
        torch.testing.assert_close(p.detach(), ref, rtol=1e-12, atol=1e-14)


def test_sam_requires_a_closure() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match="closure"):
        SAM([p]).step()


def _winner_reference(p0, grads, lr, b1, b2, eps, wd, r, power, warmup):
    """The self-tuning winner's loop, written out: x is stored, y = lerp(x, z, 1 - b1)."""
    x, z, v = p0.clone(), p0.clone(), torch.zeros_like(p0)
    lr_max, wsum = 0.0, 0.0
    for k, grad_fn in enumerate(grads):
        y = (1 - b1) * z + b1 * x
        g = grad_fn(y)
        sched = (k + 1) / warmup if k < warmup else 1.0
        lr_k = max(lr * sched, eps)
        lr_max = max(lr_max, lr_k)
        weight = (k + 1) ** r * lr_max**power
        wsum += weight
        c = weight / wsum
        s = lr_k * math.sqrt(1 - b2 ** (k + 1))
        v = b2 * v + (1 - b2) * g * g
        z = z - s * g / (v.sqrt() + eps) - s * wd * x
        x = (1 - c) * x + c * z
    return x


def test_schedule_free_matches_the_winners_update() -> None:
    gen = torch.Generator().manual_seed(1)
    p0 = torch.randn(4, 3, dtype=F64, generator=gen)
    targets = [torch.randn(4, 3, dtype=F64, generator=gen) for _ in range(6)]
    grads = [lambda y, t=t: y - t + 0.1 * y**3 for t in targets]
    lr, b1, b2, eps, wd, r, power, warmup = 0.05, 0.9, 0.99, 1e-8, 0.1, 0.75, 2.0, 3

    p = torch.nn.Parameter(p0.clone())
    opt = ScheduleFreeAdamW(
        [p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, r=r, weight_lr_power=power
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / warmup if t < warmup else 1.0
    )
    for grad_fn in grads:
        opt.train()
        p.grad = grad_fn(p.detach().clone())
        opt.step()
        sched.step()
    opt.eval()
    ref = _winner_reference(p0, grads, lr, b1, b2, eps, wd, r, power, warmup)
    torch.testing.assert_close(p.detach(), ref, rtol=1e-10, atol=1e-12)
    opt.train()
    opt.eval()  # modes are idempotent round trips
    torch.testing.assert_close(p.detach(), ref, rtol=1e-10, atol=1e-12)


def test_schedule_free_agrees_with_schedulefree_package_without_eps_and_decay() -> None:
    gen = torch.Generator().manual_seed(2)
    p0 = torch.randn(3, 5, dtype=F64, generator=gen)
    gs = [torch.randn(3, 5, dtype=F64, generator=gen) for _ in range(5)]
    ours, theirs = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    kw = dict(lr=0.01, betas=(0.9, 0.999), eps=0.0, weight_decay=0.0, r=0.5, weight_lr_power=2.0)
    a = ScheduleFreeAdamW([ours], **kw)
    b = schedulefree.AdamWScheduleFree([theirs], warmup_steps=0, **kw)
    for g in gs:
        a.train()
        b.train()
        ours.grad, theirs.grad = g.clone(), g.clone()
        a.step()
        b.step()
    a.eval()
    b.eval()
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-10, atol=1e-12)


def test_schedule_free_refuses_to_step_in_eval_mode() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="train"):
        ScheduleFreeAdamW([p]).step()
