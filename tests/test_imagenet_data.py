"""ImageNet data: dataset setup from small generated archives, the input pipeline on the result,
2-rank eval coverage (gloo) and a 3-step training trial through the real pipeline.

    python -m pytest tests/test_imagenet_data.py
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from test_imagenet_models import load_config
from torchvision.io import ImageReadMode, decode_image, encode_jpeg, read_file
from torchvision.transforms import v2 as T

from algoperf_torch.data import imagenet as setup
from algoperf_torch.distributed import DistInfo
from algoperf_torch.pipelines.state import PipelineStateError
from algoperf_torch.spec import DataRequest, ForwardPassMode, StatefulIterator
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.imagenet_resnet import data as imagenet_data
from algoperf_torch.workloads.imagenet_resnet.imagenet_v2 import (
    center_crop_box,
    tf_bicubic_resize,
    tf_bicubic_weights,
)
from algoperf_torch.workloads.imagenet_resnet.randaugment import OPS, apply_op, rand_augment

WNIDS = ["n01440764", "n01443537", "n01484850"]
TRAIN_PER_CLASS, VAL_PER_CLASS, V2_PER_CLASS = 6, 4, 2


def image_with_id(i: int, height: int = 48, width: int = 64) -> bytes:
    """A JPEG whose flat red and green encode ``i`` (decodable after any crop/resize); blue is a
    smooth ramp, so that crops and flips change the pixels."""
    img = torch.empty(3, height, width, dtype=torch.uint8)
    img[0], img[1] = 16 * (i % 16) + 8, 16 * (i // 16) + 8
    ramp = 28 + 150 * torch.arange(width) / width + 50 * torch.arange(height)[:, None] / height
    img[2] = ramp.to(torch.uint8)
    return encode_jpeg(img, quality=95).numpy().tobytes()


def decode_ids(inputs: torch.Tensor, config) -> list[int]:
    """Invert ``image_with_id`` on normalised batches."""
    mean = torch.tensor(config.train_mean).view(1, 3)
    std = torch.tensor(config.train_stddev).view(1, 3)
    rgb = inputs.mean(dim=(2, 3)) * std + mean  # [B, 3] in 0..255
    return [int(round((g - 8) / 16)) * 16 + int(round((r - 8) / 16)) for r, g, _ in rgb.tolist()]


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def make_archives(folder: str) -> dict[str, int]:
    """Tiny archives in the official formats; image ids: train 0.., val 100.., v2 200.."""
    os.makedirs(folder, exist_ok=True)
    with tarfile.open(os.path.join(folder, setup.TRAIN_TAR), "w") as outer:
        for c, wnid in enumerate(WNIDS):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as inner:
                for k in range(TRAIN_PER_CLASS):
                    i = c * TRAIN_PER_CLASS + k
                    _add(inner, f"{wnid}_{k}.JPEG", image_with_id(i, 40 + 3 * k, 70 - 2 * k))
            _add(outer, f"{wnid}.tar", buf.getvalue())
    lines = []
    with tarfile.open(os.path.join(folder, setup.VAL_TAR), "w") as tar:
        for j in range(len(WNIDS) * VAL_PER_CLASS):
            name = f"ILSVRC2012_val_{j + 1:08d}.JPEG"
            _add(tar, name, image_with_id(100 + j))
            lines.append(f"mv {name} {WNIDS[j % len(WNIDS)]}/")
    with open(os.path.join(folder, "valprep.sh"), "w") as f:
        f.write("\n".join([f"mkdir -p {w}" for w in WNIDS] + lines) + "\n")
    with tarfile.open(os.path.join(folder, setup.V2_TAR), "w:gz") as tar:
        for j in range(len(WNIDS) * V2_PER_CLASS):
            top = "imagenetv2-matched-frequency-format-val"
            _add(tar, f"{top}/{j % len(WNIDS)}/{j:04x}.jpeg", image_with_id(200 + j))
    n = len(WNIDS)
    return {"train": n * TRAIN_PER_CLASS, "val": n * VAL_PER_CLASS, "test": n * V2_PER_CLASS}


def setup_args(data_dir: str, archives: str, **kw) -> argparse.Namespace:
    n = len(WNIDS)
    values = dict(
        data_dir=data_dir,
        archives_dir=archives,
        val_labels=None,
        expected_classes=n,
        expected_train=n * TRAIN_PER_CLASS,
        expected_val=n * VAL_PER_CLASS,
        expected_test=n * V2_PER_CLASS,
    )
    return argparse.Namespace(**{**values, **kw})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("imagenet")
    make_archives(str(base / "archives"))
    assert setup.run(setup_args(str(base / "data"), str(base / "archives"))) == 0
    return str(base / "data")


def tiny_config(name: str = "imagenet_resnet", model: dict | None = None, **data):
    """The real workload config with split sizes of the tiny dataset."""
    n = len(WNIDS)
    return load_config(
        name,
        num_train_examples=n * TRAIN_PER_CLASS,
        num_eval_train_examples=8,
        num_validation_examples=n * VAL_PER_CLASS,
        num_test_examples=n * V2_PER_CLASS,
        eval_batch_size=5,
        model=model or {},
        data=data,
    )


# --- dataset setup ----------------------------------------------------------------------------
def test_setup_layout(data_dir):
    root = os.path.join(data_dir, "imagenet")
    assert sorted(os.listdir(os.path.join(root, "train"))) == WNIDS
    assert sorted(os.listdir(os.path.join(root, "val"))) == WNIDS
    assert sorted(os.listdir(os.path.join(root, "imagenet_v2"))) == ["0", "1", "2"]
    assert len(os.listdir(os.path.join(root, "val", WNIDS[1]))) == VAL_PER_CLASS
    assert not os.path.exists(os.path.join(root, ".partial"))


def test_setup_is_idempotent_and_resumes(tmp_path, capsys):
    make_archives(str(tmp_path / "a"))
    args = setup_args(str(tmp_path / "d"), str(tmp_path / "a"))
    assert setup.run(args) == 0
    root = tmp_path / "d" / "imagenet"
    kept = os.stat(root / "train" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG").st_mtime_ns
    # Interrupted run: one class missing, a half-written unit left behind.
    import shutil

    shutil.rmtree(root / "train" / WNIDS[2])
    (root / ".partial" / f"train-{WNIDS[2]}").mkdir(parents=True)
    (root / ".partial" / f"train-{WNIDS[2]}" / "half.JPEG").write_bytes(b"\xff\xd8")
    capsys.readouterr()
    assert setup.run(args) == 0
    out = capsys.readouterr().out
    assert "1 classes unpacked, 2 already in place" in out and "val: already in place" in out
    assert len(os.listdir(root / "train" / WNIDS[2])) == TRAIN_PER_CLASS
    assert os.stat(root / "train" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG").st_mtime_ns == kept


def test_setup_reports_missing(tmp_path, capsys):
    make_archives(str(tmp_path / "a"))
    os.remove(tmp_path / "a" / "valprep.sh")
    os.remove(tmp_path / "a" / setup.V2_TAR)
    assert setup.run(setup_args(str(tmp_path / "d"), str(tmp_path / "a"))) == 1
    assert "valprep.sh" in capsys.readouterr().err
    labels = tmp_path / "labels.txt"
    labels.write_text(
        "".join(f"ILSVRC2012_val_{j + 1:08d}.JPEG {WNIDS[j % 3]}\n" for j in range(12))
    )
    args = setup_args(
        str(tmp_path / "d"), str(tmp_path / "a"), val_labels=str(labels), expected_train=999
    )
    assert setup.run(args) == 1
    err = capsys.readouterr().err
    assert "train: 18 images, expected 999" in err and "imagenet_v2" in err and "not found" in err


def test_missing_data_error_says_how_to_prepare(tmp_path):
    request = DataRequest("validation", str(tmp_path), 4, 0, num_examples=4)
    with pytest.raises(FileNotFoundError, match="python -m algoperf_torch.data imagenet"):
        next(imagenet_data.input_iterator(tiny_config(), request))


# --- input pipeline ---------------------------------------------------------------------------
def test_train_batches(data_dir):
    config = tiny_config()
    request = DataRequest("train", data_dir, 4, seed=1, num_workers=0)
    it = imagenet_data.input_iterator(config, request)
    batches = [next(it) for _ in range(6)]  # more than one epoch (18 images / 4 per batch)
    x, y = batches[0]["inputs"], batches[0]["targets"]
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean()) < 3 and set(y.tolist()) <= {0, 1, 2}
    epoch = [i for b in batches[:4] for i in decode_ids(b["inputs"], config)]
    assert len(set(epoch)) == 16  # 4 full batches of one epoch: no image twice
    again = next(imagenet_data.input_iterator(config, request))
    assert torch.equal(again["inputs"], x)  # seeded: the same crops in the same order


def test_vit_train_batches_use_mixup_and_randaugment(data_dir):
    config = tiny_config("imagenet_vit")
    it = imagenet_data.input_iterator(config, DataRequest("train", data_dir, 4, seed=0))
    batch = next(it)
    assert batch["targets"].shape == (4, 1000) and batch["targets"].dtype == torch.float32
    torch.testing.assert_close(batch["targets"].sum(1), torch.ones(4))


# --- resumable state (spec.StatefulIterator) --------------------------------------------------
def small_config(name: str = "imagenet_resnet"):
    """The tiny config with 32 px crops: the resume tests compare many batches bit for bit."""
    return tiny_config(name, image_size=32, resize_size=36)


def take(it, n: int) -> list[dict]:
    return [next(it) for _ in range(n)]


def assert_same_batches(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"batch {i}, {key!r} differs"


def saved_and_loaded(state: dict) -> dict:
    """``state`` after ``torch.save`` and ``torch.load(weights_only=True)``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", ["imagenet_resnet", "imagenet_vit"])  # vit: RandAugment + mixup
