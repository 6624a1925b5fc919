"""Read a submission's trial logs (ours or the reference's) into one DataFrame row per trial.

    python -c "from algoperf_torch.scoring.logs import read_submission; print(read_submission('logs/sub'))"

Layout [scoring/scoring_utils.py `get_experiment_df`; RULES.md §4.1]:
`<submission>/<study>/<workload>_<framework>/trial_<k>/eval_measurements.csv`, framework `jax`
or `pytorch`. Submission folders named `<name>-YYYY-MM-DD-HH-MM-SS` are merged into `<name>`
(their studies are grouped by study folder name, as the reference does). A trial folder without
`eval_measurements.csv` is skipped, as in the reference.

Differences from the reference: studies, workloads and trials are read in sorted (natural)
order, not `os.listdir` order, so every table comes out the same on every machine (a tie for
a study's winner goes to the smallest time, see `scores.study_times`); a trial whose CSV lacks
a column has NaN in that cell (the reference carries the previous trial's values over); a CSV
that cannot be read raises `MalformedLogError` naming the file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

MEASUREMENTS_FILENAME = "eval_measurements.csv"
TRIAL_DIR_RE = re.compile(r"trial_(\d+)$")
WORKLOAD_DIR_RE = re.compile(r"(?P<name>.+)_(?P<framework>jax|pytorch)$")
TIMESTAMP_RE = re.compile(r"-\d{4}(-\d{2}){5}$")
META_COLUMNS = ("submission", "study", "workload", "framework", "trial", "path")


class MalformedLogError(ValueError):
    """An `eval_measurements.csv` that cannot be scored; the message names the file."""


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def read_trial_csv(
    path: Path, columns: Callable[[str], bool] | None = None
) -> dict[str, np.ndarray]:
    """Read one `eval_measurements.csv` into float arrays, one per column.

    Args:
        path: the CSV file.
        columns: keep only the columns whose name this is true of (default: all); the others
            are not converted (about half the reading time), so they need not be numbers.

    Returns:
        `{column: float64 array of per-eval values}`; empty cells and "nan" are NaN.

    Raises:
        MalformedLogError: the file is empty, has no header, ragged rows or non-numeric values.
    """
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\r\n").split(",")
            use = None if columns is None else [i for i, c in enumerate(header) if columns(c)]
            try:  # fast path: a full numeric table
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "empty input file" for header-only files
                    values = (
                        np.loadtxt(f, delimiter=",", ndmin=2, dtype=np.float64, usecols=use)
                        if use != []
                        else np.empty((0, 0))
                    )
            except ValueError:
                values = None
        names = header if use is None else [header[i] for i in use]
        if values is None or (values.size and values.shape[1] != len(names)):
            # empty cells (columns first seen later), quoted fields
            frame = pd.read_csv(path, usecols=columns)
            names = list(frame.columns)
            header = names if columns is None else header
            values = frame.apply(pd.to_numeric, errors="raise").to_numpy(
                np.float64, na_value=np.nan
            )
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MalformedLogError(f"{path}: cannot read eval measurements ({msg})") from None
    if not header or header == [""] or len(set(header)) != len(header):
        raise MalformedLogError(f"{path}: missing or duplicate column names in the header")
    if values.size == 0:
        values = np.empty((0, len(names)))
    return {name: values[:, i] for i, name in enumerate(names)}


def _submission_dirs(logs_dir: Path) -> dict[str, list[Path]]:
    """Submission name -> its folders (timestamped copies merged, as the reference does)."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(logs_dir.iterdir(), key=lambda p: _natural_key(p.name)):
        if path.is_dir() and not path.name.startswith("."):
            groups.setdefault(TIMESTAMP_RE.sub("", path.name), []).append(path)
    return groups


def _trial_rows(submission: str, root: Path, columns: Callable[[str], bool] | None) -> list[dict]:
    rows = []
    for study in sorted(
        (p for p in root.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name)
    ):
        for wdir in sorted((p for p in study.iterdir() if p.is_dir()), key=lambda p: p.name):
            match = WORKLOAD_DIR_RE.match(wdir.name)
            name, framework = (match["name"], match["framework"]) if match else (wdir.name, "")
            trials = [p for p in wdir.iterdir() if p.is_dir() and TRIAL_DIR_RE.match(p.name)]
            for tdir in sorted(trials, key=lambda p: int(TRIAL_DIR_RE.match(p.name)[1])):
                csv = tdir / MEASUREMENTS_FILENAME
                if not csv.is_file():
                    continue
                row = {
                    "submission": submission,
                    "study": study.name,
                    "workload": name,
                    "framework": framework,
                    "trial": tdir.name,
                    "path": str(csv),
                }
                row.update(read_trial_csv(csv, columns))
                rows.append(row)
    return rows


def read_submission(
    folders: Path | str | list[Path],
    name: str | None = None,
    columns: Callable[[str], bool] | None = None,
) -> pd.DataFrame:
    """All trials of one submission, one row per trial.

    Args:
        folders: the submission folder, or several (timestamped copies) to merge.
        name: the submission's name (default: the first folder's name).
        columns: keep only the CSV columns whose name this is true of (`read_trial_csv`).

    Returns:
        DataFrame with `submission, study, workload, framework, trial, path` and one column per
        CSV column holding that trial's per-eval float array (NaN, not an array, where that
        trial's CSV lacks the column).

    Raises:
        MalformedLogError: a CSV of this submission cannot be read.
    """
    paths = [Path(folders)] if isinstance(folders, str | Path) else [Path(p) for p in folders]
    name = name or TIMESTAMP_RE.sub("", paths[0].name)
    rows = [row for path in paths for row in _trial_rows(name, path, columns)]
    frame = pd.DataFrame(rows, columns=list(META_COLUMNS) if not rows else None)
    return frame


def read_logs(
    logs_dir: Path | str, columns: Callable[[str], bool] | None = None
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read every submission under `logs_dir`; a bad submission does not stop the others.

    Args:
        logs_dir: folder holding one folder per submission.
        columns: keep only the CSV columns whose name this is true of (`read_trial_csv`).

    Returns:
        (`{submission: trials DataFrame}`, `{submission: error message}` for the submissions
        that could not be read).
    """
    logs_dir = Path(logs_dir)
    if not logs_dir.is_dir():
        raise FileNotFoundError(f"logs directory {str(logs_dir)!r} does not exist")
    results, errors = {}, {}
    for name, folders in _submission_dirs(logs_dir).items():
        try:
            results[name] = read_submission(folders, name, columns)
        except MalformedLogError as err:
            errors[name] = str(err)
    return results, errors
