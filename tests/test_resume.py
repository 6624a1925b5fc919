"""Resumed = uninterrupted: a trial SIGKILLed at any moment and resumed trains exactly as one
that was never killed (DESIGN.md §9).

For each workload, one uninterrupted run of ``max_steps=8`` with ``checkpoint=true``, then the
same trial killed (``tests/kill_harness.py``) inside a training step, inside an eval, half-way
through writing a checkpoint and between a checkpoint's data file and its JSON, each resumed with
``resume=true``: the final weights, the optimizer state, the train pipeline's state and every
training-loss row of ``measurements.csv`` (step and loss, as text) equal the uninterrupted run's.

``workload.eval_period=1e9``: evals at step 1 and after step 8, so every kill but the first
falls back to the step-1 checkpoint and replays seven steps. The resumed step-kill run uses a
short eval period instead, so its evals and checkpoints fall at other steps than the
uninterrupted run's: they must change nothing.

    python -m pytest tests/test_resume.py -m ""
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from algoperf_torch import checkpoint

HARNESS = os.path.join(REPO, "tests", "kill_harness.py")
MAX_STEPS = 8
MOMENTS = ["step:5", "eval:2", "ckpt:2", "ckptjson:2"]
COMMON = [
    "checkpoint=true",
    f"max_steps={MAX_STEPS}",
    "workload.eval_period=1e9",
    "progress=off",
    "device=cpu",
    "seed=7",
    "experiment_name=r",
    "trial_index=1",
]


def launch(moment: str, args: list[str], ranks: int = 1, kill_rank: int = 0):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_RANK": str(kill_rank)}
    prefix = [sys.executable]
    if ranks > 1:
        prefix += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    cmd = [*prefix, HARNESS, moment, *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)


def trial_dir(root) -> str:
    (workload_dir,) = [d for d in os.listdir(os.path.join(root, "r")) if d.endswith("_pytorch")]
    return os.path.join(root, "r", workload_dir, "trial_1")


def loss_rows(trial: str) -> list[tuple[str, str]]:
    with open(os.path.join(trial, "measurements.csv"), newline="") as f:
        return [(r["global_step"], r["loss"]) for r in csv.DictReader(f) if r.get("loss")]


def equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


def check_kills_resume_exactly(tmp_path, args: list[str], ranks: int = 1, moments=MOMENTS):
    ok = launch("none", [f"experiment_dir={tmp_path / 'whole'}", *COMMON, *args], ranks)
    assert ok.returncode == 0, ok.stderr[-3000:]
    whole = trial_dir(tmp_path / "whole")
    reference = checkpoint.load_checkpoint(os.path.join(whole, f"checkpoint_{MAX_STEPS}"))
    reference_rows = loss_rows(whole)
    assert [int(s) for s, _ in reference_rows] == list(range(MAX_STEPS))
    for moment in moments:
        root = tmp_path / moment.replace(":", "")
        run_args = [f"experiment_dir={root}", *COMMON, *args]
        # With 2 ranks, rank 1 dies inside a step and rank 0 (the writer) in the other moments.
        kill_rank = 1 if ranks > 1 and moment.startswith("step") else 0
        killed = launch(moment, run_args, ranks, kill_rank)
        assert killed.returncode != 0 and "kill_harness: SIGKILL" in killed.stderr, (
            moment,
            killed.returncode,
            killed.stderr[-3000:],
        )
        resume_args = [*run_args, "resume=true"]
        if moment.startswith("step"):
            resume_args.append("workload.eval_period=0.05")  # evals at other steps: no effect
        resumed = launch("none", resume_args, ranks)
        assert resumed.returncode == 0, (moment, resumed.stderr[-3000:])
        trial = trial_dir(root)
        final = checkpoint.load_checkpoint(os.path.join(trial, f"checkpoint_{MAX_STEPS}"))
        assert final.preemption_count == 1, moment
        assert equal(final.model, reference.model), f"{moment}: weights differ"
        assert equal(final.optimizer_state, reference.optimizer_state), f"{moment}: optimizer"
        data = [s["data"] for s in final.rank_states]
        assert equal(data, [s["data"] for s in reference.rank_states]), f"{moment}: pipeline"
        assert loss_rows(trial) == reference_rows, f"{moment}: training-loss rows differ"


def test_digits_resumes_exactly_after_sigkill(tmp_path):
    check_kills_resume_exactly(tmp_path, ["workload=digits", "batch_size=32"])


@pytest.mark.slow
def test_mnist_synthetic_resumes_exactly_after_sigkill(tmp_path):
    check_kills_resume_exactly(tmp_path, ["workload=mnist", "data=synthetic", "batch_size=32"])


@pytest.mark.slow
def test_cifar_resumes_exactly_after_sigkill(tmp_path):
    from test_cifar import write_cifar_batches

    write_cifar_batches(str(tmp_path / "data"), per_file=16, test=20)
    args = [
        "workload=cifar",
        f"data.data_dir={tmp_path / 'data'}",
        "batch_size=8",
        "workload.num_train_examples=60",
        "workload.num_eval_train_examples=16",
        "workload.num_validation_examples=20",
        "workload.num_test_examples=20",
        "workload.eval_batch_size=20",
        "workload.compile=off",  # the test is about resuming, not inductor's warm-up
    ]
    check_kills_resume_exactly(tmp_path, args)


@pytest.mark.slow
def test_imagenet_with_two_workers_resumes_exactly_after_sigkill(tmp_path):
    from test_imagenet_data import TRAIN_PER_CLASS, VAL_PER_CLASS, WNIDS, make_archives, setup_args

    from algoperf_torch.data import imagenet as setup

    make_archives(str(tmp_path / "archives"))
    assert setup.run(setup_args(str(tmp_path / "data"), str(tmp_path / "archives"))) == 0
    n = len(WNIDS)
    args = [
        "workload=imagenet_resnet",
        f"data.data_dir={tmp_path / 'data'}",
        "data.num_workers=2",
        "batch_size=4",
        f"workload.num_train_examples={n * TRAIN_PER_CLASS}",
        "workload.num_eval_train_examples=8",
        f"workload.num_validation_examples={n * VAL_PER_CLASS}",
        "workload.num_test_examples=6",
        "workload.eval_batch_size=6",
        "workload.compile=off",
        "workload.model.layers=[1,1,1,1]",  # the real blocks and widths, fewer of them
        "workload.data.image_size=64",
        "workload.data.resize_size=73",
    ]
    check_kills_resume_exactly(tmp_path, args)


@pytest.mark.slow
def test_two_gloo_ranks_resume_exactly_after_sigkill(tmp_path):
    moments = ["step:5", "ckpt:2"]
    check_kills_resume_exactly(tmp_path, ["workload=digits", "batch_size=32"], 2, moments)
