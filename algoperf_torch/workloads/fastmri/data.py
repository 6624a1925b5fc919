"""fastMRI input pipeline: single-coil HDF5 volumes -> per-slice transform -> batches.

Layout (written by ``python -m algoperf_torch.data fastmri --data-dir D --archives-dir A``)::

    D/fastmri/knee_singlecoil_train/*.h5, D/fastmri/knee_singlecoil_val/*.h5, D/fastmri/slice_index.json

``data_dir`` may also be the ``fastmri`` folder itself (the reference's ``--data_dir``).

Splits, as the reference [algoperf/workloads/fastmri/input_pipeline.py]: train = every train
slice; eval_train = a fixed random subset of the train slices (seeded by the data seed);
validation = the slices of the first 100 val volumes in sorted order; test = those of the rest.
Slices come in volume order, then slice order. Each slice goes through ``transforms.process_slice``
in the loader workers; a batch is ``inputs``/``targets`` [B, 320, 320], ``mean``/``std``/
``volume_max`` [B], all float32. An eval batch shorter than the batch size is zero-padded to it
and carries ``weights`` [B] (float64, 1 real / 0 padding), as the reference's
``shard_and_maybe_pad_np`` (padding rows have mean = std = volume_max = 0).

Masks: validation/test slices all use the fixed seed (0, 0) (the reference's ``PRNGKey(0)``), so
every eval slice of one width shares one mask, drawn as TensorFlow's Philox draws it. A train (or
eval_train) slice's mask is drawn from the seed (data seed, slice id), so it is the same in every
epoch, as in the reference; the reference's train seeds fold in the slice's position in tf.data's
interleaved stream instead, which no other pipeline can reproduce.

Order: a per-epoch permutation of all train slices, seeded by (data seed, epoch), each rank taking
its slice of every global batch, the incomplete last one dropped (the reference shuffles a stream
interleaved from 32 volumes with a 16-batch buffer: a weaker shuffle, same examples per epoch).
Workers keep their HDF5 files open (a small cache) and read one slice per example.

Resumable (``spec.StatefulIterator``): the batch samplers and loader are the ImageNet pipeline's
(``TrainBatchSampler``/``EvalBatchSampler`` in torchdata's ``StatefulDataLoader``); the state is
the number of batches handed out plus the loader's state as of the last of them.

    python -m pytest tests/test_fastmri_data.py
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader

from algoperf_torch.pipelines.prepared import prepared_root
from algoperf_torch.pipelines.state import LoaderBatches, eval_shard, fingerprint
from algoperf_torch.spec import Batch, DataRequest, WorkloadConfig
from algoperf_torch.workloads.fastmri.transforms import CROP, column_mask, process_slice
from algoperf_torch.workloads.imagenet_resnet.data import EvalBatchSampler, TrainBatchSampler

TRAIN_DIR, VAL_DIR, INDEX = "knee_singlecoil_train", "knee_singlecoil_val", "slice_index.json"
KEYS = ("inputs", "targets", "mean", "std", "volume_max")
OPEN_FILES = 32  # HDF5 files each worker keeps open


class MissingFastMRIError(FileNotFoundError):
    """The prepared fastMRI folders are missing; the message says how to prepare them."""


def fastmri_root(data_dir: str) -> str:
    """``data_dir/fastmri`` if it holds the slice index, else ``data_dir`` itself."""
    root = prepared_root(data_dir, "fastmri", (INDEX,))
    if root is not None:
        return root
    data_dir = os.path.expanduser(data_dir)
    raise MissingFastMRIError(
        f"no fastMRI slice index under {data_dir!r} (looked for fastmri/{INDEX} and {INDEX}). "
        f"Prepare it from the official archives with: python -m algoperf_torch.data fastmri "
        f"--data-dir {data_dir} --archives-dir <folder with knee_singlecoil_train.tar.xz and "
        "knee_singlecoil_val.tar.xz>"
    )


def split_slices(
    data_dir: str, split: str, num_validation_volumes: int
) -> list[tuple[str, int, int]]:
    """``(volume path, slice, width)`` of every slice of ``split``, in volume then slice order.

    Validation is the first ``num_validation_volumes`` sorted val volumes, test the rest.
    """
    root = fastmri_root(data_dir)
    with open(os.path.join(root, INDEX)) as f:
        index = json.load(f)
    folder = TRAIN_DIR if split in ("train", "eval_train") else VAL_DIR
    if folder not in index:
        raise MissingFastMRIError(f"{root}/{INDEX} has no {folder!r} entry; re-run the setup")
    volumes = sorted(index[folder])
    if folder == VAL_DIR:
        cut = num_validation_volumes
        volumes = volumes[:cut] if split == "validation" else volumes[cut:]
    return [
        (os.path.join(root, folder, name), i, width)
        for name, num_slices, width in volumes
        for i in range(num_slices)
    ]


class SliceDataset(Dataset):
    """Transformed slices; key ``(i, mask_seed)``: slice ``i`` of the list, its mask seed.

    Files are opened lazily in each worker and kept open (least recently used closed first).
    """

    def __init__(self, slices: list[tuple[str, int, int]]) -> None:
        self.slices = slices
        self._pid = os.getpid()
        self._files: OrderedDict[str, h5py.File] = OrderedDict()
        self._masks: dict[tuple[int, tuple[int, int]], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.slices)

    def __getstate__(self) -> dict[str, Any]:  # workers open their own files
        return {"slices": self.slices, "_pid": -1, "_files": OrderedDict(), "_masks": {}}

    def _file(self, path: str) -> h5py.File:
        if self._pid != os.getpid():  # a forked worker never uses its parent's HDF5 handles
            self._pid, self._files = os.getpid(), OrderedDict()
        f = self._files.pop(path, None)
        if f is None:
            if len(self._files) >= OPEN_FILES:
                self._files.popitem(last=False)[1].close()
            f = h5py.File(path, "r")
        self._files[path] = f
        return f

    def mask(self, width: int, seed: tuple[int, int]) -> np.ndarray:
        key = (width, seed)
        if key not in self._masks:
            if len(self._masks) > 64:  # train seeds are all distinct: keep only eval masks
                self._masks.clear()
            self._masks[key] = column_mask(width, seed)
        return self._masks[key]

    def __getitem__(self, key: tuple[int, tuple[int, int]]) -> dict[str, torch.Tensor]:
        i, seed = key
        path, slice_index, width = self.slices[i]
        f = self._file(path)
        kspace = f["kspace"][slice_index]  # [640, W] complex64
        target = f["reconstruction_esc"][slice_index]  # [320, 320] float32
        volume_max = float(f.attrs.get("max", 0.0))  # as the reference: 0 if absent
        inputs, targets, mean, std = process_slice(kspace, target, self.mask(width, seed))
        return {
            "inputs": inputs,
            "targets": targets,
            "mean": mean,
            "std": std,
            "volume_max": torch.tensor(volume_max, dtype=torch.float32),
        }


def collate(items: list[dict[str, torch.Tensor]]) -> Batch:
    """Stack per-slice dicts; in a worker straight into shared memory."""
    out = {}
    for k in KEYS:
        values = [item[k] for item in items]
        x = torch.empty((len(values), *values[0].shape), dtype=values[0].dtype)
        if get_worker_info() is not None:
            x.share_memory_()
        torch.stack(values, out=x)
        out[k] = x
    return out


class _KeyedSampler:
    """Wraps a batch sampler of slice indices/keys into ``(index, mask seed)`` keys."""

    def __init__(self, sampler, seed_of) -> None:
        self.sampler, self.seed_of = sampler, seed_of

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, int]]]]:
        for batch in self.sampler:
            yield [self.seed_of(k) for k in batch]

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sampler.load_state_dict(state)


class FastMRIBatches(LoaderBatches):
    """One split's batches on the device (eval: the last one padded to the batch size).

    State and resuming: ``LoaderBatches``.
    """

    def __init__(
        self,
        loader: StatefulDataLoader,
        sampler: TrainBatchSampler | EvalBatchSampler,
        request: DataRequest,
        identity: dict[str, Any],
        pad: bool,
    ) -> None:
        super().__init__(loader, sampler, identity)
        self.request, self.pad = request, pad

    def __next__(self) -> Batch:
        if self._it is None:
            self._it = iter(self.loader)
        batch = next(self._it)  # StopIteration ends an eval split
        self._loader_state = (self.loader.num_workers, self.loader.state_dict())
        self.batches += 1
        n, size = len(batch["inputs"]), self.request.batch_size
        if self.pad and n < size:
            weights = torch.zeros(size, dtype=torch.float64)
            weights[:n] = 1.0
            batch = {
                k: torch.cat([v, v.new_zeros((size - n, *v.shape[1:]))]) for k, v in batch.items()
            }
            batch["weights"] = weights
        device = self.request.device
        pin = device.type == "cuda"
        return {k: v.to(device, non_blocking=pin) for k, v in batch.items()}


def _loader(dataset: Dataset, sampler, request: DataRequest, persistent: bool):
    workers = request.num_workers
    return StatefulDataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=request.device.type == "cuda",
        persistent_workers=persistent and workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # Worker base seeds come from this, not from the global RNG; nothing here uses them.
        generator=torch.Generator().manual_seed(request.seed * 7919 + request.rank),
        snapshot_every_n_steps=1,
    )


def eval_train_indices(num_train: int, num_examples: int, seed: int) -> list[int]:
    """A fixed random subset of the train slices (the reference: the first ``num_examples`` of
    its shuffled train stream), in increasing order."""
    gen = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(num_train, generator=gen)[:num_examples].tolist())


def input_iterator(config: WorkloadConfig, request: DataRequest) -> FastMRIBatches:
    """This rank's batches of ``request.split`` on ``request.device`` (train: endless)."""
    slices = split_slices(
        request.data_dir, request.split, int(config.data["num_validation_volumes"])
    )
    seed = int(request.seed)
    identity = fingerprint("fastmri", request, num_examples=request.num_examples)
    if request.split == "train":
        sampler = TrainBatchSampler(
            len(slices), request.batch_size, request.rank, request.world_size, seed
        )
        keyed = _KeyedSampler(sampler, lambda key: (key[0], (seed, key[0])))
        dataset = SliceDataset(slices)
        loader = _loader(dataset, keyed, request, persistent=True)
        return FastMRIBatches(loader, sampler, request, identity, pad=False)
    num = request.num_examples if request.num_examples is not None else len(slices)
    if request.split == "eval_train":
        if num > len(slices):
            raise ValueError(
                f"fastMRI eval_train: {num} examples requested, {len(slices)} train slices found"
            )
        ids = eval_train_indices(len(slices), num, seed)
        mask_seed = lambda i: (seed, ids[i])  # noqa: E731 - a train slice's own mask
        slices = [slices[i] for i in ids]
    else:
        fixed = tuple(int(s) for s in config.data["eval_seed"])
        mask_seed = lambda i: fixed  # noqa: E731
    if num > len(slices):
        raise ValueError(
            f"fastMRI {request.split}: {num} examples requested, {len(slices)} slices found"
        )
    shard = eval_shard(num, request.rank, request.world_size)
    offset = shard.start
    dataset = SliceDataset(slices[shard.start : shard.stop])
    sampler = EvalBatchSampler(len(dataset), request.batch_size)
    keyed = _KeyedSampler(sampler, lambda i: (i, mask_seed(i + offset)))
    loader = _loader(dataset, keyed, request, persistent=False)
    return FastMRIBatches(loader, sampler, request, identity, pad=True)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    """Batches like the real ones: normalised images clipped to [-6, 6] and per-slice stats of
    the magnitude of real knee scans (mean ~1e-5..1e-4, volume max ~10 std above the mean)."""
    shape = (batch_size, CROP, CROP)
    targets = torch.randn(shape, generator=gen).clamp_(-6, 6)
    inputs = (targets + 0.3 * torch.randn(shape, generator=gen)).clamp_(-6, 6)
    mean = 1e-5 + 9e-5 * torch.rand(batch_size, generator=gen)
    std = mean * (0.5 + torch.rand(batch_size, generator=gen))
    volume_max = mean + std * (8 + 4 * torch.rand(batch_size, generator=gen))
    return {
        "inputs": inputs,
        "targets": targets,
        "mean": mean,
        "std": std,
        "volume_max": volume_max,
    }
