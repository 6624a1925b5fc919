"""One trial, timed exactly as the reference's ``submission_runner.py`` times it (RULES.md §2).

On the clock: ``data_selection``, ``update_params``, ``prepare_for_eval``, the loop's own
overhead and lazy work such as ``torch.compile`` tracing in the first steps. Off the clock:
pipeline, model and optimizer construction before the start, evaluation, logging and
checkpointing. The clock syncs the device and takes the max over ranks before every reading.
Evals follow the reference's cadence: after every step whose wall time since the end of the
last eval reached ``eval_period`` (so the first eval follows step 1), and after the last step.
With ``checkpoint`` a checkpoint follows every eval and the last step; with ``resume`` the trial
continues from its newest usable checkpoint (RULES.md §2.10) exactly as if it had never stopped:
weights, optimizer, every rank's RNG and input-pipeline states are restored, the CSVs are cut
back to the rows they had at that checkpoint, and evals never move the training RNGs.

    python -m algoperf_torch workload=digits optimizer=nadamw
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from algoperf_torch import checkpoint, global_rng
from algoperf_torch import rng as prng
from algoperf_torch.distributed import all_gather_object
from algoperf_torch.evaluation import evaluate
from algoperf_torch.logs import MetricsLogger, TrialLog
from algoperf_torch.progress import Progress, Snapshot
from algoperf_torch.spec import StatefulIterator, TrainingCompleteError
from algoperf_torch.timing import Clock, TrainState, eval_due
from algoperf_torch.workload import Workload

log = logging.getLogger("algoperf_torch")

SELF_TUNING_BUDGET_FACTOR = {"v0.6": 1.5, "v0.5": 3.0}


@dataclass(frozen=True)
class RunSettings:
    """How one trial runs (the runner's slice of the config).

    Args:
        seed: the trial's rng seed (the reference's ``rng_seed``).
        ruleset: ``external`` or ``self`` (budget x1.5 in v0.6, x3 in v0.5; no hparams).
        rules: ``v0.6`` or ``v0.5``.
        max_steps: end the trial after this many steps (``None``: no cap).
        batch_size: override the submission's global batch size (development).
        skip_evals: never evaluate.
        checkpoint: save a checkpoint after every eval and at the end (``--save_checkpoints``).
        checkpoint_keep: keep only this many newest checkpoints (``None``: all).
        resume: continue the trial from the newest checkpoint in its directory
            (``--resume_last_run``).
    """

    seed: int = 0
    ruleset: str = "external"
    rules: str = "v0.6"
    max_steps: int | None = None
    batch_size: int | None = None
    skip_evals: bool = False
    checkpoint: bool = False
    checkpoint_keep: int | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.ruleset not in ("external", "self"):
            raise ValueError(f"ruleset={self.ruleset!r}; expected external or self")
        if self.rules not in SELF_TUNING_BUDGET_FACTOR:
            raise ValueError(f"rules={self.rules!r}; expected one of v0.6, v0.5")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps}; expected a positive integer or null")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}; expected a positive integer or null")
        if self.checkpoint_keep is not None and self.checkpoint_keep < 1:
            raise ValueError(
                f"checkpoint_keep={self.checkpoint_keep}; expected a positive integer or null (all)"
            )

    def budget(self, max_runtime: float) -> float:
        if self.ruleset == "external":
            return float(max_runtime)
        return SELF_TUNING_BUDGET_FACTOR[self.rules] * float(max_runtime)


@dataclass
class TrialResult:
    """What a trial produced; ``time_to_target`` is None if the target was never reached."""

    state: TrainState
    eval_results: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    global_batch_size: int = 0
    budget: float = 0.0
    time_to_target: float | None = None
    """Submission time at the first eval whose validation metric beat the target."""
    max_steps: int | None = None

    def stop_reason(self) -> str:
        """Why the trial ended: targets, budget, diverged, max_steps or submission."""
        s = self.state
        if s.diverged:
            return "diverged"
        if s.validation_goal_reached and s.test_goal_reached:
            return "targets"
        if not s.is_time_remaining:
            return "budget"
        if self.max_steps is not None and s.global_step >= self.max_steps:
            return "max_steps"
        return "submission"  # it raised TrainingCompleteError

    def summary(self) -> dict[str, Any]:
        s = self.state
        return {
            "reached_validation_target": s.validation_goal_reached,
            "reached_test_target": s.test_goal_reached,
            "time_to_target": self.time_to_target,
            "accumulated_submission_time": s.accumulated_submission_time,
            "accumulated_eval_time": s.accumulated_eval_time,
            "accumulated_logging_time": s.accumulated_logging_time,
            "global_step": s.global_step,
            "num_evals": len(self.eval_results),
            "budget": self.budget,
            "global_batch_size": self.global_batch_size,
            "diverged": s.diverged,
            "stop_reason": self.stop_reason(),
        }


def global_batch_size(submission: Any, workload: Workload, settings: RunSettings) -> int:
    """The submission's batch size (variant name first, then the base), or the override."""
    if settings.batch_size is not None:
        return settings.batch_size
    try:
        return int(submission.get_batch_size(workload.config.name))
    except ValueError:
        if workload.config.base is None:
            raise
        return int(submission.get_batch_size(workload.config.base))


