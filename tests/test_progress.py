"""The progress display as pure functions of snapshots: log line, terminal text, step rate.

python -m pytest tests/test_progress.py
"""

from __future__ import annotations

import io
import math

import pytest

from algoperf_torch.progress import (
    Progress,
    Snapshot,
    StepRate,
    budget_fraction,
    describe,
    duration,
    live_text,
)


def snap(**kw) -> Snapshot:
    base = dict(
        step=50,
        submission_time=12.0,
        budget=30.0,
        loss=0.42,
        loss_step=49,
        metric_name="accuracy",
        metric=0.9,
        target=0.96,
        target_minimize=False,
        metric_step=48,
    )
    base.update(kw)
    return Snapshot(**base)


def test_start_of_a_trial_no_eval_and_zero_elapsed_time() -> None:
    s = snap(step=0, submission_time=0.0, loss=None, loss_step=None, metric=None, metric_step=None)
    assert describe(s, None) == (
        "step 0 | loss - | - steps/s | time 0.0 s/30.0 s (0%, 30.0 s left) "
        "| val accuracy - (target > 0.96)"
    )
    assert live_text(s, None, bar_width=10) == (
        "step 0 | loss - | - steps/s | val accuracy - (target > 0.96)\n"
        "time ────────── 0.0 s/30.0 s 0% | 30.0 s left"
    )


def test_maximised_target_shows_the_gap_then_reached() -> None:
    s = snap()
    assert describe(s, 12.5) == (
        "step 50 | loss 0.4200 | 12.5 steps/s | time 12.0 s/30.0 s (40%, 18.0 s left) "
        "| val accuracy 0.9000 @48 (target > 0.96, 0.0600 to go)"
    )
    assert live_text(s, 12.5, bar_width=10).splitlines()[1] == (
        "time ━━━━────── 12.0 s/30.0 s 40% | 18.0 s left"
    )
    assert describe(snap(metric=0.97), 1.0).endswith("(target > 0.96, reached)")
    # The runner's check is strict: equal to the target is not reached.
    assert describe(snap(metric=0.96), 1.0).endswith("(target > 0.96, 0.0000 to go)")


def test_minimised_target() -> None:
    s = snap(metric_name="wer", metric=0.3, target=0.25, target_minimize=True)
    assert describe(s, 1.0).endswith("val wer 0.3000 @48 (target < 0.25, 0.0500 to go)")
    assert describe(snap(metric=0.2, target=0.25, target_minimize=True), 1.0).endswith(
        "(target < 0.25, reached)"
    )
    assert describe(snap(metric=math.nan), 1.0).endswith("(target > 0.96, not finite)")


def test_max_steps_eta_and_a_stale_loss() -> None:
    line = describe(snap(max_steps=100, loss_step=20), 10.0)
    assert line.startswith("step 50/100 | loss 0.4200 @20 | 10.0 steps/s |")
    assert "(40%, 18.0 s left, max_steps in ~5.0 s)" in line
    assert "max_steps in" not in describe(snap(max_steps=100), None)  # no rate yet: no ETA
    # At 1 step/s max_steps lies 50 s away, past the budget's end (18 s): the budget stops it.
    assert "(40%, 18.0 s left) |" in describe(snap(max_steps=100), 1.0)
    assert "(40%, 18.0 s left) |" in describe(snap(step=100, max_steps=100), 10.0)  # done


def test_durations_budget_fraction_and_a_spent_budget() -> None:
    assert [duration(x) for x in (8.44, 99.9, 245, 7380, -1.0, math.inf)] == [
        "8.4 s",
        "99.9 s",
        "4m05s",
        "2h03m",
        "0.0 s",
        "inf",
    ]
    assert budget_fraction(snap(submission_time=45.0)) == 1.0
    assert budget_fraction(snap(budget=0.0)) == 1.0
    over = snap(submission_time=31.0)
    assert "(100%, 0.0 s left)" in describe(over, 1.0)
    assert "━━━━━━━━━━ 31.0 s/30.0 s 100%" in live_text(over, 1.0, bar_width=10)


def test_step_rate_spans_the_recent_window() -> None:
    rate = StepRate(window=10.0)
    assert rate.add(0.0, 0) is None and rate.add(0.0, 3) is None  # no time elapsed yet
    for t in range(1, 21):  # 10 steps/s for 10 s, then 20 steps/s
        step = 10 * t if t <= 10 else 100 + 20 * (t - 10)
        r = rate.add(float(t), step)
    assert r == pytest.approx(20.0)
    assert rate.add(5.0, 10) is None  # time went backwards (a new trial): start again


def test_live_mode_renders_through_rich() -> None:
    progress = Progress("live", interval=0.0)
    with progress:
        buffer = io.StringIO()
        progress._live.console.file = buffer
        progress.update(snap(step=5, submission_time=1.5, loss_step=4), force=True)
        progress.update(snap(step=9, submission_time=2.5, loss_step=4), force=True)
    assert progress._live is None
    out = buffer.getvalue()
    assert "step 9 | loss 0.4200 @4 | 4.0 steps/s |" in out  # a stale loss shows its step
    assert "2.5 s/30.0 s 8% | 27.5 s left" in out
    with pytest.raises(ValueError, match="progress='fancy'"):
        Progress("fancy")
