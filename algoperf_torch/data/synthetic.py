"""Synthetic batches of each workload's real shapes and dtypes (``data=synthetic``).

For throughput runs and smoke tests: no files are read. Train batches never end; eval splits
yield this rank's share of ``request.num_examples`` examples once, like real eval data.

    python -m algoperf_torch workload=cifar data=synthetic max_steps=5
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from algoperf_torch.spec import SPLITS, Batch, DataRequest, WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.common import _to_device, eval_shard


def synthetic_iterator(
    config: WorkloadConfig, functions: WorkloadFunctions, request: DataRequest
) -> Iterator[Batch]:
    # Each split and rank draws its own stream: eval batches never repeat the training batches.
    split_index = SPLITS.index(request.split)
    gen = torch.Generator().manual_seed((request.seed * 4 + split_index) * 7919 + request.rank)
    if request.split == "train":
        while True:
            batch = functions.synthetic_batch(config, request.batch_size, gen)
            yield _to_device(batch, request.device)
    shard = eval_shard(request.num_examples or 0, request.rank, request.world_size)
    for start in range(shard.start, shard.stop, request.batch_size):
        size = min(request.batch_size, shard.stop - start)
        yield _to_device(functions.synthetic_batch(config, size, gen), request.device)