def test_train_resume_is_bitwise_uninterrupted(data_dir, name, monkeypatch):
    """Kill after k batches (0, mid-epoch, at the epoch's end, in the second epoch), resume with
    2 or 0 workers: the next batches equal the uninterrupted stream's, across the epoch
    boundaries (18 images / 4 = 4 batches per epoch), and no earlier batch is made again."""
    config = small_config(name)
    request = DataRequest("train", data_dir, 4, seed=5, num_workers=2)
    ks, m = (0, 3, 4, 6), 3
    it = imagenet_data.input_iterator(config, request)
    assert isinstance(it, StatefulIterator)
    states, expected = {}, []
    for i in range(max(ks) + m):
        if i in ks:
            states[i] = saved_and_loaded(it.state_dict())
        expected.append(next(it))
    assert len({tuple(b["targets"].flatten().tolist()) for b in expected}) > 1

    asked = []  # (sampler, epoch, position) of every batch a sampler made
    keys = imagenet_data.TrainBatchSampler.keys
    monkeypatch.setattr(
        imagenet_data.TrainBatchSampler,
        "keys",
        lambda self, epoch, position: (
            asked.append((self, epoch, position)) or keys(self, epoch, position)
        ),
    )
    for k in ks:
        for workers in (2, 0) if k else (2,):  # 0 workers: another loader-state layout
            resumed = imagenet_data.input_iterator(config, replace(request, num_workers=workers))
            resumed.load_state_dict(states[k])
            assert resumed.state_dict() == states[k]
            assert_same_batches(take(resumed, m), expected[k : k + m])
            first = min((e, p) for s, e, p in asked if s is resumed.sampler)
            assert first == divmod(k, 4), "a resumed loader made batches before its position"
    for workers in (0, 1):  # and without any resume: the same stream whatever the worker count
        plain = imagenet_data.input_iterator(config, replace(request, num_workers=workers))
        assert_same_batches(take(plain, len(expected)), expected)


