"""The optimizer table: every training algorithm selectable as ``optimizer=<name>``.

Each entry says how to build the ``torch.optim.Optimizer`` from the hyperparameters (the keys of
the reference baseline's search space), which learning-rate schedule drives it, and which
hyperparameters it reads. ``submission.OptimizerSubmission`` turns an entry into the reference
submission API; no optimizer carries its own training step. Where each row comes from is in the
docstring of its module (RULES.md §5, §6).

    python -m algoperf_torch optimizer=nadamw
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from algoperf_torch.optimizers import _hparams as hp
from algoperf_torch.optimizers import adamw, momentum, nesterov, schedules
from algoperf_torch.optimizers.adafactor import Adafactor
from algoperf_torch.optimizers.lamb import Lamb
from algoperf_torch.optimizers.nadamw import NAdamW
from algoperf_torch.optimizers.sam import SAM
from algoperf_torch.optimizers.schedule_free_adamw import ScheduleFreeAdamW
from algoperf_torch.optimizers.shampoo import Shampoo, jax_paper_baseline_config

Hparams = Mapping[str, Any]


@dataclass(frozen=True)
class OptimInfo:
    """One row of the table.

    Args:
        build: (parameter groups, hparams) -> optimizer; ``lr`` is the peak learning rate.
            Raises ValueError naming any hyperparameter outside its allowed range.
        schedule: (hparams, step_hint) -> pure function step -> lr multiplier.
        hparams: the hyperparameter names this optimizer reads (beyond the common
            ``dropout_rate``, ``label_smoothing`` and ``grad_clip``); others are an error.
        param_groups: (model, hparams) -> parameter groups; default: one group of all params.
        uses_closure: ``step(closure)`` re-evaluates the loss (SAM).
        train_eval_modes: the optimizer has ``train()``/``eval()`` (schedule-free): the adapter
            calls ``train()`` before each update and ``eval()`` in ``prepare_for_eval``.
    """

    build: Callable[[Iterable, Hparams], torch.optim.Optimizer]
    schedule: Callable[[Hparams, int], schedules.Schedule]
    hparams: tuple[str, ...]
    param_groups: Callable[[torch.nn.Module, Hparams], Iterable] | None = None
    uses_closure: bool = False
    train_eval_modes: bool = False


COMMON_HPARAMS = ("dropout_rate", "label_smoothing", "grad_clip")
ADAM_HPARAMS = (
    "learning_rate",
    "one_minus_beta1",
    "beta2",
    "weight_decay",
    "warmup_factor",
    "epsilon",
)
SGD_HPARAMS = (
    "learning_rate",
    "one_minus_beta1",
    "weight_decay",
    "warmup_factor",
    "decay_steps_factor",
    "end_factor",
)
ADAFACTOR_HPARAMS = ("learning_rate", "one_minus_beta1", "weight_decay", "warmup_factor")
SAM_HPARAMS = ADAM_HPARAMS + ("rho",)
SHAMPOO_HPARAMS = ADAM_HPARAMS + (
    "one_minus_momentum",
    "max_preconditioner_dim",
    "precondition_frequency",
    "start_preconditioning_step",
    "grafting_type",
    "grafting_epsilon",
    "use_normalized_grafting",
    "use_nadam",
    "use_nesterov",
    "use_bias_correction",
    "use_decoupled_weight_decay",
    "exponent_multiplier",
    "inv_root_override",
    "mode",
)
SCHEDULE_FREE_HPARAMS = (
    "learning_rate",
    "one_minus_beta1",
    "beta2",
    "weight_decay",
    "warmup_factor",
    "epsilon",
    "r",
    "weight_lr_power",
)
SHAMPOO_MODES = ("distributed", "jax_paper_baseline")
# Distributed Shampoo hands parameters with a dim >= 1e6 (embedding tables) to an unpreconditioned
# Adam-grafted copy of itself [submissions_algorithms: .../external_tuning/shampoo/submission.py].
SHAMPOO_LARGE_DIM = 1_000_000


def _warmup(h: Hparams) -> None:
    hp.number(h, "warmup_factor", lo=0.0, hi=1.0)


def _nadamw(params: Iterable, h: Hparams) -> NAdamW:
    _warmup(h)
    return NAdamW(
        params,
        lr=hp.learning_rate(h),
        betas=(hp.beta1(h), hp.beta2(h)),
        eps=hp.epsilon(h),
        weight_decay=hp.weight_decay(h),
    )


def _adamw(params: Iterable, h: Hparams) -> torch.optim.Optimizer:
    _warmup(h)
    return adamw.build(params, h)


def _lamb(params: Iterable, h: Hparams) -> Lamb:
    _warmup(h)
    return Lamb(
        params,
        lr=hp.learning_rate(h),
        betas=(hp.beta1(h), hp.beta2(h)),
        eps=hp.epsilon(h),
        weight_decay=hp.weight_decay(h),
    )


def _adafactor(params: Iterable, h: Hparams) -> Adafactor:
    _warmup(h)
    return Adafactor(
        params,
        lr=hp.learning_rate(h),
        beta1=hp.beta1(h),
        decay_adam=0.99,
        weight_decay=hp.weight_decay(h),
    )


def _sam(params: Iterable, h: Hparams) -> SAM:
    _warmup(h)
    return SAM(
        params,
        rho=hp.number(h, "rho", lo=0.0),
        lr=hp.learning_rate(h),
        betas=(hp.beta1(h), hp.beta2(h)),
        eps=hp.epsilon(h),
        weight_decay=hp.weight_decay(h),
    )


def _schedule_free(params: Iterable, h: Hparams) -> ScheduleFreeAdamW:
    _warmup(h)
    beta1 = hp.beta1(h)
    if beta1 == 0.0:
        raise ValueError("hyperparameter one_minus_beta1=1.0 is outside (0, 1) for schedule-free")
    return ScheduleFreeAdamW(
        params,
        lr=hp.learning_rate(h),
        betas=(beta1, hp.beta2(h)),
        eps=hp.epsilon(h),
        weight_decay=hp.weight_decay(h),
        r=hp.number(h, "r", lo=0.0, default=0.0),
        weight_lr_power=hp.number(h, "weight_lr_power", lo=0.0, default=2.0),
        exp_avg_sq_dtype=torch.bfloat16,
    )


def _shampoo_mode(h: Hparams) -> str:
    return hp.choice(h, "mode", SHAMPOO_MODES, "distributed")


def _shampoo(params: Iterable, h: Hparams) -> Shampoo:
    _warmup(h)
    lr, beta1, beta2, wd = hp.learning_rate(h), hp.beta1(h), hp.beta2(h), hp.weight_decay(h)
    if _shampoo_mode(h) == "jax_paper_baseline":
        return Shampoo(params, lr=lr, **jax_paper_baseline_config(beta1, beta2, wd))
    start = hp.number(h, "start_preconditioning_step", lo=-1, default=-1)
    return Shampoo(
        params,
        lr=lr,
        betas=(beta1, beta2),
        epsilon=hp.epsilon(h, default=1e-12),
        momentum=1.0
        - hp.number(h, "one_minus_momentum", lo=0.0, hi=1.0, lo_open=True, default=1.0),
        weight_decay=wd,
        max_preconditioner_dim=hp.integer(h, "max_preconditioner_dim", lo=1, default=1024),
        precondition_frequency=hp.integer(h, "precondition_frequency", lo=1, default=100),
        start_preconditioning_step=start if math.isinf(start) else int(start),
        inv_root_override=hp.integer(h, "inv_root_override", lo=0, default=0),
        exponent_multiplier=hp.number(h, "exponent_multiplier", lo=0.0, lo_open=True, default=1.0),
        use_nadam=hp.flag(h, "use_nadam", True),
        use_nesterov=hp.flag(h, "use_nesterov", True),
        use_bias_correction=hp.flag(h, "use_bias_correction", True),
        use_decoupled_weight_decay=hp.flag(h, "use_decoupled_weight_decay", True),
        grafting_type=hp.choice(
            h, "grafting_type", ("NONE", "SGD", "ADAGRAD", "RMSPROP", "ADAM"), "ADAM"
        ),
        grafting_beta2=beta2,
        grafting_epsilon=hp.number(h, "grafting_epsilon", lo=0.0, lo_open=True, default=1e-8),
        use_normalized_grafting=hp.flag(h, "use_normalized_grafting", False),
    )


def _shampoo_groups(model: torch.nn.Module, h: Hparams) -> list[dict[str, Any]]:
    """Embedding-sized parameters (a dim >= 1e6) skip preconditioning, as the winner does."""
    params = list(model.parameters())
    large = [p for p in params if any(d >= SHAMPOO_LARGE_DIM for d in p.shape)]
    rest = [p for p in params if not any(d >= SHAMPOO_LARGE_DIM for d in p.shape)]
    if _shampoo_mode(h) == "jax_paper_baseline" or not large:
        return [{"params": params}]
    return [{"params": rest}, {"params": large, "start_preconditioning_step": math.inf}]


def _shampoo_schedule(h: Hparams, step_hint: int) -> schedules.Schedule:
    """The winner's torch warmup+cosine; the JAX baseline's optax one in its mode."""
    if _shampoo_mode(h) == "jax_paper_baseline":
        return schedules.warmup_cosine_optax(h, step_hint)
    return schedules.warmup_cosine(h, step_hint)


OPTIMIZERS: dict[str, OptimInfo] = {
    "adamw": OptimInfo(_adamw, schedules.warmup_cosine, ADAM_HPARAMS),
    "nadamw": OptimInfo(_nadamw, schedules.warmup_cosine, ADAM_HPARAMS),
    "momentum": OptimInfo(momentum.build, schedules.warmup_linear_decay, SGD_HPARAMS),
    "nesterov": OptimInfo(nesterov.build, schedules.warmup_linear_decay, SGD_HPARAMS),
    "lamb": OptimInfo(_lamb, schedules.warmup_cosine_optax, ADAM_HPARAMS),
    "adafactor": OptimInfo(_adafactor, schedules.warmup_cosine, ADAFACTOR_HPARAMS),
    "sam": OptimInfo(_sam, schedules.warmup_cosine, SAM_HPARAMS, uses_closure=True),
    "shampoo": OptimInfo(_shampoo, _shampoo_schedule, SHAMPOO_HPARAMS, _shampoo_groups),
    "schedule_free_adamw": OptimInfo(
        _schedule_free,
        schedules.schedule_free_warmup,
        SCHEDULE_FREE_HPARAMS,
        train_eval_modes=True,
    ),
}


def get_optimizer_info(name: str) -> OptimInfo:
    """The table entry for ``name``; an unknown name lists the valid ones."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise KeyError(
            f"unknown optimizer {name!r}; valid names: {', '.join(sorted(OPTIMIZERS))} "
            "(or optimizer=file optimizer.path=PATH for a submission file)"
        ) from None
