"""ImageNet input pipeline (ResNet and ViT): folders of JPEGs -> batches on the device.

Layout (written by ``python -m algoperf_torch.data imagenet --data-dir D``)::

    D/imagenet/train/<wnid>/*.JPEG        1,281,167 images, 1,000 class folders
    D/imagenet/val/<wnid>/*.JPEG          50,000 images (sorted into class folders)
    D/imagenet/imagenet_v2/<0..999>/*.jpeg  ImageNet-v2 matched-frequency (test), 10,000 images

``data_dir`` may also be the ``imagenet`` folder itself (the reference's
``--data_dir=$DATA/imagenet/pytorch``); the test folder can be moved with
``data.imagenet_v2_dir``. Class indices are the sorted wnids (``ImageFolder``'s order); the v2
folders are named by that index.

Splits, as the reference [algoperf/workloads/imagenet_resnet/imagenet_pytorch/workload.py]:
train = RandomResizedCrop(224, scale (0.08, 1), ratio (3/4, 4/3)) + horizontal flip (+ RandAugment
and mixup for ViT); eval_train = a fixed subset of the train images (the first N of
``random.Random(seed).shuffle(range(num_train))``) with the eval transform; validation = val
with Resize(256) + CenterCrop(224); test = ImageNet-v2 with the TF centre crop + bicubic resize
(``imagenet_v2.py``). Normalisation with the ImageNet mean/std happens on the device.

Speed: workers decode with ``torchvision.io.decode_image`` and crop/resize/flip uint8 tensors
(antialiased bilinear, like PIL's), so only uint8 crops cross the process boundary; the float
conversion, normalisation and mixup run once per batch after the (pinned, side-stream) copy to
the device. Worker batches are collated straight into shared-memory buffers that each worker
reuses once the main process has read the batch (``SharedBatchBuffers``: a new segment per batch
cost as much CPU as decoding ~7 of its 32 images, in the kernel's zeroing and page mapping), and
labels travel as a list, not as a second shared tensor. On a 2-core machine with 2 workers this
delivers over 2x the images/s of ``ImageFolder`` + PIL transforms
(``benchmarks/bench_imagenet_pipeline.py``); decoding is then most of a worker's time (~0.6 ms of
~1 ms per 500x375 image).

Resumable (``spec.StatefulIterator``): the loader is torchdata's ``StatefulDataLoader`` over a
stateful batch sampler that yields keys ``(image index, augmentation seed)``. The seed is a pure
function of (data seed, epoch, the example's offset in that epoch's order) and each image's
crop, flip and RandAugment draw from a ``torch.Generator`` seeded with it, so batches do not
depend on which worker decodes what, on ``num_workers`` or on restarts. The mixup weight of
batch k is drawn from a generator seeded by (seed, rank, k). The iterator's state is the number
of batches ``next()`` handed out plus the loader's state as of the last of them (taken before
any batch is pulled ahead); the loader keeps a snapshot of the batch sampler's (epoch,
position) for every batch it yields and restores it on load, so a resumed pipeline starts at the
next batch without replaying earlier ones (see ``ImageNetBatches``).

Differences from the reference, by design: augmentation randomness comes from per-example
generators seeded from (data seed, epoch, position), not from the loader workers' global RNGs;
training order is a per-epoch permutation seeded by (data seed, epoch), each rank taking its
slice of every global batch (each example at most once per epoch across ranks); the mixup weight
is drawn from a numpy generator seeded by (seed, rank, batch number) instead of torch's global
RNG; eval batches are never padded (the metric divides by the split size).

    python -m pytest tests/test_imagenet_data.py
"""

from __future__ import annotations

import functools
import math
import os
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset, Sampler, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision.io import ImageReadMode, decode_image, read_file

from algoperf_torch.pipelines.prepared import prepared_root
from algoperf_torch.pipelines.state import (
    LoaderBatches,
    PipelineStateError,
    eval_shard,
    fingerprint,
)
from algoperf_torch.spec import Batch, DataRequest, WorkloadConfig
from algoperf_torch.workloads.imagenet_resnet import imagenet_v2
from algoperf_torch.workloads.imagenet_resnet.randaugment import rand_augment

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class MissingImageNetError(FileNotFoundError):
    """The ImageNet folders are missing; the message says how to prepare them."""


