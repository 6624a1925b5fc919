"""The sharded eval loop: every example of a split once across ranks, metric sums all-reduced.

Evaluates ``eval_train`` (logged as ``train/…``), ``validation`` and ``test`` in the reference's
order [algoperf/spec.py ``eval_model``]; each split's metric state is summed over ranks and
divided by the split's size by the workload's metric.

    python -m pytest tests/test_evaluation.py
"""

from __future__ import annotations

import torch
from torch import nn

from algoperf_torch.distributed import all_reduce_sum
from algoperf_torch.spec import EVAL_SPLITS, ForwardPassMode
from algoperf_torch.workload import Workload


@torch.inference_mode()
def evaluate_split(workload: Workload, model: nn.Module, split: str, seed: int) -> dict[str, float]:
    """Metrics of ``model`` on ``split`` (``split`` must have examples).

    The whole split runs under ``torch.inference_mode`` (no autograd state, no version counters),
    the pipeline and the metric included, so none of its tensors meet training; ``model_fn``'s
    EVAL mode alone is ``no_grad``, as the reference's, for submissions that call it."""
    num_examples = workload.eval_examples(split)
    if workload.functions.metric_reads_data:
        data_dir = "" if workload.synthetic else workload.data_dir
        metric = workload.functions.make_metric(workload.config, data_dir)
    else:
        metric = workload.functions.make_metric(workload.config)
    batches = workload._build_input_queue(
        [seed, 0], split, workload.data_dir, workload.eval_batch_size, workload.eval_index
    )
    # A metric that needs the model itself (WMT's BLEU decodes with it) sets ``needs_model``.
    extra = {"model": model} if getattr(metric, "needs_model", False) else {}
    for batch in batches:
        for part in _row_chunks(batch, workload.config.eval_chunk_size):
            logits, _ = workload.model_fn(
                model, part, None, ForwardPassMode.EVAL, None, update_batch_norm=False
            )
            metric.update(logits, part, **extra)
            del logits
    state = all_reduce_sum(metric.state(), workload.dist)
    return metric.compute(state, num_examples)


def _row_chunks(batch: dict, size: int | None):
    """``batch`` in slices of ``size`` rows (every tensor shares dim 0); None: the whole batch."""
    rows = len(batch["inputs"])
    if size is None or rows <= size:
        yield batch
        return
    for start in range(0, rows, size):
        yield {
            k: v[start : start + size] if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }


def evaluate(workload: Workload, model: nn.Module, seed: int) -> dict[str, float]:
    """All splits, as a flat dict: ``train/<m>``, ``validation/<m>``, ``test/<m>``, counts."""
    results: dict[str, float] = {}
    if workload.functions.sync_before_eval and workload.dist.is_distributed:
        average_state_across_ranks(model)
    for split, prefix in EVAL_SPLITS:
        num_examples = workload.eval_examples(split)
        if not num_examples:
            continue
        for name, value in evaluate_split(workload, model, split, seed).items():
            results[f"{prefix}/{name}"] = value
        if prefix != "train":
            results[f"{prefix}/num_examples"] = num_examples
    return results


def average_state_across_ranks(model: nn.Module) -> None:
    """Replace every floating-point entry of ``model``'s state by its mean over ranks, in place
    (the reference's ``sync_sd``: it persists into the training that follows)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for value in model.state_dict().values():
        if value.is_floating_point():
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value.div_(world)


class SummedMetrics:
    """The common image-classification metric: summed ``loss`` and ``accuracy`` over examples.

    Handles a ``weights`` mask (padded examples count for nothing), as the reference's
    ``_eval_metric`` of MNIST, CIFAR and ImageNet.
    """

    def __init__(self) -> None:
        self._loss = torch.zeros((), dtype=torch.float64)
        self._correct = torch.zeros((), dtype=torch.float64)

    def update(self, logits: torch.Tensor, batch: dict) -> None:
        targets = batch["targets"]
        weights = batch.get("weights")
        losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        correct = (logits.argmax(dim=-1) == targets).to(torch.float64)
        if weights is not None:
            losses = losses * weights
            correct = correct * weights
        self._loss += losses.sum().double().cpu()
        self._correct += correct.sum().cpu()

    def state(self) -> dict[str, torch.Tensor]:
        return {"loss": self._loss, "accuracy": self._correct}

    def compute(self, state: dict[str, torch.Tensor], num_examples: int) -> dict[str, float]:
        return {k: float(v) / num_examples for k, v in state.items()}
