"""The live progress display of a trial, or plain log lines when not on a terminal.

Shows the step (of ``max_steps`` if set), training loss (as the submission logs it), steps per
second of submission time over the last ``window`` seconds, submission time against the budget
(a bar on a terminal) with the time left, and the last eval's metric against the target. Updates
are rate-limited and happen in the runner's untimed bookkeeping, so the display never counts
towards submission time. ``describe`` (a log line) and ``live_text`` (the terminal display) are
pure functions of a ``Snapshot`` and a rate.

    python -m algoperf_torch progress=live
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger("algoperf_torch")


@dataclass
class Snapshot:
    step: int
    submission_time: float
    budget: float
    loss: float | None
    loss_step: int | None
    """The step at which the submission last logged its training loss."""
    metric_name: str
    metric: float | None
    target: float
    target_minimize: bool
    metric_step: int | None = None
    """The step of the last eval (None: no eval yet)."""
    max_steps: int | None = None


class StepRate:
    """Steps per second of submission time, over the samples of the last ``window`` seconds.

    Submission time leaves out evals, so the rate is the training throughput the budget sees.
    """

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, submission_time: float, step: int) -> float | None:
        s = self._samples
        if s and (step < s[-1][1] or submission_time < s[-1][0]):
            s.clear()  # time went backwards: another trial
        s.append((submission_time, step))
        # Keep the newest sample that is at least a window old, so the rate spans the window.
        while len(s) > 2 and submission_time - s[1][0] >= self.window:
            s.popleft()
        return self.rate

    @property
    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, step0), (t1, step1) = self._samples[0], self._samples[-1]
        return (step1 - step0) / (t1 - t0) if t1 > t0 and step1 > step0 else None


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def duration(seconds: float) -> str:
    """``8.4 s``, ``4m05s``, ``2h03m``: short, for elapsed and remaining submission time."""
    if not math.isfinite(seconds):
        return "inf"
    seconds = max(seconds, 0.0)
    if seconds < 100:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def budget_fraction(s: Snapshot) -> float:
    """Submission time over budget, in [0, 1] (1 for a budget of 0)."""
    if s.budget <= 0:
        return 1.0
    return min(max(s.submission_time / s.budget, 0.0), 1.0)


def bar(fraction: float, width: int) -> str:
    """A bar of ``width`` cells, ``━`` for the part done and ``─`` for the rest."""
    done = round(fraction * width)
    return "━" * done + "─" * (width - done)


def _step(s: Snapshot) -> str:
    return f"step {s.step}" if s.max_steps is None else f"step {s.step}/{s.max_steps}"


def _loss(s: Snapshot) -> str:
    stale = s.loss_step not in (None, s.step - 1)  # logged at an earlier step: show which
    return f"loss {_fmt(s.loss)} @{s.loss_step}" if stale else f"loss {_fmt(s.loss)}"


def _rate(steps_per_sec: float | None) -> str:
    return f"{'-' if steps_per_sec is None else f'{steps_per_sec:.1f}'} steps/s"


def _left(s: Snapshot, steps_per_sec: float | None) -> str:
    """Submission time left to the budget; and to ``max_steps`` at the current rate, if that
    comes first (past the budget the trial stops anyway)."""
    budget_left = s.budget - s.submission_time
    left = f"{duration(budget_left)} left"
    if s.max_steps is not None and s.step < s.max_steps and steps_per_sec:
        eta = (s.max_steps - s.step) / steps_per_sec
        if eta < budget_left:
            left += f", max_steps in ~{duration(eta)}"
    return left


def _eval(s: Snapshot) -> str:
    op = "<" if s.target_minimize else ">"
    target = f"target {op} {s.target}"
    if s.metric is None:
        return f"val {s.metric_name} - ({target})"
    if not math.isfinite(s.metric):
        status = "not finite"
    elif (s.metric < s.target) if s.target_minimize else (s.metric > s.target):
        status = "reached"  # strictly, as the runner's target check
    else:
        status = f"{_fmt(abs(s.metric - s.target))} to go"
    at = "" if s.metric_step is None else f" @{s.metric_step}"
    return f"val {s.metric_name} {_fmt(s.metric)}{at} ({target}, {status})"


def describe(s: Snapshot, steps_per_sec: float | None) -> str:
    """One compact log line with every fact of the display (for non-terminals)."""
    time_part = (
        f"time {duration(s.submission_time)}/{duration(s.budget)} "
        f"({budget_fraction(s):.0%}, {_left(s, steps_per_sec)})"
    )
    return " | ".join((_step(s), _loss(s), _rate(steps_per_sec), time_part, _eval(s)))


def live_text(s: Snapshot, steps_per_sec: float | None, bar_width: int = 30) -> str:
    """The terminal display: step, loss, rate and eval; then the budget bar and time left."""
    first = " | ".join((_step(s), _loss(s), _rate(steps_per_sec), _eval(s)))
    second = (
        f"time {bar(budget_fraction(s), bar_width)} {duration(s.submission_time)}/"
        f"{duration(s.budget)} {budget_fraction(s):.0%} | {_left(s, steps_per_sec)}"
    )
    return f"{first}\n{second}"


class Progress:
    """Live (rich) or plain progress output; ``mode`` is auto, live, plain or off."""

    def __init__(
        self,
        mode: str = "auto",
        enabled: bool = True,
        interval: float = 0.25,
        plain_interval: float = 10.0,
        rate_window: float = 10.0,
    ) -> None:
        if mode not in ("auto", "live", "plain", "off"):
            raise ValueError(f"progress={mode!r}; expected one of auto, live, plain, off")
        if mode == "auto":
            mode = "live" if sys.stderr.isatty() else "plain"
        self.mode = mode if enabled else "off"
        self._interval = interval if self.mode == "live" else plain_interval
        self._last_draw = 0.0
        self._live = None
        self._rate = StepRate(rate_window)
        self._rerouted: list[tuple[logging.StreamHandler, object]] = []

    def __enter__(self) -> Progress:
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            self._live = Live("", console=Console(stderr=True), auto_refresh=False, transient=False)
            self._live.__enter__()
            self._reroute_console_logging()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            for handler, stream in self._rerouted:
                handler.setStream(stream)
            self._rerouted = []
            self._live.__exit__(*exc)
            self._live = None

    def _reroute_console_logging(self) -> None:
        """Send log lines bound for the terminal through rich, so they print above the display.

        Hydra's console handler holds the real stdout; writing to it directly tears the live
        lines. Rich's Live swaps ``sys.stdout``/``sys.stderr`` for proxies that print above it;
        handlers writing to a terminal use those while live. File handlers are left alone.
        """
        proxies = {id(sys.__stdout__): sys.stdout, id(sys.__stderr__): sys.stderr}
        for handler in logging.getLogger().handlers + log.handlers:
            if type(handler) is not logging.StreamHandler:  # not FileHandler and the like
                continue
            proxy = proxies.get(id(handler.stream))
            if proxy is not None and proxy is not handler.stream and handler.stream.isatty():
                self._rerouted.append((handler, handler.setStream(proxy)))

    def update(self, snap: Snapshot, force: bool = False) -> None:
        if self.mode == "off":
            return
        rate = self._rate.add(snap.submission_time, snap.step)
        now = time.monotonic()
        if not force and now - self._last_draw < self._interval:
            return
        self._last_draw = now
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(live_text(snap, rate)), refresh=True)
        else:
            log.info(describe(snap, rate))
