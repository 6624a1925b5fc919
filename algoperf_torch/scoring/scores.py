"""Time-to-target, performance profiles and benchmark scores: pure functions over DataFrames.

    python -m algoperf_torch.scoring LOGS_DIR          # the CLI built on these functions

Matches the official scoring [scoring/performance_profile.py, scoring/score_submissions.py of
mlcommons/algorithmic-efficiency at v0.6 and of mlcommons/submissions_algorithms; RULES.md §3.3,
§4] step by step:

1. Per trial: the first eval whose `validation/<metric>` reaches the target (`<=` if minimised,
   `>=` otherwise; NaN never reaches) and the trial's `score` (accumulated submission time) there.
2. Per study: the winner is the trial that reaches the target at the **smallest eval index**,
   not the smallest time (ties: the smallest time among the tied trials; see `study_times`);
   its time, or ∞ if no trial reached.
3. Per workload: `np.median` over the studies (∞ participates; NaN propagates).
4. (v0.5) a held-out variant's time becomes ∞ where its base is ∞/NaN; then every column
   above 4× its column minimum becomes ∞; then a base becomes ∞ where its variant is ∞/NaN.
   (v0.6) the 4× cut alone.
5. Ratios `t / min_s t` (where that is NaN, e.g. ∞/∞, the time is kept, as `DataFrame.update`
   does in the reference); profile `ρ(τ) = #{w: r ≤ τ} / n_base` on `linspace(1, 4, 100)`;
   score = trapezoid integral of ρ over τ, divided by 3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from algoperf_torch.scoring.logs import MalformedLogError
from algoperf_torch.scoring.rules import Rules
from algoperf_torch.scoring.targets import WorkloadTarget

TIME_COLUMNS = ("score", "accumulated_submission_time")  # first present wins


def scored_column(name: str) -> bool:
    """Whether scoring (and plotting) reads this CSV column: `read_logs(..., scored_column)`."""
    return name.startswith("validation/") or name in TIME_COLUMNS or name == "global_step"


class ScoringError(ValueError):
    """Logs that cannot be scored as asked (unknown workload, strict-mode count mismatch...)."""


def _time_array(row: dict) -> np.ndarray:
    for column in TIME_COLUMNS:
        value = row.get(column)
        if isinstance(value, np.ndarray) and not np.isnan(value).all():
            return value
    raise MalformedLogError(f"{row['path']}: no {' or '.join(map(repr, TIME_COLUMNS))} column")


def _best_index(metric: np.ndarray, minimize: bool) -> int:
    """Index of the best non-NaN value, -1 if all are NaN."""
    finite = ~np.isnan(metric)
    if not finite.any():
        return -1
    if minimize:
        return int(np.argmin(np.where(finite, metric, np.inf)))
    return int(np.argmax(np.where(finite, metric, -np.inf)))


def _trial_record(row: dict, target: WorkloadTarget, metric: np.ndarray, times: np.ndarray) -> dict:
    """One trial's row of `trial_times` (`row`: that trial's cells, by column)."""
    if target.target_minimize:
        reached = metric <= target.validation_target  # NaN compares False: never reaches
    else:
        reached = metric >= target.validation_target
    index = int(np.argmax(reached)) if reached.any() else -1
    best = _best_index(metric, target.target_minimize)
    steps = row.get("global_step")
    steps = steps if isinstance(steps, np.ndarray) else np.full(len(times), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_step = np.diff(times, prepend=0.0) / np.diff(steps, prepend=0.0)
    return {
        "submission": row["submission"],
        "study": row["study"],
        "workload": row["workload"],
        "trial": row["trial"],
        "path": row["path"],
        "metric": target.validation_metric,
        "target": target.validation_target,
        "eval_index": index,
        "time_to_target": float(times[index]) if index >= 0 else np.inf,
        "best_value": float(metric[best]) if best >= 0 else np.nan,
        "time_to_best": float(times[best]) if best >= 0 else np.nan,
        "num_evals": len(metric),
        "final_step": float(steps[-1]) if len(steps) else np.nan,
        # the median of the non-NaN values (np.nanmedian, without its overhead)
        "step_time": float(np.median(per_step[~np.isnan(per_step)]))
        if np.isfinite(per_step).any()
        else np.nan,
    }


def trial_times(trials: pd.DataFrame, targets: dict[str, WorkloadTarget]) -> pd.DataFrame:
    """Time to target of every trial of one or more submissions.

    Args:
        trials: rows from `logs.read_submission` (per-eval arrays in the CSV columns).
        targets: `{workload: WorkloadTarget}` for every workload in `trials`.

    Returns:
        One row per trial: `submission, study, workload, trial, path, metric, target,
        eval_index` (first eval reaching the target, -1 if none), `time_to_target` (∞ if none),
        `best_value`, `time_to_best`, `num_evals`, `final_step`, `step_time` (median seconds/step).

    Raises:
        ScoringError: a workload has no target.
        MalformedLogError: a trial lacks the target metric or time column (names the file).
    """
    records = []
    cells = {column: trials[column].tolist() for column in trials.columns}  # no per-row Series
    for i in range(len(trials)):
        row = {column: values[i] for column, values in cells.items()}
        target = targets.get(row["workload"])
        if target is None:
            raise ScoringError(
                f"{row['path']}: no target for workload {row['workload']!r}; add "
                f"conf/workload/{row['workload']}.yaml (known: {sorted(targets)})"
            )
        metric = row.get(target.validation_metric)
        if not isinstance(metric, np.ndarray):
            columns = [c for c, v in row.items() if isinstance(v, np.ndarray)]
            raise MalformedLogError(
                f"{row['path']}: no column {target.validation_metric!r} (the target metric of "
                f"{row['workload']}); columns: {columns}"
            )
        records.append(_trial_record(row, target, metric, _time_array(row)))
    columns = [
        "submission",
        "study",
        "workload",
        "trial",
        "path",
        "metric",
        "target",
        "eval_index",
        "time_to_target",
        "best_value",
        "time_to_best",
        "num_evals",
        "final_step",
        "step_time",
    ]
    return pd.DataFrame.from_records(records, columns=columns)


def study_times(per_trial: pd.DataFrame) -> pd.DataFrame:
    """The winner of every study and its time to target.

    Args:
        per_trial: output of `trial_times`, trials in reading order.

    Returns:
        One row per (submission, workload, study): `time` (∞ if no trial reached) and
        `winner` (trial name or None), the winner being the trial with the smallest eval index
        [scoring/performance_profile.py `get_best_trial_index`]; among trials tied on that
        index, the one with the smallest time (then the first in trial order).

    The tie rule is ours. The reference takes the first of the tied trials in its reading
    order (`idxmin` over trials read in `os.listdir` order, scoring/scoring_utils.py
    `get_experiment_df`), which depends on the file system. Taking the smallest tied time
    reproduces every published score we checked (the 17 of v0.5, external and self-tuning,
    and both of v0.6; the external-tuning logs of the two hold 64 such ties, all between
    different times); the lowest trial number does not: in v0.6's shampoo/study_0/fastmri,
    trial_2 and trial_5 both reach at eval index 7, at 841.2 s and 640.8 s, the leaderboard
    used 640.8 s, and 841.2 s scores baseline 0.4716 instead of the published 0.4590.
    """
    keys = ["submission", "workload", "study"]
    columns = [*keys, "time", "winner", "num_trials"]
    if per_trial.empty:
        return pd.DataFrame(columns=columns)
    studies = per_trial.groupby(keys, sort=False).size().rename("num_trials").reset_index()
    # Each study's first row after sorting by (eval index, time, reading order) is its winner.
    reached = per_trial.assign(order=np.arange(len(per_trial)))
    reached = reached[reached["eval_index"] >= 0]
    winners = reached.sort_values(["eval_index", "time_to_target", "order"]).drop_duplicates(keys)
    table = studies.merge(winners[[*keys, "time_to_target", "trial"]], on=keys, how="left")
    table["time"] = table["time_to_target"].fillna(np.inf).astype(float)
    table["winner"] = table["trial"].astype(object).where(table["trial"].notna(), None)
    return table[columns]


def workload_times(per_study: pd.DataFrame, submissions: list[str] | None = None) -> pd.DataFrame:
    """Median over studies of the per-study times (`np.median`: ∞ counts, NaN propagates).

    Args:
        per_study: output of `study_times`.
        submissions: row order (and submissions to include even with no trials).

    Returns:
        DataFrame indexed by submission, one column per workload (NaN where a submission has
        no logs for that workload).
    """
    medians = per_study.groupby(["submission", "workload"], sort=False)["time"].apply(
        lambda t: float(np.median(t.to_numpy()))
    )
    table = medians.unstack("workload") if len(medians) else pd.DataFrame()
    if submissions is not None:
        table = table.reindex(submissions)
    table.index.name, table.columns.name = "submission", "workload"
    return table.reindex(sorted(table.columns), axis=1).astype(float)


def apply_budget_rules(
    times: pd.DataFrame, base_workloads: list[str], held_out: dict[str, str], max_ratio: float = 4.0
) -> pd.DataFrame:
    """The held-out rule (v0.5) and the 4× cut, then only the base workloads.

    Args:
        times: per-workload times (submissions × workloads), before any cut.
        base_workloads: the scored workloads, in output column order.
        held_out: `{variant: its base}` for the held-out variants (empty for v0.6).
        max_ratio: times above `max_ratio × column minimum` become ∞.

    Returns:
        Submissions × base workloads; absent workloads are NaN columns.
    """
    df = times.reindex(columns=sorted(set(times.columns) | set(base_workloads) | set(held_out)))
    base_missing = lambda b: np.isinf(df[b]) | df[b].isna()  # noqa: E731
    for variant, base in held_out.items():  # variant counts only where its base was reached
        df[variant] = df[variant].where(~base_missing(base), np.inf)
    best = df.min(axis=0)
    df = df.mask(df.gt(max_ratio * best, axis=1), np.inf)
    for variant, base in held_out.items():  # base counts only where its variant was reached
        missing = np.isinf(df[variant]) | df[variant].isna()
        df[base] = df[base].where(~missing, np.inf)
    return df[list(base_workloads)]


def performance_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """Each time divided by the fastest submission's on that workload.

    Where the ratio is NaN (∞/∞, NaN times) the time itself is kept, as the reference's
    `DataFrame.update` does; either way it never satisfies `r ≤ τ`.
    """
    ratios = times.div(times.min(axis=0), axis=1)
    return ratios.where(ratios.notna(), times)


def performance_profiles(
    ratios: pd.DataFrame, taus: np.ndarray, num_workloads: int
) -> pd.DataFrame:
    """ρ_s(τ) = (1/n) #{w : r_{s,w} ≤ τ}, one row per submission, one column per τ."""
    values = ratios.to_numpy(dtype=float)
    counts = (values[:, :, None] <= taus[None, None, :]).sum(axis=1)
    return pd.DataFrame(counts / num_workloads, index=ratios.index, columns=taus)


