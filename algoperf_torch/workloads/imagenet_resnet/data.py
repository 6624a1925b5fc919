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
the device. Worker batches are collated straight into shared memory.

Differences from the reference, by design: augmentation randomness comes from a
per-worker ``torch.Generator`` seeded from the data seed (deterministic), not the global RNG;
training order is a per-epoch permutation seeded by (data seed, epoch), each rank taking its
slice of every global batch (each example at most once per epoch across ranks); the mixup weight
is drawn from a numpy generator seeded by (seed, rank) instead of torch's global RNG; eval
batches are never padded (the metric divides by the split size).

    python -m pytest tests/test_imagenet_data.py
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info
from torchvision.io import ImageReadMode, decode_image, read_file

from algoperf_torch.pipelines.state import eval_shard
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
    data_dir = os.path.expanduser(data_dir)
    for root in (os.path.join(data_dir, "imagenet"), data_dir):
        if os.path.isdir(os.path.join(root, "train")) or os.path.isdir(os.path.join(root, "val")):
            return root
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


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    gen: torch.Generator,
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` (10 tries, then a centre crop), seeded."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
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
    """RandomResizedCrop + flip (+ RandAugment) on uint8, with a per-worker generator."""

    def __init__(self, data: dict[str, Any], seed: int) -> None:
        self.size = int(data["image_size"])
        self.scale = tuple(data["scale_range"])
        self.ratio = tuple(data["aspect_ratio_range"])
        self.randaugment_ops = int(data["randaugment_num_ops"]) if data["randaugment"] else 0
        self.seed = seed
        self._gen: torch.Generator | None = None

    def _generator(self) -> torch.Generator:
        if self._gen is None:
            info = get_worker_info()  # in a worker: the loader's per-worker seed
            self._gen = torch.Generator().manual_seed(info.seed if info else self.seed)
        return self._gen

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        gen = self._generator()
        top, left, h, w = random_resized_crop_box(
            img.shape[1], img.shape[2], self.scale, self.ratio, gen
        )
        img = TF.resized_crop(img, top, left, h, w, [self.size, self.size], antialias=True)
        if torch.rand(1, generator=gen).item() < 0.5:
            img = TF.horizontal_flip(img)
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
    """``(transform(decode(paths[i])), labels[i])`` for a list of image files."""

    def __init__(self, paths: list[str], labels: list[int], transform) -> None:
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(decode(self.paths[i])), self.labels[i]


class TrainBatchSampler(Sampler[list[int]]):
    """Endless per-rank batches: a permutation per epoch (seeded by seed and epoch), cut into
    global batches (the incomplete last one dropped); rank r takes slice r of each."""

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        self.seed = seed
        if batch_size * world_size > n:
            raise ValueError(f"global batch {batch_size * world_size} exceeds the {n} train images")

    def __iter__(self) -> Iterator[list[int]]:
        global_batch = self.batch_size * self.world_size
        lo = self.rank * self.batch_size
        epoch = 0
        while True:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            perm = torch.randperm(self.n, generator=gen)
            for start in range(0, self.n - global_batch + 1, global_batch):
                yield perm[start + lo : start + lo + self.batch_size].tolist()
            epoch += 1


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
        return x.float().sub_(self.mean).div_(self.std)


class Collate:
    """Stack (image, label) pairs into a uint8 batch.

    In a worker the batch is written straight into shared memory (as torch's default collate
    does), so handing it to the main process costs no copy; normalisation happens after that, on
    the batch's device (measured faster than normalising in the workers even on a 2-core CPU,
    since a uint8 batch is 4x smaller to hand over: benchmarks/bench_imagenet_pipeline.py).
    """

    def __call__(self, items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = [img for img, _ in items]
        x = torch.empty((len(images), *images[0].shape), dtype=images[0].dtype)  # [B, 3, H, W]
        if get_worker_info() is not None:
            x.share_memory_()
        torch.stack(images, out=x)
        y = torch.tensor([label for _, label in items], dtype=torch.int64)
        return x, y


def _loader(
    dataset: Dataset, config: WorkloadConfig, request: DataRequest, train: bool, seed: int
) -> DataLoader:
    workers = request.num_workers
    common = dict(
        num_workers=workers,
        collate_fn=Collate(),
        pin_memory=request.device.type == "cuda",
        persistent_workers=train and workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed * 7919 + request.rank),
    )
    if train:
        sampler = TrainBatchSampler(
            len(dataset), request.batch_size, request.rank, request.world_size, seed
        )
        return DataLoader(dataset, batch_sampler=sampler, **common)
    return DataLoader(dataset, batch_size=request.batch_size, shuffle=False, **common)


def _to_device(loader: DataLoader, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    """Copy batches to ``device``; on CUDA the next copy overlaps the current step."""
    if device.type != "cuda":
        yield from loader
        return
    stream = torch.cuda.Stream(device)
    pending = None
    for x, y in loader:
        with torch.cuda.stream(stream):
            nxt = (x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        if pending is not None:
            yield pending
        torch.cuda.current_stream(device).wait_stream(stream)
        for t in nxt:
            t.record_stream(torch.cuda.current_stream(device))
        pending = nxt
    if pending is not None:
        yield pending


class Mixup:
    """The reference's ``mixup_pytorch``: λ ~ Beta(α, α) per batch, mixed with roll(batch, 1)."""

    def __init__(self, alpha: float, num_classes: int, seed: int, rank: int) -> None:
        self.alpha, self.num_classes = alpha, num_classes
        self.rng = np.random.default_rng([seed, rank, 0x6D1])

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = float(self.rng.beta(self.alpha, self.alpha))
        t = F.one_hot(y, self.num_classes).to(x.dtype)  # [B] -> [B, C]
        x = lam * x + (1.0 - lam) * torch.roll(x, 1, dims=0)
        t = lam * t + (1.0 - lam) * torch.roll(t, 1, dims=0)
        return x, t


def _batches(
    loader: DataLoader, config: WorkloadConfig, request: DataRequest, mixup: Mixup | None
) -> Iterator[Batch]:
    normalize = Normalize(config, request.device)
    for x, y in _to_device(loader, request.device):
        x = normalize(x)  # 0..255 [B, 3, H, W] -> normalised float32
        if mixup is not None:
            x, y = mixup(x, y)
        yield {"inputs": x, "targets": y}


def input_iterator(config: WorkloadConfig, request: DataRequest) -> Iterator[Batch]:
    """This rank's batches of ``request.split`` on ``request.device`` (train: endless)."""
    data = config.data
    folder = split_folder(config, request.data_dir, request.split)
    paths, labels = list_images(folder, numeric_classes=request.split == "test")
    if request.split == "train":
        dataset = ImageListDataset(paths, labels, TrainTransform(data, request.seed))
        alpha = data.get("mixup_alpha")
        mixup = (
            Mixup(float(alpha), int(config.model["num_classes"]), request.seed, request.rank)
            if alpha
            else None
        )
        return _batches(
            _loader(dataset, config, request, True, request.seed), config, request, mixup
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
    return _batches(_loader(dataset, config, request, False, request.seed), config, request, None)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    """Normalised-like float32 [B, 3, S, S] images and int64 labels (no mixup: the same
    function serves train and eval batches, and eval metrics need integer labels)."""
    size = int(config.data["image_size"])
    return {
        "inputs": torch.randn(batch_size, 3, size, size, generator=gen),
        "targets": torch.randint(0, int(config.model["num_classes"]), (batch_size,), generator=gen),
    }