def _hint(data_dir: str) -> str:
    return (
        "Prepare ImageNet from the official archives with: python -m algoperf_torch.data "
        f"imagenet --data-dir {data_dir} --archives-dir <folder with ILSVRC2012_img_train.tar, "
        "ILSVRC2012_img_val.tar and imagenetv2-matched-frequency.tar.gz>"
    )


def imagenet_root(data_dir: str) -> str:
    """``data_dir/imagenet`` if it holds ``train/`` or ``val/``, else ``data_dir`` itself."""
    root = prepared_root(data_dir, "imagenet", ("train", "val"), exists=os.path.isdir)
    if root is not None:
        return root
    data_dir = os.path.expanduser(data_dir)
    raise MissingImageNetError(
        f"no ImageNet folders under {data_dir!r} (looked for imagenet/train, imagenet/val, "
        f"train, val). {_hint(data_dir)}"
    )


def split_folder(config: WorkloadConfig, data_dir: str, split: str) -> str:
    """The folder a split is read from (raises ``MissingImageNetError`` if it is absent)."""
    if split == "test":
        folder = config.data.get("imagenet_v2_dir") or os.path.join(
            imagenet_root(data_dir), "imagenet_v2"
        )
    else:
        folder = os.path.join(imagenet_root(data_dir), "train" if "train" in split else "val")
    folder = os.path.expanduser(folder)
    if not os.path.isdir(folder):
        raise MissingImageNetError(
            f"ImageNet {split} folder {folder!r} not found. {_hint(data_dir)}"
        )
    return folder


@functools.lru_cache(maxsize=8)
def list_images(folder: str, numeric_classes: bool = False) -> tuple[list[str], list[int]]:
    """(paths, labels) of ``folder/<class>/<image>``, sorted like ``ImageFolder``.

    Class index = position of the folder name in sorted order, or ``int(name)`` for the
    ImageNet-v2 layout (``numeric_classes``).
    """
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not classes:
        raise MissingImageNetError(f"no class folders in {folder!r}")
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        label = int(name) if numeric_classes else index
        class_dir = os.path.join(folder, name)
        files = sorted(
            e.name
            for e in os.scandir(class_dir)
            if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS)
        )
        paths += [os.path.join(class_dir, f) for f in files]
        labels += [label] * len(files)
    return paths, labels


def decode(path: str) -> torch.Tensor:
    """[3, H, W] uint8 RGB (JPEG, CMYK/grey JPEG or a PNG named .JPEG, as ImageNet has)."""
    return decode_image(read_file(path), mode=ImageReadMode.RGB)