def test_prefetched_batch_is_neither_lost_nor_repeated(data_dir):
    """With the device prefetch (the default on CUDA, switched on here on the CPU) a batch is
    pulled before the current one is handed out; the state still counts only handed-out ones."""
    config = small_config("imagenet_vit")
    request = DataRequest("train", data_dir, 4, seed=2, num_workers=0)
    it = imagenet_data.input_iterator(config, request)
    it.prefetch = True
    expected = take(it, 3)  # batch 3 is pulled already
    state = saved_and_loaded(it.state_dict())
    expected += take(it, 3)
    for workers, prefetch in ((0, True), (2, False)):
        resumed = imagenet_data.input_iterator(config, replace(request, num_workers=workers))
        resumed.prefetch = prefetch
        resumed.load_state_dict(state)
        assert_same_batches(take(resumed, 3), expected[3:])
    plain = imagenet_data.input_iterator(config, request)
    assert_same_batches(take(plain, 6), expected)
    request = DataRequest("validation", data_dir, 5, seed=3, num_examples=12)
    it = imagenet_data.input_iterator(config, request)
    it.prefetch = True
    assert_same_batches(list(it), list(imagenet_data.input_iterator(config, request)))


def test_ranks_split_the_single_process_stream(data_dir):
    """An example's augmentation depends on its place in the epoch's order, not on the rank."""
    config = small_config()
    whole = take(imagenet_data.input_iterator(config, DataRequest("train", data_dir, 4, 1)), 5)
    parts = [
        take(
            imagenet_data.input_iterator(
                config, DataRequest("train", data_dir, 2, 1, rank=r, world_size=2)
            ),
            5,
        )
        for r in (0, 1)
    ]
    for b, b0, b1 in zip(whole, *parts):
        assert torch.equal(b["inputs"], torch.cat([b0["inputs"], b1["inputs"]]))
        assert torch.equal(b["targets"], torch.cat([b0["targets"], b1["targets"]]))


