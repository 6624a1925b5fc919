"""Scoring knows the targets of every reference workload, from one place each."""

from __future__ import annotations

from algoperf_torch.scoring.rules import RULES
from algoperf_torch.scoring.targets import (
    load_workload_targets,
)


def test_every_base_and_held_out_workload_has_a_target():
    targets, problems = load_workload_targets()
    assert not problems
    for rules in RULES.values():
        for name in (*rules.base_workloads, *rules.held_out_workloads):
            assert name in targets, f"{rules.name}: no target for {name}"


def test_reference_values_spot_check():
    # RULES.md §2.12.
    targets, _ = load_workload_targets()
    assert targets["wmt"].validation_target == 30.8491 and not targets["wmt"].target_minimize
    assert targets["criteo1tb"].target_minimize and targets["criteo1tb"].max_runtime == 7703
    assert targets["fastmri"].budget("v0.5", self_tuning=False) == 8859
    assert targets["ogbg_silu"].max_runtime == 12011  # a variant inherits its base's budget


def test_nine_workload_rules_divide_by_nine():
    # A solves all nine workloads fastest; B equals A except that it never solves finewebedu_lm:
    # B's profile is 8/9 at every tau, so its score is 8/9. Under v0.6 (eight base workloads)
    # finewebedu_lm is not scored and B ties A at 1.
    import numpy as np
    import pandas as pd

    from algoperf_torch.scoring.scores import (
        apply_budget_rules,
        benchmark_scores,
        performance_profiles,
        performance_ratios,
    )

    nine = RULES["v0.6-lm"].base_workloads
    assert len(nine) == 9 and nine[-1] == "finewebedu_lm"
    times = pd.DataFrame({w: [10.0, 10.0] for w in nine}, index=["A", "B"])
    times.loc["B", "finewebedu_lm"] = np.inf
    for rules, expected_b in (("v0.6-lm", 8 / 9), ("v0.6", 1.0)):
        base = list(RULES[rules].base_workloads)
        ratios = performance_ratios(apply_budget_rules(times, base, {}))
        scores = benchmark_scores(performance_profiles(ratios, RULES[rules].tau_grid(), len(base)))
        assert scores["A"] == 1.0 and abs(scores["B"] - expected_b) < 1e-12, rules
