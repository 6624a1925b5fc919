"""ImageNet ResNet-50 / ViT-S/16 and their variants: configs, parameter counts, gradients, init.

python -m pytest tests/test_imagenet_models.py
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import compose
from omegaconf import OmegaConf
from torch import nn

from algoperf_torch.distributed import DistInfo
from algoperf_torch.layers.batch_norm import BatchNorm2d
from algoperf_torch.layers.posemb import posemb_sincos_2d
from algoperf_torch.spec import ForwardPassMode, ParameterType, WorkloadConfig
from algoperf_torch.workload import Workload, param_type_from_name
from algoperf_torch.workloads import get_workload_functions

# name -> parameter count (WORKLOADS.md §4.2, §5.2, §5.5; each verified against the reference).
PARAMS = {
    "imagenet_resnet": 25_557_032,
    "imagenet_resnet_silu": 25_557_032,
    "imagenet_resnet_gelu": 25_557_032,
    "imagenet_resnet_large_bn_init": 25_557_032,
    "imagenet_vit": 22_122_472,
    "imagenet_vit_glu": 50_452_456,
    "imagenet_vit_post_ln": 22_121_704,
    "imagenet_vit_map": 23_896_552,
}
TARGETS = {  # (validation, test) accuracy targets
    "imagenet_resnet": (0.77431, 0.6560),
    "imagenet_resnet_silu": (0.75445, 0.6323),
    "imagenet_resnet_gelu": (0.76765, 0.6519),
    "imagenet_resnet_large_bn_init": (0.76526, 0.6423),
    "imagenet_vit": (0.77309, 0.6519),
    "imagenet_vit_glu": (0.75738, 0.6359),
    "imagenet_vit_post_ln": (0.75312, 0.6286),
    "imagenet_vit_map": (0.77113, 0.6523),
}


def load_config(name: str, **overrides) -> WorkloadConfig:
    """Compose ``workload=<name>`` through Hydra (so the variants' defaults lists are used)."""
    cfg = compose([f"workload={name}"])
    values = OmegaConf.to_container(cfg.workload, resolve=True)
    for key, value in overrides.items():
        if key in ("model", "data"):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return WorkloadConfig.from_dict(values)


@pytest.fixture(scope="module")
def configs() -> dict[str, WorkloadConfig]:
    return {name: load_config(name) for name in PARAMS}


def build(config: WorkloadConfig, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return get_workload_functions(config.impl).build_model(config)


@pytest.mark.parametrize("name", PARAMS)
def test_config_targets_and_param_count(configs, name):
    config = configs[name]
    assert config.name == name
    assert (config.validation_target, config.test_target) == TARGETS[name]
    assert config.base == (None if name in ("imagenet_resnet", "imagenet_vit") else config.impl)
    with torch.device("meta"):
        model = get_workload_functions(config.impl).build_model(config)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


def test_base_constants(configs):
    r, v = configs["imagenet_resnet"], configs["imagenet_vit"]
    assert (r.max_runtime, r.eval_period, r.step_hint, r.eval_batch_size) == (
        66159,
        510,
        195999,
        1024,
    )
    assert (v.max_runtime, v.eval_period, v.step_hint, v.eval_batch_size) == (
        69768,
        420,
        167999,
        2048,
    )
    assert (r.num_eval_train_examples, v.num_eval_train_examples) == (50176, 51200)
    assert r.for_rules("v0.5").max_runtime == 63008 and v.for_rules("v0.5").max_runtime == 77520
    assert r.for_rules("v0.5").step_hint == v.for_rules("v0.5").step_hint == 186666
    assert (r.compile, v.compile) == ("model", "off")
    # A variant changes only what the reference's variant changes.
    for name, config in configs.items():
        base = configs[config.base or name]
        assert config.data == base.data
        assert (config.max_runtime, config.step_hint) == (base.max_runtime, base.step_hint)


def test_reference_parameter_names_and_types(configs):
    with torch.device("meta"):
        resnet = build(configs["imagenet_resnet"])
        vit_map = build(configs["imagenet_vit_map"])
    names = dict(resnet.named_parameters())
    assert "layer2.0.downsample.conv.weight" in names and "layer4.2.bn3.weight" in names
    assert param_type_from_name("layer1.0.bn3.weight") == ParameterType.BATCH_NORM_SCALE
    assert param_type_from_name("layer2.0.downsample.conv.weight") == ParameterType.CONV_WEIGHT
    types = {k: param_type_from_name(k) for k, _ in vit_map.named_parameters()}
    assert types["encoder.net.0.self_attention1.query.weight"] == ParameterType.ATTENTION_Q
    assert types["encoder.net.0.self_attention1.out.weight"] == ParameterType.ATTENTION_OUT
    assert types["encoder.net.0.self_attention1.key.bias"] == ParameterType.ATTENTION_BIAS
    assert types["encoder.net.0.layer_norm0.weight"] == ParameterType.LAYER_NORM_SCALE
    assert types["conv_patch_extract.weight"] == ParameterType.CONV_WEIGHT
    # None of the MAP names contains attn/attention (WORKLOADS.md §5.5).
    assert types["map.mha.kv_proj.weight"] == ParameterType.WEIGHT
    assert types["map.layer_norm.bias"] == ParameterType.LAYER_NORM_BIAS
    assert types["map.probe"] == ParameterType.WEIGHT


def _small(config: WorkloadConfig) -> WorkloadConfig:
    """Same code, tiny sizes: for forward/backward on CPU."""
    if config.impl == "imagenet_resnet":
        return load_config(config.name, model={"layers": [1, 1, 1, 1], "num_classes": 10})
    return load_config(
        config.name,
        model={"depth": 2, "width": 64, "mlp_dim": 128, "num_heads": 2, "num_classes": 10},
        data={"image_size": 32},
    )


@pytest.mark.parametrize("name", PARAMS)
def test_forward_backward_every_param_gets_grad(configs, name):
    config = _small(configs[name])
    functions = get_workload_functions(config.impl)
    workload = Workload(config, functions, DistInfo())
    model, _ = workload.init_model_fn([0])
    size = 64 if config.impl == "imagenet_resnet" else 32
    batch = {"inputs": torch.randn(3, 3, size, size), "targets": torch.tensor([1, 2, 3])}
    logits, _ = workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, None, True, 0.1)
    assert logits.shape == (3, 10)
    # Zero-initialised heads/BNs stop gradients at init: perturb them to reach every parameter.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    logits, _ = workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, None, True, 0.1)
    loss = workload.loss_fn(batch["targets"], logits)
    (loss.summed / loss.n_valid_examples).backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    soft = torch.softmax(torch.randn(3, 10), -1)  # mixup targets go through the same loss
    assert torch.isfinite(workload.loss_fn(soft, logits.detach()).summed)
    eval_logits, _ = workload.model_fn(model, batch, None, ForwardPassMode.EVAL, None, False)
    assert not eval_logits.requires_grad


def test_update_batch_norm_false_freezes_running_stats():
    config = _small(load_config("imagenet_resnet"))
    workload = Workload(config, get_workload_functions("imagenet_resnet"), DistInfo())
    model, _ = workload.init_model_fn([0])
    bn = model.bn1
    batch = {"inputs": torch.randn(2, 3, 64, 64)}
    before = bn.running_mean.clone()
    workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, None, False)
    assert torch.equal(bn.running_mean, before)
    workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, None, True)
    assert not torch.equal(bn.running_mean, before)
    with pytest.raises(ValueError):
        workload.model_fn(model, batch, None, ForwardPassMode.EVAL, None, True)


