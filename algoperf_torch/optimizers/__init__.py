"""The optimizer table: every training algorithm selectable as ``optimizer=<name>``.

Each entry says how to build the ``torch.optim.Optimizer`` from the hyperparameters (the keys of
the reference baseline's search space), which learning-rate schedule drives it, and which
hyperparameters it reads. ``submission.OptimizerSubmission`` turns an entry into the reference
submission API; no optimizer carries its own training step.

    python -m algoperf_torch optimizer=nadamw
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from algoperf_torch.optimizers import schedules
from algoperf_torch.optimizers.nadamw import NAdamW

Hparams = Mapping[str, Any]


@dataclass(frozen=True)
class OptimInfo:
    """One row of the table.

    Args:
        build: (parameter groups, hparams) -> optimizer; ``lr`` is the peak learning rate.
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
ADAM_HPARAMS = ("learning_rate", "one_minus_beta1", "beta2", "weight_decay", "warmup_factor", "epsilon")


def _betas(h: Hparams) -> tuple[float, float]:
    return (1.0 - float(h["one_minus_beta1"]), float(h["beta2"]))


def _adamw(params: Iterable, h: Hparams) -> torch.optim.Optimizer:
    # The reference's PyTorch AdamW baseline is torch.optim.AdamW with eps=1e-8
    # [algorithms/archived_paper_baselines/adamw/pytorch/submission.py].
    return torch.optim.AdamW(
        params,
        lr=float(h["learning_rate"]),
        betas=_betas(h),
        eps=float(h.get("epsilon", 1e-8)),
        weight_decay=float(h["weight_decay"]),
        foreach=True,
    )


def _nadamw(params: Iterable, h: Hparams) -> torch.optim.Optimizer:
    return NAdamW(
        params,
        lr=float(h["learning_rate"]),
        betas=_betas(h),
        eps=float(h.get("epsilon", 1e-8)),
        weight_decay=float(h["weight_decay"]),
    )


OPTIMIZERS: dict[str, OptimInfo] = {
    "adamw": OptimInfo(_adamw, schedules.warmup_cosine, ADAM_HPARAMS),
    "nadamw": OptimInfo(_nadamw, schedules.warmup_cosine, ADAM_HPARAMS),
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
