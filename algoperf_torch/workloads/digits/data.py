"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (1,797 images).

It ships inside scikit-learn, so ``python -m algoperf_torch`` runs a whole trial with nothing
downloaded. A fixed permutation (seed 0, independent of the trial seed) splits it into 1,197
train, 300 validation and 300 test images; pixels (0..16) are scaled to [0, 1] and standardised
with the training mean and standard deviation.

    python -m algoperf_torch workload=digits
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from algoperf_torch.pipelines.in_memory import in_memory_batches
from algoperf_torch.spec import Batch, DataRequest, StatefulIterator, WorkloadConfig

NUM_VALIDATION = 300
NUM_TEST = 300
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def load() -> dict[str, torch.Tensor]:
    """Images float32 [N, 1, 8, 8] standardised, labels int64, per split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    perm = np.random.RandomState(SPLIT_SEED).permutation(len(images))
    test, val, train = np.split(perm, [NUM_TEST, NUM_TEST + NUM_VALIDATION])
    mean, std = images[train].mean(), images[train].std()
    out = {}
    for name, idx in (("train", train), ("validation", val), ("test", test)):
        x = torch.from_numpy((images[idx] - mean) / std).unsqueeze(1)  # [N, 8, 8] -> [N, 1, 8, 8]
        out[f"{name}_images"], out[f"{name}_labels"] = x, torch.from_numpy(labels[idx])
    return out


def input_iterator(config: WorkloadConfig, request: DataRequest) -> StatefulIterator:
    data = load()
    splits = {
        s: (data[f"{s}_images"], data[f"{s}_labels"]) for s in ("train", "validation", "test")
    }
    return in_memory_batches(splits, request)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    return {
        "inputs": torch.randn(batch_size, 1, 8, 8, generator=gen),
        "targets": torch.randint(0, 10, (batch_size,), generator=gen),
    }
