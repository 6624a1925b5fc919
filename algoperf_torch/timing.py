"""The synchronised clock and the typed train state of one trial (RULES.md §2.3–2.6).

python -m pytest tests/test_runner_timing.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import MappingProxyType

import torch

from algoperf_torch.distributed import DistInfo, max_across_ranks


@dataclass
class TrainState:
    """The runner's bookkeeping; field names are the reference's ``train_state`` keys."""

    validation_goal_reached: bool = False
    test_goal_reached: bool = False
    is_time_remaining: bool = True
    last_eval_time: float = 0.0
    training_complete: bool = False
    accumulated_submission_time: float = 0.0
    accumulated_eval_time: float = 0.0
    accumulated_logging_time: float = 0.0
    last_step_end_time: float | None = None
    global_step: int = 0
    diverged: bool = False

    def reference_view(self) -> MappingProxyType:
        """A read-only mapping with the reference's keys, handed to ``update_params``."""
        keys = (
            "validation_goal_reached",
            "test_goal_reached",
            "is_time_remaining",
            "last_eval_time",
            "training_complete",
            "accumulated_submission_time",
            "accumulated_eval_time",
            "accumulated_logging_time",
            "last_step_end_time",
        )
        d = asdict(self)
        return MappingProxyType({k: d[k] for k in keys})


class Clock:
    """``get_time()`` of the reference: device sync, wall time, max over ranks.

    Args:
        dist_info: the process's place (for the cross-rank max and the CUDA sync).
        time_fn: the time source; tests inject a fake one.
    """

    def __init__(self, dist_info: DistInfo, time_fn: Callable[[], float] = time.time) -> None:
        self._info = dist_info
        self._time_fn = time_fn

    def __call__(self) -> float:
        if self._info.device.type == "cuda":
            torch.cuda.synchronize(self._info.device)
        return max_across_ranks(self._time_fn(), self._info)


def eval_due(state: TrainState, now: float, eval_period: float) -> bool:
    """Wall time since the end of the last eval reached the period (or training is over).

    ``last_eval_time`` starts at 0 (the epoch), so the first eval follows step 1, as in the
    reference [submission_runner.py].
    """
    return now - state.last_eval_time >= eval_period or state.training_complete
