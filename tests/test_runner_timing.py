"""The runner's timing rules, driven by a fake clock (RULES.md §2.3–2.7).

Every expected number below is derived by hand from the rules in the test's docstring, not by
re-running the loop.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from algoperf_torch import runner as runner_mod
from algoperf_torch.distributed import DistInfo
from algoperf_torch.logs import TrialLog
from algoperf_torch.runner import RunSettings, Trial
from algoperf_torch.spec import TrainingCompleteError
from algoperf_torch.timing import Clock
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.__main__ import load_config


class FakeTime:
    def __init__(self, start: float = 1_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


class FakeSubmission:
    """Costs fake time per step; records what the runner hands it."""

    def __init__(self, time, step_cost=0.25, raise_at=None):
        self.time, self.step_cost, self.raise_at = time, step_cost, raise_at
        self.steps_seen = []

    def get_batch_size(self, workload_name):
        return 16

    def init_optimizer_state(self, workload, model_params, model_state, hyperparameters, rng):
        return {"n": 0}

    def update_params(
        self,
        workload,
        current_param_container,
        current_params_types,
        model_state,
        hyperparameters,
        batch,
        loss_type,
        optimizer_state,
        eval_results,
        global_step,
        rng,
    ):
        self.steps_seen.append(global_step)
        self.time.t += self.step_cost
        if self.raise_at is not None and global_step == self.raise_at:
            raise TrainingCompleteError()
        return optimizer_state, current_param_container, model_state

    def data_selection(
        self,
        workload,
        input_queue,
        optimizer_state,
        current_param_container,
        model_state,
        hyperparameters,
        global_step,
        rng,
    ):
        return next(input_queue)


class WithPrepare(FakeSubmission):
    def __init__(self, time, prep_cost=0.5, **kw):
        super().__init__(time, **kw)
        self.prep_cost = prep_cost
        self.prep_calls = []

    def prepare_for_eval(
        self,
        workload,
        current_param_container,
        current_params_types,
        model_state,
        hyperparameters,
        loss_type,
        optimizer_state,
        eval_results,
        global_step,
        rng,
    ):
        self.prep_calls.append(global_step)
        self.time.t += self.prep_cost
        return optimizer_state, current_param_container, model_state


class WithTrainState(FakeSubmission):
    def update_params(
        self,
        workload,
        current_param_container,
        current_params_types,
        model_state,
        hyperparameters,
        batch,
        loss_type,
        optimizer_state,
        eval_results,
        global_step,
        rng,
        train_state=None,
    ):
        self.train_state = train_state
        return super().update_params(
            workload,
            current_param_container,
            current_params_types,
            model_state,
            hyperparameters,
            batch,
            loss_type,
            optimizer_state,
            eval_results,
            global_step,
            rng,
        )


def scripted_eval(monkeypatch, time, cost, val_values, test_values=None):
    """Replace the eval with one that costs ``cost`` fake seconds and returns scripted metrics."""
    calls = []

    def fake_evaluate(workload, model, seed):
        i = min(len(calls), len(val_values) - 1)
        calls.append(i)
        time.t += cost
        test = (test_values or val_values)[min(i, len(test_values or val_values) - 1)]
        return {"validation/accuracy": val_values[i], "test/accuracy": test, "train/accuracy": 0.0}

    monkeypatch.setattr(runner_mod, "evaluate", fake_evaluate)
    return calls


def make_trial(tmp_path, sub, time, settings=None, **config_changes):
    changes = {"eval_period": 1.0, "max_runtime": 1e6, **config_changes}
    config = dataclasses.replace(load_config("digits"), **changes)
    workload = Workload(config, get_workload_functions("digits"), DistInfo())
    return Trial(
        workload,
        sub,
        None,
        settings or RunSettings(max_steps=10),
        TrialLog(str(tmp_path)),
        Clock(DistInfo(), time_fn=time),
    )


def eval_rows(trial_result):
    return [(step, row) for step, row in trial_result.eval_results]


def test_eval_time_excluded_and_cadence_follows_reference(tmp_path, monkeypatch):
    # Steps cost 0.25 s, the period is 1 s, an eval costs 100 s. The first eval follows step 1
    # (last_eval_time starts at 0); the next comes once 1 s of wall time passed since that
    # eval ended: 4 steps later (steps 5 and 9); max_steps=10 forces a final eval at step 10.
    time = FakeTime()
    calls = scripted_eval(monkeypatch, time, cost=100.0, val_values=[0.1])
    result = make_trial(tmp_path, FakeSubmission(time), time).run()
    assert [s for s, _ in result.eval_results] == [1, 5, 9, 10]
    assert len(calls) == 4
    assert result.state.accumulated_submission_time == pytest.approx(10 * 0.25)
    assert result.state.accumulated_eval_time == pytest.approx(400.0)
    assert [r["score"] for _, r in result.eval_results] == pytest.approx([0.25, 1.25, 2.25, 2.5])


def test_prepare_for_eval_is_timed(tmp_path, monkeypatch):
    # As above, plus prepare_for_eval costing 0.5 s at every eval-eligible step (1, 5, 9, 10):
    # submission time = 10 x 0.25 + 4 x 0.5.
    time = FakeTime()
    scripted_eval(monkeypatch, time, cost=100.0, val_values=[0.1])
    sub = WithPrepare(time)
    result = make_trial(tmp_path, sub, time).run()
    assert sub.prep_calls == [1, 5, 9, 10]
    assert result.state.accumulated_submission_time == pytest.approx(4.5)
    assert [r["score"] for _, r in result.eval_results] == pytest.approx([0.75, 2.25, 3.75, 4.5])


def test_stops_when_validation_and_test_targets_reached(tmp_path, monkeypatch):
    # digits: accuracy > 0.96 on validation, > 0.95 on test. Eval 2 reaches validation only
    # (training goes on: the reference stops on both); eval 3 (step 9) reaches both and ends it.
    time = FakeTime()
    scripted_eval(
        monkeypatch, time, cost=1.0, val_values=[0.1, 0.97, 0.98], test_values=[0.1, 0.5, 0.99]
    )
    result = make_trial(tmp_path, FakeSubmission(time), time, RunSettings(max_steps=100)).run()
    assert [s for s, _ in result.eval_results] == [1, 5, 9]
    assert result.state.global_step == 9
    assert result.state.validation_goal_reached and result.state.test_goal_reached
    assert result.time_to_target == pytest.approx(1.25)  # first eval with validation > target


def test_target_comparison_is_strict(tmp_path, monkeypatch):
    time = FakeTime()
    scripted_eval(monkeypatch, time, cost=1.0, val_values=[0.96])  # == target: not reached
    result = make_trial(tmp_path, FakeSubmission(time), time).run()
    assert result.time_to_target is None and not result.state.validation_goal_reached


def test_stops_at_budget_and_skips_the_eval_past_it(tmp_path, monkeypatch):
    # Budget 2 s: evals at step 1 (0.25 s) and 5 (1.25 s); at step 9 the submission time is
    # 2.25 s >= 2 s, so prepare_for_eval still runs (it precedes the budget check) but the eval
    # is skipped and the trial ends.
    time = FakeTime()
    scripted_eval(monkeypatch, time, cost=1.0, val_values=[0.1])
    sub = WithPrepare(time, prep_cost=0.0)
    result = make_trial(tmp_path, sub, time, RunSettings(), max_runtime=2.0).run()
    assert [s for s, _ in result.eval_results] == [1, 5]
    assert sub.prep_calls == [1, 5, 9]
    assert result.state.global_step == 9 and not result.state.is_time_remaining


def test_self_tuning_budget_multipliers():
    assert RunSettings(ruleset="self").budget(100) == 150.0
    assert RunSettings(ruleset="self", rules="v0.5").budget(100) == 300.0
    assert RunSettings(ruleset="external", rules="v0.5").budget(100) == 100.0
    with pytest.raises(ValueError, match="ruleset='selfish'"):
        RunSettings(ruleset="selfish")


def test_training_complete_error_ends_with_a_final_eval(tmp_path, monkeypatch):
    time = FakeTime()
    scripted_eval(monkeypatch, time, cost=1.0, val_values=[0.1])
    sub = FakeSubmission(time, raise_at=2)
    result = make_trial(tmp_path, sub, time, RunSettings()).run()
    assert sub.steps_seen == [0, 1, 2]
    assert result.state.global_step == 3 and result.state.training_complete
    assert [s for s, _ in result.eval_results] == [1, 3]


def test_train_state_is_a_read_only_reference_view(tmp_path, monkeypatch):
    time = FakeTime()
    scripted_eval(monkeypatch, time, cost=1.0, val_values=[0.1])
    sub = WithTrainState(time)
    make_trial(tmp_path, sub, time, RunSettings(max_steps=3)).run()
    assert isinstance(sub.train_state, MappingProxyType)
    assert set(sub.train_state) == {
        "validation_goal_reached",
        "test_goal_reached",
        "is_time_remaining",
        "last_eval_time",
        "training_complete",
        "accumulated_submission_time",
        "accumulated_eval_time",
        "accumulated_logging_time",
        "last_step_end_time",
    }
    with pytest.raises(TypeError):
        sub.train_state["training_complete"] = True


def test_non_finite_metric_ends_the_trial_as_diverged(tmp_path, monkeypatch):
    time = FakeTime()
    scripted_eval(monkeypatch, time, cost=1.0, val_values=[0.1, float("nan")])
    result = make_trial(tmp_path, FakeSubmission(time), time, RunSettings(max_steps=100)).run()
    assert result.state.diverged and result.time_to_target is None
    assert result.state.global_step == 5


def test_a_failed_eval_is_skipped_and_retried_next_step(tmp_path, monkeypatch):
    # The reference swallows a RuntimeError (e.g. OOM) in the eval block; last_eval_time is not
    # updated, so the very next step is eval-eligible again.
    time = FakeTime()
    calls = []

    def flaky_evaluate(workload, model, seed):
        calls.append(1)
        time.t += 1.0
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return {"validation/accuracy": 0.1, "test/accuracy": 0.1}

    monkeypatch.setattr(runner_mod, "evaluate", flaky_evaluate)
    result = make_trial(tmp_path, FakeSubmission(time), time, RunSettings(max_steps=3)).run()
    assert [s for s, _ in result.eval_results][:1] == [2]
    assert result.state.accumulated_eval_time == pytest.approx(1.0 * (len(calls) - 1))