@functools.lru_cache(maxsize=8)
def _log_ratio(ratio: tuple[float, float]) -> tuple[float, float]:
    """float32 log of the aspect-ratio range, as torchvision computes it (cached: it was a tensor
    build and a log per image)."""
    return tuple(torch.log(torch.tensor(ratio)).tolist())


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    gen: torch.Generator,
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` (10 tries, then a centre crop), seeded."""
    area = height * width
    log_ratio = _log_ratio(ratio)
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=gen).item()
        aspect = torch.exp(
            torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=gen)
        ).item()
        w = round((target_area * aspect) ** 0.5)
        h = round((target_area / aspect) ** 0.5)
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class TrainTransform:
    """RandomResizedCrop + flip (+ RandAugment) on uint8, drawing from the generator it is given."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.size = int(data["image_size"])
        self.scale = tuple(data["scale_range"])
        self.ratio = tuple(data["aspect_ratio_range"])
        self.randaugment_ops = int(data["randaugment_num_ops"]) if data["randaugment"] else 0

    def __call__(self, img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        top, left, h, w = random_resized_crop_box(
            img.shape[1], img.shape[2], self.scale, self.ratio, gen
        )
        # The tensor kernels of TF.resized_crop / TF.horizontal_flip, without the dispatch.
        img = TF.resized_crop_image(img, top, left, h, w, [self.size, self.size], antialias=True)
        if torch.rand(1, generator=gen).item() < 0.5:
            img = TF.horizontal_flip_image(img)
        if self.randaugment_ops:
            img = rand_augment(img, gen, self.randaugment_ops)
        return img  # [3, size, size] uint8


class EvalTransform:
    """Resize the short side to ``resize_size`` (antialiased bilinear), centre-crop."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.size = int(data["image_size"])
        self.resize = int(data["resize_size"])

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = TF.resize(img, [self.resize], antialias=True)
        return TF.center_crop(img, [self.size, self.size])


class TestTransform:
    """ImageNet-v2: the reference's TF centre crop + bicubic resize (float, 0..255)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.size = int(data["image_size"])
        self.resize = int(data["resize_size"])

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return imagenet_v2.preprocess_for_eval(img, self.size, self.resize)


class ImageListDataset(Dataset):
    """``(transform(decode(paths[i])), labels[i])`` for a list of image files.

    A key is an index ``i`` (eval: a fixed transform) or ``(i, sample_seed)`` (train: the
    transform draws from a fresh generator seeded with ``sample_seed``), so an image's
    augmentation depends on its key only, never on the worker process that decodes it.
    """

    def __init__(self, paths: list[str], labels: list[int], transform) -> None:
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            i, sample_seed = key
            gen = torch.Generator().manual_seed(sample_seed)
            return self.transform(decode(self.paths[i]), gen), self.labels[i]
        return self.transform(decode(self.paths[key])), self.labels[key]


_MASK32 = 0xFFFF_FFFF


def _fmix32(h: int | torch.Tensor) -> int | torch.Tensor:
    """MurmurHash3's 32-bit finaliser: a bijection of 0..2**32-1 that scatters nearby values.

    Works on Python ints and on int64 tensors (whose products wrap past 2**63; the mask keeps
    the exact low 32 bits)."""
    h = h ^ (h >> 16)
    h = (h * 0x85EB_CA6B) & _MASK32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2_AE35) & _MASK32
    return h ^ (h >> 16)


def example_seeds(seed: int, counts: torch.Tensor) -> torch.Tensor:
    """Augmentation seeds of the examples at ``counts`` = epoch * n + offset in that epoch's order.

    torch's CPU generator (mt19937) keeps only the low 32 bits of a seed, so seeds are 32-bit:
    a bijective mix of (count + a hash of the data seed). Every example of a run gets its own
    seed for the first 2**32 / n epochs (3,352 for ImageNet); ranks share the counts, so the
    augmentation of an example does not depend on the world size either.
    """
    base = _fmix32((seed ^ (seed >> 32)) & _MASK32)
    return _fmix32((counts + base) & _MASK32)


class TrainBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless per-rank batches of ``(image index, augmentation seed)`` keys, resumable.

    Epoch e's order is a permutation seeded by (seed, e), cut into global batches (the
    incomplete last one dropped); rank r takes slice r of each. The key of the example at offset
    j of that order carries ``example_seeds(seed, e * n + j)``.

    State: ``{"epoch", "position"}`` of the next batch. ``StatefulDataLoader`` records it for
    every batch it yields and loads it back on resume; the permutation of that epoch is redrawn
    (one ``randperm``) and no earlier batch is produced again.
    """

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.n, self.batch_size, self.rank, self.seed = n, batch_size, rank, seed
        self.global_batch = batch_size * world_size
        if self.global_batch > n:
            raise ValueError(f"global batch {self.global_batch} exceeds the {n} train images")
        self.batches_per_epoch = n // self.global_batch
        self.epoch, self.position = 0, 0
        self._order_epoch, self._order = -1, torch.empty(0, dtype=torch.int64)

    def order(self, epoch: int) -> torch.Tensor:
        """Epoch ``epoch``'s permutation of the ``n`` images (the latest one is cached)."""
        if epoch != self._order_epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order, self._order_epoch = torch.randperm(self.n, generator=gen), epoch
        return self._order

    def keys(self, epoch: int, position: int) -> list[tuple[int, int]]:
        """This rank's keys of batch ``position`` of epoch ``epoch``."""
        start = position * self.global_batch + self.rank * self.batch_size
        offsets = torch.arange(start, start + self.batch_size)
        seeds = example_seeds(self.seed, epoch * self.n + offsets)
        return list(zip(self.order(epoch)[offsets].tolist(), seeds.tolist()))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        while True:  # a generator: it reads the position when first advanced, after any load
            if self.position >= self.batches_per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
            keys = self.keys(self.epoch, self.position)
            self.position += 1
            yield keys

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= self.batches_per_epoch:
            raise PipelineStateError(
                f"ImageNet train sampler state {dict(state)} is out of range "
                f"({self.batches_per_epoch} batches per epoch)"
            )
        self.epoch, self.position = epoch, position

    def seek(self, batches: int) -> None:
        """Continue after the first ``batches`` batches of the stream."""
        self.load_state_dict(
            dict(zip(("epoch", "position"), divmod(batches, self.batches_per_epoch)))
        )


class EvalBatchSampler(Sampler[list[int]]):
    """Consecutive batches of ``range(n)`` (the last one may be smaller); state ``{"position"}``."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size, self.position = n, batch_size, 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        while self.position < len(self):
            start = self.position * self.batch_size
            self.position += 1
            yield list(range(start, min(start + self.batch_size, self.n)))

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise PipelineStateError(
                f"ImageNet eval sampler state {dict(state)} is out of range ({len(self)} batches)"
            )
        self.position = position

    def seek(self, batches: int) -> None:
        self.load_state_dict({"position": batches})


def eval_train_indices(num_train: int, num_examples: int, seed: int) -> list[int]:
    """The reference's eval_train subset: ``random.Random(seed)`` shuffle, first N indices."""
    indices = list(range(num_train))
    random.Random(seed).shuffle(indices)
    return indices[:num_examples]


class Normalize:
    """(x - mean) / std on a [B, 3, H, W] batch of 0..255 pixels (uint8 or float)."""

    def __init__(self, config: WorkloadConfig, device: torch.device) -> None:
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(config.train_mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(config.train_stddev, dtype=torch.float32, device=device).view(shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Always a new tensor, never x itself (x.float() is x for float input: the test split):
        # x may be a shared buffer that its worker writes again once it is handed back.
        return x.to(torch.float32, copy=True).sub_(self.mean).div_(self.std)


class SharedBatchBuffers:
    """Shared-memory batch buffers that each loader worker reuses once the main process hands
    them back, instead of allocating (and the kernel zeroing and mapping) a new segment for
    every batch.

    ``owner[w, s]`` (a shared tensor made before the workers start) is 0 while buffer ``s`` of
    worker ``w`` is free, else the token of the batch in it. Only the worker turns 0 into a
    token (``take``), and only the main process turns that token back into 0 (``give_back``,
    once nothing reads the batch any more), so a buffer is never written while a batch in it
    is read. A worker whose buffers are all taken (the main process is behind) allocates a
    fresh, unpooled one, as torch's default collate would.
    """

    def __init__(self, num_workers: int, slots: int) -> None:
        self.owner = torch.zeros(max(num_workers, 1), slots, dtype=torch.int64).share_memory_()
        self._buffers: dict[int, torch.UntypedStorage] = {}  # filled in each worker process
        self._count = 0

    def take(self, nbytes: int) -> tuple[torch.UntypedStorage, tuple[int, int, int] | None]:
        """(a shared buffer of ``nbytes``, its ticket for ``give_back``); in a worker."""
        worker = get_worker_info().id
        for slot, token in enumerate(self.owner[worker].tolist()):
            if token == 0:
                buf = self._buffers.get(slot)
                if buf is None or buf.nbytes() != nbytes:
                    buf = self._buffers[slot] = torch.UntypedStorage._new_shared(nbytes)
                self._count += 1
                token = (os.getpid() << 32) + self._count  # unique across the loader's workers
                self.owner[worker, slot] = token
                return buf, (worker, slot, token)
        return torch.UntypedStorage._new_shared(nbytes), None

    def give_back(self, ticket: tuple[int, int, int] | None) -> None:
        """The batch of ``ticket`` is no longer read: its worker may write the buffer again."""
        if ticket is not None:
            worker, slot, token = ticket
            if int(self.owner[worker, slot]) == token:
                self.owner[worker, slot] = 0


class Collate:
    """Stack (image, label) pairs into a uint8 batch and a list of labels.

    In a worker the batch is written straight into a shared-memory buffer (``buffers``), so
    handing it to the main process costs no copy; normalisation happens after that, on the
    batch's device (measured faster than normalising in the workers even on a 2-core CPU,
    since a uint8 batch is 4x smaller to hand over: benchmarks/bench_imagenet_pipeline.py). The
    labels stay a list, pickled with the message: a label tensor would be a second
    shared-memory segment and file-descriptor handover per batch (``ImageNetBatches`` makes
    the tensor). Returns (images [B, 3, H, W] uint8, labels, the buffer's ticket or None).
    """

    def __init__(self, buffers: SharedBatchBuffers) -> None:
        self.buffers = buffers

    def __call__(
        self, items: list[tuple[torch.Tensor, int]]
    ) -> tuple[torch.Tensor, list[int], tuple[int, int, int] | None]:
        images = [img for img, _ in items]
        shape = (len(images), *images[0].shape)  # [B, 3, H, W]
        ticket = None
        if get_worker_info() is not None:
            storage, ticket = self.buffers.take(images[0].element_size() * math.prod(shape))
            x = torch.empty(0, dtype=images[0].dtype).set_(storage).view(shape)
        else:
            x = torch.empty(shape, dtype=images[0].dtype)
        torch.stack(images, out=x)
        return x, [label for _, label in items], ticket


def _loader(
    dataset: Dataset, sampler: Sampler, request: DataRequest, persistent: bool
) -> StatefulDataLoader:
    workers = request.num_workers
    return StatefulDataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        # 3 buffers a worker: enough while the workers are the bottleneck (each batch is taken
        # as it comes and handed back at once); batches queued behind a slow consumer take
        # fresh ones.
        collate_fn=Collate(SharedBatchBuffers(workers, slots=3)),
        pin_memory=request.device.type == "cuda",
        persistent_workers=persistent and workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # The loader draws its workers' base seed from this, not from the global RNG (which
        # belongs to the model); nothing in this pipeline uses the worker seeds.
        generator=torch.Generator().manual_seed(request.seed * 7919 + request.rank),
        snapshot_every_n_steps=1,  # the sampler's state for every yielded batch: no replay
    )


class Mixup:
    """The reference's ``mixup_pytorch``: λ ~ Beta(α, α) per batch, mixed with roll(batch, 1).

    λ of the stream's batch k is drawn from a numpy generator seeded by (seed, rank, k), so a
    resumed stream draws the same weights from its batch count alone.
    """

    def __init__(self, alpha: float, num_classes: int, seed: int, rank: int) -> None:
        self.alpha, self.num_classes, self.seed, self.rank = alpha, num_classes, seed, rank

    def weight(self, k: int) -> float:
        rng = np.random.default_rng([self.seed, self.rank, 0x6D1, k])
        return float(rng.beta(self.alpha, self.alpha))

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self.weight(k)
        t = F.one_hot(y, self.num_classes).to(x.dtype)  # [B] -> [B, C]
        x = lam * x + (1.0 - lam) * torch.roll(x, 1, dims=0)
        t = lam * t + (1.0 - lam) * torch.roll(t, 1, dims=0)
        return x, t


class ImageNetBatches(LoaderBatches):
    """One split's batches on the device: loader -> device copy -> normalise (-> mixup).

    With ``prefetch`` (the default on CUDA) the next batch is pulled from the loader, and on CUDA
    its copy issued on a side stream, before the current one is handed out, so the copy
    overlaps the training step on the current one.

    State and resuming: ``LoaderBatches``; its ``batches`` counter is also the mixup counter,
    and the loader state is taken before any batch was pulled ahead.
    """

    def __init__(
        self,
        loader: StatefulDataLoader,
        sampler: TrainBatchSampler | EvalBatchSampler,
        config: WorkloadConfig,
        request: DataRequest,
        identity: dict[str, Any],
        mixup: Mixup | None = None,
    ) -> None:
        super().__init__(loader, sampler, identity)
        self.mixup = mixup
        self.device = request.device
        self.normalize = Normalize(config, request.device)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.prefetch = self._stream is not None
        self._ahead: tuple[torch.Tensor, torch.Tensor, dict, Any] | None = None
        self._mapped: dict[tuple[int, int], torch.UntypedStorage] = {}  # (worker, buffer slot)

    def _pull(self) -> tuple[torch.Tensor, torch.Tensor, dict, Any] | None:
        """The loader's next batch (None at the end) with the loader's state as of it."""
        try:
            x, labels, ticket = next(self._it)
        except StopIteration:
            return None
        state = self.loader.state_dict()
        if self.loader.pin_memory:  # x is the pin thread's copy: the shared buffer is read
            self.loader.collate_fn.buffers.give_back(ticket)
            ticket = None
        y = torch.tensor(labels, dtype=torch.int64)  # [B]
        if self._stream is not None:
            y = y.pin_memory()  # the loader's pin thread pins x; labels come as a list
            with torch.cuda.stream(self._stream):
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y, state, ticket

    def __next__(self) -> Batch:
        if self._it is None:
            self._it = iter(self.loader)
            if self.prefetch:
                self._ahead = self._pull()
        if not self.prefetch:
            pulled = self._pull()
        else:
            pulled = self._ahead
            if pulled is not None:
                if self._stream is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_stream(self._stream)  # only this batch's copy is enqueued there
                    for t in pulled[:2]:
                        t.record_stream(current)
                self._ahead = self._pull()  # its copy overlaps the step on this batch
        if pulled is None:
            raise StopIteration
        images, y, state, ticket = pulled
        self._loader_state = (self.loader.num_workers, state)
        k, self.batches = self.batches, self.batches + 1
        x = self.normalize(images)  # 0..255 [B, 3, H, W] -> normalised float32
        if ticket is not None:  # the uint8 batch is read: its worker may reuse the buffer
            # Keeping this process's mapping of the buffer alive lets torch's shared-storage
            # cache find it when the worker sends the buffer again: no new mapping and page
            # faults per batch.
            self._mapped[ticket[:2]] = images.untyped_storage()
            self.loader.collate_fn.buffers.give_back(ticket)
        if self.mixup is not None:
            x, y = self.mixup(x, y, k)
        return {"inputs": x, "targets": y}


def input_iterator(config: WorkloadConfig, request: DataRequest) -> ImageNetBatches:
    """This rank's batches of ``request.split`` on ``request.device`` (train: endless)."""
    data = config.data
    folder = split_folder(config, request.data_dir, request.split)
    paths, labels = list_images(folder, numeric_classes=request.split == "test")
    if request.split == "train":
        dataset = ImageListDataset(paths, labels, TrainTransform(data))
        sampler = TrainBatchSampler(
            len(paths), request.batch_size, request.rank, request.world_size, request.seed
        )
        alpha = data.get("mixup_alpha")
        mixup = (
            Mixup(float(alpha), int(config.model["num_classes"]), request.seed, request.rank)
            if alpha
            else None
        )
        identity = fingerprint("imagenet", request, num_examples=len(paths))
        return ImageNetBatches(
            _loader(dataset, sampler, request, True), sampler, config, request, identity, mixup
        )
    if request.split == "eval_train":
        idx = eval_train_indices(len(paths), request.num_examples, request.seed)
        paths, labels = [paths[i] for i in idx], [labels[i] for i in idx]
    num = request.num_examples if request.num_examples is not None else len(paths)
    if num > len(paths):
        raise ValueError(
            f"ImageNet {request.split}: {num} examples requested, {len(paths)} found in {folder!r}"
        )
    shard = eval_shard(num, request.rank, request.world_size)
    transform = TestTransform(data) if request.split == "test" else EvalTransform(data)
    dataset = ImageListDataset(
        paths[shard.start : shard.stop], labels[shard.start : shard.stop], transform
    )
    sampler = EvalBatchSampler(len(dataset), request.batch_size)
    identity = fingerprint("imagenet", request, num_examples=num)
    return ImageNetBatches(
        _loader(dataset, sampler, request, False), sampler, config, request, identity
    )


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    """Normalised-like float32 [B, 3, S, S] images and int64 labels (no mixup: the same
    function serves train and eval batches, and eval metrics need integer labels)."""
    size = int(config.data["image_size"])
    return {
        "inputs": torch.randn(batch_size, 3, size, size, generator=gen),
        "targets": torch.randint(0, int(config.model["num_classes"]), (batch_size,), generator=gen),
    }
