"""Every workload x optimizer composes; bad names and keys fail at start-up with the valid ones."""

from __future__ import annotations

import pytest
from conftest import compose_many, run_cli

from algoperf_torch.config_check import ConfigError, group_options, preprocess_overrides
from algoperf_torch.spec import WorkloadConfig


def test_every_workload_and_optimizer_compose():
    from algoperf_torch.optimizers import OPTIMIZERS
    from algoperf_torch.submission import OptimizerSubmission, load_hparams

    optimizers = [o for o in group_options("optimizer") if o != "file"]
    assert set(optimizers) == set(OPTIMIZERS)
    pairs = [(w, o) for w in group_options("workload") for o in optimizers]
    configs = compose_many([[f"workload={w}", f"optimizer={o}"] for w, o in pairs])
    for (workload, optimizer), cfg in zip(pairs, configs):
        config = WorkloadConfig.from_dict(dict(cfg.workload))
        assert config.name == workload
        sub = OptimizerSubmission(
            optimizer, load_hparams(dict(cfg.optimizer.hparams)), dict(cfg.optimizer.batch_sizes)
        )
        name = workload if workload in sub.batch_sizes else config.base or workload
        assert sub.get_batch_size(name) > 0, (workload, optimizer)


def test_unknown_workload_exits_nonzero_listing_valid_names():
    proc = run_cli(["workload=nosuch"])
    assert proc.returncode != 0
    assert "unknown workload 'nosuch'" in proc.stderr and "mnist" in proc.stderr


def test_unknown_optimizer_and_keys_list_valid_names():
    with pytest.raises(ConfigError, match="valid names: .*nadamw"):
        preprocess_overrides(["optimizer=nosuch"])
    with pytest.raises(ConfigError, match="valid top-level keys: .*max_steps"):
        preprocess_overrides(["max_stepz=3"])
    with pytest.raises(ConfigError, match="valid keys of workload: .*eval_period"):
        preprocess_overrides(["workload.eval_periodd=3"])


def test_variant_maps_to_the_reference_name():
    if "cifar" not in group_options("workload"):
        pytest.skip("no workload to test with")
    assert preprocess_overrides(["workload=mnist", "seed=1"]) == ["workload=mnist", "seed=1"]
    with pytest.raises(ConfigError, match="has no variant 'silu'"):
        preprocess_overrides(["workload=mnist", "variant=silu"])
    variants = [o for o in group_options("workload") if o.startswith("imagenet_resnet_")]
    if variants:
        v = variants[0][len("imagenet_resnet_") :]
        assert preprocess_overrides(["workload=imagenet_resnet", f"variant={v}"]) == [
            f"workload=imagenet_resnet_{v}"
        ]


def test_unknown_workload_yaml_key_is_an_error():
    with pytest.raises(ValueError, match="unknown key.*'colour'"):
        WorkloadConfig.from_dict({"name": "x", "colour": 1})


def test_overrides_keep_their_order_and_flags_pass_through():
    args = ["-m", "hydra/launcher=basic", "--cfg", "job", "workload=digits,mnist", "seed=2"]
    assert preprocess_overrides(args) == args


def test_values_of_the_wrong_type_name_their_key(tmp_path):
    from conftest import run_trial

    for override, message in (
        ("seed=abc", "seed='abc'; expected an integer"),
        ("max_steps=2.5", "max_steps=2.5; expected an integer or null"),
        ("resume=maybe", "resume='maybe'; expected true or false"),
    ):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            run_trial(tmp_path, [override])