def _lecun_std(weight: torch.Tensor) -> float:
    fan_in = weight[0].numel()
    return math.sqrt(1.0 / fan_in)  # the truncated normal's variance is rescaled to 1/fan_in


@pytest.mark.parametrize("name", ["imagenet_resnet", "imagenet_resnet_large_bn_init"])
def test_resnet_init(configs, name):
    model = build(load_config(name, model={"layers": [1, 2, 1, 1]}))  # real widths, fewer blocks
    scale = 8.0 if name.endswith("large_bn_init") else 0.0
    for module_name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            std = _lecun_std(w)
            assert w.abs().max() <= 2 * std / 0.87962566103423978 + 1e-6, module_name
            if w.numel() > 20_000:
                assert abs(w.std().item() / std - 1) < 0.05, module_name
        elif isinstance(m, BatchNorm2d):
            expected = scale if module_name.endswith("bn3") else 1.0
            assert torch.all(m.weight == expected) and torch.all(m.bias == 0), module_name
            assert m.momentum == 0.1 and m.eps == 1e-5
            assert torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)
    assert abs(model.fc.weight.std().item() - 0.01) < 5e-4 and torch.all(model.fc.bias == 0)


def test_resnet_activation_variants(configs):
    with torch.device("meta"):
        models = {
            n: build(configs[n])
            for n in ("imagenet_resnet", "imagenet_resnet_silu", "imagenet_resnet_gelu")
        }
    assert isinstance(models["imagenet_resnet"].act_fnc, nn.ReLU)
    assert isinstance(models["imagenet_resnet_silu"].act_fnc, nn.SiLU)
    gelu = models["imagenet_resnet_gelu"].layer3[2].act_fnc
    assert isinstance(gelu, nn.GELU) and gelu.approximate == "tanh"


