"""The workload registry, the YAML files and the listing CLI agree (STYLE.md rule 4)."""

from __future__ import annotations

import json

import pytest

from algoperf_torch.workloads import WORKLOADS, get_workload_functions
from algoperf_torch.workloads.__main__ import load_config, main, meta_model, workload_names

# Parameter counts of the reference PyTorch models (WORKLOADS.md §0), for every registered
# workload whose YAML is present.
EXPECTED_PARAMS = {
    "mnist": 101_770,
    "cifar": 11_173_962,
    "imagenet_resnet": 25_557_032,
    "imagenet_vit": 22_122_472,
    "criteo1tb": 539_267_457,
    "wmt": 133_521_408,
}


def test_every_yaml_names_registered_code_and_itself():
    for name in workload_names():
        config = load_config(name)
        assert config.name == name, f"{name}.yaml says name: {config.name}"
        assert config.impl in WORKLOADS, f"{name}.yaml: impl {config.impl} is not registered"
        if config.base is not None:
            assert config.base in workload_names(), f"{name}: base {config.base} has no YAML"


def test_every_registered_workload_has_its_yaml():
    assert set(WORKLOADS) <= set(workload_names())


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts_match_the_reference(name):
    if name not in workload_names():
        pytest.skip(f"{name} not built yet")
    assert sum(p.numel() for p in meta_model(name).parameters()) == EXPECTED_PARAMS[name]


def test_unknown_code_lists_registered_names():
    with pytest.raises(KeyError, match="registered: .*mnist"):
        get_workload_functions("nosuch")


def test_listing_json(capsys):
    assert main(["--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"digits", "mnist", "cifar"} <= set(rows)
    mnist = rows["mnist"]
    assert mnist["params"] == 101_770
    assert {
        k: mnist[k] for k in ("target_metric", "validation_target", "test_target", "max_runtime")
    } == {
        "target_metric": "accuracy",
        "validation_target": 0.97,
        "test_target": 0.97,
        "max_runtime": 60,
    }
    assert {
        "name",
        "params",
        "target_metric",
        "validation_target",
        "test_target",
        "max_runtime",
    } <= set(mnist)


def test_listing_table_and_shapes(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "101,770" in out and "11,173,962" in out
    assert main(["--shapes", "mnist", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        ["net.layer1.weight", [128, 784]],
        ["net.layer1.bias", [128]],
        ["net.layer2.weight", [10, 128]],
        ["net.layer2.bias", [10]],
    ]
    assert main(["--shapes", "nosuch"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_mnist_reinit_is_in_place_without_reseeding():
    # WORKLOADS.md §10: a second init_model_fn re-initialises the same module (LeCun normal,
    # zero bias) without re-seeding, and returns it.
    import torch

    from algoperf_torch.distributed import DistInfo
    from algoperf_torch.workload import Workload

    w = Workload(load_config("mnist"), get_workload_functions("mnist"), DistInfo())
    first, _ = w.init_model_fn([0, 0])
    default_init = first.net.layer1.weight.detach().clone()
    second, _ = w.init_model_fn([1, 1])
    assert second is first
    assert not torch.equal(second.net.layer1.weight, default_init)
    assert torch.count_nonzero(second.net.layer1.bias) == 0
    bound = 2 * (1 / 784) ** 0.5 / 0.87962566103423978
    assert second.net.layer1.weight.abs().max() <= bound + 1e-6
