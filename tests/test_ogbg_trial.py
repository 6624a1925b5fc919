"""ogbg trials end to end: on a tiny raw-format pcba.zip through the real setup and pipeline, and
through ``python -m algoperf_torch`` on synthetic data with the YAML's compile setting.

    python -m pytest tests/test_ogbg_trial.py [-m slow]
"""

from __future__ import annotations

import csv

import pytest
from conftest import run_cli, run_trial
from ogbg_fixtures import tiny_dataset

from algoperf_torch.data.__main__ import main as data_main

TINY = [
    "workload.eval_batch_size=4",
    "workload.num_eval_train_examples=10",
    "workload.num_validation_examples=6",
    "workload.num_test_examples=6",
    "batch_size=4",
    "max_steps=3",
    "workload.compile=off",
    "workload.validation_target=1.0",  # unreachable (strict >): the trial runs its 3 steps
    "workload.test_target=1.0",
]


def test_trial_on_tiny_raw_files(tmp_path):
    archives, _, _ = tiny_dataset(tmp_path)
    data_dir = tmp_path / "data"
    args = ["ogbg", "--data-dir", str(data_dir), "--archives-dir", str(archives), "--allow-partial"]
    assert data_main(args) == 0
    summary = run_trial(tmp_path, ["workload=ogbg", f"data.data_dir={data_dir}", *TINY])
    assert summary["global_step"] == 3
    trial = tmp_path / "ogbg_nadamw" / "ogbg_pytorch" / "trial_1"
    rows = list(csv.DictReader(open(trial / "eval_measurements.csv")))
    assert rows and float(rows[-1]["validation/num_examples"]) == 6
    for key in ("train/mean_average_precision", "validation/accuracy", "test/loss"):
        assert rows[-1][key] != "", key


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ogbg"])
def test_cli_synthetic_trial_compiled(tmp_path, name):
    proc = run_cli(
        [
            f"workload={name}",
            "data=synthetic",
            "max_steps=3",
            "batch_size=16",
            "workload.eval_batch_size=16",
            "data.synthetic_eval_examples=32",
            f"experiment_dir={tmp_path}",
            "progress=off",
        ],
        env={"OMP_NUM_THREADS": "1"},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 steps" in proc.stdout + proc.stderr