def test_resnet_rng_order_matches_reference_recipe(configs):
    """Replay the reference's torch-RNG order with fresh modules; weights match bitwise.

    Construction (torch default init) follows registration order except that a stage's
    ``downsample`` is built before its first block; then every conv is redrawn in registration
    order, then ``fc.weight`` (WORKLOADS.md §4.1).
    """
    from algoperf_torch.layers.init import lecun_normal_

    model = build(load_config("imagenet_resnet", model={"layers": [1, 2, 1, 1]}), seed=3)
    named = [(k, m) for k, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    order = {k: i for i, (k, _) in enumerate(named)}
    built = []
    for k, m in named:  # move each downsample conv in front of its block's conv1
        if k.endswith("downsample.conv"):
            block = k[: -len("downsample.conv")]
            built.insert(next(i for i, (b, _) in enumerate(built) if b == block + "conv1"), (k, m))
        else:
            built.append((k, m))
    torch.manual_seed(3)
    fresh = {}
    for k, m in built:
        if isinstance(m, nn.Conv2d):
            fresh[k] = nn.Conv2d(
                m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=False
            )
        else:
            fresh[k] = nn.Linear(m.in_features, m.out_features)
    for k, _ in sorted(built, key=lambda km: order[km[0]]):
        if k != "fc":
            lecun_normal_(fresh[k])
    nn.init.normal_(fresh["fc"].weight, std=1e-2)
    for k, m in named:
        assert torch.equal(m.weight, fresh[k].weight), k


@pytest.mark.parametrize("name", ["imagenet_vit", "imagenet_vit_glu", "imagenet_vit_map"])
def test_vit_init(configs, name):
    model = build(configs[name])
    assert torch.all(model.head.weight == 0) and torch.all(model.head.bias == 0)
    for lin in (model.conv_patch_extract, model.pre_logits):
        std = _lecun_std(lin.weight)
        assert abs(lin.weight.std().item() / std - 1) < 0.05
        assert torch.all(lin.bias == 0)
    block = model.encoder.net[0]
    for lin in (block.self_attention1.query, block.self_attention1.out):
        bound = math.sqrt(6 / (lin.in_features + lin.out_features))
        assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.95 * bound
        assert torch.all(lin.bias == 0)
    mlp_linears = [block.mlp3.linear1, block.mlp3.linear2]
    if name == "imagenet_vit_glu":
        mlp_linears.append(block.mlp3.glu_linear)
    for lin in mlp_linears:
        bound = math.sqrt(6 / (lin.in_features + lin.out_features))
        assert lin.weight.abs().max() <= bound
        assert 0 < lin.bias.abs().max() < 1e-5  # N(0, 1e-6)
    for ln in (block.layer_norm0, block.layer_norm2):
        assert ln.eps == 1e-6 and torch.all(ln.weight == 1) and torch.all(ln.bias == 0)
    if name == "imagenet_vit_map":
        probe_bound = math.sqrt(6 / (384 + 384))
        assert model.map.probe.abs().max() <= probe_bound
        assert 0 < model.map.mha.q_proj.bias.abs().max() < 1e-5


def test_vit_post_ln_has_no_encoder_norm(configs):
    model = build(configs["imagenet_vit_post_ln"])
    assert model.encoder.encoder_norm is None
    assert not any("encoder_norm" in k for k, _ in model.named_parameters())


def test_vit_rng_order_matches_reference_recipe():
    """Replay the reference's construction order with plain torch modules; weights match bitwise."""
    from algoperf_torch.workloads.imagenet_vit.model import ViT

    torch.manual_seed(5)
    model = ViT(width=32, depth=2, mlp_dim=64, num_heads=2, num_classes=7, patch_size=8)
    torch.manual_seed(5)
    pre_logits = nn.Linear(32, 32)
    conv = nn.Conv2d(3, 32, 8, stride=8)
    expected = {}
    for i in range(2):
        for name in ("query", "key", "value", "out"):
            expected[f"encoder.net.{i}.self_attention1.{name}"] = nn.Linear(32, 32)
        for name in ("query", "key", "value", "out"):
            lin = expected[f"encoder.net.{i}.self_attention1.{name}"]
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        l1, l2 = nn.Linear(32, 64), nn.Linear(64, 32)
        for lin in (l1, l2):
            nn.init.xavier_uniform_(lin.weight)
            lin.bias.data.normal_(std=1e-6)
        expected[f"encoder.net.{i}.mlp3.linear1"] = l1
        expected[f"encoder.net.{i}.mlp3.linear2"] = l2
    nn.Linear(32, 7)  # head: default init drawn, then zeroed
    for m in (conv, pre_logits):
        fan_in = m.weight[0].numel()
        std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
        nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
    expected["conv_patch_extract"], expected["pre_logits"] = conv, pre_logits
    params = dict(model.named_parameters())
    for prefix, m in expected.items():
        assert torch.equal(params[f"{prefix}.weight"], m.weight), prefix


def test_posemb_matches_formula():
    pe = posemb_sincos_2d(2, 3, 8)  # [1, 6, 8]
    omega = 1.0 / 10_000 ** (torch.arange(2) / 1)
    y, x = 1, 2  # token 5 = row 1, column 2
    want = torch.cat(
        [torch.sin(x * omega), torch.cos(x * omega), torch.sin(y * omega), torch.cos(y * omega)]
    )
    torch.testing.assert_close(pe[0, 5], want)
