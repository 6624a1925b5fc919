"""Scoring: logs -> time to target -> performance profiles -> benchmark scores (+ plots).

    python -m algoperf_torch.scoring LOGS_DIR --rules v0.6 --output-dir scoring_results

Pure functions over pandas DataFrames in `scores.py`, log reading in `logs.py`, targets from the
workload YAMLs in `targets.py`, rules constants in `rules.py`, plotting in `plots.py`.
"""

from algoperf_torch.scoring.logs import MalformedLogError, read_logs, read_submission
from algoperf_torch.scoring.rules import RULES, Rules
from algoperf_torch.scoring.scores import Scores, ScoringError, score_submissions
from algoperf_torch.scoring.targets import WorkloadTarget, load_workload_targets

__all__ = [
    "RULES",
    "MalformedLogError",
    "Rules",
    "Scores",
    "ScoringError",
    "WorkloadTarget",
    "load_workload_targets",
    "read_logs",
    "read_submission",
    "score_submissions",
]
