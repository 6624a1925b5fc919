"""MNIST from the standard idx files (``train-images-idx3-ubyte[.gz]`` and friends).

Splits as the reference [algoperf/workloads/mnist/mnist_pytorch/workload.py]: train and
eval_train from the first 50,000 training images, validation the last 10,000, test the official
10,000. Pixels are normalised as ``(uint8 - 0.1307) / 0.3081`` without dividing by 255 first — a
reference quirk kept for fidelity. One difference: the reference's eval_train takes the next
10,000 images of its endless shuffled training stream at each eval; ours is a fixed random
subset chosen by the data seed (deterministic, and equal in expectation).

    python -m algoperf_torch.data mnist --data-dir ~/data
"""

from __future__ import annotations

import functools
import gzip
import os
import struct

import numpy as np
import torch

from algoperf_torch.pipelines.in_memory import in_memory_batches
from algoperf_torch.spec import Batch, DataRequest, StatefulIterator, WorkloadConfig

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MEAN, STD = 0.1307, 0.3081


class MissingDataError(FileNotFoundError):
    """A dataset file is missing; the message says how to prepare the dataset."""


def read_idx(path: str) -> np.ndarray:
    """Parse an idx file (optionally gzipped) into a numpy array; clear error if malformed."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes (bad magic {data[:4]!r})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says shape {dims}, file holds {body.size} values")
    return body.reshape(dims)


def find_file(data_dir: str, stem: str) -> str:
    for folder in (
        os.path.join(data_dir, "mnist"),
        data_dir,
        os.path.join(data_dir, "MNIST", "raw"),
    ):
        for name in (stem, stem + ".gz"):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                return path
    raise MissingDataError(
        f"MNIST file {stem}[.gz] not found under {data_dir!r} (looked in mnist/, ./, MNIST/raw/). "
        f"Prepare it with: python -m algoperf_torch.data mnist --data-dir {data_dir}"
    )


@functools.lru_cache(maxsize=2)
def load(data_dir: str) -> dict[str, torch.Tensor]:
    """All four arrays as tensors: images float32 [N, 1, 28, 28] normalised, labels int64."""
    arrays = {key: read_idx(find_file(data_dir, stem)) for key, stem in FILES.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise ValueError(f"MNIST {split}: images and labels differ in count under {data_dir}")
    out = {}
    for split in ("train", "test"):
        images = torch.from_numpy(arrays[f"{split}_images"].astype(np.float32))
        out[f"{split}_images"] = ((images - MEAN) / STD).unsqueeze(
            1
        )  # [N, 28, 28] -> [N, 1, 28, 28]
        out[f"{split}_labels"] = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
    return out


def input_iterator(config: WorkloadConfig, request: DataRequest) -> StatefulIterator:
    data = load(request.data_dir)
    n = int(config.data["num_train"])  # the first n training images train, the rest validate
    images, labels = data["train_images"], data["train_labels"]
    splits = {
        "train": (images[:n], labels[:n]),
        "validation": (images[n:], labels[n:]),
        "test": (data["test_images"], data["test_labels"]),
    }
    return in_memory_batches(splits, request)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    return {
        "inputs": torch.randn(batch_size, 1, 28, 28, generator=gen),
        "targets": torch.randint(0, 10, (batch_size,), generator=gen),
    }
