"""The study sweeper: the plan (dirs, seeds, points, overrides), resume, Hydra wiring.

.venv/bin/python -m pytest tests/test_sweeper.py -q            # fast tests
.venv/bin/python -m pytest tests/test_sweeper.py -q -m slow    # real study, killed and resumed
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from algoperf_torch.tuning.search_space import generate_search
from algoperf_torch.tuning.study import (
    StudySpec,
    is_complete,
    plan_study,
    prepare_trial,
    quote_override_value,
    study_order_seed,
    trial_seed,
)
from hydra_plugins.algoperf_sweeper.algoperf_sweeper import AlgoPerfSweeper, expand_sweep

REPO = Path(__file__).resolve().parents[1]
SPACE = {
    "learning_rate": {"min": 1e-4, "max": 1e-2, "scaling": "log"},
    "label_smoothing": {"feasible_points": [0.0, 0.1, 0.2]},
}


def _spec(tmp_path, **kw) -> StudySpec:
    space = tmp_path / "space.json"
    if not space.exists():
        space.write_text(json.dumps(SPACE))
    args = dict(
        experiment_dir=str(tmp_path / "exp"),
        experiment_name="digits_nadamw",
        workload="digits",
        ruleset="external",
        num_studies=2,
        num_trials=3,
        seed=0,
        search_space=str(space),
        overrides=("workload=digits", "optimizer=nadamw"),
    )
    args.update(kw)
    return StudySpec(**args)


def test_external_plan_layout_seeds_and_points(tmp_path):
    plan = plan_study(_spec(tmp_path))
    assert [(t.study, t.trial_index) for t in plan] == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 1),
        (1, 2),
        (1, 3),
    ]
    first = plan[0]
    assert first.trial_dir == tmp_path / "exp/digits_nadamw/study_0/digits_pytorch/trial_1"
    assert first.overrides == (
        "workload=digits",
        "optimizer=nadamw",
        "experiment_name=digits_nadamw/study_0",
        "trial_index=1",
        f"seed={first.seed}",
        f"optimizer.hparams={first.trial_dir}/hparams.json",
    )
    seeds = [t.seed for t in plan]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**31 - 1 for s in seeds)
    assert seeds == [t.seed for t in plan_study(_spec(tmp_path))]  # deterministic
    assert seeds != [t.seed for t in plan_study(_spec(tmp_path, seed=1))]
    assert first.seed == trial_seed(0, 0, 1)
    # Every study runs the reference's same N points; only the order depends on the study.
    for study in (0, 1):
        points = [t.point for t in plan if t.study == study]
        assert points == generate_search(SPACE, 3, seed=study_order_seed(0, study))
        assert sorted(map(str, points)) == sorted(map(str, generate_search(SPACE, 3)))


def test_list_space_and_self_tuning(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"lr": 0.1}, {"lr": 0.2}]))
    plan = plan_study(_spec(tmp_path, search_space=str(listed), num_studies=1, num_trials=5))
    assert [t.point for t in plan] == [{"lr": 0.1}, {"lr": 0.2}]  # fewer points than trials
    selfplan = plan_study(
        _spec(tmp_path, ruleset="self", num_studies=3, num_trials=1, search_space=None)
    )
    assert len(selfplan) == 3 and all(t.point is None for t in selfplan)
    assert not any(o.startswith("optimizer.hparams=") for t in selfplan for o in t.overrides)


def test_user_overrides_of_planned_keys_are_replaced(tmp_path):
    spec = _spec(
        tmp_path, overrides=("seed=5", "experiment_name=x", "trial_index=3", "max_steps=3")
    )
    overrides = plan_study(spec)[0].overrides
    assert overrides[0] == "max_steps=3"
    assert sum(o.startswith("seed=") for o in overrides) == 1


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"ruleset": "both"}, "ruleset"),
        ({"num_trials": 0}, "num_trials"),
        ({"search_space": None}, "search space"),
    ],
)
def test_bad_specs(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        plan_study(_spec(tmp_path, **kw))


@pytest.mark.parametrize("value", ["plain/path_1.json", "/tmp/with space/h.json", "it's", "a,b=c"])
def test_quoted_values_parse_back(value):
    (override,) = OverridesParser.create().parse_overrides([f"k={quote_override_value(value)}"])
    assert override.value() == value


def test_expand_sweep_is_a_cartesian_product():
    combos = expand_sweep(["workload=digits,mnist", "seed=1", "optimizer=nadamw,adamw"])
    assert len(expand_sweep(["seed=range(3)"])) == 3
    assert len(combos) == 4 and ["workload=mnist", "seed=1", "optimizer=adamw"] in combos
    with pytest.raises(ValueError, match="comma-separated"):
        expand_sweep(["seed=interval(0,1)"])


def test_prepare_trial_clears_an_interrupted_attempt(tmp_path):
    trial = plan_study(_spec(tmp_path))[0]
    trial.trial_dir.mkdir(parents=True)
    (trial.trial_dir / "eval_measurements.csv").write_text("stale")
    (trial.trial_dir / "__main__.log").write_text("kept")
    assert not is_complete(trial.trial_dir)
    prepare_trial(trial)
    assert not (trial.trial_dir / "eval_measurements.csv").exists()
    assert (trial.trial_dir / "__main__.log").exists()
    assert json.loads((trial.trial_dir / "hparams.json").read_text()) == trial.point
    (trial.trial_dir / "summary.json").write_text("{}")
    assert is_complete(trial.trial_dir)


class _FakeLoader:
    def load_sweep_config(self, config, overrides):
        cfg = OmegaConf.create(OmegaConf.to_container(config))
        for o in overrides:
            key, value = o.split("=", 1)
            OmegaConf.update(cfg, key, value)
        return cfg


class _FakeLauncher:
    def __init__(self):
        self.jobs = []

    def launch(self, jobs, initial_job_idx):
        self.jobs.extend(jobs)
        for job in jobs:  # a trial "runs": the runner would write summary.json last
            name = next(o.split("=", 1)[1] for o in job if o.startswith("experiment_name="))
            index = next(o.split("=", 1)[1] for o in job if o.startswith("trial_index="))
            d = Path(self.root) / name / "digits_pytorch" / f"trial_{index}"
            (d / "summary.json").write_text("{}")
        return []


def test_sweeper_skips_complete_trials(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    config = OmegaConf.create(
        {
            "seed": 0,
            "experiment_dir": str(tmp_path / "exp"),
            "experiment_name": "digits_nadamw",
            "workload": {"name": "digits"},
            "optimizer": {"search_space": str(space)},
            "tuning": {"ruleset": "external", "num_studies": 2, "num_trials": 2},
        }
    )
    sweeper = AlgoPerfSweeper()
    sweeper.config = config
    sweeper.hydra_context = type("Ctx", (), {"config_loader": _FakeLoader()})()
    sweeper.launcher = _FakeLauncher()
    sweeper.launcher.root = tmp_path / "exp" / ""
    sweeper.sweep(["tuning.num_trials=2"])
    assert len(sweeper.launcher.jobs) == 4
    # "Kill" two trials: their summaries are gone; a re-run launches only those two.
    for d in ("study_0/digits_pytorch/trial_2", "study_1/digits_pytorch/trial_1"):
        (tmp_path / "exp/digits_nadamw" / d / "summary.json").unlink()
    sweeper.launcher.jobs.clear()
    sweeper.sweep(["tuning.num_trials=2"])
    launched = sorted(
        o for job in sweeper.launcher.jobs for o in job if o.startswith("experiment_name")
    )
    assert launched == [
        "experiment_name=digits_nadamw/study_0",
        "experiment_name=digits_nadamw/study_1",
    ]


def test_hydra_composes_the_sweeper_and_launchers():
    from hydra import compose, initialize_config_dir
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    with initialize_config_dir(str(REPO / "algoperf_torch/conf"), version_base=None):
        cfg = compose("config", ["tuning=self", "hydra/launcher=slurm"], return_hydra_config=True)
    assert (
        cfg.hydra.sweeper._target_
        == "hydra_plugins.algoperf_sweeper.algoperf_sweeper.AlgoPerfSweeper"
    )
    assert cfg.hydra.sweep.subdir == "digits_nadamw/digits_pytorch/trial_1"
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.tuning.num_trials == 1
    names = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)}
    assert cfg.hydra.sweeper._target_ in names


def _study_cmd(exp_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "algoperf_torch",
        "-m",
        "workload=digits",
        "optimizer=nadamw",
        "tuning=external",
        "tuning.num_studies=2",
        "tuning.num_trials=2",
        "max_steps=3",
        "progress=off",
        f"experiment_dir={exp_dir}",
    ]


@pytest.mark.slow
def test_killed_study_resumes_only_missing_trials_and_scores(tmp_path):
    exp = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        _study_cmd(exp),
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(exp.rglob("summary.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # half-way: at least one trial done, not all
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in exp.rglob("summary.json")}
    assert 1 <= len(done) < 4
    out = subprocess.run(
        _study_cmd(exp), cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summaries = list(exp.rglob("summary.json"))
    assert len(summaries) == 4
    assert all(p.stat().st_mtime_ns == m for p, m in done.items())  # complete trials untouched
    assert (out.stdout + out.stderr).count("complete, skipped") == len(done)
    scores = tmp_path / "scores"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "algoperf_torch.scoring",
            str(exp),
            "--output-dir",
            str(scores),
            "--json",
            str(scores / "s.json"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "digits_nadamw" in json.loads((scores / "s.json").read_text())
    assert (scores / "performance_profile_by_score.png").is_file()
    assert (scores / "curves_digits.png").is_file()
