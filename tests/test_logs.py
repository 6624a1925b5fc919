"""Trial files: the reference's columns, atomic rewrites, survival of a killed run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from algoperf_torch import logs
from algoperf_torch.logs import CsvTable

# The reference's MNIST eval_measurements.csv header [scoring/test_data/...; RULES.md §2.9].
REFERENCE_MNIST_COLUMNS = [
    "accumulated_eval_time",
    "accumulated_logging_time",
    "accumulated_submission_time",
    "global_step",
    "preemption_count",
    "score",
    "test/accuracy",
    "test/loss",
    "test/num_examples",
    "total_duration",
    "train/accuracy",
    "train/loss",
    "validation/accuracy",
    "validation/loss",
    "validation/num_examples",
]


def test_columns_sorted_at_first_row_then_appended(tmp_path):
    table = CsvTable(str(tmp_path / "m.csv"))
    table.append({"b": 1, "a": 2.5})
    table.append({"a": 3, "c": "x"})
    rows = list(csv.reader(open(tmp_path / "m.csv")))
    assert rows == [["a", "b", "c"], ["2.5", "1", ""], ["3", "", "x"]]
    again = CsvTable(str(tmp_path / "m.csv"))  # a resumed trial continues the file
    again.append({"a": 4})
    assert len(list(csv.reader(open(tmp_path / "m.csv")))) == 4


def test_metrics_logger_keeps_the_last_scalars_with_their_step(tmp_path):
    logger = logs.MetricsLogger(CsvTable(str(tmp_path / "m.csv")))
    logger.append_scalar_metrics({"loss": 0.5}, global_step=7)
    assert logger.last_scalars == {"loss": 0.5, "global_step": 7}  # the display's stale-loss mark


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    table = CsvTable(str(tmp_path / "m.csv"))
    table.append({"a": 1})
    before = (tmp_path / "m.csv").read_text()

    def crash(*args):
        raise OSError("disk died")

    monkeypatch.setattr(logs.os, "replace", crash)
    with pytest.raises(OSError):
        table.append({"a": 2})
    assert (tmp_path / "m.csv").read_text() == before
    assert os.listdir(tmp_path) == ["m.csv"]  # no temporary file left behind


def test_trial_writes_reference_columns(tmp_path):
    from conftest import run_trial

    run_trial(tmp_path, ["max_steps=3"])
    trial = tmp_path / "digits_nadamw" / "digits_pytorch" / "trial_1"
    header = next(csv.reader(open(trial / "eval_measurements.csv")))
    assert header == REFERENCE_MNIST_COLUMNS
    for name in (
        "hparams.json",
        "flags_0.json",
        "meta_data_0.json",
        "summary.json",
        "measurements.csv",
    ):
        assert (trial / name).exists(), name


def test_logs_survive_a_kill(tmp_path):
    # Evaluate after every step (eval_period ~0) so the CSVs are being rewritten constantly,
    # kill -9 the run mid-flight, and check every file parses whole.
    trial = tmp_path / "x" / "digits_pytorch" / "trial_1"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "algoperf_torch",
            f"experiment_dir={tmp_path}",
            "experiment_name=x",
            "workload.eval_period=0.0001",
            "workload.validation_target=1.1",
            "workload.max_runtime=600",
            "progress=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    csv_path = trial / "eval_measurements.csv"
    deadline = time.time() + 90
    while time.time() < deadline:
        if csv_path.exists() and len(csv_path.read_text().splitlines()) > 20:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert csv_path.exists(), "the run never wrote an eval row"
    for name in ("eval_measurements.csv", "measurements.csv"):
        rows = list(csv.reader(open(trial / name)))
        assert len(rows) > 2
        assert all(len(r) == len(rows[0]) for r in rows), f"{name} has a truncated row"
