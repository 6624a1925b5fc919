"""A second process for the scoring CLI, so that drawing the plots overlaps scoring.

    with start_workers() as workers:          # None on one CPU or off Linux
        workers.submit(import_matplotlib)     # there, while this process reads and scores
        ...
        write_plots(..., workers=workers)     # drawn there and on forks of it

Reading half of the logs there does not pay: sending the trials back (tens of thousands of
small arrays) costs more than reading them.

The process is forked at the first call, so it starts with everything this one has imported
and costs nothing to start; the forks it makes to draw start with matplotlib. Linux only: fork
is the default start method there, and it is safe here because no thread of this package is
running when it forks; macOS and Windows spawn processes, which import everything again.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

MAX_WORKERS = 4


def import_matplotlib() -> None:
    """What drawing imports (about half a second)."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def _fork_context():
    return multiprocessing.get_context("fork")


class Workers:
    """One forked process to run calls on, and how many processes may draw at once."""

    def __init__(self, executor: ProcessPoolExecutor, count: int):
        self._executor = executor
        self.count = count

    def submit(self, function: Callable, *args) -> Future:
        """Run `function(*args)` on the process (calls run one at a time, in order)."""
        return self._executor.submit(function, *args)

    def run_parts(self, parts: list[list[tuple]]) -> list:
        """Run each part's `(function, *args)` calls in order, the parts in parallel: the
        first on the process, each other on a fork of it; every call's result, parts in
        order."""
        return self.submit(_run_parts, parts).result()


def _run_parts(parts: list[list[tuple]]) -> list:
    if len(parts) < 2:
        return [result for part in parts for result in _run_part(part)]
    with ProcessPoolExecutor(len(parts) - 1, mp_context=_fork_context()) as forks:
        others = [forks.submit(_run_part, part) for part in parts[1:]]
        results = _run_part(parts[0])
        for job in others:
            results += job.result()
    return results


def _run_part(calls: list[tuple]) -> list:
    return [function(*args) for function, *args in calls]


@contextlib.contextmanager
def start_workers(count: int | None = None) -> Iterator[Workers | None]:
    """Fork the process; None (do everything here) on one CPU or off Linux.

    Args:
        count: processes that may draw at once (default: the usable CPUs, at most
            `MAX_WORKERS`).
    """
    if not sys.platform.startswith("linux"):
        count = 1
    elif count is None:
        count = min(len(os.sched_getaffinity(0)), MAX_WORKERS)
    if count < 2:
        yield None
        return
    with ProcessPoolExecutor(1, mp_context=_fork_context()) as executor:
        yield Workers(executor, count)
