"""Checkpoints: bit-identical round trip, atomic writes, and a trial resumed after preemption."""

from __future__ import annotations

import copy
import csv
import json
import os

import pytest
import torch
from conftest import run_trial
from test_runner_timing import FakeSubmission, FakeTime, make_trial, scripted_eval

from algoperf_torch import checkpoint
from algoperf_torch.__main__ import optimizer_yaml_hparams, prepare_trial_dir
from algoperf_torch.config_check import ConfigError
from algoperf_torch.distributed import DistInfo
from algoperf_torch.runner import RunSettings
from algoperf_torch.submission import OptimizerSubmission, make_hyperparameters
from algoperf_torch.timing import TrainState
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.__main__ import load_config

TRIAL = ("digits_nadamw", "digits_pytorch", "trial_1")


def digits_setup():
    """A digits model with NAdamW (and its LR schedule), as the runner builds them."""
    config = load_config("digits")
    functions = get_workload_functions("digits")
    w = Workload(config, functions, DistInfo())
    model, _ = w.init_model_fn([0, 0])
    h = optimizer_yaml_hparams({"name": "nadamw"})
    sub = OptimizerSubmission("nadamw", h, {"digits": 16})
    hparams = make_hyperparameters(h)
    opt_state = sub.init_optimizer_state(w, model, None, hparams, None)

    def step(i):
        batch = functions.synthetic_batch(config, 16, torch.Generator().manual_seed(i))
        sub.update_params(w, model, w.model_params_types, None, hparams, batch, w.loss_type,
                          opt_state, [], i, None)  # fmt: skip

    return model, opt_state, step


def tensors_equal(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_round_trip_is_bit_identical_and_training_continues_identically(tmp_path):
    model, opt_state, step = digits_setup()
    for i in range(3):
        step(i)
    state = TrainState(global_step=3, accumulated_submission_time=1.5, last_eval_time=12.0)
    rows = [(1, {"score": 0.5, "validation/accuracy": 0.1})]
    path = checkpoint.save_checkpoint(str(tmp_path), model, opt_state, None, state, rows, 0)
    assert os.path.basename(path) == "checkpoint_3"

    model2, opt_state2, step2 = digits_setup()  # fresh: different weights, empty NAdamW state
    ckpt = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(str(tmp_path)))
    opt_state2, state2 = checkpoint.restore(ckpt, model2, opt_state2)
    assert state2 == state and ckpt.eval_results == rows and ckpt.global_step == 3
    assert tensors_equal(model2.state_dict(), model.state_dict())
    for key in ("optimizer", "scheduler"):
        assert tensors_equal(opt_state2[key].state_dict(), opt_state[key].state_dict())
    step(3)
    step2(3)  # one more step each: weights, moments and schedule continue identically
    assert tensors_equal(model2.state_dict(), model.state_dict())
    assert tensors_equal(opt_state2["optimizer"].state_dict(), opt_state["optimizer"].state_dict())


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt_state, _ = digits_setup()
    save = lambda step: checkpoint.save_checkpoint(  # noqa: E731
        str(tmp_path), model, opt_state, None, TrainState(global_step=step), [], 0
    )
    save(1)
    before = (tmp_path / "checkpoint_1").read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", disk_full)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    for step in (2, 1):  # a new step, and rewriting the same step
        with pytest.raises(OSError, match="No space"):
            save(step)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_1"]  # no temp file, no checkpoint_2
    assert (tmp_path / "checkpoint_1").read_bytes() == before


def test_keep_only_the_newest_and_refuse_unpicklable_optimizer_state(tmp_path):
    model, opt_state, _ = digits_setup()
    for step in (1, 5, 10):
        checkpoint.save_checkpoint(
            str(tmp_path), model, opt_state, None, TrainState(global_step=step), [], 0, keep=2
        )
    assert [s for s, _ in checkpoint.list_checkpoints(str(tmp_path))] == [5, 10]
    with pytest.raises(TypeError, match=r"optimizer_state\['hook'\] of type function"):
        checkpoint.save_checkpoint(
            str(tmp_path), model, {"hook": lambda: 0}, None, TrainState(), [], 0
        )


