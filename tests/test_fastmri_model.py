"""fastMRI U-Net and its variants: configs, parameter names/counts/types, init, forward pieces.

Bitwise init and forward equality with the reference were checked against the reference's own
model code outside the repo (see the README); here: what can be checked without it.

python -m pytest tests/test_fastmri_model.py
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from algoperf_torch.distributed import DistInfo
from algoperf_torch.spec import ForwardPassMode, ParameterType, WorkloadConfig
from algoperf_torch.workload import Workload, param_type_from_name
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.fastmri.model import UNet

# name -> (parameters, validation target, test target) [WORKLOADS.md §3.2, §3.5]
EXPECTED = {
    "fastmri": (7_756_097, 0.723653, 0.740633),
    "fastmri_model_size": (7_692_929, 0.723559, 0.740726),
    "fastmri_tanh": (7_756_097, 0.717840, 0.734505),
    "fastmri_layernorm": (7_761_985, 0.723284, 0.739996),
}


@pytest.fixture(scope="module")
def configs() -> dict[str, WorkloadConfig]:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="algoperf_torch.conf", version_base=None):
        cfgs = {n: hydra_compose("config", [f"workload={n}"]) for n in EXPECTED}
    return {
        n: WorkloadConfig.from_dict(OmegaConf.to_container(c.workload, resolve=True))
        for n, c in cfgs.items()
    }


def build(config: WorkloadConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_workload_functions(config.impl).build_model(config)


_BUILT: dict[str, torch.nn.Module] = {}


def built(configs, name: str) -> torch.nn.Module:
    """The full-size model of ``name`` at seed 0, built once per session (1-2 s each)."""
    if name not in _BUILT:
        _BUILT[name] = build(configs[name])
    return _BUILT[name]


@pytest.mark.parametrize("name", EXPECTED)
def test_config_targets_and_param_count(configs, name):
    config = configs[name]
    count, val, test = EXPECTED[name]
    assert (config.name, config.impl) == (name, "fastmri")
    assert (config.validation_target, config.test_target) == (val, test)
    assert config.base == (None if name == "fastmri" else "fastmri")
    with torch.device("meta"):
        model = build(config)
    assert sum(p.numel() for p in model.parameters()) == count


def test_base_constants(configs):
    c = configs["fastmri"]
    assert (c.max_runtime, c.eval_period, c.step_hint, c.eval_batch_size) == (4430, 80, 18094, 256)
    assert (c.num_train_examples, c.num_eval_train_examples) == (34742, 3584)
    assert (c.num_validation_examples, c.num_test_examples) == (3554, 3581)
    assert c.num_eval_train_examples == math.ceil(3554 / 256) * 256
    assert c.for_rules("v0.5").max_runtime == 8859 and c.for_rules("v0.5").step_hint == 36189
    assert c.loss_type == "mean_absolute_error" and c.compile == "model_and_loss"
    assert (c.target_metric, c.target_minimize) == ("ssim", False)
    for config in configs.values():  # a variant changes only what the reference's changes
        assert config.data == c.data
        assert (config.max_runtime, config.step_hint, config.eval_period) == (4430, 18094, 80)


def test_reference_parameter_names_order_and_types(configs):
    with torch.device("meta"):
        names = [k for k, _ in build(configs["fastmri"]).named_parameters()]
        ln = dict(build(configs["fastmri_layernorm"]).named_parameters())
    # Registration order: encoder, bottleneck, up_conv (all of it), then up_transpose_conv.
    assert names[:2] == [
        "down_sample_layers.0.conv_layers.0.weight",
        "down_sample_layers.0.conv_layers.4.weight",
    ]
    assert names[8:10] == ["conv.conv_layers.0.weight", "conv.conv_layers.4.weight"]
    assert names[16:20] == [
        "up_conv.3.0.conv_layers.0.weight",
        "up_conv.3.0.conv_layers.4.weight",
        "up_conv.3.1.weight",
        "up_conv.3.1.bias",
    ]
    assert names[20:] == [f"up_transpose_conv.{i}.layers.0.weight" for i in range(4)]
    assert len(names) == 24
    assert ln["up_conv.0.conv_layers.1.weight"].shape == (256,)  # GroupNorm(1, C) affine
    assert not any(".layers.1." in k for k in ln)  # the transpose blocks keep InstanceNorm2d
    # Every name contains "conv" (up_conv, up_transpose_conv, conv_layers): the reference's rules
    # make every weight, GroupNorm scales included, a CONV_WEIGHT and every bias a BIAS.
    for k in [*names, *ln]:
        expected = ParameterType.BIAS if k.endswith("bias") else ParameterType.CONV_WEIGHT
        assert param_type_from_name(k) == expected, k
    workload = Workload(configs["fastmri"], get_workload_functions("fastmri"), DistInfo())
    assert workload.is_output_params("up_conv.3.1.weight")
    assert not workload.is_output_params("up_conv.3.0.conv_layers.0.weight")


def test_init_is_lecun_truncated_normal_with_torch_fan_in(configs):
    model = built(configs, "fastmri")
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
            continue
        # torch's fan-in: weight.shape[1] * k * k (for ConvTranspose2d [in, out, k, k]: out * k * k)
        fan_in = p.shape[1] * p[0, 0].numel()
        std = math.sqrt(1.0 / fan_in)  # the 0.8796 divisor restores the truncation's variance
        scale = std / 0.87962566103423978
        assert p.abs().max() <= 2 * scale * (1 + 1e-6), name
        n = p.numel()
        # The sample std of n draws is within 5 standard errors (std / sqrt(2 n)) of std.
        assert abs(p.std().item() - std) < 5 * std / math.sqrt(2 * n) + 1e-12, name
    # Same seed, same weights; another seed, others (on a small U-Net).
    tiny = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        tiny.append(UNet(num_channels=4, num_pool_layers=2))
    other = tiny[2]
    assert all(torch.equal(a, b) for a, b in zip(tiny[0].parameters(), tiny[1].parameters()))
    assert not torch.equal(tiny[0].conv.conv_layers[0].weight, other.conv.conv_layers[0].weight)


@pytest.mark.parametrize("name", EXPECTED)
def test_forward_backward_shapes_and_gradients(configs, name):
    config = configs[name]
    model = built(configs, name)
    model.zero_grad()
    workload = Workload(config, get_workload_functions("fastmri"), DistInfo())
    batch = get_workload_functions("fastmri").synthetic_batch(config, 2, torch.Generator())
    batch = {k: v[:, :24, :40] if v.dim() == 3 else v for k, v in batch.items()}
    out, _ = workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, None, False, 0.1)
    assert out.shape == (2, 24, 40)
    loss = workload.loss_fn(batch["targets"], out)
    (loss.summed / loss.n_valid_examples).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())


def test_odd_sizes_are_reflect_padded_and_eval_is_deterministic(configs):
    model = built(configs, "fastmri").eval()
    x = torch.randn(1, 1, 44, 44)  # 44 -> 22 -> 11 -> 5 -> 2: the decoder pads 4 -> 5, 10 -> 11
    with torch.no_grad():
        y1, y2 = model(x), model(x, dropout_rate=0.5)  # eval: dropout off
    assert y1.shape == (1, 1, 44, 44) and torch.equal(y1, y2)


def test_transpose_block_and_dropout2d_pieces(configs):
    model = built(configs, "fastmri")
    block = model.up_transpose_conv[3]  # ConvTranspose2d(64 -> 32, k 2, s 2) -> IN -> LeakyReLU
    x = torch.randn(1, 64, 3, 3)
    w = block.layers[0].weight  # [64, 32, 2, 2]
    # By hand: each input pixel spreads into a 2x2 output patch.
    y = torch.einsum("bihw,iokl->bohkwl", x, w).reshape(1, 32, 6, 6)
    y = F.instance_norm(y, eps=1e-5)
    expected = torch.where(y > 0, y, 0.2 * y)
    assert torch.allclose(block(x), expected, atol=1e-5)
    conv_block = model.down_sample_layers[0].train()
    torch.manual_seed(0)
    out = conv_block(torch.randn(2, 1, 8, 8), 0.5)
    zero_channels = (out.abs().sum(dim=(2, 3)) == 0).sum()
    assert 0 < zero_channels < 64  # whole channels dropped (Dropout2d), not single pixels
