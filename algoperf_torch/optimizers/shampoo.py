"""Shampoo with blocked Kronecker-factored preconditioners and grafting, after Distributed Shampoo.

Shampoo (Gupta, Koren & Singer, 2018) as Meta's PyTorch Distributed Shampoo implements it (Shi et
al., 2023, arXiv 2309.06497), the AlgoPerf v0.5 external-tuning winner [submissions_algorithms:
previous_leaderboards/algoperf_v06/submissions/external_tuning/shampoo/submission.py and its
``distributed_shampoo.py``, ``shampoo_preconditioner_list.py``]; single-process (under DDP every
rank computes the same update; the reference spreads the root inverses over ranks instead).

Each parameter's shape is first merged (adjacent dims multiplied while the product stays
``<= max_preconditioner_dim``, dims of size 1 dropped) and then split into blocks of at most
``max_preconditioner_dim`` along every dim. Per block ``G`` of order ``k``, at step ``t``:

    (L2)      g <- g + wd p                              if not use_decoupled_weight_decay
    factors   L_i <- b2 L_i + (1 - b2) G_(i) G_(i)^T     (contract all dims but i; b2 = 1: sum)
    grafting  D <- b2' D + (1 - b2') h^2 (RMSPROP/ADAM; ADAGRAD: sum; SGD: none), h = g or the
              normalized g / (||g|| + 1e-16) with use_normalized_grafting
    roots     when t == start, or t > start and t % precondition_frequency == 0:
              Linv_i = (eigh-based) ((L_i / (1 - b2^t)) shifted to be PSD, + epsilon I)^(-e/(2k))
              (e = exponent_multiplier; 2k replaced by inv_root_override if > 0), in float32,
              retried in float64 if eigh fails, the old root kept if both fail
    filtered  f = EMA_b1(g) (b1 = 0: f = g); use_nadam: f <- b1 f + (1 - b1) g; / (1 - b1^t)
    direction t < start: the grafting method's direction graft(f)  (no grafting: zero, since the
              roots start at 0, as the reference)
              else: S = f x_1 Linv_1 ... x_k Linv_k  (2-D: Linv_1 f Linv_2), rescaled per block to
              ||graft(f)|| / (||S|| + 1e-16) when grafting
    (AdamW)   S <- S + wd p                              if use_decoupled_weight_decay
    momentum  M <- m M + (1 - m) S (EMA; else m M + S); Nesterov S <- (1 - m) S + m M, else S <- M
    update    p <- p - lr S

``graft(x)`` is ``x`` (SGD), ``x / (sqrt(D) + eps')`` (ADAGRAD, RMSPROP) or
``x / (sqrt(D / (1 - b2'^t)) + eps')`` (ADAM). One deviation: with ``use_normalized_grafting``
the grafting direction is computed from ``f / (||g|| + 1e-16)`` (the reference uses ``f`` on
grafting-only steps and ``g / ||g||`` for the graft norm); with ``b1 = 0`` both agree, the only
setting in which the AlgoPerf references normalize.

The archived JAX "Shampoo" paper baseline skips preconditioning for every parameter
(RULES.md §5.2), and is exactly this optimizer with ``jax_paper_baseline_config(beta1, beta2,
weight_decay)``: never precondition, RMSProp grafting of the normalized gradient with eps 1e-8
and no bias correction, no gradient filtering, EMA Nesterov momentum ``beta1`` over the
direction plus ``wd p`` (the JAX code normalizes with +1e-25, we with +1e-16).

    python -m algoperf_torch optimizer=shampoo
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

GRAFTING_TYPES = ("NONE", "SGD", "ADAGRAD", "RMSPROP", "ADAM")
NORM_EPS = 1e-16  # the reference's EPSILON for grafting norms and normalized grafting


class Shampoo(torch.optim.Optimizer):
    """Blocked Shampoo with grafting, filtering, momentum and decoupled weight decay.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (the schedule multiplies it).
        betas: (beta1, beta2): beta1 in [0, 1) filters the gradient (0 = none); beta2 in (0, 1]
            averages the Kronecker factors (1 = sum, as AdaGrad).
        epsilon: added to the factors' eigenvalues before the root, > 0.
        momentum: momentum over the search direction, in [0, 1).
        weight_decay: decay strength, >= 0.
        max_preconditioner_dim: block size and dim-merging threshold, >= 1.
        precondition_frequency: steps between root-inverse computations, >= 1.
        start_preconditioning_step: first preconditioned step; -1 = precondition_frequency;
            ``math.inf`` = never (only the grafting method runs; no factors are kept).
        inv_root_override: 0 = root ``2 * order``; n > 0 = root n for every block.
        exponent_multiplier: multiplies the exponent ``1 / root``.
        use_nadam: NAdam-style combination of the filtered and current gradient.
        use_nesterov: Nesterov form of ``momentum``.
        use_bias_correction: bias-correct the filtered gradient and the factors.
        use_decoupled_weight_decay: AdamW-style decay added to the direction (else L2 on g).
        grafting_type: one of NONE, SGD, ADAGRAD, RMSPROP, ADAM.
        grafting_beta2: beta2 of RMSPROP/ADAM grafting, in (0, 1].
        grafting_epsilon: eps of the grafting method, > 0.
        use_normalized_grafting: grafting sees gradients divided by their norm (per block).
        use_ema_momentum: ``M <- m M + (1 - m) S`` instead of ``m M + S``.
        use_merge_dims: merge small adjacent dims before blocking.
        preconditioner_dtype: dtype of the factors and of the first eigh attempt.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        betas: tuple[float, float] = (0.9, 1.0),
        epsilon: float = 1e-12,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        max_preconditioner_dim: int = 1024,
        precondition_frequency: int = 1,
        start_preconditioning_step: float = -1,
        inv_root_override: int = 0,
        exponent_multiplier: float = 1.0,
        use_nadam: bool = False,
        use_nesterov: bool = False,
        use_bias_correction: bool = True,
        use_decoupled_weight_decay: bool = True,
        grafting_type: str = "ADAM",
        grafting_beta2: float = 0.999,
        grafting_epsilon: float = 1e-8,
        use_normalized_grafting: bool = False,
        use_ema_momentum: bool = True,
        use_merge_dims: bool = True,
        preconditioner_dtype: torch.dtype = torch.float32,
    ) -> None:
        _check_args(
            lr,
            betas,
            epsilon,
            momentum,
            weight_decay,
            max_preconditioner_dim,
            precondition_frequency,
            start_preconditioning_step,
            inv_root_override,
            grafting_type,
            grafting_beta2,
            grafting_epsilon,
        )
        if start_preconditioning_step == -1:
            start_preconditioning_step = precondition_frequency
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            epsilon=epsilon,
            momentum=momentum,
            weight_decay=weight_decay,
            max_preconditioner_dim=int(max_preconditioner_dim),
            precondition_frequency=int(precondition_frequency),
            start_preconditioning_step=start_preconditioning_step,
            inv_root_override=int(inv_root_override),
            exponent_multiplier=exponent_multiplier,
            use_nadam=use_nadam,
            use_nesterov=use_nesterov,
            use_bias_correction=use_bias_correction,
            use_decoupled_weight_decay=use_decoupled_weight_decay,
            grafting_type=grafting_type.upper(),
            grafting_beta2=grafting_beta2,
            grafting_epsilon=grafting_epsilon,
            use_normalized_grafting=use_normalized_grafting,
            use_ema_momentum=use_ema_momentum,
            use_merge_dims=use_merge_dims,
        )
        super().__init__(params, defaults)
        self.preconditioner_dtype = preconditioner_dtype
        self._blocking: dict[int, tuple[tuple[int, ...], list[tuple[slice, ...]]]] = {}

    # ---- blocking -------------------------------------------------------------------------

    def blocking(self, p: torch.Tensor, group: dict) -> tuple[tuple[int, ...], list[tuple]]:
        """(merged shape, block slices into it) for ``p``; one block if never preconditioned."""
        key = id(p)
        if key not in self._blocking:
            if math.isinf(group["start_preconditioning_step"]):
                shape: tuple[int, ...] = (max(p.numel(), 1),)
                blocks = [(slice(None),)]
            else:
                dim = group["max_preconditioner_dim"]
                shape = merge_small_dims(p.shape, dim if group["use_merge_dims"] else 0)
                blocks = block_slices(shape, dim)
            self._blocking[key] = (shape, blocks)
        return self._blocking[key]

    # ---- step -----------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One Shampoo update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._group_step(group, params)
        return loss

    def _group_step(self, group: dict, params: list[torch.Tensor]) -> None:
        beta1 = group["betas"][0]
        wd, m = group["weight_decay"], group["momentum"]
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("Shampoo does not support sparse gradients")
            self._init_state(p, group)
            self.state[p]["step"] += 1
        step = self.state[params[0]]["step"]
        grads = [p.grad for p in params]
        if wd != 0.0 and not group["use_decoupled_weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=wd)
        graft_in = self._graft_inputs(group, params, grads)
        self._update_grafting(group, params, graft_in)
        start = group["start_preconditioning_step"]
        use_shampoo = not math.isinf(start)
        if use_shampoo:
            self._update_factors(group, params, grads, step)
            if step == start or (step > start and step % group["precondition_frequency"] == 0):
                self._compute_roots(group, params, step)
        filtered = self._filtered(group, params, grads, beta1, step)
        if step < start:
            grafted = self._graft(group, params, self._graft_source(group, params, filtered, grads))
            directions = grafted if grafted is not None else torch._foreach_mul(filtered, 0.0)
        else:
            directions = self._precondition(group, params, filtered, grads)
        if wd != 0.0 and group["use_decoupled_weight_decay"]:
            torch._foreach_add_(directions, params, alpha=wd)
        if m != 0.0:
            moms = [self.state[p]["momentum"] for p in params]
            ema = group["use_ema_momentum"]
            torch._foreach_mul_(moms, m)
            torch._foreach_add_(moms, directions, alpha=1.0 - m if ema else 1.0)
            if group["use_nesterov"]:
                if ema:
                    torch._foreach_mul_(directions, 1.0 - m)
                torch._foreach_add_(directions, moms, alpha=m)
            else:
                directions = moms
        torch._foreach_add_(params, directions, alpha=-group["lr"])

    def _init_state(self, p: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if state:
            return
        state["step"] = 0
        if group["betas"][0] != 0.0:
            state["filtered_grad"] = torch.zeros_like(p)
        if group["momentum"] != 0.0:
            state["momentum"] = torch.zeros_like(p)
        if group["grafting_type"] in ("ADAGRAD", "RMSPROP", "ADAM"):
            state["grafting_sq"] = torch.zeros_like(p)
        if not math.isinf(group["start_preconditioning_step"]):
            shape, blocks = self.blocking(p, group)
            dims = [_block_shape(shape, s) for s in blocks]
            dt = self.preconditioner_dtype
            state["factors"] = [[p.new_zeros(d, d, dtype=dt) for d in bs] for bs in dims]
            state["inv_factors"] = [[p.new_zeros(d, d) for d in bs] for bs in dims]

    # ---- grafting -------------------------------------------------------------------------

    def _graft_inputs(self, group: dict, params: list, grads: list) -> list[torch.Tensor]:
        """What the grafting statistics see: g, or g divided by each block's norm."""
        if not group["use_normalized_grafting"]:
            return grads
        return [g / self._block_norms(p, group, g, eps=NORM_EPS) for p, g in zip(params, grads)]

    def _graft_source(self, group: dict, params: list, filtered: list, grads: list) -> list:
        """What the grafting direction is computed from: f, or f / ||g|| per block."""
        if not group["use_normalized_grafting"]:
            return filtered
        return [
            f / self._block_norms(p, group, g, eps=NORM_EPS)
            for p, f, g in zip(params, filtered, grads)
        ]

    def _block_norms(self, p: torch.Tensor, group: dict, x: torch.Tensor, eps: float = 0.0):
        """A tensor shaped like ``x`` holding, at every element, its block's norm + eps."""
        shape, blocks = self.blocking(p, group)
        if len(blocks) == 1:
            return torch.linalg.vector_norm(x) + eps
        xm = x.reshape(shape)
        out = torch.empty_like(xm)
        for s in blocks:
            out[s] = torch.linalg.vector_norm(xm[s]) + eps
        return out.view_as(x)

    def _update_grafting(self, group: dict, params: list, graft_in: list) -> None:
        kind = group["grafting_type"]
        if kind not in ("ADAGRAD", "RMSPROP", "ADAM"):
            return
        sq = [self.state[p]["grafting_sq"] for p in params]
        b2 = 1.0 if kind == "ADAGRAD" else group["grafting_beta2"]
        if b2 != 1.0:
            torch._foreach_mul_(sq, b2)
        torch._foreach_addcmul_(sq, graft_in, graft_in, value=1.0 - b2 if b2 != 1.0 else 1.0)

    def _graft(self, group: dict, params: list, x: list) -> list[torch.Tensor] | None:
        """The grafting method's direction for ``x`` (None without grafting)."""
        kind = group["grafting_type"]
        if kind == "NONE":
            return None
        if kind == "SGD":
            return [t.clone() for t in x]
        sq = [self.state[p]["grafting_sq"] for p in params]
        b2 = group["grafting_beta2"]
        bc2 = 1.0
        if kind == "ADAM" and b2 < 1.0:
            bc2 = 1.0 - b2 ** self.state[params[0]]["step"]
        denom = torch._foreach_div(sq, bc2)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, group["grafting_epsilon"])
        return torch._foreach_div(x, denom)

    # ---- first moment ---------------------------------------------------------------------

    def _filtered(self, group: dict, params: list, grads: list, beta1: float, step: int):
        if beta1 == 0.0:
            return grads
        buf = [self.state[p]["filtered_grad"] for p in params]
        torch._foreach_mul_(buf, beta1)
        torch._foreach_add_(buf, grads, alpha=1.0 - beta1)
        out = buf
        if group["use_nadam"]:
            out = torch._foreach_mul(buf, beta1)
            torch._foreach_add_(out, grads, alpha=1.0 - beta1)
        if group["use_bias_correction"]:
            out = torch._foreach_div(out, 1.0 - beta1**step)
        return out

    # ---- Kronecker factors ----------------------------------------------------------------

    def _update_factors(self, group: dict, params: list, grads: list, step: int) -> None:
        b2 = group["betas"][1]
        beta, alpha = (b2, 1.0 - b2) if b2 != 1.0 else (1.0, 1.0)
        for p, g in zip(params, grads):
            shape, blocks = self.blocking(p, group)
            gm = g.reshape(shape).to(self.preconditioner_dtype)
            for s, factors in zip(blocks, self.state[p]["factors"]):
                _accumulate(gm[s], factors, beta, alpha)

    def _compute_roots(self, group: dict, params: list, step: int) -> None:
        b2 = group["betas"][1]
        bc2 = 1.0 - b2**step if group["use_bias_correction"] and b2 < 1.0 else 1.0
        for p in params:
            state = self.state[p]
            for factors, invs in zip(state["factors"], state["inv_factors"]):
                root = group["inv_root_override"] or 2 * len(factors)
                exponent = group["exponent_multiplier"] / root
                for a, inv in zip(factors, invs):
                    computed = matrix_inverse_root(
                        a / bc2, exponent, group["epsilon"], self.preconditioner_dtype
                    )
                    if computed is not None:
                        inv.copy_(computed)

    def _precondition(self, group: dict, params: list, filtered: list, grads: list):
        graft_dirs = self._graft(group, params, self._graft_source(group, params, filtered, grads))
        out = []
        for i, (p, f) in enumerate(zip(params, filtered)):
            shape, blocks = self.blocking(p, group)
            fm = f.reshape(shape)
            gm = graft_dirs[i].reshape(shape) if graft_dirs is not None else None
            dm = torch.empty_like(fm)
            for s, invs in zip(blocks, self.state[p]["inv_factors"]):
                d = _apply_roots(fm[s], invs)
                if gm is not None:
                    scale = torch.linalg.vector_norm(gm[s]) / (
                        torch.linalg.vector_norm(d) + NORM_EPS
                    )
                    d = d * scale
                dm[s] = d
            out.append(dm.view_as(f))
        return out


def jax_paper_baseline_config(beta1: float, beta2: float, weight_decay: float) -> dict[str, Any]:
    """``Shampoo`` keyword arguments reproducing the archived JAX Shampoo baseline's behaviour.

    That baseline passes ``skip_preconditioning_dim_size_gt=0``, so no parameter is ever
    preconditioned (RULES.md §5.2): its update is RMSProp on the normalized gradient
    (no bias correction, eps 1e-8), plus ``wd p``, through EMA Nesterov momentum ``beta1``.
    """
    return dict(
        betas=(0.0, 1.0),
        momentum=beta1,
        use_ema_momentum=True,
        use_nesterov=True,
        weight_decay=weight_decay,
        use_decoupled_weight_decay=True,
        start_preconditioning_step=math.inf,
        grafting_type="RMSPROP",
        grafting_beta2=beta2,
        grafting_epsilon=1e-8,
        use_normalized_grafting=True,
        use_bias_correction=False,
    )


# ---- pure helpers (tested directly) -----------------------------------------------------------


def merge_small_dims(shape: Sequence[int], threshold: int) -> tuple[int, ...]:
    """Drop size-1 dims, then multiply adjacent dims while the product stays ``<= threshold``.

    As Distributed Shampoo's ``merge_small_dims``; ``threshold = 0`` only drops size-1 dims.
    """
    squeezed = [d for d in shape if d != 1] or [1]
    merged = [squeezed[0]]
    for d in squeezed[1:]:
        if merged[-1] * d <= threshold:
            merged[-1] *= d
        else:
            merged.append(d)
    return tuple(merged)


def block_slices(shape: Sequence[int], block: int) -> list[tuple[slice, ...]]:
    """Slices cutting every dim of ``shape`` into chunks of ``block`` (last one smaller), row-major."""
    slices: list[tuple[slice, ...]] = [()]
    for d in shape:
        cuts = [slice(i, min(i + block, d)) for i in range(0, d, block)]
        slices = [s + (c,) for s in slices for c in cuts]
    return slices


def _block_shape(shape: Sequence[int], s: tuple[slice, ...]) -> list[int]:
    return [len(range(*c.indices(d))) for c, d in zip(s, shape)]


def _accumulate(g: torch.Tensor, factors: list[torch.Tensor], beta: float, alpha: float) -> None:
    """``L_i <- beta L_i + alpha G_(i) G_(i)^T`` for every dim i of the block ``g``."""
    if g.ndim == 1:
        factors[0].mul_(beta).addr_(g, g, alpha=alpha)
    elif g.ndim == 2:
        factors[0].addmm_(g, g.T, beta=beta, alpha=alpha)
        factors[1].addmm_(g.T, g, beta=beta, alpha=alpha)
    else:
        for k, f in enumerate(factors):
            others = [d for d in range(g.ndim) if d != k]
            f.mul_(beta).add_(torch.tensordot(g, g, dims=(others, others)), alpha=alpha)


def _apply_roots(g: torch.Tensor, invs: list[torch.Tensor]) -> torch.Tensor:
    """``g x_1 Linv_1 ... x_k Linv_k``: contract each dim with its (symmetric) inverse root."""
    if g.ndim == 1:
        return invs[0] @ g
    if g.ndim == 2:
        return invs[0] @ g @ invs[1]
    for inv in invs:  # contracting dim 0 each time cycles the dims back into order
        g = torch.tensordot(g, inv, dims=([0], [0]))
    return g


def matrix_inverse_root(
    a: torch.Tensor, exponent: float, epsilon: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor | None:
    """``(A - min(lambda_min, 0) I + epsilon I)^(-exponent)`` of a symmetric ``A`` by ``eigh``.

    As Distributed Shampoo's protected eigh: first in ``dtype``, retried in float64 if that fails
    or gives a non-finite result; None if both fail (the caller keeps its previous root).
    """
    for dt in (dtype, torch.float64):
        try:
            evals, evecs = torch.linalg.eigh(a.to(dt))
        except RuntimeError:
            continue
        evals = evals - torch.clamp(evals.min(), max=0.0) + epsilon
        root = (evecs * evals.pow(-exponent)) @ evecs.T
        if torch.isfinite(root).all():
            return root.to(a.dtype)
    return None


def _check_args(
    lr,
    betas,
    epsilon,
    momentum,
    weight_decay,
    max_dim,
    freq,
    start,
    inv_root,
    grafting_type,
    grafting_beta2,
    grafting_epsilon,
) -> None:
    if not lr >= 0.0:
        raise ValueError(f"Shampoo: lr={lr} must be >= 0")
    if not (0.0 <= betas[0] < 1.0 and 0.0 < betas[1] <= 1.0):
        raise ValueError(f"Shampoo: betas={tuple(betas)} must lie in [0, 1) and (0, 1]")
    if not epsilon > 0.0:
        raise ValueError(f"Shampoo: epsilon={epsilon} must be > 0")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"Shampoo: momentum={momentum} must lie in [0, 1)")
    if not weight_decay >= 0.0:
        raise ValueError(f"Shampoo: weight_decay={weight_decay} must be >= 0")
    if not (max_dim >= 1 and freq >= 1):
        raise ValueError(
            f"Shampoo: max_preconditioner_dim={max_dim} and precondition_frequency={freq} "
            "must be >= 1"
        )
    if not (start == -1 or start >= 0):
        raise ValueError(f"Shampoo: start_preconditioning_step={start} must be -1, >= 0 or inf")
    if not inv_root >= 0:
        raise ValueError(f"Shampoo: inv_root_override={inv_root} must be >= 0")
    if str(grafting_type).upper() not in GRAFTING_TYPES:
        raise ValueError(
            f"Shampoo: grafting_type={grafting_type!r} must be one of {', '.join(GRAFTING_TYPES)}"
        )
    if not (0.0 < grafting_beta2 <= 1.0 and grafting_epsilon > 0.0):
        raise ValueError(
            f"Shampoo: grafting_beta2={grafting_beta2} must lie in (0, 1] and "
            f"grafting_epsilon={grafting_epsilon} must be > 0"
        )