def benchmark_scores(profiles: pd.DataFrame) -> pd.Series:
    """Normalised area under each profile: trapezoid over τ divided by the τ range."""
    taus = profiles.columns.to_numpy(dtype=float)
    area = np.trapezoid(profiles.to_numpy(dtype=float), x=taus, axis=1)
    return pd.Series(area / (taus.max() - taus.min()), index=profiles.index, name="score")


@dataclass
class Scores:
    """Everything the CLI prints and writes."""

    per_trial: pd.DataFrame
    per_study: pd.DataFrame
    times: pd.DataFrame  # median per workload, before held-out rule and 4× cut
    scored_times: pd.DataFrame  # after them, base workloads only
    ratios: pd.DataFrame
    profiles: pd.DataFrame
    scores: pd.Series
    base_workloads: list[str]
    dev_mode: bool = False
    ignored_workloads: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # submission -> why it was not scored


def count_warnings(
    per_study: pd.DataFrame, rules: Rules, self_tuning: bool, expected_workloads: int
) -> list[str]:
    """Mismatches with the expected numbers of workloads, studies and trials (as the reference)."""
    notes = []
    for submission, group in per_study.groupby("submission", sort=False):
        n = group["workload"].nunique()
        if n != expected_workloads:
            notes.append(f"{submission}: expecting {expected_workloads} workloads, found {n}")
        for workload, wgroup in group.groupby("workload", sort=False):
            if len(wgroup) != rules.num_studies:
                notes.append(
                    f"{submission}/{workload}: expecting {rules.num_studies} studies, found {len(wgroup)}"
                )
            if not self_tuning:
                for _, srow in wgroup[wgroup["num_trials"] != rules.num_trials].iterrows():
                    notes.append(
                        f"{submission}/{srow['study']}/{workload}: expecting "
                        f"{rules.num_trials} trials, found {srow['num_trials']}"
                    )
    return notes


