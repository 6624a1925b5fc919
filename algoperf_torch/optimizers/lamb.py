"""LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning") as ``optax.lamb``.

The reference's PyTorch LAMB cannot run as shipped (RULES.md §5.2 "Known defects"), so we follow
the JAX baseline [algorithms/archived_paper_baselines/lamb/jax/submission.py], which is
``optax.lamb(lr_t, b1, b2, eps=1e-8, weight_decay=wd)`` = ``scale_by_adam`` →
``add_decayed_weights`` (every parameter, no mask) → ``scale_by_trust_ratio`` → ``-lr_t``.
Per tensor, at step t >= 1:

    m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
    u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd p
    r = ||p||_2 / ||u||_2   (r = 1 if either norm is 0; no clamp)
    p <- p - lr_t r u

Schedule: ``schedules.warmup_cosine_optax`` (the JAX baseline's).

    python -m algoperf_torch optimizer=lamb
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class Lamb(torch.optim.Optimizer):
    """LAMB with the optax update order (decay inside the trust ratio), ``foreach`` kernels.

    Args:
        params: parameters or parameter groups.
        lr: peak learning rate (the schedule multiplies it).
        betas: (beta1, beta2), each in [0, 1).
        eps: added outside the square root.
        weight_decay: added to the Adam direction before the trust ratio.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Lamb: lr={lr} must be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Lamb: betas={betas} must each lie in [0, 1)")
        if not eps >= 0.0:
            raise ValueError(f"Lamb: eps={eps} must be >= 0")
        if not weight_decay >= 0.0:
            raise ValueError(f"Lamb: weight_decay={weight_decay} must be >= 0")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One LAMB update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets: dict[int, list[list[torch.Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                bucket = buckets.setdefault(int(state["step"].item()), [[], [], [], []])
                for lst, t in zip(bucket, (p, p.grad, state["exp_avg"], state["exp_avg_sq"])):
                    lst.append(t)
            beta1, beta2 = group["betas"]
            for step, (ps, gs, ms, vs) in buckets.items():
                _lamb_foreach(
                    ps,
                    gs,
                    ms,
                    vs,
                    step=step,
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                    wd=group["weight_decay"],
                )
        return loss


def _lamb_foreach(params, grads, exp_avgs, exp_avg_sqs, *, step, lr, beta1, beta2, eps, wd):
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
    # optax order: sqrt(v / (1 - b2^t)) + eps, then (m / (1 - b1^t)) / denom.
    denom = torch._foreach_div(exp_avg_sqs, 1.0 - beta2**step)
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(exp_avgs, 1.0 - beta1**step)
    torch._foreach_div_(update, denom)
    if wd != 0.0:
        torch._foreach_add_(update, params, alpha=wd)
    p_norms = torch._foreach_norm(params)
    u_norms = torch._foreach_norm(update)
    ratios = [
        torch.where((pn > 0) & (un > 0), pn / un, torch.ones_like(pn))
        for pn, un in zip(p_norms, u_norms)
    ]
    torch._foreach_mul_(update, ratios)
    torch._foreach_add_(params, update, alpha=-lr)