def test_example_seeds_are_distinct_and_mixed():
    counts = torch.arange(200_000)
    seeds = imagenet_data.example_seeds(7, counts)
    assert len(set(seeds.tolist())) == len(counts) and int(seeds.max()) < 2**32
    assert seeds.tolist()[:3] == [
        imagenet_data.example_seeds(7, torch.tensor(c)) for c in (0, 1, 2)
    ]
    assert not torch.equal(seeds, imagenet_data.example_seeds(8, counts))


def test_train_stream_leaves_global_rngs_alone(data_dir):
    torch_state, np_state, py_state = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    it = imagenet_data.input_iterator(
        small_config("imagenet_vit"), DataRequest("train", data_dir, 4, 0)
    )
    take(it, 2)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and random.getstate() == py_state


def test_eval_resume(data_dir):
    config = small_config()
    request = DataRequest("validation", data_dir, 5, seed=3, num_examples=12)
    expected = list(imagenet_data.input_iterator(config, request))  # batches of 5, 5, 2
    it = imagenet_data.input_iterator(config, request)
    next(it)
    state = saved_and_loaded(it.state_dict())
    for workers in (0, 2):
        resumed = imagenet_data.input_iterator(config, replace(request, num_workers=workers))
        resumed.load_state_dict(state)
        assert_same_batches(list(resumed), expected[1:])
    done = saved_and_loaded(resumed.state_dict())
    finished = imagenet_data.input_iterator(config, request)
    finished.load_state_dict(done)
    assert list(finished) == []


