"""Hydra entry point: the only code that sees the whole config.

    python -m algoperf_torch                                   # embedded default: digits + NAdamW
    python -m algoperf_torch workload=mnist optimizer=adamw data.data_dir=~/data
    python -m algoperf_torch workload=imagenet_resnet variant=silu   # = workload=imagenet_resnet_silu
    python -m algoperf_torch optimizer=file optimizer.path=sub.py optimizer.hparams=point.json
    torchrun --standalone --nproc_per_node=2 -m algoperf_torch max_steps=100
    python -m algoperf_torch --help                            # Hydra's help: groups and options

Each config group is turned into its typed object here and handed to the component that owns it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from algoperf_torch import config_check

log = logging.getLogger("algoperf_torch")

RESULT_FILES = ("eval_measurements.csv", "measurements.csv", "summary.json")
"""Files whose presence means the trial directory holds an earlier run's results."""


def trial_dir_of(cfg: Any) -> str:
    """``<experiment_dir>/<experiment_name>/<workload>_pytorch/trial_<k>`` (RULES.md §2.9)."""
    return os.path.join(
        os.path.expanduser(str(cfg.experiment_dir)),
        str(cfg.experiment_name),
        f"{cfg.workload.name}_pytorch",
        f"trial_{int(cfg.trial_index)}",
    )


