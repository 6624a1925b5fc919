"""Time scoring on a generated log tree the size of a large leaderboard (4,000 trial CSVs).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_scoring.py [--submissions 10] [--studies 5] [--trials 10]

Writes `submissions x 8 workloads x studies x trials` eval_measurements.csv files (15 columns,
about 100 evals each, ~16 KB: ~65 MB for the default 4,000) into a temp dir, then times reading
them (`read_logs`) and scoring (`score_submissions`, v0.6 and v0.5 rules), plots excluded. The
budget is under 10 s on one core.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from algoperf_torch.scoring.logs import read_logs
from algoperf_torch.scoring.rules import BASE_WORKLOADS, RULES
from algoperf_torch.scoring.scores import score_submissions
from algoperf_torch.scoring.targets import WorkloadTarget

COLUMNS = (
    "accumulated_eval_time,accumulated_logging_time,accumulated_submission_time,global_step,"
    "preemption_count,score,test/accuracy,test/loss,test/num_examples,total_duration,"
    "train/accuracy,train/loss,validation/accuracy,validation/loss,validation/num_examples"
)


def write_tree(root: Path, submissions: int, studies: int, trials: int, evals: int) -> int:
    """Write the log tree; returns the total bytes written."""
    rng = np.random.default_rng(0)
    total = 0
    for s in range(submissions):
        for w in BASE_WORKLOADS:
            for j in range(studies):
                for t in range(1, trials + 1):
                    d = root / f"sub{s}" / f"study_{j}" / f"{w}_pytorch" / f"trial_{t}"
                    d.mkdir(parents=True)
                    steps = np.arange(1, evals + 1) * 100
                    times = np.cumsum(rng.uniform(50, 60, evals)) * (1 + 0.1 * s)
                    acc = 1 - np.exp(-steps / rng.uniform(2000, 8000))
                    table = np.column_stack(
                        [
                            times * 0.2,
                            times * 0.01,
                            times,
                            steps,
                            np.zeros(evals),
                            times,
                            acc,
                            1 - acc,
                            np.full(evals, 10000),
                            times * 1.3,
                            acc,
                            1 - acc,
                            acc,
                            1 - acc,
                            np.full(evals, 10000),
                        ]
                    )
                    lines = [COLUMNS] + [",".join(repr(float(x)) for x in row) for row in table]
                    text = "\n".join(lines) + "\n"
                    (d / "eval_measurements.csv").write_text(text)
                    total += len(text)
    return total


def main() -> None:
    """Generate, then time reading and scoring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=10)
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--evals", type=int, default=68)
    args = parser.parse_args()
    targets = {w: WorkloadTarget(w, "accuracy", False, 0.9) for w in BASE_WORKLOADS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        size = write_tree(root, args.submissions, args.studies, args.trials, args.evals)
        n = args.submissions * len(BASE_WORKLOADS) * args.studies * args.trials
        print(f"{n} trial CSVs, {size / 1e6:.1f} MB, cpu affinity {len(os.sched_getaffinity(0))}")
        start = time.perf_counter()
        trials, errors = read_logs(root)
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        result = score_submissions(trials, targets, RULES["v0.6"])
        score_s = time.perf_counter() - start
        assert not errors and not result.errors
        print(
            f"read_logs {read_s:.2f} s, score_submissions {score_s:.2f} s, "
            f"total {read_s + score_s:.2f} s"
        )
        print(result.scores.round(4).to_string())


if __name__ == "__main__":
    main()