def test_resume_refuses_another_stream(data_dir):
    config = small_config()
    base = DataRequest("train", data_dir, 4, seed=5, rank=0, world_size=2)
    it = imagenet_data.input_iterator(config, base)
    next(it)
    state = saved_and_loaded(it.state_dict())
    others = {
        "seed": replace(base, seed=6),
        "batch_size": replace(base, batch_size=2),
        "rank": replace(base, rank=1),
        "world_size": replace(base, world_size=1),
        "split": replace(base, split="validation", num_examples=4),
    }
    for field, other in others.items():
        with pytest.raises(PipelineStateError, match=field):
            imagenet_data.input_iterator(config, other).load_state_dict(state)
    with pytest.raises(PipelineStateError, match="out of range"):
        imagenet_data.input_iterator(config, base).load_state_dict(
            {**state, "num_workers": 3, "batches": -1}
        )


# --- the train transform against torchvision's ----------------------------------------------
def photo_like_jpeg(seed: int, height: int, width: int) -> bytes:
    """A smooth random image plus fine noise, JPEG q90 (4:2:0), like the benchmark's images."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, height // 25, width // 25, generator=gen)
    img = torch.nn.functional.interpolate(low, size=(height, width), mode="bicubic")[0]
    img = (img * 200 + 28 + 12 * torch.rand(3, height, width, generator=gen)).clamp(0, 255)
    return encode_jpeg(img.to(torch.uint8), quality=90).numpy().tobytes()


def test_crop_box_draws_as_torchvision():
    """The seeded box is ``RandomResizedCrop.get_params`` on the global RNG seeded alike: same
    draws in the same order, so the same box (and the flip draw after it) for the same key."""
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    img = torch.empty(3, 1, 1)
    for seed in range(300):
        height, width = ((375, 500), (500, 375), (40, 700), (333, 333))[seed % 4]
        gen = torch.Generator().manual_seed(seed)
        box = imagenet_data.random_resized_crop_box(height, width, scale, ratio, gen)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            expected = T.RandomResizedCrop.get_params(img.expand(3, height, width), scale, ratio)
            flip = bool(torch.rand(1) < 0.5)  # RandomHorizontalFlip's draw
        assert box == tuple(expected), seed
        assert (torch.rand(1, generator=gen).item() < 0.5) == flip, seed


def test_train_crops_equal_torchvision_path(tmp_path):
    """Pixel bound of the train transform vs decode_image + TF.resized_crop (antialiased
    bilinear) + TF.horizontal_flip with torchvision's draws: 0, bit for bit, on photo-like
    500x375 and 375x500 JPEGs (mean and max |difference| both 0)."""
    config = load_config("imagenet_resnet")
    paths = []
    for i, (h, w) in enumerate(((375, 500), (500, 375), (375, 500))):
        paths.append(str(tmp_path / f"img_{i}.JPEG"))
        with open(paths[-1], "wb") as f:
            f.write(photo_like_jpeg(i, h, w))
    dataset = imagenet_data.ImageListDataset(
        paths, [0] * len(paths), imagenet_data.TrainTransform(config.data)
    )
    reference = T.Compose(
        [T.RandomResizedCrop(224, (0.08, 1.0), (3 / 4, 4 / 3)), T.RandomHorizontalFlip()]
    )
    for seed in range(60):
        i = seed % len(paths)
        got, _ = dataset[(i, seed)]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            expected = reference(decode_image(read_file(paths[i]), mode=ImageReadMode.RGB))
        assert got.dtype == torch.uint8 and got.shape == (3, 224, 224)
        assert torch.equal(got, expected), seed


def test_shared_batch_buffers_are_reused_only_when_handed_back(monkeypatch):
    """A worker writes a buffer again only after the main process gave its batch back; with
    every buffer out it takes a fresh one; a stale or repeated hand-back frees nothing."""
    monkeypatch.setattr(imagenet_data, "get_worker_info", lambda: argparse.Namespace(id=1))
    buffers = imagenet_data.SharedBatchBuffers(num_workers=2, slots=2)
    (a, ticket_a), (b, _) = buffers.take(64), buffers.take(64)
    assert a.is_shared() and a.data_ptr() != b.data_ptr()
    fresh, none = buffers.take(64)  # both out: a new one, never a buffer in use
    assert none is None and fresh.data_ptr() not in (a.data_ptr(), b.data_ptr())
    buffers.give_back(ticket_a)
    again, ticket = buffers.take(64)
    assert again.data_ptr() == a.data_ptr() and ticket != ticket_a
    buffers.give_back(ticket_a)  # stale: the buffer holds another batch now
    assert buffers.take(64)[1] is None
    buffers.give_back(ticket)
    bigger, _ = buffers.take(128)  # another size (an eval split's last batch): a new buffer
    assert bigger.nbytes() == 128
    assert buffers.owner[0].tolist() == [0, 0]  # worker 0's buffers were never touched


def test_normalize_never_returns_its_input():
    """The batch the main process hands out must not be the worker's buffer (which is written
    again once handed back), also for float input (the test split)."""
    config = load_config("imagenet_resnet")
    normalize = imagenet_data.Normalize(config, torch.device("cpu"))
    for x in (torch.full((2, 3, 4, 4), 7, dtype=torch.uint8), torch.full((2, 3, 4, 4), 7.0)):
        out = normalize(x)
        assert out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
        assert torch.equal(out, x.float().sub_(normalize.mean).div_(normalize.std))


def test_randaugment_ops_run_on_uint8():
    gen = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 32, 40), dtype=torch.uint8)
    for name, magnitude, _ in OPS:
        out = apply_op(img, name, magnitude, gen)
        assert out.shape == img.shape and out.dtype == torch.uint8, name
    assert torch.equal(apply_op(img, "Solarize", 256.0, gen), img)  # threshold 256: no-op
    cut = apply_op(torch.zeros(3, 200, 200, dtype=torch.uint8), "Cutout", 40.0, gen)
    assert int((cut[0] == 128).sum()) in range(1, 81 * 81 + 1)
    assert rand_augment(img, gen).shape == img.shape


def test_tf_bicubic():
    assert torch.equal(tf_bicubic_weights(7, 7), torch.eye(7))
    w = tf_bicubic_weights(300, 224)
    torch.testing.assert_close(w.sum(1), torch.ones(224))  # out-of-image taps renormalised
    flat = torch.full((3, 300, 410), 77, dtype=torch.uint8)
    # Two float32 passes (matmuls) of a 4-tap filter whose weights sum to 1 within ~5u: each pass
    # adds at most ~10u relative in any summation order (u = 2^-24), so ~20u in all; 32u holds
    # on any BLAS. Taps that do not sum to 1 (a border left unnormalised) are off by > 1e-3.
    out = tf_bicubic_resize(flat, 224)
    torch.testing.assert_close(out, torch.full((3, 224, 224), 77.0), rtol=32 * 2**-24, atol=0)
    assert center_crop_box(375, 500, 224, 256) == (24, 86, 328, 328)


def test_eval_splits_cover_every_example_once(data_dir):
    config = tiny_config()
    seen = {}
    for split, n in (("validation", 12), ("eval_train", 8), ("test", 6)):
        request = DataRequest(split, data_dir, 5, seed=3, num_examples=n)
        batches = list(imagenet_data.input_iterator(config, request))
        assert [len(b["targets"]) for b in batches] == [5] * (n // 5) + ([n % 5] if n % 5 else [])
        seen[split] = [i for b in batches for i in decode_ids(b["inputs"], config)]
    assert sorted(seen["validation"]) == list(range(100, 112))
    assert sorted(seen["test"]) == list(range(200, 206))
    assert len(set(seen["eval_train"])) == 8 and max(seen["eval_train"]) < 18
    test_labels = [j % 3 for j in range(6)]
    request = DataRequest("test", data_dir, 6, seed=0, num_examples=6)
    batch = next(imagenet_data.input_iterator(config, request))
    order = [i - 200 for i in decode_ids(batch["inputs"], config)]
    assert batch["targets"].tolist() == [test_labels[j] for j in order]


def _eval_ids_worker(rank: int, data_dir: str, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    config = tiny_config()
    ids = {}
    for split, n in (("validation", 12), ("eval_train", 8), ("test", 6)):
        request = DataRequest(split, data_dir, 2, seed=3, rank=rank, world_size=2, num_examples=n)
        local = [
            i
            for b in imagenet_data.input_iterator(config, request)
            for i in decode_ids(b["inputs"], config)
        ]
        gathered = [None, None]
        dist.all_gather_object(gathered, local)
        ids[split] = gathered
    if rank == 0:
        torch.save(ids, out)
    dist.destroy_process_group()


@pytest.mark.slow  # two fresh interpreters importing torch: ~25 s on a 2-core machine
def test_two_rank_eval_covers_each_example_once(data_dir, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ids.pt")
    mp.spawn(_eval_ids_worker, args=(data_dir, port, out), nprocs=2, join=True)
    ids = torch.load(out)
    assert sorted(ids["validation"][0] + ids["validation"][1]) == list(range(100, 112))
    assert sorted(ids["test"][0] + ids["test"][1]) == list(range(200, 206))
    single = [
        i
        for b in imagenet_data.input_iterator(
            tiny_config(), DataRequest("eval_train", data_dir, 8, seed=3, num_examples=8)
        )
        for i in decode_ids(b["inputs"], tiny_config())
    ]
    assert sorted(ids["eval_train"][0] + ids["eval_train"][1]) == sorted(single)
    assert all(len(ids[s][0]) and len(ids[s][1]) for s in ids)


# --- a short trial through the real pipeline --------------------------------------------------
@pytest.mark.parametrize("name", ["imagenet_resnet", "imagenet_vit"])
def test_three_step_trial(data_dir, name):
    from algoperf_torch.evaluation import evaluate

    small = {"layers": [1, 1, 1, 1]} if name == "imagenet_resnet" else {"depth": 2}
    config = tiny_config(name, model=small)  # real widths and pipeline, fewer blocks
    workload = Workload(
        config, get_workload_functions(config.impl), DistInfo(), data_dir=data_dir, num_workers=2
    )
    model, _ = workload.init_model_fn([0])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = workload._build_input_queue([0], "train", data_dir, 4)
    for _ in range(3):
        batch = next(batches)
        logits, _ = workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, None, True)
        loss = workload.loss_fn(batch["targets"], logits)
        opt.zero_grad()
        (loss.summed / loss.n_valid_examples).backward()
        opt.step()
        assert torch.isfinite(loss.summed)
    results = evaluate(workload, model, seed=0)
    assert results["validation/num_examples"] == 12 and results["test/num_examples"] == 6
    assert 0.0 <= results["validation/accuracy"] <= 1.0 and results["train/loss"] > 0


@pytest.mark.slow  # full-size ResNet-50 / ViT-S on CPU: about a minute each
@pytest.mark.parametrize("name", ["imagenet_resnet", "imagenet_vit_map"])
def test_runner_three_steps(data_dir, tmp_path, name):
    """``python -m algoperf_torch workload=<name> data.data_dir=D max_steps=3 batch_size=4``."""
    from conftest import run_trial

    summary = run_trial(
        tmp_path,
        [
            f"workload={name}",
            f"data.data_dir={data_dir}",
            "max_steps=3",
            "batch_size=4",
            "workload.num_train_examples=18",
            "workload.num_eval_train_examples=8",
            "workload.num_validation_examples=12",
            "workload.num_test_examples=6",
            "workload.eval_batch_size=6",
            "workload.compile=off",
            "data.num_workers=2",
        ],
    )
    assert summary
