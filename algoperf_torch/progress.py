"""The live progress display of a trial, or plain log lines when not on a terminal.

Shows step, training loss (as the submission logs it), steps/s, submission time against the
budget, and the last eval's metric against the target. Updates are rate-limited and happen in
the runner's untimed bookkeeping, so the display never counts towards submission time.

    python -m algoperf_torch progress=live
"""

from __future__ import annotations

import logging
import sys
import time
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


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def describe(s: Snapshot, steps_per_sec: float) -> str:
    op = "<" if s.target_minimize else ">"
    loss = _fmt(s.loss) if s.loss_step in (None, s.step - 1) else f"{_fmt(s.loss)} @{s.loss_step}"
    return (
        f"step {s.step} | loss {loss} | {steps_per_sec:.1f} steps/s | "
        f"time {s.submission_time:.1f}/{s.budget:.0f} s | "
        f"val {s.metric_name} {_fmt(s.metric)} (target {op} {s.target})"
    )


class Progress:
    """Live (rich) or plain progress output; ``mode`` is auto, live, plain or off."""

    def __init__(
        self,
        mode: str = "auto",
        enabled: bool = True,
        interval: float = 0.25,
        plain_interval: float = 10.0,
    ) -> None:
        if mode not in ("auto", "live", "plain", "off"):
            raise ValueError(f"progress={mode!r}; expected one of auto, live, plain, off")
        if mode == "auto":
            mode = "live" if sys.stderr.isatty() else "plain"
        self.mode = mode if enabled else "off"
        self._interval = interval if self.mode == "live" else plain_interval
        self._last_draw = 0.0
        self._live = None
        self._rate_t0: tuple[float, int] | None = None
        self._rate = 0.0

    def __enter__(self) -> Progress:
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            self._live = Live("", console=Console(stderr=True), auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def update(self, snap: Snapshot, force: bool = False) -> None:
        if self.mode == "off":
            return
        now = time.monotonic()
        if self._rate_t0 is None:
            self._rate_t0 = (now, snap.step)
        if not force and now - self._last_draw < self._interval:
            return
        t0, step0 = self._rate_t0
        if now > t0 and snap.step > step0:
            self._rate = (snap.step - step0) / (now - t0)
            self._rate_t0 = (now, snap.step)
        self._last_draw = now
        text = describe(snap, self._rate)
        if self._live is not None:
            self._live.update(text, refresh=True)
        else:
            log.info(text)