def test_resumed_trial_continues_from_the_checkpoint(tmp_path, monkeypatch):
    # Part 1 stops at max_steps=6 (evals at step 1 and 6, each followed by a checkpoint);
    # part 2 resumes with max_steps=10. eval_period=1e9: no eval between, so the rows are fixed.
    args = ["checkpoint=true", "workload.eval_period=1e9", "seed=3"]
    run_trial(tmp_path, [*args, "max_steps=6"])
    trial = tmp_path.joinpath(*TRIAL)
    saved = checkpoint.load_checkpoint(str(trial / "checkpoint_6"))

    restored = {}
    original_restore = checkpoint.restore

    def spy(ckpt, model, opt_state, restore_rng=True):
        out = original_restore(ckpt, model, opt_state, restore_rng)
        restored["model"] = {k: v.clone() for k, v in model.state_dict().items()}
        restored["optimizer"] = copy.deepcopy(out[0]["optimizer"].state_dict())
        return out

    monkeypatch.setattr(checkpoint, "restore", spy)
    summary = run_trial(tmp_path, [*args, "max_steps=10", "resume=true"])
    # The pipeline restarts from its seed (as the reference), so the final weights differ from an
    # uninterrupted run's; what must hold exactly is the state training resumed from.
    assert tensors_equal(restored["model"], saved.model)
    assert tensors_equal(restored["optimizer"], saved.optimizer_state["optimizer"]["state_dict"])
    assert summary["global_step"] == 10 and summary["stop_reason"] == "max_steps"
    assert summary["accumulated_submission_time"] > saved.train_state["accumulated_submission_time"]
    assert (trial / "flags_1.json").exists() and (trial / "meta_data_1.json").exists()
    rows = list(csv.DictReader(open(trial / "eval_measurements.csv")))
    assert [(r["global_step"], r["preemption_count"]) for r in rows] == [
        ("1", "0"),
        ("6", "0"),
        ("10", "1"),
    ]
    assert checkpoint.load_checkpoint(str(trial / "checkpoint_10")).preemption_count == 1


def test_resume_is_refused_when_there_is_nothing_to_continue(tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume.*checkpoint=true"):
        run_trial(tmp_path, ["resume=true", "max_steps=2"])
    trial = tmp_path / "t"
    model, opt_state, _ = digits_setup()
    checkpoint.save_checkpoint(str(trial), model, opt_state, None, TrainState(global_step=4), [], 0)
    with pytest.raises(ConfigError, match="step 4 and max_steps=4: raise max_steps"):
        prepare_trial_dir(str(trial), overwrite=False, resume=True, max_steps=4)
    (trial / "summary.json").write_text(json.dumps({"stop_reason": "targets"}))
    with pytest.raises(ConfigError, match="trial already complete.*'targets'"):
        prepare_trial_dir(str(trial), overwrite=False, resume=True, max_steps=8)
    with pytest.raises(ConfigError, match="already holds results.*resume=true to continue"):
        prepare_trial_dir(str(trial), overwrite=False)
    (trial / "summary.json").unlink()  # results dropped: the checkpoint is stale and goes too
    prepare_trial_dir(str(trial), overwrite=False)
    assert checkpoint.latest_checkpoint(str(trial)) is None


def test_first_resumed_step_is_eval_eligible_and_times_continue(tmp_path, monkeypatch):
    # Fake clock: steps cost 0.25 s, period 1 s. Part 1 (max_steps=3): evals at steps 1 and 3,
    # submission time 0.75 s. The restart takes 100 s of wall time; last_eval_time is absolute,
    # so step 4 is eval-eligible at once, and the submission time continues: 0.75 + 0.25.
    time = FakeTime()
    scripted_eval(monkeypatch, time, cost=0.0, val_values=[0.1])
    settings = RunSettings(max_steps=3, checkpoint=True)
    first = make_trial(tmp_path, FakeSubmission(time), time, settings).run()
    assert [s for s, _ in first.eval_results] == [1, 3]
    time.t += 100.0
    settings = RunSettings(max_steps=5, checkpoint=True, resume=True)
    trial = make_trial(tmp_path, FakeSubmission(time), time, settings)
    assert trial.preemption_count == 1
    second = trial.run()
    assert [s for s, _ in second.eval_results] == [1, 3, 4, 5]
    assert [r["score"] for _, r in second.eval_results] == pytest.approx([0.25, 0.75, 1.0, 1.25])
