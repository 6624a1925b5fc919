"""SAM (Foret et al., 2021, "Sharpness-Aware Minimization") with AdamW as the base optimizer.

As the reference's PyTorch baseline [algorithms/archived_paper_baselines/sam/pytorch/
submission.py, after davda54/sam, ``adaptive=False``], one update is:

    pass 1 (done by the caller): g = grad L(p)
    e = rho g / ||g||_2              (global norm over all parameters, no epsilon)
    pass 2 (the closure, same batch): g~ = grad L(p + e)
    p <- p (restored exactly);  AdamW step with g~  (torch.optim.AdamW, eps 1e-8, decoupled wd)

``step(closure)`` needs the closure (zero_grad + forward + loss + backward at the perturbed
weights, returning the loss); it returns that second-pass loss. Being a ``torch.optim.AdamW``
subclass, the state dict holds AdamW's moments (the reference's wrapper kept them in a separate
base optimizer that its ``state_dict`` did not save); ``rho`` is a parameter-group key.

Differences left to the caller, as in the reference's ``update_params``: the second pass should
not update batch-norm running statistics (``update_batch_norm=False``) and any gradient clipping
applies to the second-pass gradient.

    python -m algoperf_torch optimizer=sam
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class SAM(torch.optim.AdamW):
    """AdamW whose gradient is taken at the SAM ascent point ``p + rho g / ||g||``.

    Args:
        params: parameters or parameter groups.
        rho: the neighbourhood radius, >= 0.
        lr, betas, eps, weight_decay: as ``torch.optim.AdamW``.
    """

    def __init__(
        self,
        params: Iterable,
        rho: float = 0.05,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        if not rho >= 0.0:
            raise ValueError(f"SAM: rho={rho} must be >= 0")
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=True
        )
        for group in self.param_groups:
            group.setdefault("rho", rho)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """Perturb, re-evaluate through ``closure``, restore, then take the AdamW step."""
        if closure is None:
            raise ValueError("SAM.step needs a closure that recomputes the loss and gradients")
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(
            torch.stack(torch._foreach_norm([p.grad for p in params]))
        )
        saved = [p.detach().clone() for p in params]
        for group in self.param_groups:
            active = [p for p in group["params"] if p.grad is not None]
            if active:
                scale = group["rho"] / grad_norm
                torch._foreach_add_(active, torch._foreach_mul([p.grad for p in active], scale))
        with torch.enable_grad():
            loss = closure()
        torch._foreach_copy_(params, saved)
        super().step()
        return loss
