"""Synthetic batches of each workload's real shapes and dtypes (``data=synthetic``).

For throughput runs and smoke tests: no files are read. Train batches never end; eval splits
yield this rank's share of ``request.num_examples`` examples once, like real eval data. Each
split and rank draws from its own ``torch.Generator`` (so eval batches never repeat training
batches); its state is the pipeline's state, so a resumed run continues the same stream.

    python -m algoperf_torch workload=cifar data=synthetic max_steps=5
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from algoperf_torch.pipelines.state import (
    Resumable,
    check_fingerprint,
    eval_shard,
    fingerprint,
    to_device,
)
from algoperf_torch.spec import SPLITS, Batch, DataRequest, WorkloadConfig, WorkloadFunctions


class SyntheticBatches(Resumable):
    """``functions.synthetic_batch`` draws for ``request`` (train: endless; eval: one pass)."""

    def __init__(
        self, config: WorkloadConfig, functions: WorkloadFunctions, request: DataRequest
    ) -> None:
        self.config, self.functions, self.request = config, functions, request
        split_index = SPLITS.index(request.split)
        self._gen = torch.Generator().manual_seed(
            (request.seed * 4 + split_index) * 7919 + request.rank
        )
        self.train = request.split == "train"
        shard = eval_shard(request.num_examples or 0, request.rank, request.world_size)
        self.stop = shard.stop
        self.next_start = shard.start
        self._fingerprint = fingerprint(
            "synthetic", request, workload=config.name, num_examples=request.num_examples
        )

    def __next__(self) -> Batch:
        if self.train:
            size = self.request.batch_size
        else:
            if self.next_start >= self.stop:
                raise StopIteration
            size = min(self.request.batch_size, self.stop - self.next_start)
            self.next_start += size
        batch = self.functions.synthetic_batch(self.config, size, self._gen)
        if not self.train and self.functions.eval_weights:
            batch["weights"] = torch.ones(batch["targets"].shape, dtype=torch.float32)
        return to_device(batch, self.request.device)

    def state_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": dict(self._fingerprint),
            "generator": self._gen.get_state(),
            "next_start": self.next_start,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self._gen.set_state(state["generator"])
        self.next_start = int(state["next_start"])


def synthetic_iterator(
    config: WorkloadConfig, functions: WorkloadFunctions, request: DataRequest
) -> SyntheticBatches:
    return SyntheticBatches(config, functions, request)
