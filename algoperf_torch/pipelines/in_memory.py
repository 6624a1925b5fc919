"""Batches of tensors held in memory (digits, MNIST, CIFAR-10), resumable to the batch.

Train: endless shuffled batches. Every rank draws the same permutation per epoch (one
``torch.Generator`` seeded by the data seed, drawn once per epoch) and takes its contiguous
slice of each global batch, so N ranks see exactly the examples one process would; the last
incomplete global batch of an epoch is dropped, as the reference's loaders do. An optional
per-batch ``transform`` (augmentation on the device) draws from its own generator, seeded by
(seed, rank). The state is (epoch, batches taken in it, the order generator's state at the
epoch's start, the augmentation generator's state): a resumed iterator redraws the epoch's
permutation and continues at the same batch with the same augmentation draws.

Eval: this rank's shard of the first ``num_examples`` examples, in order, once.

    python -m pytest tests/test_pipeline_state.py
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from algoperf_torch.pipelines.state import (
    Resumable,
    check_fingerprint,
    eval_shard,
    fingerprint,
    to_device,
)
from algoperf_torch.spec import Batch, DataRequest

Transform = Callable[[Batch, "torch.Generator | None"], Batch]
"""(batch on the device, augmentation generator or None) -> batch."""


def _identity(batch: Batch, gen: torch.Generator | None) -> Batch:
    return batch


class TrainBatches(Resumable):
    """Endless shuffled batches of ``(inputs, targets)``: this rank's slice of each global batch.

    Args:
        inputs, targets: the whole training set (same first dimension).
        request: the train request (its seed, rank, world size and per-rank batch size).
        transform: applied to each batch after it reached ``request.device``.
        augment: ``transform`` needs random draws; they come from a generator seeded by
            ``seed * 1000 + rank + 1`` and kept in the state.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        request: DataRequest,
        transform: Transform = _identity,
        augment: bool = False,
    ) -> None:
        self.inputs, self.targets, self.request, self.transform = (
            inputs,
            targets,
            request,
            transform,
        )
        self.global_batch = request.batch_size * request.world_size
        n = len(inputs)
        if self.global_batch > n:
            raise ValueError(
                f"global batch size {self.global_batch} exceeds the {n} training examples"
            )
        self.batches_per_epoch = (n - self.global_batch) // self.global_batch + 1
        self._order_gen = torch.Generator().manual_seed(request.seed)
        self._aug_gen = (
            torch.Generator().manual_seed(request.seed * 1000 + request.rank + 1)
            if augment
            else None
        )
        self._fingerprint = fingerprint("in_memory_train", request, num_examples=n)
        self.epoch = -1
        self.position = self.batches_per_epoch  # the first next() starts epoch 0
        self._epoch_start_state = self._order_gen.get_state()
        self._perm: torch.Tensor | None = None

    def _new_epoch(self) -> None:
        self.epoch += 1
        self.position = 0
        self._epoch_start_state = self._order_gen.get_state()
        self._perm = torch.randperm(len(self.inputs), generator=self._order_gen)

    def __next__(self) -> Batch:
        if self.position >= self.batches_per_epoch:
            self._new_epoch()
        start = self.position * self.global_batch + self.request.rank * self.request.batch_size
        idx = self._perm[start : start + self.request.batch_size]
        self.position += 1
        batch = to_device(
            {"inputs": self.inputs[idx], "targets": self.targets[idx]}, self.request.device
        )
        return self.transform(batch, self._aug_gen)

    def state_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": dict(self._fingerprint),
            "epoch": self.epoch,
            "position": self.position,
            "epoch_start_order_state": self._epoch_start_state.clone(),
            "augment_state": None if self._aug_gen is None else self._aug_gen.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        if (state["augment_state"] is None) != (self._aug_gen is None):
            raise ValueError("the saved pipeline state and this pipeline disagree on augmentation")
        self._order_gen.set_state(state["epoch_start_order_state"])
        if state["epoch"] >= 0:
            self.epoch = int(state["epoch"]) - 1
            self._new_epoch()  # redraws that epoch's permutation; the generator moves past it
            self.position = int(state["position"])
        else:
            self.epoch, self.position = -1, self.batches_per_epoch
        if self._aug_gen is not None:
            self._aug_gen.set_state(state["augment_state"])


class EvalBatches(Resumable):
    """This rank's shard of the first ``request.num_examples`` examples, in order, once."""

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        request: DataRequest,
        transform: Transform = _identity,
    ) -> None:
        num = request.num_examples if request.num_examples is not None else len(inputs)
        if num > len(inputs):
            raise ValueError(f"{request.split}: {num} examples requested, {len(inputs)} available")
        self.inputs, self.targets, self.request, self.transform = (
            inputs,
            targets,
            request,
            transform,
        )
        self.shard = eval_shard(num, request.rank, request.world_size)
        self.next_start = self.shard.start
        self._fingerprint = fingerprint("in_memory_eval", request, num_examples=num)

    def __next__(self) -> Batch:
        start = self.next_start
        if start >= self.shard.stop:
            raise StopIteration
        stop = min(start + self.request.batch_size, self.shard.stop)
        self.next_start = stop
        batch = {"inputs": self.inputs[start:stop], "targets": self.targets[start:stop]}
        return self.transform(to_device(batch, self.request.device), None)

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": dict(self._fingerprint), "next_start": self.next_start}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self.next_start = int(state["next_start"])


def in_memory_batches(
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]], request: DataRequest
) -> TrainBatches | EvalBatches:
    """The batches of ``request.split`` from in-memory ``{split: (inputs, targets)}``.

    ``train`` is shuffled endlessly; ``eval_train`` is a fixed seeded subset of ``train``;
    ``validation`` and ``test`` are read in order, each example once across ranks.
    """
    inputs, targets = splits["train"]
    if request.split == "train":
        return TrainBatches(inputs, targets, request)
    if request.split == "eval_train":
        idx = eval_train_subset(len(inputs), request.num_examples, request.seed)
        return EvalBatches(inputs[idx], targets[idx], request)
    return EvalBatches(*splits[request.split], request)


def eval_train_subset(num_train: int, num_examples: int, seed: int) -> torch.Tensor:
    """A fixed random subset of training indices for ``eval_train`` (seeded by the data seed)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(num_train, generator=gen)[:num_examples]
