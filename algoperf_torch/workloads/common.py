"""Pieces shared by the image-classification workloads: the loss and in-memory batching.

The loss is the reference's (identical code in its ImageNet, CIFAR and MNIST PyTorch workloads):
``F.cross_entropy(reduction='none', label_smoothing=ε)``, masked by ``mask_batch``.

    python -m pytest tests/test_workloads.py
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from algoperf_torch.evaluation import SummedMetrics
from algoperf_torch.spec import Batch, DataRequest, LossOutput, WorkloadConfig


def softmax_cross_entropy_loss(
    config: WorkloadConfig,
    label_batch: torch.Tensor,
    logits_batch: torch.Tensor,
    mask_batch: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Per-example softmax cross-entropy with label smoothing; labels as ints or soft targets."""
    per_example = F.cross_entropy(
        logits_batch, label_batch, reduction="none", label_smoothing=label_smoothing
    )
    if mask_batch is not None:
        per_example = per_example * mask_batch
        n_valid = mask_batch.sum()
    else:
        n_valid = torch.as_tensor(len(per_example), device=per_example.device)
    return LossOutput(per_example.sum(), n_valid, per_example)


def classification_metric(config: WorkloadConfig) -> SummedMetrics:
    return SummedMetrics()


def eval_shard(num_examples: int, rank: int, world_size: int) -> range:
    """This rank's contiguous share of ``num_examples``: shards cover each example once."""
    return range(rank * num_examples // world_size, (rank + 1) * num_examples // world_size)


def train_batches(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    request: DataRequest,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> Iterator[Batch]:
    """Endless shuffled batches of in-memory tensors, this rank's slice of each global batch.

    Every rank draws the same permutation (seeded by ``request.seed``) and takes its contiguous
    slice of each global batch, so N ranks see exactly the examples one process would. The last
    incomplete global batch of an epoch is dropped, as the reference's loaders do.
    """
    global_batch = request.batch_size * request.world_size
    n = len(inputs)
    if global_batch > n:
        raise ValueError(f"global batch size {global_batch} exceeds the {n} training examples")
    order_gen = torch.Generator().manual_seed(request.seed)
    aug_gen = torch.Generator().manual_seed(request.seed * 1000 + request.rank + 1)
    lo = request.rank * request.batch_size
    while True:
        perm = torch.randperm(n, generator=order_gen)
        for start in range(0, n - global_batch + 1, global_batch):
            idx = perm[start + lo : start + lo + request.batch_size]
            x = inputs[idx]
            if augment is not None:
                x = augment(x, aug_gen)
            yield _to_device({"inputs": x, "targets": targets[idx]}, request.device)


def eval_batches(
    inputs: torch.Tensor, targets: torch.Tensor, request: DataRequest
) -> Iterator[Batch]:
    """This rank's shard of the first ``request.num_examples`` examples, in order, once."""
    num = request.num_examples if request.num_examples is not None else len(inputs)
    if num > len(inputs):
        raise ValueError(f"{request.split}: {num} examples requested, {len(inputs)} available")
    shard = eval_shard(num, request.rank, request.world_size)
    for start in range(shard.start, shard.stop, request.batch_size):
        stop = min(start + request.batch_size, shard.stop)
        yield _to_device(
            {"inputs": inputs[start:stop], "targets": targets[start:stop]}, request.device
        )


def in_memory_batches(
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]], request: DataRequest
) -> Iterator[Batch]:
    """The batches of ``request.split`` from in-memory ``{split: (inputs, targets)}``.

    ``train`` is shuffled endlessly; ``eval_train`` is a fixed seeded subset of ``train``;
    ``validation`` and ``test`` are read in order, each example once across ranks.
    """
    inputs, targets = splits["train"]
    if request.split == "train":
        return train_batches(inputs, targets, request)
    if request.split == "eval_train":
        idx = eval_train_subset(len(inputs), request.num_examples, request.seed)
        return eval_batches(inputs[idx], targets[idx], request)
    return eval_batches(*splits[request.split], request)


def eval_train_subset(num_train: int, num_examples: int, seed: int) -> torch.Tensor:
    """A fixed random subset of training indices for ``eval_train`` (seeded by the data seed)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(num_train, generator=gen)[:num_examples]


def _to_device(batch: dict[str, Any], device: torch.device) -> Batch:
    pin = device.type == "cuda"
    return {
        k: (v.pin_memory() if pin else v).to(device, non_blocking=pin) for k, v in batch.items()
    }


def num_batches(num_examples: int, batch_size: int) -> int:
    return math.ceil(num_examples / batch_size)
