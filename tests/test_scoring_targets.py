"""Scoring knows the targets of every reference workload, from one place each."""

from __future__ import annotations

from algoperf_torch.scoring.rules import RULES
from algoperf_torch.scoring.targets import (
    TARGET_ONLY_CONF_DIR,
    WORKLOAD_CONF_DIR,
    load_workload_targets,
)


def test_every_base_and_held_out_workload_has_a_target():
    targets, problems = load_workload_targets()
    assert not problems
    for rules in RULES.values():
        for name in (*rules.base_workloads, *rules.held_out_workloads):
            assert name in targets, f"{rules.name}: no target for {name}"


def test_a_workload_is_defined_in_one_folder_only():
    built = {p.stem for p in WORKLOAD_CONF_DIR.glob("*.yaml")}
    target_only = {p.stem for p in TARGET_ONLY_CONF_DIR.glob("*.yaml")}
    assert not built & target_only, "move the built workload's target out of conf/targets/"


def test_reference_values_spot_check():
    # RULES.md §2.12.
    targets, _ = load_workload_targets()
    assert targets["wmt"].validation_target == 30.8491 and not targets["wmt"].target_minimize
    assert targets["criteo1tb"].target_minimize and targets["criteo1tb"].max_runtime == 7703
    assert targets["fastmri"].budget("v0.5", self_tuning=False) == 8859
    assert targets["ogbg_silu"].max_runtime == 12011  # a variant inherits its base's budget
