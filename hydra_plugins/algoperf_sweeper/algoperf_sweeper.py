"""Hydra sweeper that runs AlgoPerf tuning studies: `-m ... tuning=external|self`.

    python -m algoperf_torch -m workload=digits optimizer=nadamw tuning=external \
        tuning.num_studies=2 tuning.num_trials=2
    python -m algoperf_torch -m workload=digits optimizer=nadamw tuning=self
    python -m algoperf_torch -m workload=digits tuning=external hydra/launcher=submitit_local

For every combination of the command line's sweep overrides (`a=x,y` choices, as Hydra's basic
sweeper expands them) it composes the config, plans the study set with
`algoperf_torch.tuning.study.plan_study` (studies × trials, seeds, points), skips trials whose
directory already holds `summary.json`, writes `hparams.json` for the others and hands their
overrides to the configured launcher (basic, submitit_local, submitit_slurm, ...). Re-running the
same command therefore resumes an interrupted study set.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def expand_sweep(arguments: Sequence[str]) -> list[list[str]]:
    """The cartesian product of the command line's sweep overrides, as plain override lists.

    Args:
        arguments: the overrides after `-m` (e.g. `["workload=digits,mnist", "seed=1"]`).

    Returns:
        One list of single-valued overrides per combination.
    """
    parsed = OverridesParser.create().parse_overrides(overrides=list(arguments))
    per_key = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            if override.is_discrete_sweep():
                per_key.append([f"{key}={v}" for v in override.sweep_string_iterator()])
            else:
                raise ValueError(
                    f"{override.input_line!r}: only comma-separated choices can be swept here; "
                    "hyperparameters come from the optimizer's search space"
                )
        else:
            per_key.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(combo) for combo in itertools.product(*per_key)]


def spec_from_config(cfg: DictConfig, overrides: Sequence[str]):
    """A `StudySpec` from the composed config of one combination."""
    from algoperf_torch.tuning.study import StudySpec

    tuning = cfg.tuning
    return StudySpec(
        experiment_dir=str(cfg.experiment_dir),
        experiment_name=str(cfg.experiment_name),
        workload=str(cfg.workload.name),
        ruleset=str(tuning.ruleset),
        num_studies=int(tuning.num_studies),
        num_trials=int(tuning.num_trials),
        seed=int(cfg.seed),
        search_space=OmegaConf.select(cfg, "optimizer.search_space", default=None),
        overrides=tuple(overrides),
    )


class AlgoPerfSweeper(Sweeper):
    """Plans AlgoPerf studies and launches their incomplete trials."""

    def __init__(self, max_batch_size: int | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from algoperf_torch.tuning.study import is_complete, plan_study, prepare_trial

        assert self.config is not None and self.hydra_context is not None
        jobs = []
        for combo in expand_sweep(arguments):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(combo))
            spec = spec_from_config(cfg, combo)
            for trial in plan_study(spec):
                where = f"{spec.experiment_name}/study_{trial.study}/trial_{trial.trial_index}"
                if is_complete(trial.trial_dir):
                    log.info("%s: complete, skipped", where)
                    continue
                prepare_trial(trial)
                log.info("%s: seed %d, launching", where, trial.seed)
                jobs.append(list(trial.overrides))
        if not jobs:
            log.info("all trials complete; nothing to run")
            return []
        batch = self.max_batch_size or len(jobs)
        returns = []
        for start in range(0, len(jobs), batch):
            chunk = jobs[start : start + batch]
            returns.extend(self.launcher.launch(chunk, initial_job_idx=start))
        failed = [r for r in returns if getattr(r.status, "name", "") == "FAILED"]
        for r in failed:
            log.error("trial %s failed: %s", r.overrides, r._return_value)
        if failed:
            raise RuntimeError(
                f"{len(failed)} of {len(returns)} trials failed; re-run to retry them"
            )
        return returns