def prepare_trial_dir(
    trial_dir: str, overwrite: bool, resume: bool = False, max_steps: int | None = None
) -> None:
    """Refuse to mix two runs' results in one trial directory, unless told to overwrite or resume.

    Checkpoints left without any results (an attempt whose CSVs were dropped) are removed.

    ``resume`` continues a trial from its newest checkpoint: refused when there is none, or when
    its ``summary.json`` says it ended for a reason a resume cannot change (targets reached,
    budget spent, diverged, the submission ended it); a trial stopped by ``max_steps`` continues
    with a higher ``max_steps``. Its ``summary.json`` is then removed and rewritten at the end.
    """
    if resume:
        _check_resumable(trial_dir, overwrite, max_steps)
        return
    from algoperf_torch.checkpoint import list_checkpoints

    existing = [f for f in RESULT_FILES if os.path.exists(os.path.join(trial_dir, f))]
    checkpoints = [path for _, path in list_checkpoints(trial_dir)]
    if not existing:
        # Checkpoints without results belong to a discarded attempt (the study sweeper drops an
        # interrupted trial's CSVs); a later resume=true must not pick them up.
        for path in checkpoints:
            log.warning("removing %s, left by an earlier attempt without results", path)
            os.unlink(path)
        return
    if not overwrite:
        hint = " or resume=true to continue the trial" if checkpoints else ""
        raise config_check.ConfigError(
            f"{trial_dir} already holds results ({', '.join(existing)}); pass overwrite=true to "
            f"replace them{hint}, or choose another experiment_name=… or trial_index=…"
        )
    for name in os.listdir(trial_dir):
        if name == ".hydra" or name.endswith(".log"):
            continue
        path = os.path.join(trial_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


def _check_resumable(trial_dir: str, overwrite: bool, max_steps: int | None) -> None:
    from algoperf_torch.checkpoint import list_checkpoints

    if overwrite:
        raise config_check.ConfigError(
            "resume=true continues the trial and overwrite=true deletes it; pass one of them"
        )
    found = list_checkpoints(trial_dir)
    if not found:
        raise config_check.ConfigError(
            f"resume=true but {trial_dir} holds no checkpoint_<step> file: nothing to resume "
            "(a trial saves checkpoints only when run with checkpoint=true)"
        )
    complete = list_checkpoints(trial_dir, complete=True)
    step = complete[-1][0] if complete else 0  # a half-written newest one does not count
    summary_path = os.path.join(trial_dir, "summary.json")
    if os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            reason = json.load(f).get("stop_reason")
        if reason != "max_steps":
            raise config_check.ConfigError(
                f"trial already complete: {trial_dir} ended with stop_reason={reason!r}; only a "
                "trial stopped by max_steps (or killed) can be resumed. Pass overwrite=true to "
                "start it again, or choose another trial_index=…"
            )
    if max_steps is not None and step >= max_steps:
        raise config_check.ConfigError(
            f"the newest complete checkpoint of {trial_dir} is at step {step} and max_steps={max_steps}: "
            "raise max_steps to continue the trial"
        )
    if os.path.exists(summary_path):
        os.unlink(summary_path)


def build_submission(opt_cfg: dict[str, Any], ruleset: str):
    """(submission, hyperparameters namedtuple or None, the point as a dict or None).

    For our optimizers a point read from a file (a search-space point, as the sweeper passes
    it) is laid over the optimizer YAML's ``hparams``, which so supply every setting the search
    space does not tune (e.g. Shampoo's ``mode``). A submission file gets exactly the file's point.
    """
    from algoperf_torch.submission import (
        OptimizerSubmission,
        load_hparams,
        load_submission,
        make_hyperparameters,
    )

    configured = opt_cfg.get("hparams")
    point = load_hparams(configured)
    if opt_cfg["name"] == "file":
        if not opt_cfg.get("path"):
            raise config_check.ConfigError(
                "optimizer=file needs optimizer.path=PATH/TO/submission.py"
            )
        submission = load_submission(opt_cfg["path"])
        if ruleset == "self":
            point = None
    else:
        defaults = None if isinstance(configured, Mapping) else optimizer_yaml_hparams(opt_cfg)
        submission = OptimizerSubmission(
            opt_cfg["name"], point, opt_cfg.get("batch_sizes") or {}, default_hparams=defaults
        )
        point = submission.hparams if ruleset == "external" else None
    hparams = make_hyperparameters(point) if point is not None else None
    return submission, hparams, point


def optimizer_yaml_hparams(opt_cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``hparams`` of ``conf/optimizer/<name>.yaml`` (before command-line overrides)."""
    from omegaconf import OmegaConf

    path = os.path.join(config_check.CONF_DIR, "optimizer", f"{opt_cfg['name']}.yaml")
    return OmegaConf.to_container(OmegaConf.load(path).hparams, resolve=True)


def run(cfg: Any) -> dict[str, Any]:
    """One trial from a composed config; returns the trial summary (rank 0) or {}."""
    from omegaconf import OmegaConf

    from algoperf_torch.distributed import setup_distributed, teardown_distributed
    from algoperf_torch.logs import TrialLog
    from algoperf_torch.progress import Progress
    from algoperf_torch.runner import Trial
    from algoperf_torch.spec import WorkloadConfig
    from algoperf_torch.timing import Clock
    from algoperf_torch.workload import Workload
    from algoperf_torch.workloads import get_workload_functions

    resolved = OmegaConf.to_container(cfg, resolve=True)
    settings = run_settings(cfg)
    if _boolean(cfg, "retain_host_memory"):
        from algoperf_torch.host_memory import retain_freed_memory

        retain_freed_memory()
    wl_config = WorkloadConfig.from_dict(resolved["workload"]).for_rules(settings.rules)
    functions = get_workload_functions(wl_config.impl)
    data_cfg = resolved["data"]
    dist_info = setup_distributed(str(cfg.device))
    if not dist_info.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        trial_dir = trial_dir_of(cfg)
        # Read the hyperparameters first: they may come from this trial's own hparams.json.
        submission, hparams, point = build_submission(resolved["optimizer"], settings.ruleset)
        if dist_info.is_main:
            prepare_trial_dir(trial_dir, bool(cfg.overwrite), settings.resume, settings.max_steps)
        workload = Workload(
            wl_config,
            functions,
            dist_info,
            data_dir=os.path.expanduser(str(data_cfg["data_dir"])),
            synthetic=data_cfg["kind"] == "synthetic",
            num_workers=int(data_cfg["num_workers"]),
            synthetic_eval_examples=data_cfg.get("synthetic_eval_examples"),
        )
        trial_log = TrialLog(trial_dir, enabled=dist_info.is_main)
        tracker = _make_tracker(resolved, trial_dir) if dist_info.is_main else None
        progress = Progress(str(cfg.progress), enabled=dist_info.is_main)
        trial = Trial(
            workload, submission, hparams, settings, trial_log, Clock(dist_info), progress, tracker
        )  # with resume=true this reads the checkpoint, so the preemption count is known
        write_start_files(
            trial_log,
            trial.preemption_count,
            point,
            resolved,
            wl_config,
            settings,
            dist_info,
            workload.meta_data(),
        )
        with progress:
            result = trial.run()
        summary = {
            "workload": wl_config.name,
            "optimizer": resolved["optimizer"]["name"],
            "seed": settings.seed,
            "trial_dir": trial_dir,
            **result.summary(),
        }
        trial_log.write_json("summary.json", summary)
        if tracker is not None:
            tracker.finish(summary)
        if dist_info.is_main:
            _report(summary, wl_config)
        return summary if dist_info.is_main else {}
    finally:
        teardown_distributed(dist_info)


def run_settings(cfg: Any):
    """The runner's typed slice of the config; a value of the wrong type names its key."""
    from algoperf_torch.runner import RunSettings

    return RunSettings(
        seed=_integer(cfg, "seed"),
        ruleset=str(cfg.tuning.ruleset),
        rules=str(cfg.rules),
        max_steps=_integer(cfg, "max_steps", optional=True),
        batch_size=_integer(cfg, "batch_size", optional=True),
        skip_evals=_boolean(cfg, "skip_evals"),
        checkpoint=_boolean(cfg, "checkpoint"),
        checkpoint_keep=_integer(cfg, "checkpoint_keep", optional=True),
        resume=_boolean(cfg, "resume"),
    )


def _integer(cfg: Any, key: str, optional: bool = False) -> int | None:
    value = cfg[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        accepted = "an integer or null" if optional else "an integer"
        raise config_check.ConfigError(f"{key}={value!r}; expected {accepted}")
    return value


def _boolean(cfg: Any, key: str) -> bool:
    value = cfg[key]
    if not isinstance(value, bool):
        raise config_check.ConfigError(f"{key}={value!r}; expected true or false")
    return value


def write_start_files(
    trial_log, preemption_count, point, resolved, wl_config, settings, dist_info, workload_meta=None
) -> None:
    """``hparams.json``, ``flags_<n>.json`` and ``meta_data_<n>.json`` (RULES.md §2.9)."""
    from algoperf_torch.logs import meta_data

    n = preemption_count
    if point is not None:
        trial_log.write_json("hparams.json", point)
    trial_log.write_json(f"flags_{n}.json", resolved)
    extra = {
        "world_size": dist_info.world_size,
        "device": str(dist_info.device),
        "batch_size_override": settings.batch_size,
        "rules": settings.rules,
        "ruleset": settings.ruleset,
        "data": resolved["data"]["kind"],
        **(workload_meta or {}),
    }
    trial_log.write_json(
        f"meta_data_{n}.json", meta_data(_workload_attrs(wl_config), settings.seed, extra)
    )


def _workload_attrs(config: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(config).items() if isinstance(v, (int, float, str, bool))}


def _make_tracker(resolved: dict[str, Any], trial_dir: str):
    logger_cfg = dict(resolved["logger"])
    if logger_cfg.pop("kind") != "wandb":
        return None
    from algoperf_torch.tracking import WandbRun, WandbSettings

    logger_cfg["tags"] = tuple(logger_cfg.get("tags") or ())
    name = f"{resolved['experiment_name']}/{resolved['workload']['name']}/trial_{resolved['trial_index']}"
    return WandbRun(WandbSettings(**logger_cfg), name, resolved, trial_dir)


def _report(summary: dict[str, Any], wl: Any) -> None:
    op = "<" if wl.target_minimize else ">"
    op += "=" if wl.target_inclusive else ""
    target = f"validation {wl.target_metric} {op} {wl.validation_target}"
    if summary["time_to_target"] is not None:
        outcome = f"reached {target} in {summary['time_to_target']:.2f} s of submission time"
    elif summary["diverged"]:
        outcome = f"diverged (non-finite metric) before reaching {target}"
    else:
        outcome = f"did not reach {target} (budget {summary['budget']:.0f} s)"
    print(
        f"{wl.name}: {outcome}; {summary['global_step']} steps, "
        f"{summary['accumulated_submission_time']:.2f} s submission time, "
        f"{summary['accumulated_eval_time']:.2f} s eval time.\n"
        f"Logs: {summary['trial_dir']}",
        flush=True,
    )


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _log_to_files_only(message: str) -> None:
    """Record an error in the job's log file, but not on the console (``error: ...`` is printed).

    Hydra's console handler writes to stdout: logging the error there as well as printing it
    showed every start-up error twice.
    """
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def main() -> None:
    """Check the command line, then hand it to Hydra."""
    try:
        sys.argv = [sys.argv[0], *config_check.preprocess_overrides(sys.argv[1:])]
    except config_check.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

    import hydra

    @hydra.main(config_path="conf", config_name="config", version_base=None)
    def _hydra_main(cfg) -> dict[str, Any]:
        try:
            return run(cfg)
        except (config_check.ConfigError, ValueError, KeyError, FileNotFoundError) as e:
            if _in_multirun():
                log.error("%s: %s", type(e).__name__, e)
                raise  # the study sweeper records the failed trial and runs the others
            _log_to_files_only(f"{type(e).__name__}: {e}")
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    _hydra_main()


if __name__ == "__main__":
    main()
