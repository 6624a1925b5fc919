"""Plots of scoring results: performance profiles and per-workload validation curves (PNG).

    python -m algoperf_torch.scoring LOGS_DIR --output-dir scoring_results   # writes the PNGs

matplotlib is imported inside the functions and drives an Agg canvas directly (no pyplot, no
global backend or rcParams change), so importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from algoperf_torch.scoring.targets import WorkloadTarget


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_performance_profiles(profiles: pd.DataFrame, path: Path | str, title: str = "") -> Path:
    """ρ_s(τ) of every submission on one axis.

    Args:
        profiles: submissions × τ (from `scores.performance_profiles`).
        path: the PNG to write.
        title: optional title (e.g. the rules version).

    Returns:
        The written path.
    """
    fig = _figure(9, 5.5)
    ax = fig.add_subplot()
    taus = profiles.columns.to_numpy(dtype=float)
    for submission, rho in profiles.iterrows():
        ax.step(taus, rho.to_numpy(dtype=float), where="post", label=str(submission), linewidth=2)
    ax.set_xlabel("Ratio of time to target to the fastest submission (τ)")
    ax.set_ylabel("Proportion of workloads")
    ax.set_xlim(taus.min(), taus.max())
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.4)
    ax.set_title(title or "Performance profiles")
    ax.legend(loc="best", fontsize="small")
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_validation_curves(
    trials: pd.DataFrame,
    targets: dict[str, WorkloadTarget],
    out_dir: Path | str,
    budgets: dict[str, float | None] | None = None,
) -> list[Path]:
    """One PNG per workload: the validation metric against submission time, every trial.

    Args:
        trials: rows from `logs.read_submission` (several submissions concatenated).
        targets: `{workload: WorkloadTarget}` (metric and target line).
        out_dir: folder for `curves_<workload>.png`.
        budgets: optional `{workload: runtime budget}` drawn as a vertical line.

    Returns:
        The written paths.
    """
    written = []
    colors = {s: f"C{i % 10}" for i, s in enumerate(dict.fromkeys(trials["submission"]))}
    for workload, group in trials.groupby("workload", sort=True):
        target = targets.get(workload)
        if target is None or target.validation_metric not in group:
            continue
        fig = _figure(8, 5)
        ax = fig.add_subplot()
        labelled = set()
        for _, row in group.iterrows():
            values, times = row[target.validation_metric], row.get("score")
            if not isinstance(times, np.ndarray):
                times = row.get("accumulated_submission_time")
            if not isinstance(values, np.ndarray) or not isinstance(times, np.ndarray):
                continue
            label = row["submission"] if row["submission"] not in labelled else None
            labelled.add(row["submission"])
            ax.plot(
                times,
                values,
                color=colors[row["submission"]],
                alpha=0.6,
                linewidth=1.2,
                label=label,
            )
        ax.axhline(
            target.validation_target,
            color="k",
            linestyle="--",
            linewidth=1,
            label=f"target {target.validation_target:g}",
        )
        budget = (budgets or {}).get(workload)
        if budget:
            ax.axvline(budget, color="grey", linestyle=":", linewidth=1, label="budget")
        ax.set_xlabel("Submission time (s)")
        ax.set_ylabel(target.validation_metric)
        ax.set_title(
            f"{workload}: {target.validation_metric} "
            f"({'lower' if target.target_minimize else 'higher'} is better)"
        )
        ax.grid(alpha=0.4)
        ax.legend(loc="best", fontsize="small")
        path = Path(out_dir) / f"curves_{workload}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written
