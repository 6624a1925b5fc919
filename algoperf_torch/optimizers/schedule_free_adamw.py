"""Schedule-Free AdamW (Defazio et al., 2024, "The Road Less Scheduled"), the self-tuning winner.

Follows the AlgoPerf v0.5 self-tuning winning submission [submissions_algorithms:
submissions/self_tuning/schedule_free_adamw/submission.py, class ``AdamWScheduleFree``]. With
``k`` the number of earlier steps, ``lr`` the (warmed-up, see below) group learning rate, ``x``
the averaged iterate, ``z`` the base iterate and ``y = (1 - b1) z + b1 x`` where gradients are
taken:

    lr' = max(lr, eps);  lr_max <- max(lr_max, lr');  w = (k+1)^r lr_max^weight_lr_power
    c = w / sum(w);  s = lr' sqrt(1 - b2^(k+1))
    v <- b2 v + (1 - b2) g^2
    z <- z - s g / (sqrt(v) + eps) - s wd x
    x <- (1 - c) x + c z

Why not the installed ``schedulefree.AdamWScheduleFree`` (1.4.1): its update differs from the
winner's in three ways — weight decay is taken at ``y`` instead of ``x`` and without the
``sqrt(1 - b2^(k+1))`` factor, ``eps`` sits outside ``sqrt(v / (1 - b2^(k+1)))`` instead of
``sqrt(v)``, and it has no ``max(lr, eps)`` floor. With ``eps = 0`` and ``wd = 0`` the two agree
(a test checks this). The winner stores ``v`` in bfloat16; ``exp_avg_sq_dtype`` reproduces that
(the table does), ``None`` keeps the parameter dtype.

The winner warms up inside the optimizer (``lr (k+1)/W``, ``W = int(warmup_factor * step_hint *
0.75)``); we leave that to ``schedules.schedule_free_warmup`` through ``LambdaLR``, which hands
this optimizer the same warmed-up ``lr``. Not reproduced: the winner's ``update_params``
heuristic that resets the weights and halves ``lr`` when four evals in a row stall (a
submission-level rule on eval results, not part of the optimizer).

Parameters hold ``y`` in train mode and ``x`` in eval mode: call ``train()`` before stepping and
``eval()`` before evaluating or checkpointing the model (``OptimInfo.train_eval_modes``).

    python -m algoperf_torch optimizer=schedule_free_adamw
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class ScheduleFreeAdamW(torch.optim.Optimizer):
    """Schedule-Free AdamW with the self-tuning winner's update.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (a schedule may warm it up; no decay is needed).
        betas: (beta1, beta2), beta1 in (0, 1) (interpolation), beta2 in [0, 1).
        eps: added to ``sqrt(v)``; also the floor of the learning rate.
        weight_decay: decay of ``z`` towards 0, taken at ``x``.
        r: polynomial weighting power of the average.
        weight_lr_power: power of ``lr_max`` in the averaging weights.
        exp_avg_sq_dtype: storage dtype of ``v`` (the winner: ``torch.bfloat16``); None = param's.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        exp_avg_sq_dtype: torch.dtype | None = None,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"ScheduleFreeAdamW: lr={lr} must be >= 0")
        if not (0.0 < betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(
                f"ScheduleFreeAdamW: betas={betas} must lie in (0, 1) and [0, 1) respectively"
            )
        if not eps >= 0.0:
            raise ValueError(f"ScheduleFreeAdamW: eps={eps} must be >= 0")
        if not weight_decay >= 0.0:
            raise ValueError(f"ScheduleFreeAdamW: weight_decay={weight_decay} must be >= 0")
        if not r >= 0.0 or not weight_lr_power >= 0.0:
            raise ValueError(
                f"ScheduleFreeAdamW: r={r} and weight_lr_power={weight_lr_power} must be >= 0"
            )
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            r=r,
            weight_lr_power=weight_lr_power,
            k=0,
            lr_max=0.0,
            weight_sum=0.0,
            train_mode=False,
        )
        super().__init__(params, defaults)
        self.exp_avg_sq_dtype = exp_avg_sq_dtype

    def load_state_dict(self, state_dict: dict) -> None:
        """Load, keeping ``v`` in ``exp_avg_sq_dtype`` (torch casts state to the param dtype)."""
        super().load_state_dict(state_dict)
        if self.exp_avg_sq_dtype is not None:
            for state in self.state.values():
                if "exp_avg_sq" in state:
                    state["exp_avg_sq"] = state["exp_avg_sq"].to(self.exp_avg_sq_dtype)

    @torch.no_grad()
    def train(self) -> None:
        """Move parameters from ``x`` to ``y = x + (1 - b1)(z - x)`` (no-op if already there)."""
        for group in self.param_groups:
            if not group["train_mode"]:
                self._lerp_to_z(group, 1.0 - group["betas"][0])
                group["train_mode"] = True

    @torch.no_grad()
    def eval(self) -> None:
        """Move parameters from ``y`` back to ``x`` (no-op if already there)."""
        for group in self.param_groups:
            if group["train_mode"]:
                self._lerp_to_z(group, 1.0 - 1.0 / group["betas"][0])
                group["train_mode"] = False

    def _lerp_to_z(self, group: dict, weight: float) -> None:
        pairs = [(p, self.state[p]["z"]) for p in group["params"] if "z" in self.state[p]]
        if pairs:
            ps, zs = zip(*pairs)
            torch._foreach_lerp_(list(ps), list(zs), weight)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One schedule-free update; parameters must be in train mode (holding ``y``)."""
        if not all(g["train_mode"] for g in self.param_groups):
            raise RuntimeError("ScheduleFreeAdamW.step called in eval mode: call train() first")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._group_step(group)
        return loss

    def _group_step(self, group: dict) -> None:
        beta1, beta2 = group["betas"]
        k = group["k"]
        lr = max(group["lr"], group["eps"])
        lr_max = group["lr_max"] = max(lr, group["lr_max"])
        weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
        weight_sum = group["weight_sum"] = group["weight_sum"] + weight
        ckp1 = weight / weight_sum if weight_sum > 0 else 0.0
        step_size = lr * math.sqrt(1.0 - beta2 ** (k + 1))
        ys, grads, zs, vs = [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "z" not in state:
                state["z"] = p.detach().clone()
                state["exp_avg_sq"] = torch.zeros_like(p, dtype=self.exp_avg_sq_dtype)
            ys.append(p)
            grads.append(p.grad)
            zs.append(state["z"])
            vs.append(state["exp_avg_sq"])
        if ys:
            # x from y (the winner's "unextrapolate"), in a temporary.
            xs = torch._foreach_lerp(ys, zs, 1.0 - 1.0 / beta1)
            if vs[0].dtype == grads[0].dtype:
                torch._foreach_mul_(vs, beta2)
                torch._foreach_addcmul_(vs, grads, grads, value=1.0 - beta2)
                denom = torch._foreach_sqrt(vs)
                torch._foreach_add_(denom, group["eps"])
                torch._foreach_addcdiv_(zs, grads, denom, value=-step_size)
            else:  # low-precision v: every op on v in its dtype, as the winner's bfloat16 state
                for z, g, v in zip(zs, grads, vs):
                    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                    z.addcdiv_(g, v.sqrt().add_(group["eps"]), value=-step_size)
            if group["weight_decay"] != 0.0:
                torch._foreach_add_(zs, xs, alpha=-step_size * group["weight_decay"])
            torch._foreach_lerp_(xs, zs, ckp1)
            # back to y for the next gradient (the winner's "extrapolate").
            torch._foreach_lerp_(xs, zs, 1.0 - beta1)
            torch._foreach_copy_(ys, xs)
        group["k"] = k + 1
