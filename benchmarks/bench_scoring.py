"""Time the scoring CLI, plots included, on a generated tree shaped like the v0.5 leaderboard.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_scoring.py [--repeats 5] [--reference DIR]
        [--logs DIR]   # time on an existing tree (e.g. the published logs) instead

Writes 11 submissions x the 14 scored v0.5 workloads (base and held-out) x 5 studies x 5
trials into a temp dir, each trial missing with probability 3.4%: about 3,720
eval_measurements.csv of 12, 15 or 18 columns (the workload's metrics for train, validation and
test) and 1/2 to all of the workload's evals (at most 39 to 186): 233k evals, 55 MB. The
published v0.5 external-tuning logs have 3,718 CSVs, 222k evals, 50.5 MB. Targets, metrics and
budgets are those of our workload YAMLs; about 40% of the trials reach the target (46% there).

Then, alternating, `repeats` times each: the default command
`python -m algoperf_torch.scoring TREE --rules v0.5` (every plot), the same with `--no-plots`,
and, with `--reference DIR`, the reference's scorer run from DIR, a checkout of
mlcommons/submissions_algorithms (needs absl-py and tabulate):
`python -m scoring.score_submissions --submission_directory TREE --compute_performance_profiles
--workload_targets scoring/workload_targets_v05.json`. Prints the median wall and CPU time of
each (CPU: all its processes), the ratios, and how far apart the two scorers' scores are.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from algoperf_torch.scoring.rules import BASE_WORKLOADS, HELD_OUT_V05
from algoperf_torch.scoring.targets import load_workload_targets

REPO = Path(__file__).resolve().parents[1]
FIXED_COLUMNS = (
    "accumulated_eval_time",
    "accumulated_logging_time",
    "accumulated_submission_time",
    "global_step",
    "preemption_count",
    "score",
    "total_duration",
    "test/num_examples",
    "validation/num_examples",
)
# Metrics each workload logs per split, and its most evals in the v0.5 logs.
FAMILIES = {
    "criteo1tb": (("loss",), 66),
    "fastmri": (("loss", "ssim"), 110),
    "imagenet_resnet": (("accuracy", "loss"), 125),
    "imagenet_vit": (("accuracy", "loss"), 186),
    "librispeech_conformer": (("ctc_loss", "wer"), 43),
    "librispeech_deepspeech": (("ctc_loss", "wer"), 39),
    "ogbg": (("accuracy", "loss", "mean_average_precision"), 78),
    "wmt": (("accuracy", "bleu", "loss"), 59),
}


def _family(workload: str) -> tuple[tuple[str, ...], int]:
    return FAMILIES[max((f for f in FAMILIES if workload.startswith(f)), key=len)]


def _curve(rng, times, tau, end, start):
    """From `start` towards `end` with time constant `tau`, plus a little noise."""
    progress = 1 - np.exp(-times / tau)
    return start + (end - start) * progress + rng.normal(0, 0.01 * abs(end - start), len(times))


def _trial_table(rng, workload, target, budget, speed) -> pd.DataFrame:
    metrics, max_evals = _family(workload)
    n = int(max_evals * rng.uniform(0.5, 1.0)) or 1
    times = np.cumsum(rng.uniform(0.8, 1.2, n)) * budget / max_evals
    tau = budget * rng.uniform(0.05, 0.2) * speed
    goal = target.validation_target
    columns = {
        "accumulated_eval_time": times * 0.1,
        "accumulated_logging_time": times * 0.001,
        "accumulated_submission_time": times,
        "global_step": np.round(times * 3).astype(int) + 1,
        "preemption_count": np.zeros(n, dtype=int),
        "score": times,
        "total_duration": times * 1.15,
        "test/num_examples": np.full(n, 10_000),
        "validation/num_examples": np.full(n, 5_000),
    }
    for metric in metrics:
        for split in ("train", "validation", "test"):
            if metric == target.target_metric and target.target_minimize:
                values = _curve(rng, times, tau, goal * rng.uniform(0.95, 1.05), 2 * goal + 1)
            elif metric == target.target_metric:
                values = _curve(rng, times, tau, goal * rng.uniform(0.96, 1.04), 0.0)
            else:
                values = _curve(rng, times, tau, rng.uniform(0.1, 0.9), 1.0)
            columns[f"{split}/{metric}"] = values
    return pd.DataFrame(columns)[sorted(columns)]


def write_tree(root: Path, submissions: int, studies: int, trials: int, missing: float):
    """Write the log tree; returns (number of CSVs, bytes, evals)."""
    rng = np.random.default_rng(0)
    targets, _ = load_workload_targets()
    files = size = evals = 0
    for s in range(submissions):
        for workload in (*BASE_WORKLOADS, *HELD_OUT_V05):
            target = targets[workload].for_rules("v0.5")
            budget = target.budget("v0.5", False) or 10_000.0
            for j in range(studies):
                for t in range(1, trials + 1):
                    if rng.uniform() < missing:
                        continue
                    folder = (
                        root / f"sub{s:02d}" / f"study_{j}" / f"{workload}_pytorch" / f"trial_{t}"
                    )
                    folder.mkdir(parents=True)
                    table = _trial_table(rng, workload, target, budget, 1 + 0.08 * s)
                    text = table.to_csv(index=False)
                    (folder / "eval_measurements.csv").write_text(text)
                    files, size, evals = files + 1, size + len(text), evals + len(table)
    return files, size, evals


def _time(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and every process it started)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _scores(path: Path) -> pd.Series:
    frame = pd.read_csv(path, index_col=0)
    return frame["score"].sort_index()


def main() -> None:
    """Generate the tree, then time the commands in alternation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=11)
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--missing", type=float, default=0.034, help="chance a trial is absent")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference", type=Path, default=None, help="submissions_algorithms dir")
    parser.add_argument("--keep", type=Path, default=None, help="write the tree here, keep it")
    parser.add_argument("--logs", type=Path, default=None, help="time on this tree instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.logs:
            tree = args.logs
            csvs = list(tree.rglob("eval_measurements.csv"))
            size = sum(path.stat().st_size for path in csvs)
            print(f"{tree}: {len(csvs)} trial CSVs, {size / 1e6:.1f} MB")
        else:
            tree = args.keep or Path(tmp) / "logs"
            files, size, evals = write_tree(
                tree, args.submissions, args.studies, args.trials, args.missing
            )
            print(f"generated {files} trial CSVs, {evals} evals, {size / 1e6:.1f} MB")
        print(f"{len(os.sched_getaffinity(0))} CPUs")
        ours = [sys.executable, "-m", "algoperf_torch.scoring", str(tree), "--rules", "v0.5"]
        commands = {
            "ours": (ours + ["--output-dir", f"{tmp}/ours"], REPO),
            "ours --no-plots": (ours + ["--output-dir", f"{tmp}/nop", "--no-plots"], REPO),
        }
        if args.reference:
            reference = [sys.executable, "-m", "scoring.score_submissions"]
            reference += ["--submission_directory", str(tree), "--compute_performance_profiles"]
            reference += ["--workload_targets", "scoring/workload_targets_v05.json"]
            commands["reference"] = (reference + ["--output_dir", f"{tmp}/ref"], args.reference)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (command, cwd) in commands.items():
                times[name].append(_time(command, cwd))
        medians = {name: statistics.median(w for w, _ in ts) for name, ts in times.items()}
        for name, ts in times.items():
            runs = " ".join(f"{w:.2f}" for w, _ in ts)
            cpu = statistics.median(c for _, c in ts)
            print(f"{name:16s} median {medians[name]:6.2f} s, CPU {cpu:6.2f} s   (runs: {runs})")
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"plots cost x{medians['ours'] / medians['ours --no-plots']:.2f} of --no-plots")
        if args.reference:
            print(f"reference / ours (with plots): x{medians['reference'] / medians['ours']:.2f}")
            ours_scores, ref_scores = (_scores(Path(tmp, d, "scores.csv")) for d in ("ours", "ref"))
            gap = (ours_scores - ref_scores).abs().max()
            print(f"largest score difference between the two: {gap:.4f}")
        print(_scores(Path(tmp, "ours", "scores.csv")).round(4).to_string())


if __name__ == "__main__":
    main()
