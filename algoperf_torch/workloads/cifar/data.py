"""CIFAR-10 from the python pickle batches (``<data_dir>/cifar-10-batches-py/``), held in memory.

Splits as the reference [algoperf/workloads/cifar/cifar_pytorch/workload.py ``_build_dataset``]:
train = training images 0..44,999, validation = 45,000..49,999, test = the official 10,000-image
test set, eval_train = the first 5,120 of the 45,000 train indices after a ``random.Random(seed)``
shuffle (the reference's exact procedure; its seed comes from the first eval's data rng).

Batches travel to the device as uint8 (a quarter of float32's bytes). There, train batches are
augmented as the reference's torchvision transforms — RandomCrop(32, padding 4, zero fill), then
RandomHorizontalFlip — vectorised over the whole batch in the main process (one gather; offsets
drawn on the CPU) instead of per image in 4 loader workers, and every split is normalised as
ToTensor + Normalize would: ``(x / 255 - mean) / std``.

    python -m algoperf_torch.data cifar --data-dir ~/data
    python -m algoperf_torch workload=cifar data=real data.data_dir=~/data
"""

from __future__ import annotations

import functools
import os
import pickle
import random

import numpy as np
import torch

from algoperf_torch.pipelines.in_memory import EvalBatches, TrainBatches
from algoperf_torch.spec import Batch, DataRequest, StatefulIterator, WorkloadConfig

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
IMAGE_SHAPE = (3, 32, 32)
CROP_PADDING = 4


class MissingDataError(FileNotFoundError):
    """A CIFAR-10 batch file is missing; the message says how to prepare the dataset."""


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch as (uint8 images [N, 3, 32, 32], int64 labels [N]).

    Raises:
        ValueError: the file is not a CIFAR-10 python batch (missing keys, wrong sizes).
    """
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    if not isinstance(entry, dict) or b"data" not in entry or b"labels" not in entry:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (needs b'data' and b'labels')")
    data = np.asarray(entry[b"data"], dtype=np.uint8)
    labels = np.asarray(entry[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)) or len(data) != len(labels):
        raise ValueError(
            f"{path}: data of shape {data.shape} and {len(labels)} labels; "
            f"expected [N, 3072] and N labels"
        )
    return data.reshape(-1, *IMAGE_SHAPE), labels  # [N, 3072] -> [N, 3, 32, 32] (rows are CHW)


def batch_paths(data_dir: str) -> dict[str, list[str]]:
    """The batch files of each set under ``data_dir``; raises ``MissingDataError`` if any lacks."""
    folder = os.path.join(os.path.expanduser(data_dir), FOLDER)
    paths = {
        "train": [os.path.join(folder, name) for name in TRAIN_FILES],
        "test": [os.path.join(folder, TEST_FILE)],
    }
    missing = [p for ps in paths.values() for p in ps if not os.path.exists(p)]
    if missing:
        raise MissingDataError(
            f"CIFAR-10 batch file {missing[0]} not found ({len(missing)} of 6 missing). "
            f"Prepare the dataset with: python -m algoperf_torch.data cifar --data-dir {data_dir}"
        )
    return paths


@functools.lru_cache(maxsize=2)
def load(data_dir: str) -> dict[str, torch.Tensor]:
    """Both sets as tensors: images uint8 [N, 3, 32, 32], labels int64 [N]."""
    out = {}
    for split, paths in batch_paths(data_dir).items():
        images, labels = zip(*(read_batch(p) for p in paths))
        out[f"{split}_images"] = torch.from_numpy(np.concatenate(images))
        out[f"{split}_labels"] = torch.from_numpy(np.concatenate(labels))
    return out


def random_crop_flip(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """RandomCrop(32, padding=4, fill 0) then RandomHorizontalFlip(0.5), per image, in one gather.

    Args:
        images: [B, C, H, W] on any device (any dtype; zero padding is pixel value 0, as
            torchvision's).
        gen: a CPU generator; the per-image offsets and flips are drawn on the CPU, so the
            result does not depend on the device, and the gather runs where ``images`` are.
    """
    b, c, h, w = images.shape
    p = CROP_PADDING
    padded = torch.nn.functional.pad(images, (p, p, p, p))  # [B, C, H + 2p, W + 2p]
    top = torch.randint(0, 2 * p + 1, (b, 1), generator=gen)
    left = torch.randint(0, 2 * p + 1, (b, 1), generator=gen)
    flip = torch.rand(b, 1, generator=gen) < 0.5
    rows = top + torch.arange(h)  # [B, H]
    cols = left + torch.where(flip, torch.arange(w - 1, -1, -1), torch.arange(w))  # [B, W]
    rows, cols = rows.to(images.device), cols.to(images.device)
    return padded[
        torch.arange(b, device=images.device)[:, None, None, None],
        torch.arange(c, device=images.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]  # [B, C, H, W]


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float32 ``(x / 255 - mean) / std`` (ToTensor + Normalize)."""
    x = images.to(torch.float32).div_(255.0)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


def eval_train_indices(num_train: int, num_examples: int, seed: int) -> list[int]:
    """The reference's eval_train subset: the first ``num_examples`` of a seeded shuffle."""
    indices = list(range(num_train))
    random.Random(seed).shuffle(indices)
    return indices[:num_examples]


def input_iterator(config: WorkloadConfig, request: DataRequest) -> StatefulIterator:
    """This rank's batches of ``request.split``: uint8 read, normalised on ``request.device``."""
    data = load(request.data_dir)
    images, labels = data["train_images"], data["train_labels"]
    num_train = config.num_train_examples
    if num_train + config.num_validation_examples > len(images):
        raise ValueError(
            f"cifar: {num_train} train + {config.num_validation_examples} validation examples "
            f"requested, the training set under {request.data_dir} holds {len(images)}"
        )
    mean = torch.tensor(config.train_mean, dtype=torch.float32, device=request.device)
    std = torch.tensor(config.train_stddev, dtype=torch.float32, device=request.device)

    def on_device(batch: Batch, augment_gen: torch.Generator | None) -> Batch:
        """Augment (train: with the pipeline's generator) and normalise a uint8 batch."""
        x = batch["inputs"]
        if augment_gen is not None:
            x = random_crop_flip(x, augment_gen)
        return {**batch, "inputs": normalize(x, mean, std)}

    if request.split == "train":
        return TrainBatches(
            images[:num_train], labels[:num_train], request, on_device, augment=True
        )
    if request.split == "eval_train":
        idx = torch.tensor(eval_train_indices(num_train, request.num_examples, request.seed))
        return EvalBatches(images[idx], labels[idx], request, on_device)
    if request.split == "validation":
        return EvalBatches(images[num_train:], labels[num_train:], request, on_device)
    return EvalBatches(data["test_images"], data["test_labels"], request, on_device)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    return {
        "inputs": torch.randn(batch_size, *IMAGE_SHAPE, generator=gen),
        "targets": torch.randint(0, 10, (batch_size,), generator=gen),
    }
