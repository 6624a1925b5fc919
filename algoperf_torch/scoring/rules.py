"""The rules versions scoring knows: which workloads count, how many studies and trials.

    python -c "from algoperf_torch.scoring.rules import RULES; print(RULES['v0.5'])"

Membership of the benchmark (which workloads are scored, which variants were held out) is a
property of the rules version, not of a workload, so it lives here, as in the reference
[algoperf/workloads/workloads.py `BASE_WORKLOADS`; scoring/performance_profile.py `NUM_STUDIES`,
`NUM_TRIALS`; scoring/algoperf_v05/held_out_workloads_algoperf_v05.json]. Targets and budgets
come from the workload YAMLs (`targets.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BASE_WORKLOADS = (
    "criteo1tb",
    "fastmri",
    "imagenet_resnet",
    "imagenet_vit",
    "librispeech_conformer",
    "librispeech_deepspeech",
    "ogbg",
    "wmt",
)
# Sampled after the v0.5 submission deadline (seed 3438810845) [RULES.md §4.3].
HELD_OUT_V05 = (
    "librispeech_conformer_layernorm",
    "imagenet_resnet_large_bn_init",
    "ogbg_model_size",
    "wmt_glu_tanh",
    "fastmri_tanh",
    "criteo1tb_embed_init",
)


@dataclass(frozen=True)
class Rules:
    """One rules version's scoring constants."""

    name: str
    base_workloads: tuple[str, ...]
    held_out_workloads: tuple[str, ...]
    num_studies: int
    num_trials: int
    self_tuning_budget_factor: float
    max_tau: float = 4.0  # ratios above this count as not solved [scoring/score_submissions.py]
    num_tau_points: int = 100

    def tau_grid(self) -> np.ndarray:
        """The τ points of the performance profile: `linspace(1, max_tau, 100)`."""
        return np.linspace(1.0, self.max_tau, self.num_tau_points)


RULES = {
    "v0.6": Rules(
        "v0.6", BASE_WORKLOADS, (), num_studies=3, num_trials=5, self_tuning_budget_factor=1.5
    ),
    # The rolling leaderboard after finewebedu_lm joined: nine base workloads, so a profile's
    # fraction divides by 9 [submissions_algorithms scoring/workload_targets.json; RULES.md §4.5].
    "v0.6-lm": Rules(
        "v0.6-lm",
        (*BASE_WORKLOADS, "finewebedu_lm"),
        (),
        num_studies=3,
        num_trials=5,
        self_tuning_budget_factor=1.5,
    ),
    "v0.5": Rules(
        "v0.5",
        BASE_WORKLOADS,
        HELD_OUT_V05,
        num_studies=5,
        num_trials=5,
        self_tuning_budget_factor=3.0,
    ),
}
