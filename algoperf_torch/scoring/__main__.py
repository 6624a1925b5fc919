"""Score submissions from their logs: time-to-target tables, performance profiles, scores.

    python -m algoperf_torch.scoring LOGS_DIR [--rules v0.6|v0.5] [--self-tuning]
        [--output-dir D] [--json FILE] [--strict] [--no-plots]

LOGS_DIR holds one folder per submission, each `<study>/<workload>_<framework>/trial_<k>/
eval_measurements.csv` (ours or the reference's). Writes to the output dir (default
`scoring_results`): `time_to_targets.csv` (median per workload, before the 4× cut),
`scored_times.csv` (after it), `performance_profile_score.csv`, `scores.csv`,
`<submission>_summary.csv` (one row per trial), `performance_profile_by_score.png` and
`curves_<workload>.png`. Exit status 1 if a submission could not be scored (the others are).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from algoperf_torch.scoring.logs import read_logs
from algoperf_torch.scoring.plots import write_plots
from algoperf_torch.scoring.rules import RULES
from algoperf_torch.scoring.scores import Scores, ScoringError, score_submissions, scored_column
from algoperf_torch.scoring.targets import load_workload_targets
from algoperf_torch.scoring.workers import Workers, import_matplotlib, start_workers


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m algoperf_torch.scoring", description=__doc__.splitlines()[0]
    )
    parser.add_argument("logs_dir", type=Path, help="folder with one folder per submission")
    parser.add_argument("--rules", choices=sorted(RULES), default="v0.6")
    parser.add_argument("--self-tuning", action="store_true", help="self-tuning ruleset")
    parser.add_argument("--output-dir", type=Path, default=Path("scoring_results"))
    parser.add_argument("--json", type=Path, default=None, help='write {"submission": score}')
    parser.add_argument("--strict", action="store_true", help="wrong counts are errors")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--conf-dir",
        type=Path,
        default=None,
        help="folder of workload YAMLs with the targets (default: the package's conf/workload/)",
    )
    parser.add_argument("--exclude", default="", help="comma-separated submissions to skip")
    return parser.parse_args(argv)


def _format_table(table: pd.DataFrame) -> str:
    shown = table.map(lambda t: "inf" if np.isinf(t) else ("-" if np.isnan(t) else f"{t:.1f}"))
    return shown.to_string()


def _write_csv(frame, path, index: bool = True) -> None:
    """``frame.to_csv`` written atomically (a killed run leaves the old file or the new one)."""
    from algoperf_torch.logs import atomic_write_text

    atomic_write_text(str(path), frame.to_csv(index=index))


def _write_outputs(
    result: Scores, trials: dict[str, pd.DataFrame], args, targets, workers: Workers | None
) -> None:
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(result.times, out / "time_to_targets.csv")
    _write_csv(result.scored_times, out / "scored_times.csv")
    _write_csv(result.profiles, out / "performance_profile_score.csv")
    _write_csv(result.scores.to_frame(), out / "scores.csv")
    for submission, group in result.per_trial.groupby("submission", sort=False):
        _write_csv(group, out / f"{submission}_summary.csv", index=False)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({s: float(v) for s, v in result.scores.items()}, indent=2) + "\n"
        )
    if args.no_plots:
        return
    kept = [t for s, t in trials.items() if s in result.scores.index and len(t)]
    write_plots(
        out,
        result.profiles,
        f"Performance profiles ({args.rules}{', self-tuning' if args.self_tuning else ''})",
        pd.concat(kept, ignore_index=True) if kept else None,
        targets,
        {w: t.budget(args.rules, args.self_tuning) for w, t in targets.items()},
        workers,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parse_args(argv)
    with contextlib.nullcontext() if args.no_plots else start_workers() as workers:
        if workers is None:
            return _run(args, workers, lambda: load_workload_targets(args.conf_dir))
        # There, while this process reads the logs: the targets (the YAMLs take ~0.15 s to
        # compose), then the import of matplotlib (~0.5 s), then the drawing.
        targets = workers.submit(load_workload_targets, args.conf_dir)
        workers.submit(import_matplotlib)
        return _run(args, workers, targets.result)


def _run(args: argparse.Namespace, workers: Workers | None, load_targets) -> int:
    trials, errors = read_logs(args.logs_dir, scored_column)  # the other columns unconverted
    excluded = {s for s in args.exclude.split(",") if s}
    trials = {s: t for s, t in trials.items() if s not in excluded}
    targets, problems = load_targets()
    targets = {name: target.for_rules(args.rules) for name, target in targets.items()}
    present = {w for t in trials.values() for w in t["workload"]}
    for name in sorted(present & set(problems)):
        print(f"warning: {problems[name]}", file=sys.stderr)
    try:
        result = score_submissions(
            trials, targets, RULES[args.rules], args.self_tuning, args.strict
        )
    except ScoringError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    errors.update(result.errors)
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    if result.dev_mode:
        print(
            f"note: no {args.rules} benchmark workload in the logs; scoring the workloads present "
            f"({', '.join(result.base_workloads)}) - not comparable with leaderboard scores",
            file=sys.stderr,
        )
    if result.ignored_workloads:
        print(
            f"note: not scored under {args.rules}: {', '.join(result.ignored_workloads)}",
            file=sys.stderr,
        )
    print("Time to target (s), median over studies, before the 4x cut:")
    print(_format_table(result.times))
    print(f"\nBenchmark scores ({args.rules}{', self-tuning' if args.self_tuning else ''}):")
    print(result.scores.sort_values(ascending=False).map(lambda v: f"{v:.4f}").to_string())
    _write_outputs(result, trials, args, targets, workers)
    print(f"\nwrote results to {args.output_dir}")
    for submission, message in errors.items():
        print(f"error: submission {submission!r} not scored: {message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
