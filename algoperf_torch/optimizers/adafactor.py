"""Adafactor (Shazeer & Stern, 2018) as the AlgoPerf paper baseline configures it.

Follows the reference's PyTorch port of HF Adafactor [algorithms/archived_paper_baselines/
adafactor/pytorch/submission.py] with its fixed settings: ``decay_adam`` beta2 = 0.99 with the
bias-corrected decay ``b^ = b2 (1 - b2^(t-1)) / (1 - b2^t)``, factored second moment for every
tensor with ``ndim >= 2`` (last two axes, no minimum size), ``eps1 = 1e-30`` added to ``g^2``,
update clipping at RMS 1.0, no parameter scaling, no relative step, and momentum of the
*lr-scaled* update (RULES.md §5.2). Per tensor, at step t >= 1:

    q = g^2 + 1e-30
    ndim >= 2: R <- b^ R + (1 - b^) mean_last(q);  C <- b^ C + (1 - b^) mean_secondlast(q)
               V = (R / mean_last(R)) ⊗ C
    else:      V <- b^ V + (1 - b^) q
    u = g / sqrt(V);  u <- lr_t u / max(1, RMS(u));  m <- b1 m + (1 - b1) u
    p <- p - lr_t wd p - m

±inf in the gradient and in the factors become NaN (``maybe_inf_to_nan``); half-precision
gradients are handled in float32. The JAX twin has the same math but stores ``m`` int8-quantised;
we keep it in the parameter dtype. Deviation from the PyTorch file: it reads a ``warmup_steps``
hyperparameter its search space does not define; we use ``int(warmup_factor * step_hint)`` as the
JAX file does (``schedules.warmup_cosine``).

    python -m algoperf_torch optimizer=adafactor
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

EPS1 = 1e-30
CLIP_THRESHOLD = 1.0
_HALF = (torch.float16, torch.bfloat16)


class Adafactor(torch.optim.Optimizer):
    """Factored second moments, RMS update clipping and momentum on the lr-scaled update.

    Args:
        params: parameters or parameter groups.
        lr: peak learning rate (the schedule multiplies it).
        beta1: momentum of the scaled update, in [0, 1).
        decay_adam: beta2 of the second-moment estimate, in [0, 1) (0.99 in the baseline).
        weight_decay: decoupled decay, multiplied by the scheduled ``lr``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        beta1: float = 0.9,
        decay_adam: float = 0.99,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Adafactor: lr={lr} must be >= 0")
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"Adafactor: beta1={beta1} must lie in [0, 1)")
        if not 0.0 <= decay_adam < 1.0:
            raise ValueError(f"Adafactor: decay_adam={decay_adam} must lie in [0, 1)")
        if not weight_decay >= 0.0:
            raise ValueError(f"Adafactor: weight_decay={weight_decay} must be >= 0")
        defaults = dict(lr=lr, beta1=beta1, decay_adam=decay_adam, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One Adafactor update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Adafactor does not support sparse gradients")
                self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        grad = _inf_to_nan(p.grad)
        if grad.dtype in _HALF:
            grad = grad.float()
        state = self.state[p]
        factored = grad.ndim >= 2
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(grad)
            if factored:
                state["exp_avg_sq_row"] = grad.new_zeros(grad.shape[:-1])
                state["exp_avg_sq_col"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])
            else:
                state["exp_avg_sq"] = torch.zeros_like(grad)
        state["step"] += 1
        t = state["step"]
        lr, beta2 = group["lr"], group["decay_adam"]
        beta2t = beta2 * (1.0 - beta2 ** (t - 1.0)) / (1.0 - beta2**t)
        q = grad.square().add_(EPS1)
        if factored:
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            row.mul_(beta2t).add_(q.mean(dim=-1), alpha=1.0 - beta2t)
            col.mul_(beta2t).add_(q.mean(dim=-2), alpha=1.0 - beta2t)
            r_factor = _inf_to_nan(row / row.mean(dim=-1, keepdim=True)).unsqueeze(-1)
            denom = r_factor * _inf_to_nan(col).unsqueeze(-2)
        else:
            v = state["exp_avg_sq"]
            v.mul_(beta2t).add_(q, alpha=1.0 - beta2t)
            denom = v
        update = grad / denom.sqrt()
        clip = _inf_to_nan(update.square().mean().sqrt() / CLIP_THRESHOLD).clamp(min=1.0)
        update = update / clip * lr
        m = state["exp_avg"]
        m.mul_(group["beta1"]).add_(update, alpha=1.0 - group["beta1"])
        target = p.float() if p.dtype in _HALF else p
        if group["weight_decay"] != 0.0:
            target.add_(target, alpha=-group["weight_decay"] * lr)
        target.sub_(m)
        if target is not p:
            p.copy_(target)


def _inf_to_nan(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x, nan=torch.nan, posinf=torch.nan, neginf=torch.nan)
