"""The cifar workload: ResNet-18 size, init and BN switch; the pipeline on tiny generated batches.

python -m pytest tests/test_cifar.py
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle

import numpy as np
import pytest
import torch
import yaml

from algoperf_torch.distributed import DistInfo
from algoperf_torch.spec import DataRequest, ForwardPassMode, WorkloadConfig
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.cifar import data as cifar_data
from algoperf_torch.workloads.cifar.model import BasicBlock

CONF = os.path.join(os.path.dirname(__file__), "..", "algoperf_torch", "conf", "workload")


def load_config(**overrides) -> WorkloadConfig:
    with open(os.path.join(CONF, "cifar.yaml")) as f:
        return dataclasses.replace(WorkloadConfig(**yaml.safe_load(f)), **overrides)


def write_cifar_batches(
    root: str, per_file: int, test: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Tiny CIFAR-10 python batches in the real pickle format; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, cifar_data.FOLDER)
    os.makedirs(folder, exist_ok=True)
    out = {}
    for name, n in [(f, per_file) for f in cifar_data.TRAIN_FILES] + [("test_batch", test)]:
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        entry = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": images,
            b"filenames": [b"x.png"] * n,
        }
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(entry, f)
        out[name] = images
    return out


@pytest.fixture(scope="module")
def functions():
    return get_workload_functions("cifar")


def test_param_count_on_meta(functions):
    with torch.device("meta"):
        model = functions.build_model(load_config())
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    names = {n for n, _ in model.named_parameters()}
    for name in (
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv2.weight",
        "layer4.1.bn2.bias",
        "layer2.0.downsample.conv.weight",
        "layer3.0.downsample.bn.weight",
        "fc.bias",
    ):
        assert name in names
    assert not any("layer1.0.downsample" in n for n in names)


@pytest.fixture(scope="module")
def model(functions):
    # One full-size build shared by the tests: trunc_normal_ makes each build take seconds on CPU.
    torch.manual_seed(0)
    return functions.build_model(load_config())


def small_config() -> WorkloadConfig:
    """ResNet-10 (one block per stage): same code paths, half the init cost."""
    return load_config(model={"layers": [1, 1, 1, 1], "num_classes": 10})


def test_forward_backward_every_param_gets_grad(functions, model):
    batch = functions.synthetic_batch(load_config(), 2, torch.Generator().manual_seed(0))
    logits = model(batch["inputs"])
    assert logits.shape == (2, 10)
    loss = functions.loss(load_config(), batch["targets"], logits)
    assert loss.n_valid_examples.item() == 2
    loss.summed.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    model.zero_grad(set_to_none=True)


def test_init_statistics(model):
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            fan_in = module.weight[0].numel()
            std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
            w = module.weight.detach()
            assert w.abs().max() <= 2 * std + 1e-6, name
            if w.numel() >= 30_000:  # enough draws for a 10% std check
                # A normal truncated at ±2σ keeps 0.8796² of its variance.
                assert w.std().item() == pytest.approx(std * 0.87962566103423978, rel=0.1), name
        if isinstance(module, BasicBlock):
            assert torch.all(module.bn2.weight == 0), name
            assert torch.all(module.bn1.weight == 1), name
    assert model.fc.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.all(model.fc.bias == 0)


def test_init_is_seeded(functions):
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        states.append(functions.build_model(small_config()).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_batch_norm_switch_through_model_fn(functions):
    workload = Workload(small_config(), functions, DistInfo())
    model, _ = workload.init_model_fn([0])
    batch = functions.synthetic_batch(small_config(), 4, torch.Generator().manual_seed(1))
    bn = model.layer1[0].bn1
    before = (bn.running_mean.clone(), bn.running_var.clone())
    workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, None, update_batch_norm=False)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert model.training
    workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, None, update_batch_norm=True)
    assert not torch.equal(bn.running_mean, before[0])
    with pytest.raises(ValueError):
        workload.model_fn(model, batch, None, ForwardPassMode.EVAL, None, update_batch_norm=True)
    logits, _ = workload.model_fn(
        model, batch, None, ForwardPassMode.EVAL, None, update_batch_norm=False
    )
    assert not model.training and not logits.requires_grad
    assert workload.is_output_params("fc.weight") and not workload.is_output_params("conv1.weight")


# --- data ---------------------------------------------------------------------------------------
PER_FILE, TEST = 20, 30  # 100 train-set images: 70 train + 30 validation
SMALL = dict(
    num_train_examples=70,
    num_validation_examples=30,
    num_eval_train_examples=16,
    num_test_examples=30,
    eval_batch_size=8,
)


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cifar"))
    arrays = write_cifar_batches(root, PER_FILE, TEST)
    yield root, arrays
    cifar_data.load.cache_clear()


def request(root: str, split: str, batch_size: int, rank: int = 0, world: int = 1, num=None):
    return DataRequest(
        split=split,
        data_dir=root,
        batch_size=batch_size,
        seed=5,
        rank=rank,
        world_size=world,
        num_examples=num,
    )


def test_missing_data_says_how_to_prepare(tmp_path):
    config = load_config()
    with pytest.raises(cifar_data.MissingDataError, match="python -m algoperf_torch.data cifar"):
        next(cifar_data.input_iterator(config, request(str(tmp_path), "validation", 8, num=8)))
    assert issubclass(cifar_data.MissingDataError, FileNotFoundError)


def test_train_batches_shapes_and_augmentation(tiny_cifar):
    root, arrays = tiny_cifar
    config = load_config(**SMALL)
    batch = next(cifar_data.input_iterator(config, request(root, "train", 16)))
    assert batch["inputs"].shape == (16, 3, 32, 32) and batch["inputs"].dtype == torch.float32
    assert batch["targets"].shape == (16,) and batch["targets"].dtype == torch.int64
    mean = torch.tensor(config.train_mean).view(1, 3, 1, 1)
    std = torch.tensor(config.train_stddev).view(1, 3, 1, 1)
    pixels = batch["inputs"] * std + mean  # back to [0, 1]
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    # 4+4 px of zero padding: most crops show some; padding normalises to -mean/std exactly.
    assert torch.isclose(batch["inputs"], -mean / std).any()


def test_random_crop_flip_matches_a_loop():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    out = cifar_data.random_crop_flip(images, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    top = torch.randint(0, 9, (6, 1), generator=gen)
    left = torch.randint(0, 9, (6, 1), generator=gen)
    flip = torch.rand(6, 1, generator=gen) < 0.5
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(6):
        crop = padded[i, :, top[i, 0] : top[i, 0] + 32, left[i, 0] : left[i, 0] + 32]
        assert torch.equal(out[i], crop.flip(-1) if flip[i, 0] else crop)


def test_eval_splits_normalised_and_sized(tiny_cifar):
    root, arrays = tiny_cifar
    config = load_config(**SMALL)
    train_set = np.concatenate([arrays[f] for f in cifar_data.TRAIN_FILES]).reshape(-1, 3, 32, 32)
    mean = torch.tensor(config.train_mean).view(1, 3, 1, 1)
    std = torch.tensor(config.train_stddev).view(1, 3, 1, 1)

    def collect(split, num):
        batches = list(cifar_data.input_iterator(config, request(root, split, 8, num=num)))
        return torch.cat([b["inputs"] for b in batches]), torch.cat([b["targets"] for b in batches])

    val_x, val_y = collect("validation", 30)
    assert val_x.shape == (30, 3, 32, 32) and val_y.dtype == torch.int64
    expected = (torch.from_numpy(train_set[70:100]).float() / 255 - mean) / std
    torch.testing.assert_close(val_x, expected)
    test_x, _ = collect("test", 30)
    expected = (
        torch.from_numpy(arrays["test_batch"].reshape(-1, 3, 32, 32)).float() / 255 - mean
    ) / std
    torch.testing.assert_close(test_x, expected)
    et_x, _ = collect("eval_train", 16)
    idx = cifar_data.eval_train_indices(70, 16, 5)
    assert len(set(idx)) == 16 and max(idx) < 70
    torch.testing.assert_close(et_x, (torch.from_numpy(train_set[idx]).float() / 255 - mean) / std)


def test_train_split_excludes_validation(tiny_cifar):
    root, arrays = tiny_cifar
    config = load_config(**SMALL)
    it = cifar_data.input_iterator(config, request(root, "train", 10))
    # 70 train examples at batch 10: one epoch is 7 batches; its targets are the train labels.
    seen = torch.cat([next(it)["targets"] for _ in range(7)])
    labels = cifar_data.load(root)["train_labels"]
    assert sorted(seen.tolist()) == sorted(labels[:70].tolist())


def test_too_few_examples_is_a_clear_error(tiny_cifar):
    root, _ = tiny_cifar
    config = load_config(**SMALL | {"num_train_examples": 90})
    with pytest.raises(ValueError, match="validation examples"):
        cifar_data.input_iterator(config, request(root, "train", 10))


@pytest.mark.parametrize("split,num", [("validation", 30), ("test", 27), ("eval_train", 16)])
def test_eval_covers_each_example_once_across_two_ranks(tiny_cifar, split, num):
    root, _ = tiny_cifar
    config = load_config(**SMALL)
    one = torch.cat(
        [b["inputs"] for b in cifar_data.input_iterator(config, request(root, split, 8, num=num))]
    )
    shards = [
        torch.cat(
            [
                b["inputs"]
                for b in cifar_data.input_iterator(
                    config, request(root, split, 4, rank=r, world=2, num=num)
                )
            ]
        )
        for r in (0, 1)
    ]
    assert sum(len(s) for s in shards) == num
    torch.testing.assert_close(torch.cat(shards), one)
