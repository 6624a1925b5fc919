"""Plan the trials of a tuning study set: directories, seeds, hyperparameter points, overrides.

    python -m algoperf_torch -m workload=digits optimizer=nadamw tuning=external \
        tuning.num_studies=2 tuning.num_trials=2     # the sweeper plugin runs this plan

Layout as the reference's organisers write it [scoring/utils/run_workloads.py; RULES.md §2.9]:
`<experiment_dir>/<name>/study_<j>/<workload>_pytorch/trial_<i>/` with `j` from 0 and `i` from
1; the runner is told `experiment_name=<name>/study_<j>` and `trial_index=<i>`.

External tuning: every study runs the same `num_trials` points of the search space (the
reference's `generate_search(space, num_trials)` returns the same set in every study; RULES.md
§3.1), in an order shuffled by the study's seed instead of the reference's unseeded global RNG.
A list-form space runs its first `num_trials` points in file order. Self-tuning: one trial per
study and no hyperparameters. Each trial's seed is derived from (`seed`, study, trial), so a
re-run reproduces it. A trial is complete when its directory holds `summary.json` (written last,
atomically, by the runner); re-running the same command skips complete trials.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from algoperf_torch.tuning.search_space import generate_search, load_search_space

COMPLETE_MARKER = "summary.json"
HPARAMS_FILE = "hparams.json"
RULESETS = ("external", "self")
# Files of an interrupted attempt that the runner would refuse to mix with a new one.
STALE_RESULT_FILES = ("eval_measurements.csv", "measurements.csv", "summary.json")
# Keys the plan sets per trial; a user override of them is replaced, not duplicated.
PLANNED_KEYS = ("experiment_name", "trial_index", "seed", "optimizer.hparams")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:+\-~]+$")


@dataclass(frozen=True)
class StudySpec:
    """What one study set needs, read from the composed config of one sweep combination."""

    experiment_dir: str
    experiment_name: str  # the study set's name; studies are `<name>/study_<j>`
    workload: str
    ruleset: str  # external | self
    num_studies: int
    num_trials: int
    seed: int
    search_space: str | None = None  # file (external); None for self-tuning
    overrides: tuple[str, ...] = ()  # the user's overrides of this combination


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of the plan."""

    study: int
    trial_index: int
    trial_dir: Path
    seed: int
    point: dict[str, Any] | None
    overrides: tuple[str, ...] = field(default=())


def trial_seed(seed: int, study: int, trial_index: int) -> int:
    """A trial's rng seed, a deterministic function of the base seed, study and trial.

    Args:
        seed: the configured `seed`.
        study: 0-based study number.
        trial_index: 1-based trial number.

    Returns:
        An int in [0, 2**31 - 1) (the reference's `rng_seed` range).
    """
    state = np.random.SeedSequence([int(seed) % 2**32, study, trial_index]).generate_state(1)
    return int(state[0]) % (2**31 - 1)


def study_order_seed(seed: int, study: int) -> int:
    """The seed that orders a study's points (trial 0 of the trial-seed stream)."""
    return trial_seed(seed, study, 0)


def quote_override_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged."""
    text = str(value)
    if _SAFE_VALUE.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def study_points(spec: StudySpec, study: int) -> list[dict[str, Any]] | list[None]:
    """The hyperparameter points of one study, in trial order (None per trial if self-tuning)."""
    if spec.ruleset == "self":
        return [None] * spec.num_trials
    if not spec.search_space:
        raise ValueError(
            "external tuning needs a search space: set optimizer.search_space=FILE "
            "(a name under algoperf_torch/optimizers/search_spaces/ or a path)"
        )
    space = load_search_space(spec.search_space)
    return generate_search(space, spec.num_trials, seed=study_order_seed(spec.seed, study))


def plan_study(spec: StudySpec) -> list[PlannedTrial]:
    """Every trial of the study set, with the overrides that launch it.

    Args:
        spec: the study set.

    Returns:
        Trials in launch order (study by study). A list-form space with fewer points than
        `num_trials` gives fewer trials, as in the reference.

    Raises:
        ValueError: unknown ruleset, non-positive counts, or external tuning without a space.
    """
    if spec.ruleset not in RULESETS:
        raise ValueError(f"tuning.ruleset is {spec.ruleset!r}; accepted: {list(RULESETS)}")
    for key in ("num_studies", "num_trials"):
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"tuning.{key} is {value!r}; accepted: a positive int")
    user = tuple(o for o in spec.overrides if _override_key(o) not in PLANNED_KEYS)
    trials = []
    for study in range(spec.num_studies):
        name = f"{spec.experiment_name}/study_{study}"
        for index, point in enumerate(study_points(spec, study), start=1):
            trial_dir = (
                Path(spec.experiment_dir).expanduser()
                / name
                / f"{spec.workload}_pytorch"
                / f"trial_{index}"
            )
            seed = trial_seed(spec.seed, study, index)
            planned = [
                f"experiment_name={quote_override_value(name)}",
                f"trial_index={index}",
                f"seed={seed}",
            ]
            if point is not None:
                planned.append(
                    f"optimizer.hparams={quote_override_value(trial_dir / HPARAMS_FILE)}"
                )
            trials.append(PlannedTrial(study, index, trial_dir, seed, point, (*user, *planned)))
    return trials


def is_complete(trial_dir: Path) -> bool:
    """A trial is complete when the runner has written its `summary.json`."""
    return (Path(trial_dir) / COMPLETE_MARKER).is_file()


def prepare_trial(trial: PlannedTrial) -> None:
    """Before (re-)launching an incomplete trial: drop an interrupted attempt's result files
    and write the point to `<trial_dir>/hparams.json` (atomically) for the runner to read."""
    trial.trial_dir.mkdir(parents=True, exist_ok=True)
    for name in STALE_RESULT_FILES:
        (trial.trial_dir / name).unlink(missing_ok=True)
    if trial.point is None:
        return
    path = trial.trial_dir / HPARAMS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(trial.point, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