def score_submissions(
    trials: dict[str, pd.DataFrame],
    targets: dict[str, WorkloadTarget],
    rules: Rules,
    self_tuning: bool = False,
    strict: bool = False,
) -> Scores:
    """Score submissions together (scores are relative to the group).

    Args:
        trials: `{submission: read_submission(...)}`.
        targets: `{workload: WorkloadTarget}`.
        rules: the rules version.
        self_tuning: self-tuning ruleset (one trial per study; no trial-count check).
        strict: raise on wrong numbers of workloads/studies/trials instead of warning.

    Returns:
        A `Scores`. A submission with a malformed log is left out (`errors` says why); the
        others are scored together. If none of the rules' base workloads is in the logs (a development run,
        e.g. on `digits`), the workloads present are scored instead (`dev_mode`).
    """
    targets = {name: target.for_rules(rules.name) for name, target in targets.items()}
    frames = [t for t in trials.values() if len(t)]
    all_trials = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["submission", "study", "workload", "trial", "path"])
    )
    present = sorted(set(all_trials["workload"]))
    base = list(rules.base_workloads)
    held_out = {v: _base_of(v, targets, base) for v in rules.held_out_workloads}
    if not present:
        raise ScoringError(
            "no trial logs found (expected <submission>/<study>/<workload>_<framework>/"
            "trial_<k>/eval_measurements.csv)"
        )
    dev_mode = not set(present) & set(base)
    if dev_mode:
        base, held_out = present, {}
    if held_out and not set(held_out) & set(present):
        raise ScoringError(
            f"rules {rules.name} score the held-out variants {sorted(held_out)}, "
            "but no submission has logs for any of them"
        )
    used = set(base) | set(held_out)
    ignored = [w for w in present if w not in used]
    per_trial_parts, errors = [], {}
    for submission, frame in trials.items():
        try:
            per_trial_parts.append(trial_times(frame[frame["workload"].isin(used)], targets))
        except MalformedLogError as err:  # the other submissions are still scored
            errors[submission] = str(err)
    kept = [s for s in trials if s not in errors]
    per_trial = (
        pd.concat(per_trial_parts, ignore_index=True)
        if per_trial_parts
        else trial_times(all_trials.iloc[:0], targets)
    )
    per_study = study_times(per_trial)
    notes = count_warnings(per_study, rules, self_tuning, len(base) + len(held_out))
    if strict and notes:
        raise ScoringError("strict scoring: " + "; ".join(notes))
    times = workload_times(per_study, kept)
    scored = apply_budget_rules(times, base, held_out, rules.max_tau)
    ratios = performance_ratios(scored)
    profiles = performance_profiles(ratios, rules.tau_grid(), len(base))
    return Scores(
        per_trial,
        per_study,
        times,
        scored,
        ratios,
        profiles,
        benchmark_scores(profiles),
        base,
        dev_mode,
        ignored,
        notes,
        errors,
    )


def _base_of(variant: str, targets: dict[str, WorkloadTarget], base_workloads: list[str]) -> str:
    """A variant's base: its YAML's `base`, else the first base name contained in it (reference)."""
    target = targets.get(variant)
    if target is not None and target.base:
        return target.base
    for name in base_workloads:
        if re.search(re.escape(name), variant):
            return name
    raise ScoringError(f"cannot tell the base workload of variant {variant!r}")
