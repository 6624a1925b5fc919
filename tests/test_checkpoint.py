"""Checkpoints: bit-identical round trip, atomic writes, weights-only loading, fallback from a
damaged checkpoint, and a resumed trial equal to an uninterrupted one (kill tests: test_resume.py)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random

import numpy as np
import pytest
import torch
from conftest import run_trial
from test_runner_timing import FakeSubmission, FakeTime, make_trial, scripted_eval

from algoperf_torch import checkpoint, global_rng
from algoperf_torch import runner as runner_mod
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


RANKS = [{"rng": global_rng.capture(), "data": {"fingerprint": {"kind": "test"}, "pos": 3}}]


def save(trial_dir, model, opt_state, step, rows=(), keep=None, log_rows=None):
    return checkpoint.save_checkpoint(
        str(trial_dir), model, opt_state, None, TrainState(global_step=step), list(rows), 0,
        RANKS, log_rows=log_rows, keep=keep,
    )  # fmt: skip


def test_round_trip_is_bit_identical_and_training_continues_identically(tmp_path):
    model, opt_state, step = digits_setup()
    for i in range(3):
        step(i)
    state = TrainState(global_step=3, accumulated_submission_time=1.5, last_eval_time=12.0)
    rows = [(1, {"score": 0.5, "validation/accuracy": 0.1, "validation/loss": float("nan")})]
    path = checkpoint.save_checkpoint(
        str(tmp_path), model, opt_state, None, state, rows, 0, RANKS, log_rows={"eval": 1}
    )
    assert os.path.basename(path) == "checkpoint_3"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_3", "checkpoint_3.json"]

    model2, opt_state2, step2 = digits_setup()  # fresh: different weights, empty NAdamW state
    ckpt = checkpoint.load_latest(str(tmp_path))
    opt_state2, state2 = checkpoint.restore(ckpt, model2, opt_state2)
    assert state2 == state and ckpt.global_step == 3 and ckpt.log_rows == {"eval": 1}
    assert ckpt.eval_results[0][0] == 1 and ckpt.eval_results[0][1]["score"] == 0.5
    assert tensors_equal(ckpt.rank_states, RANKS)
    assert tensors_equal(model2.state_dict(), model.state_dict())
    for key in ("optimizer", "scheduler"):
        assert tensors_equal(opt_state2[key].state_dict(), opt_state[key].state_dict())
    step(3)
    step2(3)  # one more step each: weights, moments and schedule continue identically
    assert tensors_equal(model2.state_dict(), model.state_dict())
    assert tensors_equal(opt_state2["optimizer"].state_dict(), opt_state["optimizer"].state_dict())


def test_global_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    states = global_rng.capture()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.save(states, tmp_path / "rng")
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    global_rng.restore(torch.load(tmp_path / "rng", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]
    with global_rng.isolated():
        torch.rand(5), np.random.rand(5), random.random()
    after = (torch.rand(1), np.random.rand(1), random.random())
    global_rng.restore(torch.load(tmp_path / "rng", weights_only=True))
    torch.rand(3), np.random.rand(3), random.random()
    assert after == (torch.rand(1), np.random.rand(1), random.random())


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt_state, _ = digits_setup()
    save(tmp_path, model, opt_state, 1)
    before = (tmp_path / "checkpoint_1").read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    for step in (2, 1):  # a new step, and rewriting the same step
        with pytest.raises(OSError, match="No space"):
            save(tmp_path, model, opt_state, step)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_1", "checkpoint_1.json"]  # no temp file
    assert (tmp_path / "checkpoint_1").read_bytes() == before
    assert checkpoint.load_latest(str(tmp_path)).global_step == 1


def test_keep_only_the_newest_and_refuse_optimizer_state_that_is_not_plain_data(tmp_path):
    model, opt_state, _ = digits_setup()
    for step in (1, 5, 10):
        save(tmp_path, model, opt_state, step, keep=2)
    assert [s for s, _ in checkpoint.list_checkpoints(str(tmp_path))] == [5, 10]
    assert not (tmp_path / "checkpoint_1.json").exists()
    with pytest.raises(TypeError, match=r"optimizer_state\['hook'\] holds objects of"):
        save(tmp_path, model, {"hook": Hook()}, 11)
    assert not (tmp_path / "checkpoint_11").exists()


class Hook:
    """An object a checkpoint must not carry (unpickling it would import and call code)."""


class Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # loading it would create the marker file


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    model, opt_state, _ = digits_setup()
    path = save(tmp_path, model, opt_state, 2)
    marker = tmp_path / "code_ran"
    buf = io.BytesIO()
    torch.save({"format": 2, "model": {}, "optimizer_state": {}, "model_state": Exploit(str(marker)),
                "ranks": RANKS}, buf)  # fmt: skip
    data = buf.getvalue()
    (tmp_path / "checkpoint_2").write_bytes(data)
    meta = json.loads((tmp_path / "checkpoint_2.json").read_text())
    meta.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())  # a consistent forgery
    (tmp_path / "checkpoint_2.json").write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="refused: it holds pickled objects"):
        checkpoint.load_checkpoint(path)
    assert not marker.exists()


def test_an_unusable_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    model, opt_state, _ = digits_setup()
    for step in (2, 4, 6, 8):
        save(tmp_path, model, opt_state, step)
    newest = tmp_path / "checkpoint_8"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated by a full disk
    data = bytearray((tmp_path / "checkpoint_6").read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    (tmp_path / "checkpoint_6").write_bytes(bytes(data))
    (tmp_path / "checkpoint_4.json").unlink()  # killed between the data file and its JSON
    with caplog.at_level("WARNING", logger="algoperf_torch"):
        ckpt = checkpoint.load_latest(str(tmp_path))
    assert ckpt.global_step == 2
    text = caplog.text
    assert "checkpoint_8 is corrupt: 1000 bytes" in text and "checkpoint_6 is corrupt" in text
    assert "checkpoint_4 is incomplete: checkpoint_4.json is missing" in text
    (tmp_path / "checkpoint_2").write_bytes(b"")
    with pytest.raises(checkpoint.CheckpointError, match="no usable checkpoint.*damaged") as e:
        checkpoint.load_latest(str(tmp_path))
    assert all(f"checkpoint_{s}" in str(e.value) for s in (2, 4, 6, 8))


def test_resumed_trial_equals_the_uninterrupted_one(tmp_path):
    # In process, digits: 10 steps at once, and 6 + resume to 10. eval_period=0.05 s: evals (and
    # checkpoints) at moments that differ between the runs; they must not change training.
    args = ["checkpoint=true", "workload.eval_period=0.05", "seed=3"]
    run_trial(tmp_path / "a", [*args, "max_steps=10"])
    run_trial(tmp_path / "b", [*args, "max_steps=6"])
    summary = run_trial(tmp_path / "b", [*args, "max_steps=10", "resume=true"])
    a, b = ((tmp_path / x).joinpath(*TRIAL) for x in "ab")
    ca = checkpoint.load_checkpoint(str(a / "checkpoint_10"))
    cb = checkpoint.load_checkpoint(str(b / "checkpoint_10"))
    assert tensors_equal(ca.model, cb.model)
    assert tensors_equal(ca.optimizer_state, cb.optimizer_state)
    assert tensors_equal(ca.rank_states[0]["data"], cb.rank_states[0]["data"])
    assert loss_rows(a) == loss_rows(b) and len(loss_rows(a)) == 10
    assert summary["global_step"] == 10 and summary["stop_reason"] == "max_steps"
    assert (b / "flags_1.json").exists() and (b / "meta_data_1.json").exists()
    assert cb.preemption_count == 1


def loss_rows(trial_dir) -> list[tuple[str, str]]:
    """(global_step, loss) of every training-loss row of measurements.csv."""
    with open(trial_dir / "measurements.csv", newline="") as f:
        return [(r["global_step"], r["loss"]) for r in csv.DictReader(f) if r.get("loss")]


def test_resume_is_refused_when_there_is_nothing_to_continue(tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume.*checkpoint=true"):
        run_trial(tmp_path, ["resume=true", "max_steps=2"])
    trial = tmp_path / "t"
    model, opt_state, _ = digits_setup()
    save(trial, model, opt_state, 4)
    with pytest.raises(ConfigError, match="step 4 and max_steps=4: raise max_steps"):
        prepare_trial_dir(str(trial), overwrite=False, resume=True, max_steps=4)
    (trial / "summary.json").write_text(json.dumps({"stop_reason": "targets"}))
    with pytest.raises(ConfigError, match="trial already complete.*'targets'"):
        prepare_trial_dir(str(trial), overwrite=False, resume=True, max_steps=8)
    with pytest.raises(ConfigError, match="already holds results.*resume=true to continue"):
        prepare_trial_dir(str(trial), overwrite=False)
    (trial / "summary.json").unlink()  # results dropped: the checkpoint is stale and goes too
    prepare_trial_dir(str(trial), overwrite=False)
    assert checkpoint.list_checkpoints(str(trial)) == []


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


class DrawingSubmission(FakeSubmission):
    """Draws from every process-wide RNG in each step, as dropout or a submission would."""

    def __init__(self, time):
        super().__init__(time)
        self.draws = []

    def update_params(self, *args, **kwargs):
        self.draws.append((torch.rand(1).item(), np.random.rand(), random.random()))
        return super().update_params(*args, **kwargs)


def test_evals_do_not_move_the_training_rngs(tmp_path, monkeypatch):
    # Evals fall at wall-clock moments, so at different steps in a resumed run; one that drew
    # from the global RNGs (an eval DataLoader draws its base seed from torch's) would change
    # every later dropout mask. Two runs, evals at different steps, evals drawing: same draws.
    def run(eval_period):
        time = FakeTime()
        calls = scripted_eval(monkeypatch, time, cost=0.0, val_values=[0.1])
        inner = runner_mod.evaluate

        def drawing_eval(*args):
            torch.rand(7), np.random.rand(7), random.random()
            return inner(*args)

        monkeypatch.setattr(runner_mod, "evaluate", drawing_eval)
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        sub = DrawingSubmission(time)
        settings = RunSettings(max_steps=12)
        make_trial(tmp_path / str(eval_period), sub, time, settings, eval_period=eval_period).run()
        return sub.draws, len(calls)

    rare, n_rare = run(100.0)  # evals after steps 1 and 12
    often, n_often = run(0.25)
    assert n_often > n_rare >= 2 and len(rare) == 12
    assert rare == often