def trial_rng(settings: RunSettings) -> Any:
    """The trial's root key: external ``split(PRNGKey(seed), 2)[0]``; self ``PRNGKey(seed)``."""
    key = prng.prng_key(settings.seed)
    return prng.split(key, 2)[0] if settings.ruleset == "external" else key


def maybe_compile(model: torch.nn.Module, workload: Workload) -> torch.nn.Module:
    """Apply the workload's ``compile:`` choice (``off``, ``model``, ``model_and_loss``) for its
    device: on CPU ``compile_cpu`` where the YAML sets one."""
    choice = workload.config.compile_choice(workload.dist.device)
    if choice == "off":
        return model
    if choice == "model_and_loss":
        workload.compile_loss()
    return torch.compile(model)


class Trial:
    """Runs one trial: setup, the timed loop, untimed evals, stop at target or budget.

    Args:
        workload: the bound workload.
        submission: any object or module with the reference submission API.
        hparams: the ``Hyperparameters`` namedtuple handed to the submission (None: self-tuning).
        settings: seeds, ruleset, caps.
        trial_log: where rank 0 writes the trial's files.
        clock: the synchronised time source (tests inject a fake one).
        progress: the live display.
        tracker: receives each eval row and the submission's logged scalars (e.g. W&B).

    With ``settings.resume`` the newest checkpoint of ``trial_log.trial_dir`` is read here (every
    rank reads it), so ``preemption_count`` is known before the run starts.
    """

    def __init__(
        self,
        workload: Workload,
        submission: Any,
        hparams: Any,
        settings: RunSettings,
        trial_log: TrialLog,
        clock: Clock,
        progress: Progress | None = None,
        tracker: Any = None,
    ) -> None:
        self.workload = workload
        self.submission = submission
        self.hparams = hparams
        self.settings = settings
        self.log = trial_log
        self.clock = clock
        self.progress = progress or Progress("off")
        self.tracker = tracker
        self.budget = settings.budget(workload.config.max_runtime)
        self._resume_from: checkpoint.Checkpoint | None = None
        self.preemption_count = 0
        if settings.resume:
            self._resume_from = checkpoint.load_latest(trial_log.trial_dir)
            self.preemption_count = self._resume_from.preemption_count + 1

    def run(self) -> TrialResult:
        w, sub, settings = self.workload, self.submission, self.settings
        batch_size = global_batch_size(sub, w, settings)
        data_rng, opt_init_rng, model_init_rng, rng = prng.split(trial_rng(settings), 4)
        self.data_seed = int(data_rng[0])
        input_queue = w._build_input_queue(data_rng, "train", w.data_dir, batch_size)
        if settings.checkpoint and not isinstance(input_queue, StatefulIterator):
            raise TypeError(
                f"workload {w.config.name}: its train pipeline ({type(input_queue).__name__}) has "
                "no state_dict()/load_state_dict(), so checkpoint=true could not resume it "
                "exactly (spec.StatefulIterator)"
            )
        self.input_queue = input_queue
        model, model_state = w.init_model_fn(model_init_rng)
        model = maybe_compile(model, w)
        if self.log.enabled:
            sinks = [self.tracker] if self.tracker is not None else []
            w.metrics_logger = MetricsLogger(self.log.measurements, sinks)
        opt_state = sub.init_optimizer_state(w, model, model_state, self.hparams, opt_init_rng)
        prepare_for_eval = getattr(sub, "prepare_for_eval", None)
        result = TrialResult(
            TrainState(),
            global_batch_size=batch_size,
            budget=self.budget,
            max_steps=settings.max_steps,
        )
        if self._resume_from is not None:
            opt_state, model_state = self._restore(model, opt_state, result)
        state = result.state
        wants_train_state = _accepts(sub.update_params, "train_state")

        self._start = state.last_step_end_time = self.clock()
        while (
            state.is_time_remaining
            and not (state.validation_goal_reached and state.test_goal_reached)
            and not state.training_complete
        ):
            step = state.global_step
            data_select_rng, update_rng, prep_eval_rng, _ = prng.split(prng.fold_in(rng, step), 4)
            batch = sub.data_selection(
                w, input_queue, opt_state, model, model_state, self.hparams, step, data_select_rng
            )
            try:
                opt_state, model, model_state = sub.update_params(
                    **self._api_args(model, model_state, opt_state, result, step, update_rng),
                    batch=batch,
                    **({"train_state": state.reference_view()} if wants_train_state else {}),
                )
            except TrainingCompleteError:
                state.training_complete = True
            del batch
            state.global_step += 1
            if settings.max_steps is not None and state.global_step == settings.max_steps:
                state.training_complete = True
            now = self.clock()
            state.accumulated_submission_time += now - state.last_step_end_time

            if not settings.skip_evals and eval_due(state, now, w.config.eval_period):
                if prepare_for_eval is not None:
                    t0 = self.clock()
                    opt_state, model, model_state = prepare_for_eval(
                        **self._api_args(
                            model, model_state, opt_state, result, state.global_step, prep_eval_rng
                        )
                    )
                    state.accumulated_submission_time += self.clock() - t0
                state.is_time_remaining = state.accumulated_submission_time < self.budget
                if state.is_time_remaining:
                    self._eval_and_log(model, opt_state, model_state, state, result)
            self.progress.update(self._snapshot(state, result))
            state.last_step_end_time = self.clock()

        self.progress.update(self._snapshot(state, result), force=True)
        self._finish(model, opt_state, model_state, state, result)
        return result

    def _finish(
        self, model, opt_state, model_state, state: TrainState, result: TrialResult
    ) -> None:
        """The final ``{'score'}`` row of ``measurements.csv``, then the last checkpoint."""
        self.log.append_final(
            {
                "score": state.accumulated_submission_time,
                "global_step": state.global_step,
                "preemption_count": self.preemption_count,
            }
        )
        if self.settings.checkpoint:
            self._save(model, opt_state, model_state, state, result)

    def _restore(self, model, opt_state, result: TrialResult) -> tuple[Any, Any]:
        """Continue from the checkpoint read in ``__init__``: weights, optimizer, bookkeeping,
        this rank's RNG and pipeline states, and the CSVs cut back to that checkpoint's rows.

        As the reference: accumulated times continue; ``last_eval_time`` is the previous
        process's absolute time, so after a restart longer than ``eval_period`` the first resumed
        step is eval-eligible (evals do not move the training RNGs, so this changes no training
        step). Unlike the reference, the train
        pipeline continues from its position, every rank's RNG states are restored and DDP
        wrapping is kept: the resumed trial trains on exactly the batches, dropout masks and
        augmentations of an uninterrupted one.

        Returns:
            The optimizer state and the model state to continue with.
        """
        ckpt, self._resume_from = self._resume_from, None
        world_size = self.workload.dist.world_size
        if len(ckpt.rank_states) != world_size:
            raise checkpoint.CheckpointError(
                f"{ckpt.path} was written by {len(ckpt.rank_states)} rank(s); this run has "
                f"{world_size}: resume with the same number of processes"
            )
        opt_state, state = checkpoint.restore(ckpt, model, opt_state)
        mine = ckpt.rank_states[self.workload.dist.rank]
        self.input_queue.load_state_dict(mine["data"])
        global_rng.restore(mine["rng"])
        self.log.truncate(ckpt.log_rows)
        if self.settings.max_steps is not None and state.global_step >= self.settings.max_steps:
            raise ValueError(
                f"{ckpt.path} is at step {state.global_step} and max_steps="
                f"{self.settings.max_steps}: raise max_steps to continue the trial"
            )
        # The last checkpoint of a run stopped by max_steps says training_complete; the entry
        # point refuses to resume trials that ended for any other reason (summary.json).
        state.training_complete = state.diverged
        result.state = state
        result.eval_results = list(ckpt.eval_results)
        reached = [
            r["score"]
            for _, r in ckpt.eval_results
            if self.workload.has_reached_validation_target(r)
        ]
        result.time_to_target = reached[0] if reached else None
        log.info(
            "resumed from %s at step %d (preemption %d)",
            ckpt.path,
            state.global_step,
            self.preemption_count,
        )
        return opt_state, ckpt.model_state

    def _save(self, model, opt_state, model_state, state: TrainState, result: TrialResult) -> None:
        """Every rank hands its RNG and pipeline states to rank 0, which writes the checkpoint."""
        mine = {"rng": global_rng.capture(), "data": self.input_queue.state_dict()}
        rank_states = all_gather_object(mine, self.workload.dist)
        if self.log.enabled:  # rank 0 only
            checkpoint.save_checkpoint(
                self.log.trial_dir,
                model,
                opt_state,
                model_state,
                state,
                result.eval_results,
                self.preemption_count,
                rank_states,
                log_rows=self.log.row_counts(),
                keep=self.settings.checkpoint_keep,
            )

    def _api_args(self, model, model_state, opt_state, result, step, rng) -> dict[str, Any]:
        """The keyword arguments ``update_params`` and ``prepare_for_eval`` share."""
        return dict(
            workload=self.workload,
            current_param_container=model,
            current_params_types=self.workload.model_params_types,
            model_state=model_state,
            hyperparameters=self.hparams,
            loss_type=self.workload.loss_type,
            optimizer_state=opt_state,
            eval_results=result.eval_results,
            global_step=step,
            rng=rng,
        )

    def _eval_and_log(
        self, model, opt_state, model_state, state: TrainState, result: TrialResult
    ) -> None:
        """The untimed block: eval, goal flags, the CSV row and the checkpoint (their time goes
        to logging time).

        As the reference, a ``RuntimeError`` during the eval (e.g. out of memory) is logged and
        the eval lost; ``last_eval_time`` stays, so the next step is eval-eligible again.
        """
        w = self.workload
        t0 = self.clock()
        try:
            with global_rng.isolated():  # evals happen at wall-clock moments: no RNG draws count
                w.eval_index = state.global_step  # eval_train re-drawn per eval (criteo1tb)
                metrics = evaluate(w, model, self.data_seed)
        except RuntimeError as e:
            log.warning("eval at step %d failed and is skipped: %s", state.global_step, e)
            return
        state.validation_goal_reached |= w.has_reached_validation_target(metrics)
        if w.config.test_target is None:
            state.test_goal_reached = True
        else:
            state.test_goal_reached |= w.has_reached_test_target(metrics)
        target_value = metrics.get(f"validation/{w.config.target_metric}")
        if target_value is None or not math.isfinite(target_value):
            state.diverged = True  # NaN/inf: recorded as not reaching the target; trial ends
            state.training_complete = True
        t1 = self.clock()
        state.last_eval_time = t1
        state.accumulated_eval_time += t1 - t0
        row = self._timing_row(metrics, state, t1)
        result.eval_results.append((state.global_step, row))
        self.log.append_eval(
            {**row, "global_step": state.global_step, "preemption_count": self.preemption_count}
        )
        log.info("eval at step %d: %s", state.global_step, _short(row, w.config.target_metric))
        if self.tracker is not None:
            self.tracker.log(row, state.global_step)
        if result.time_to_target is None and w.has_reached_validation_target(metrics):
            result.time_to_target = state.accumulated_submission_time
        if self.settings.checkpoint:
            self._save(model, opt_state, model_state, state, result)
        state.accumulated_logging_time += self.clock() - t1

    def _timing_row(self, metrics: dict, state: TrainState, now: float) -> dict[str, Any]:
        row = dict(metrics)
        row.update(
            score=state.accumulated_submission_time,
            total_duration=now - self._start,
            accumulated_submission_time=state.accumulated_submission_time,
            accumulated_eval_time=state.accumulated_eval_time,
            accumulated_logging_time=state.accumulated_logging_time,
        )
        return row

    def _snapshot(self, state: TrainState, result: TrialResult) -> Snapshot:
        metric_key = f"validation/{self.workload.config.target_metric}"
        last_step, last = result.eval_results[-1] if result.eval_results else (None, {})
        ml = self.workload.metrics_logger
        scalars = getattr(ml, "last_scalars", {}) if ml is not None else {}
        return Snapshot(
            step=state.global_step,
            submission_time=state.accumulated_submission_time,
            budget=self.budget,
            loss=scalars.get("loss"),
            loss_step=scalars.get("global_step"),
            metric_name=self.workload.config.target_metric,
            metric=last.get(metric_key),
            target=self.workload.config.validation_target,
            target_minimize=self.workload.config.target_minimize,
            metric_step=last_step,
            max_steps=self.settings.max_steps,
        )


def _accepts(fn: Callable, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _short(row: dict[str, Any], metric: str) -> str:
    keys = [f"validation/{metric}", f"test/{metric}", "score"]
    return ", ".join(f"{k}={row[k]:.4f}" for k in keys if isinstance(row.get(k), float))
