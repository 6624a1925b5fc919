"""Scoring on hand-built logs whose answers are worked out by hand in each test.

.venv/bin/python -m pytest tests/test_scoring.py -q
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from algoperf_torch.scoring.__main__ import main as scoring_main
from algoperf_torch.scoring.logs import (
    MalformedLogError,
    read_logs,
    read_submission,
    read_trial_csv,
)
from algoperf_torch.scoring.plots import curves_figures, draw_curves_figures, write_plots
from algoperf_torch.scoring.rules import BASE_WORKLOADS, RULES
from algoperf_torch.scoring.scores import (
    ScoringError,
    apply_budget_rules,
    count_warnings,
    performance_ratios,
    score_submissions,
    scored_column,
    study_times,
    trial_times,
    workload_times,
)
from algoperf_torch.scoring.targets import WorkloadTarget, load_workload_targets
from algoperf_torch.scoring.workers import start_workers

INF = math.inf
DELTA = 3 / 99  # spacing of linspace(1, 4, 100)


def _targets(names=BASE_WORKLOADS, extra=()) -> dict[str, WorkloadTarget]:
    out = {n: WorkloadTarget(n, "accuracy", False, 0.5) for n in names}
    out["criteo1tb"] = WorkloadTarget("criteo1tb", "loss", True, 0.2)
    for name, base in extra:
        out[name] = WorkloadTarget(name, "accuracy", False, 0.5, base=base)
    return out


def write_trial(
    root,
    sub,
    study,
    workload,
    trial,
    metric,
    times,
    metric_name="accuracy",
    framework="pytorch",
    steps=None,
):
    d = root / sub / study / f"{workload}_{framework}" / f"trial_{trial}"
    d.mkdir(parents=True, exist_ok=True)
    steps = steps if steps is not None else [100 * (i + 1) for i in range(len(metric))]
    frame = pd.DataFrame(
        {
            "accumulated_submission_time": times,
            "global_step": steps,
            "preemption_count": 0,
            "score": times,
            f"validation/{metric_name}": metric,
        }
    )
    frame.to_csv(d / "eval_measurements.csv", index=False)
    return d / "eval_measurements.csv"


def reach_at(time, workload="x"):
    """A one-trial study reaching the target at `time` (∞: never)."""
    if workload == "criteo1tb":
        return ([0.5, 0.1] if time != INF else [0.5, 0.4]), [
            time / 2 if time != INF else 1,
            time if time != INF else 2,
        ]
    return ([0.1, 0.9] if time != INF else [0.1, 0.2]), [
        time / 2 if time != INF else 1,
        time if time != INF else 2,
    ]


def area(ratio: float) -> float:
    """∫ρ for one workload solved at `ratio`, by the 100-point trapezoid rule, by hand:
    ρ jumps from 0 to 1 at the first grid point τ_k ≥ r, and the trapezoid adds half an interval.
    """
    if ratio == 1:
        return 3.0
    if ratio > 4:
        return 0.0
    k = math.ceil((ratio - 1) / DELTA)
    return (4 - (1 + k * DELTA)) + DELTA / 2


def build_two_submissions(root):
    # Per workload, studies of A and B (times to target; INF = never reached).
    plan = {
        "criteo1tb": ([100] * 3, [250] * 3),  # ratios 1 and 2.5
        "fastmri": ([100] * 3, [500] * 3),  # B above 4x -> inf
        "imagenet_resnet": ([100, INF, INF], [300] * 3),  # A median inf
        "imagenet_vit": ([100, INF, 200], [200, 200]),  # A median 200; B has only 2 studies
        "librispeech_conformer": ([INF] * 3, [INF] * 3),  # nobody: inf/inf stays inf
        "wmt": ([100] * 3, None),  # B has no logs for wmt
    }
    for workload, (a, b) in plan.items():
        for sub, studies in (("A", a), ("B", b)):
            for j, t in enumerate(studies or []):
                metric, times = reach_at(t, workload)
                name = "loss" if workload == "criteo1tb" else "accuracy"
                write_trial(root, sub, f"study_{j}", workload, 1, metric, times, name)
    # ogbg: winner by eval index. A's trial_1 reaches at eval 2 (t=300), trial_2 at eval 1
    # (t=410, slower evals): the winner is trial_2 and A's time is 410, not 300.
    for j in range(3):
        write_trial(root, "A", f"study_{j}", "ogbg", 1, [0.1, 0.2, 0.9], [100, 200, 300])
        write_trial(root, "A", f"study_{j}", "ogbg", 2, [0.1, 0.9, 0.9], [205, 410, 600])
        write_trial(root, "B", f"study_{j}", "ogbg", 1, [0.1, 0.9], [150, 300])
    # librispeech_deepspeech: NaN evals never reach. A: trial_1 all NaN, trial_2 reaches at its
    # third eval (the NaN second eval does not count) -> 30. B: 30.
    for j in range(3):
        write_trial(
            root, "A", f"study_{j}", "librispeech_deepspeech", 1, [np.nan] * 3, [10, 20, 30]
        )
        write_trial(
            root, "A", f"study_{j}", "librispeech_deepspeech", 2, [0.1, np.nan, 0.9], [10, 20, 30]
        )
        write_trial(
            root,
            "B",
            f"study_{j}",
            "librispeech_deepspeech",
            1,
            [0.1, 0.2, 0.9],
            [10, 20, 30],
            framework="jax",
        )


def test_two_submissions_by_hand(tmp_path):
    build_two_submissions(tmp_path)
    trials, errors = read_logs(tmp_path)
    assert errors == {}
    result = score_submissions(trials, _targets(), RULES["v0.6"])
    times = result.times
    assert times.loc["A", "criteo1tb"] == 100 and times.loc["B", "criteo1tb"] == 250
    assert times.loc["A", "imagenet_resnet"] == INF
    assert times.loc["A", "imagenet_vit"] == 200 and times.loc["B", "imagenet_vit"] == 200
    assert times.loc["A", "ogbg"] == 410 and times.loc["B", "ogbg"] == 300
    assert np.isnan(times.loc["B", "wmt"])
    assert times.loc["A", "librispeech_deepspeech"] == 30
    assert result.scored_times.loc["B", "fastmri"] == INF  # 500 > 4 x 100
    winners = result.per_study.query("submission == 'A' and workload == 'ogbg'")["winner"]
    assert set(winners) == {"trial_2"}
    # A: criteo 1, fastmri 1, resnet inf, vit 1, conformer inf, deepspeech 1, ogbg 41/30, wmt 1.
    score_a = (3 + 3 + 0 + 3 + 0 + 3 + area(410 / 300) + 3) / 3 / 8
    # B: criteo 2.5, fastmri inf, resnet 1, vit 1, conformer inf, deepspeech 1, ogbg 1, wmt NaN.
    score_b = (area(2.5) + 0 + 3 + 3 + 0 + 3 + 3 + 0) / 3 / 8
    assert area(2.5) == pytest.approx(1.5)
    assert result.scores["A"] == pytest.approx(score_a, abs=1e-12)
    assert result.scores["B"] == pytest.approx(score_b, abs=1e-12)
    assert round(result.scores["A"], 4) == 0.7342 and round(result.scores["B"], 4) == 0.5625


def test_medians_with_inf_and_missing_studies():
    rows = []
    for sub, studies in {
        "A": [100, INF, 200],
        "B": [100, INF],
        "C": [100, 300],
        "D": [INF, INF, 5],
        "E": [1, 2, np.nan],
    }.items():
        rows += [
            {"submission": sub, "workload": "w", "study": f"s{j}", "time": t}
            for j, t in enumerate(studies)
        ]
    table = workload_times(pd.DataFrame(rows))
    assert table["w"].to_dict() == pytest.approx(
        {"A": 200, "B": INF, "C": 200, "D": INF, "E": np.nan}, nan_ok=True
    )


def test_four_times_cut_is_inclusive_and_ratio_nan_keeps_time():
    times = pd.DataFrame({"w": [100.0, 400.0, 400.1], "v": [INF, INF, np.nan]}, index=list("abc"))
    cut = apply_budget_rules(times, ["w", "v"], {})
    assert cut["w"].tolist() == [100, 400, INF]
    ratios = performance_ratios(cut)
    assert ratios["w"].tolist() == [1, 4, INF]
    assert (
        ratios["v"].iloc[0] == INF and ratios["v"].iloc[1] == INF and np.isnan(ratios["v"].iloc[2])
    )


def test_held_out_rule_in_the_reference_order():
    # base ogbg, held-out variant ogbg_model_size; worked out by hand:
    # A: both reached -> 100.  B: variant never -> base inf.  C: base never; its variant (20)
    # is dropped before the 4x cut, so A's variant (100) is the fastest and stays.
    # D: variant missing (NaN) -> base inf.  E: variant 500 > 4 x 100 -> cut -> base inf.
    # F: base 450 > 4 x 100 -> cut.
    times = pd.DataFrame(
        {
            "ogbg": [100, 150, INF, 300, 120, 450],
            "ogbg_model_size": [100, INF, 20, np.nan, 500, 100],
        },
        index=list("ABCDEF"),
        dtype=float,
    )
    out = apply_budget_rules(times, ["ogbg"], {"ogbg_model_size": "ogbg"})
    assert list(out.columns) == ["ogbg"]
    assert out["ogbg"].tolist() == [100, INF, INF, INF, INF, INF]
    # Without the variant pre-filter (the v0.5.0 tag's order) C's 20 would cut A's variant.
    assert apply_budget_rules(times.loc[["A", "B"]], ["ogbg"], {"ogbg_model_size": "ogbg"})[
        "ogbg"
    ].tolist() == [100, INF]


def test_v05_held_out_from_logs(tmp_path):
    targets = _targets(extra=[("ogbg_model_size", "ogbg")])
    for sub, base_t, var_t in (("A", 100, 100), ("B", 120, INF)):
        for j in range(5):
            for w, t in (("ogbg", base_t), ("ogbg_model_size", var_t)):
                write_trial(tmp_path, sub, f"study_{j}", w, 1, *reach_at(t))
    trials, _ = read_logs(tmp_path)
    v05 = RULES["v0.5"]
    result = score_submissions(trials, targets, v05)
    assert result.scored_times["ogbg"].tolist() == [100, INF]
    assert result.scores["A"] == pytest.approx(1 / 8) and result.scores["B"] == 0
    # Under v0.6 the variant does not count and B's ogbg (1.2x) scores.
    r6 = score_submissions(trials, targets, RULES["v0.6"])
    assert r6.ignored_workloads == ["ogbg_model_size"]
    assert r6.scores["B"] == pytest.approx(area(1.2) / 3 / 8)


def test_self_tuning_skips_trial_count_check():
    per_study = pd.DataFrame(
        [
            {
                "submission": "A",
                "workload": "w",
                "study": f"s{j}",
                "time": 1.0,
                "winner": "trial_1",
                "num_trials": 1,
            }
            for j in range(3)
        ]
    )
    assert not any("trials" in n for n in count_warnings(per_study, RULES["v0.6"], True, 1))
    assert sum("trials" in n for n in count_warnings(per_study, RULES["v0.6"], False, 1)) == 3


def test_malformed_csv_names_file_and_others_are_scored(tmp_path, capsys):
    for j in range(3):
        write_trial(tmp_path / "logs", "good", f"study_{j}", "digits", 1, [0.2, 0.99], [1.0, 2.0])
        write_trial(tmp_path / "logs", "bad", f"study_{j}", "digits", 1, [0.2, 0.99], [1.0, 2.0])
    broken = tmp_path / "logs/bad/study_1/digits_pytorch/trial_1/eval_measurements.csv"
    broken.write_text("global_step,score,validation/accuracy\n1,2.0,oops\n2,3.0\n")
    with pytest.raises(MalformedLogError, match="study_1/digits_pytorch/trial_1"):
        read_submission(tmp_path / "logs/bad")
    out = tmp_path / "out"
    status = scoring_main(
        [
            str(tmp_path / "logs"),
            "--output-dir",
            str(out),
            "--json",
            str(out / "scores.json"),
            "--no-plots",
        ]
    )
    assert status == 1
    assert "study_1/digits_pytorch/trial_1/eval_measurements.csv" in capsys.readouterr().err
    assert json.loads((out / "scores.json").read_text()) == {"good": 1.0}


def test_missing_metric_column_is_an_error_naming_the_file(tmp_path):
    path = write_trial(tmp_path, "A", "study_0", "digits", 1, [0.9], [1.0], metric_name="loss")
    trials, _ = read_logs(tmp_path)
    result = score_submissions(trials, _targets(["digits"]), RULES["v0.6"])
    assert "A" in result.errors and str(path) in result.errors["A"]
    assert "validation/accuracy" in result.errors["A"]


def test_reads_reference_layout_with_late_columns(tmp_path):
    d = tmp_path / "ref" / "study_0" / "mnist_jax" / "trial_0"
    d.mkdir(parents=True)
    # The reference's sorted header; a column first seen at the 2nd eval is appended, blank before.
    (d / "eval_measurements.csv").write_text(
        "accumulated_eval_time,accumulated_logging_time,accumulated_submission_time,global_step,"
        "preemption_count,score,test/accuracy,test/loss,test/num_examples,total_duration,"
        "train/accuracy,train/loss,validation/accuracy,validation/loss,validation/num_examples,"
        "grad_norm\n"
        "3.80,0.0,10.63,1,0,10.63,0.09,2.47,10000,14.44,0.09,2.47,0.0911,2.47,10000,\n"
        "3.83,0.03,10.64,2,0,10.64,0.98,2.44,10000,14.51,0.95,2.44,0.9749,2.44,10000,1.5\n"
    )
    frame = read_submission(tmp_path / "ref")
    assert frame.loc[0, "workload"] == "mnist" and frame.loc[0, "framework"] == "jax"
    assert np.isnan(frame.loc[0, "grad_norm"][0]) and frame.loc[0, "grad_norm"][1] == 1.5
    per_trial = trial_times(frame, {"mnist": WorkloadTarget("mnist", "accuracy", False, 0.97)})
    assert per_trial.loc[0, "time_to_target"] == pytest.approx(10.64)
    assert per_trial.loc[0, "eval_index"] == 1


def test_study_winner_ties_go_to_the_smallest_time():
    # trial_2 and trial_3 both reach at eval 3: the faster one wins, not the lower number;
    # trial_10 is faster still but reaches one eval later.
    per_trial = pd.DataFrame(
        [
            {
                "submission": "A",
                "workload": "w",
                "study": "s",
                "trial": f"trial_{i}",
                "eval_index": idx,
                "time_to_target": t,
            }
            for i, idx, t in ((1, -1, INF), (2, 3, 50.0), (3, 3, 40.0), (10, 4, 10.0), (4, 3, 40.0))
        ]
    )
    row = study_times(per_trial).iloc[0]
    assert (row["winner"], row["time"]) == ("trial_3", 40.0)  # equal times: the first read


def test_tie_on_eval_index_from_logs(tmp_path):
    # The shape of v0.6 shampoo/study_0/fastmri: trial_2 and trial_5 first reach the target at
    # the same eval, trial_5 in less time. The study's time is trial_5's, so the median over
    # the three studies is 640.8 (the lowest-trial-number rule would give 841.2).
    for j in range(3):
        write_trial(tmp_path, "A", f"study_{j}", "fastmri", 1, [0.1, 0.2, 0.3], [100, 200, 300])
        write_trial(tmp_path, "A", f"study_{j}", "fastmri", 2, [0.1, 0.3, 0.8], [280, 560, 841.2])
        write_trial(tmp_path, "A", f"study_{j}", "fastmri", 5, [0.1, 0.3, 0.9], [210, 420, 640.8])
    per_study = study_times(trial_times(read_submission(tmp_path / "A"), _targets()))
    assert per_study["winner"].tolist() == ["trial_5"] * 3
    assert workload_times(per_study).loc["A", "fastmri"] == 640.8


def test_dev_mode_cli_writes_outputs(tmp_path, capsys):
    for j in range(2):
        for i in (1, 2):
            write_trial(
                tmp_path / "logs", "nadamw", f"study_{j}", "digits", i, [0.3, 0.96], [1.0, 2.0 + i]
            )
    out = tmp_path / "out"
    assert (
        scoring_main(
            [str(tmp_path / "logs"), "--output-dir", str(out), "--json", str(out / "s.json")]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "nadamw" in captured.out and "1.0000" in captured.out
    assert "scoring the workloads present (digits)" in captured.err
    for name in (
        "time_to_targets.csv",
        "scores.csv",
        "performance_profile_score.csv",
        "nadamw_summary.csv",
        "performance_profile_by_score.png",
        "curves_digits.png",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "s.json").read_text()) == {"nadamw": 1.0}


def test_load_workload_targets_resolves_defaults(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\nbase: null\ntarget_metric: wer\ntarget_minimize: true\n"
        "validation_target: 0.1\ntest_target: 0.05\nmax_runtime: 100\nv05_max_runtime: 200\n"
        "v05_validation_target: 0.11\n"
    )
    (tmp_path / "base_gelu.yaml").write_text(
        "defaults:\n  - base\n  - _self_\nname: base_gelu\nbase: base\nvalidation_target: 0.12\n"
    )
    (tmp_path / "broken.yaml").write_text("name: broken\ntarget_metric: wer\n")
    targets, problems = load_workload_targets(tmp_path)
    gelu = targets["base_gelu"]
    assert (gelu.target_metric, gelu.target_minimize, gelu.validation_target, gelu.base) == (
        "wer",
        True,
        0.12,
        "base",
    )
    assert gelu.validation_metric == "validation/wer"
    assert (
        targets["base"].budget("v0.6", False) == 100 and targets["base"].budget("v0.5", True) == 600
    )
    assert targets["base"].budget("v0.6", True) == 150
    v05 = targets["base"].for_rules("v0.5")
    assert (v05.validation_target, v05.max_runtime, v05.test_target) == (0.11, 200, 0.05)
    assert targets["base"].for_rules("v0.6").validation_target == 0.1
    assert "broken" in problems and "target_minimize" in problems["broken"]


def test_shipped_workload_yamls_have_targets():
    targets, problems = load_workload_targets()
    assert "digits" in targets and targets["digits"].validation_metric == "validation/accuracy"
    assert problems == {}


def test_strict_mode_and_empty_logs(tmp_path):
    write_trial(tmp_path, "A", "study_0", "digits", 1, [0.99], [1.0])
    trials, _ = read_logs(tmp_path)
    with pytest.raises(ScoringError, match="expecting 3 studies, found 1"):
        score_submissions(trials, _targets(["digits"]), RULES["v0.6"], strict=True)
    assert score_submissions(trials, _targets(["digits"]), RULES["v0.6"]).scores["A"] == 1.0
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScoringError, match="no trial logs"):
        score_submissions(read_logs(tmp_path / "empty")[0], {}, RULES["v0.6"])


def test_plots_in_parallel_match_plots_in_process(tmp_path):
    # Three submissions, one without logs for fastmri (its line and legend entry are hidden),
    # one trial with NaN evals; drawn on one reused figure, in this process or on two.
    for k, sub in enumerate(("A", "B", "C")):
        for workload in ("ogbg", "fastmri") if sub != "C" else ("ogbg",):
            for t in (1, 2):
                metric = [0.1 * k, 0.4, np.nan if sub == "B" else 0.5, 0.5 + 0.1 * t]
                times = [10, 20, 30, 40 + 5 * k]
                write_trial(tmp_path / "logs", sub, "study_0", workload, t, metric, times)
    trials, _ = read_logs(tmp_path / "logs")
    all_trials = pd.concat(trials.values(), ignore_index=True)
    profiles = pd.DataFrame([[0.5, 1.0], [0.0, 0.5], [0.0, 0.0]], index=["A", "B", "C"])
    profiles.columns = [1.0, 4.0]
    args = (profiles, "t", all_trials, _targets(), {"ogbg": 25.0})
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    here = write_plots(tmp_path / "here", *args)
    with start_workers(2) as workers:
        assert workers is not None  # Linux with fork (the suite runs there)
        there = write_plots(tmp_path / "there", *args, workers=workers)
    names = ["performance_profile_by_score.png", "curves_fastmri.png", "curves_ogbg.png"]
    assert [p.name for p in here] == [p.name for p in there] == names
    for a, b in zip(here, there):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name
    assert np.asarray(Image.open(here[1])).shape == (550, 1100, 3)  # RGB at 110 dpi
    with start_workers(1) as workers:
        assert workers is None


def test_png_writer_round_trips(tmp_path):
    from algoperf_torch.scoring.plots import _figure, _save_png

    fig, ax = _figure((3.0, 2.0), (0.1, 0.1, 0.8, 0.8), dpi=50)
    ax.plot([0, 1, 2], [2, 0, 1], color="C1")
    ax.set_title("x")
    _save_png(fig, tmp_path / "a.png")
    image = Image.open(tmp_path / "a.png")
    assert image.mode == "RGB" and image.size == (150, 100)
    assert image.info["dpi"] == pytest.approx((50, 50), abs=0.05)  # stored per metre
    expected = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    assert np.array_equal(np.asarray(image), expected)


def test_reading_only_the_scored_columns(tmp_path):
    path = tmp_path / "eval_measurements.csv"
    path.write_text(
        "score,train/note,validation/accuracy,global_step,validation/loss\n"
        "1.0,warmup,0.5,1,2.0\n"
        "2.0,,0.9,2,\n"
    )
    values = read_trial_csv(path, scored_column)
    assert sorted(values) == ["global_step", "score", "validation/accuracy", "validation/loss"]
    assert values["validation/accuracy"].tolist() == [0.5, 0.9]
    assert np.isnan(values["validation/loss"][1])
    with pytest.raises(MalformedLogError, match="cannot read"):
        read_trial_csv(path)  # every column: 'warmup' is not a number
    path.write_text("score,train/loss,validation/accuracy\n1.0,2.0,oops\n")
    with pytest.raises(MalformedLogError, match="cannot read"):
        read_trial_csv(path, scored_column)  # a scored column still must be


def test_a_copied_legend_matches_a_drawn_one(tmp_path):
    # Two workloads with the same legend entries: the second figure gets the first one's
    # legend pixels; it must equal the same figure drawn on its own.
    for sub in ("A", "B"):
        for workload, top in (("ogbg", 0.7), ("wmt", 0.95)):
            write_trial(tmp_path / "logs", sub, "study_0", workload, 1, [0.1, top], [1, 9])
    trials = pd.concat(read_logs(tmp_path / "logs")[0].values(), ignore_index=True)
    figures = curves_figures(trials, _targets(), {"ogbg": 8.0, "wmt": 9.0})
    for name, drawn in (("both", figures), ("alone", figures[1:])):
        (tmp_path / name).mkdir()
        draw_curves_figures(drawn, ["A", "B"], tmp_path / name)
    both, alone = (
        np.asarray(Image.open(tmp_path / d / "curves_wmt.png")) for d in ("both", "alone")
    )
    assert np.array_equal(both, alone)
