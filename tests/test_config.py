"""Every workload x optimizer composes; bad names and keys fail at start-up with the valid ones."""

from __future__ import annotations

import pytest
import torch
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


@pytest.mark.parametrize(
    "override,message",
    [
        ("workload=nosuch", "unknown workload 'nosuch'; valid names: cifar, "),
        ("optimizer=nosuch", "unknown optimizer 'nosuch'; valid names: adafactor, adamw,"),
        ("max_steps=abc", "max_steps='abc'; expected an integer or null"),
        ("resume=true", "holds no checkpoint_<step> file: nothing to resume"),
    ],
)
def test_start_up_errors_exit_2_and_print_the_message_once(tmp_path, override, message):
    # The first two fail before Hydra starts, the others inside the Hydra job (whose log file
    # also keeps the record); either way the console shows one "error: ..." line.
    proc = run_cli([override, f"experiment_dir={tmp_path}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert (proc.stdout + proc.stderr).count(message) == 1, proc.stdout + proc.stderr
    if override.startswith(("max_steps", "resume")):
        (job_log,) = tmp_path.glob("*/*/trial_1/__main__.log")
        assert message in job_log.read_text()


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


def test_dataclass_default_workload_keys_can_be_set_from_the_command_line():
    # fast_kernels and compile_cpu are in few or no YAMLs; Hydra only takes them with ``++``.
    assert preprocess_overrides(
        ["workload=digits", "workload.fast_kernels=false", "workload.eval_period=5", "seed=1"]
    ) == ["workload=digits", "++workload.fast_kernels=false", "++workload.eval_period=5", "seed=1"]
    proc = run_cli(
        ["workload=digits", "workload.fast_kernels=false", "workload.compile_cpu=model"]
        + ["--cfg", "job"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fast_kernels: false" in proc.stdout and "compile_cpu: model" in proc.stdout


def test_compile_cpu_is_the_choice_on_cpu_only():
    import dataclasses

    from algoperf_torch.workloads.__main__ import load_config

    plain = dataclasses.replace(load_config("digits"), compile="model", compile_cpu=None)
    assert plain.compile_choice("cpu") == plain.compile_choice("cuda") == "model"
    split = dataclasses.replace(plain, compile_cpu="off")
    assert split.compile_choice("cpu") == "off"
    assert split.compile_choice(torch.device("cuda", 0)) == "model"
    with pytest.raises(ValueError, match=r"compile_cpu='eager'; expected null or one of \("):
        dataclasses.replace(plain, compile_cpu="eager")


def test_maybe_compile_follows_the_device_choice():
    import dataclasses

    from algoperf_torch.distributed import DistInfo
    from algoperf_torch.runner import maybe_compile
    from algoperf_torch.workload import Workload
    from algoperf_torch.workloads import get_workload_functions
    from algoperf_torch.workloads.__main__ import load_config

    config = load_config("digits")
    model = torch.nn.Linear(2, 2)
    for compile_cpu, compiled in ((None, True), ("off", False)):
        c = dataclasses.replace(config, compile="model", compile_cpu=compile_cpu)
        w = Workload(c, get_workload_functions(c.impl), DistInfo(device=torch.device("cpu")))
        out = maybe_compile(model, w)  # torch.compile is lazy: nothing compiles here
        assert isinstance(out, torch._dynamo.eval_frame.OptimizedModule) is compiled
